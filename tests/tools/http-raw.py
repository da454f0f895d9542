#!/usr/bin/env python3
"""Sends one raw HTTP request, as given, to a unix socket and prints the
status line's code and the body: for requests curl will not make (two
Content-Length headers, Content-Length with Transfer-Encoding).

    http-raw.py SOCKET < request
"""
import socket
import sys

req = sys.stdin.buffer.read().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(req)
data = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and b"content-length:" in head.lower():
            n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(body) >= n:
                break
except socket.timeout:
    pass
head, _, body = data.partition(b"\r\n\r\n")
code = head.split(b" ")[1].decode() if head else "none"
print(code, body.decode(errors="replace").strip())
