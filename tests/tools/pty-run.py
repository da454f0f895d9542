#!/usr/bin/env python3
"""Runs a command on a pseudo-terminal, as a person at a terminal would:
stdin, stdout and stderr are the terminal.  Prints what the terminal
showed (\\r turned into line breaks) and exits with the command's status.

    pty-run.py [--expect TEXT --send TEXT]... [--timeout S] -- COMMAND...

Each --expect waits until TEXT has been shown, then types its --send
(backslash escapes such as \\n are read).  What was typed is shown only if
the terminal echoed it, which is what a test of "not echoed" looks at."""
import argparse
import os
import pty
import select
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--expect", action="append", default=[])
    p.add_argument("--send", action="append", default=[])
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("command", nargs="+")
    a = p.parse_args()
    if len(a.expect) != len(a.send):
        p.error("each --expect needs its --send")
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(a.command[0], a.command)
    shown = b""
    steps = [(e.encode(), s.encode().decode("unicode_escape").encode())
             for e, s in zip(a.expect, a.send)]
    deadline = time.monotonic() + a.timeout
    while True:
        if steps and steps[0][0] in shown:
            os.write(fd, steps.pop(0)[1])
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, 9)
            sys.stdout.write(shown.decode(errors="replace"))
            sys.exit("pty-run: timed out; the terminal showed the above")
        r, _, _ = select.select([fd], [], [], min(left, 0.2))
        if not r:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:
            break               # the command closed the terminal
        if not data:
            break
        shown += data
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(shown.decode(errors="replace").replace("\r\n", "\n")
                     .replace("\r", "\n"))
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
