#!/usr/bin/env python3
"""Searches a running process's memory for byte strings.

    memscan.py PID NEEDLE...

Reads every readable mapping of /proc/PID/maps through /proc/PID/mem (the
caller must be allowed to ptrace PID: root, or its parent with
ptrace_scope 0) and prints "NEEDLE at ADDRESS in MAPPING" for each hit.
Exits 1 if any needle was found, 0 if none, 2 if nothing could be read.
Reads in chunks, and skips mappings over 64 GiB (a sanitizer's shadow
memory reserves terabytes, nothing there is a copy of ours).
"""
import re
import sys

CHUNK = 64 << 20
HUGE = 64 << 30


def regions(pid):
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            name = parts[5].strip() if len(parts) > 5 else "[anon]"
            if parts[1][0] != "r" or name in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            yield lo, hi, name


def main():
    pid = int(sys.argv[1])
    needles = [n.encode() for n in sys.argv[2:]]
    found = False
    readable = 0
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for lo, hi, name in regions(pid):
            if hi - lo > HUGE:
                continue
            overlap = max(len(n) for n in needles) - 1
            at = lo
            while at < hi:
                end = min(hi, at + CHUNK)
                try:
                    mem.seek(at)
                    data = mem.read(end - at + (overlap if end < hi else 0))
                except (OSError, ValueError, OverflowError):
                    break
                readable += len(data)
                for n in needles:
                    for m in re.finditer(re.escape(n), data):
                        print(f"{n.decode()} at {at + m.start():#x} in {name}")
                        found = True
                at = end
    if readable == 0:
        print("nothing readable", file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
