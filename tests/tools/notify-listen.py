#!/usr/bin/env python3
"""Plays systemd's side of the notification protocol (sd_notify(3)) for a
cryptvold started with --foreground, as a Type=notify unit would:

  notify-listen.py SOCKET TCP_PORT ADMIN_SOCK -- CRYPTVOLD ARGS...

SOCKET is a path, or @name for an abstract socket.  Binds it (datagrams,
with the sender's credentials, as systemd checks NotifyAccess=main), starts
the command with NOTIFY_SOCKET set and then checks:
  * READY=1 comes from the daemon's own pid, and when it comes the NBD TCP
    port and the admin socket already accept (one connect each, at once:
    no retry that would hide an early READY=1);
  * nothing else before it but STATUS= lines;
  * with NOTIFY_LISTEN_HOOK set, that shell command, run once READY=1
    came, exits 0 (it uses the daemon);
  * SIGHUP: RELOADING=1 (with MONOTONIC_USEC=), then READY=1 again;
  * SIGTERM: STOPPING=1 before the process exits, and exit status 0.
Prints one line per check; exits 1 with "FAIL: ..." on the first that does
not hold."""
import array
import os
import signal
import socket
import struct
import subprocess
import sys
import time


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def recv(sock, proc, timeout):
    """One datagram as (pid, {key: value}), or None when proc exited."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        sock.settimeout(0.1)
        try:
            data, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            if proc.poll() is not None:
                return None
            continue
        pid = None
        for level, kind, body in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _, _ = struct.unpack("iII", body[:12])
        fields = {}
        for line in data.decode().split("\n"):
            if line:
                k, _, v = line.partition("=")
                fields[k] = v
        return pid, fields
    fail("no notification within %d s" % timeout)


def expect(sock, proc, key, timeout=10):
    got = recv(sock, proc, timeout)
    if got is None:
        fail("cryptvold exited (status %s) before sending %s=1" %
             (proc.returncode, key))
    pid, fields = got
    if fields.get(key) != "1":
        fail("expected %s=1, got %r" % (key, fields))
    if pid != proc.pid:
        fail("%s=1 came from pid %s, not the daemon's pid %d (systemd's "
             "NotifyAccess=main would drop it)" % (key, pid, proc.pid))
    return fields


def main():
    path, port, admin = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    cmd = sys.argv[5:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind("\0" + path[1:] if path.startswith("@") else path)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    proc = subprocess.Popen(cmd, env=env)
    try:
        fields = expect(sock, proc, "READY")
        # At once, before anything else: READY=1 must mean "serving".
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError as e:
            fail("READY=1 arrived but the NBD port %d does not accept: %s"
                 % (port, e))
        a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            a.connect(admin)
        except OSError as e:
            fail("READY=1 arrived but the admin socket %s does not accept: "
                 "%s" % (admin, e))
        a.close()
        print("ok: READY=1 from pid %d once the NBD port and the admin "
              "socket accept (STATUS=%s)" % (proc.pid, fields.get("STATUS")))

        hook = os.environ.get("NOTIFY_LISTEN_HOOK")
        if hook:
            rc = subprocess.call(["bash", "-c", hook])
            if rc != 0:
                fail("the hook run once ready exited %d: %s" % (rc, hook))
            print("ok: the hook ran against the ready daemon")
        proc.send_signal(signal.SIGHUP)
        fields = expect(sock, proc, "RELOADING")
        if not fields.get("MONOTONIC_USEC", "").isdigit():
            fail("RELOADING=1 without MONOTONIC_USEC: %r" % fields)
        expect(sock, proc, "READY")
        print("ok: SIGHUP: RELOADING=1 then READY=1")

        proc.send_signal(signal.SIGTERM)
        expect(sock, proc, "STOPPING")
        rc = proc.wait(timeout=30)
        if rc != 0:
            fail("cryptvold exited %d after SIGTERM" % rc)
        print("ok: SIGTERM: STOPPING=1, then exit 0")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
