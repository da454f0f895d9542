#!/usr/bin/env python3
"""An admin API that answers from a script, for testing the CLI's side of
a contract on its own (tests/cli-layers.sh): how it builds requests, how
it follows a job, what it prints for each answer.

    fake-admin.py SOCKET SCRIPT LOG

SCRIPT is JSON: {"METHOD PATH": [ANSWER, ...], ...} with each ANSWER
{"status": N, "body": JSON}.  Each request takes the next answer of its
route; the last one repeats.  A route the script lacks is a 404, as the
daemon's.  LOG gets one JSON line per request: {"t": monotonic seconds,
"method", "path", "body": the parsed body or null}.  It is a test double,
never a daemon: it checks nothing of what it is sent."""
import json
import os
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass                    # the LOG file is the record

    def address_string(self):
        return "unix"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = {"unparsed": raw.decode("utf-8", "replace")}
        route = "%s %s" % (self.command, self.path)
        with open(self.server.log, "a") as f:
            f.write(json.dumps({"t": time.monotonic(), "method": self.command,
                                "path": self.path, "body": body}) + "\n")
        queue = self.server.script.get(route)
        if queue:
            ans = queue.pop(0) if len(queue) > 1 else queue[0]
        else:
            ans = {"status": 404, "body": {"error": "no route %s" % route,
                                           "code": "NotFound"}}
        out = json.dumps(ans["body"]).encode()
        self.send_response(ans["status"])
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = answer


class Server(socketserver.UnixStreamServer):
    pass


def main():
    sock, script, log = sys.argv[1:4]
    if os.path.exists(sock):
        os.unlink(sock)
    srv = Server(sock, Handler)
    with open(script) as f:
        srv.script = json.load(f)
    srv.log = log
    srv.serve_forever()


if __name__ == "__main__":
    main()
