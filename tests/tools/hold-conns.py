#!/usr/bin/env python3
"""Opens N connections to HOST:PORT and holds them idle until killed.

    hold-conns.py HOST PORT N [CERT KEY]

With CERT and KEY, each connection does a TLS handshake presenting that
client certificate (the server's is not checked) and then sends nothing;
without, each is a bare TCP connection that never starts TLS.  Prints
"held K" once K of the N are open (the others were refused or closed),
then sleeps.
"""
import socket
import ssl
import sys
import time

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = None
if len(sys.argv) > 5:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
held = []
for _ in range(n):
    try:
        s = socket.create_connection((host, port), timeout=1)
        if ctx:
            s = ctx.wrap_socket(s)
        held.append(s)
    except OSError:
        pass
# A connection the server closed at once reads as EOF.
time.sleep(0.5)
alive = 0
for s in held:
    s.setblocking(False)
    try:
        alive += s.recv(1) != b""
    except (BlockingIOError, ssl.SSLWantReadError):
        alive += 1
    except OSError:
        pass
print(f"held {alive}", flush=True)
while True:
    time.sleep(60)
