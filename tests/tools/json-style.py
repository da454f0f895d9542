#!/usr/bin/env python3
"""Checks JSON documents against the one style of the admin API and the
CLI (docs/admin-api.md, "Conventions"): every member name camelCase, every
time an RFC 3339 UTC string or null, every error {"error": str, "code":
Name}.  Usage: json-style.py [--error] FILE...  (--error: each file is one
error object).  Prints each offence as FILE: PATH: what, exits 1 if any."""
import json
import re
import sys

CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
# Members that hold a time, wherever they appear.
TIMES = {"created", "updated", "since", "started", "finished", "time"}
# Objects whose keys are data (state names), not member names.
MAPS = {"volumesByState"}
CODES = {"BadRequest", "Forbidden", "NotFound", "MethodNotAllowed",
         "Conflict", "RequestEntityTooLarge", "InternalError", "UsageError",
         "WrongKey", "Unavailable", "Error"}


def walk(v, path, bad):
    if isinstance(v, list):
        for i, e in enumerate(v):
            walk(e, "%s[%d]" % (path, i), bad)
        return
    if not isinstance(v, dict):
        return
    for k, e in v.items():
        p = path + "." + k
        if not CAMEL.match(k):
            bad.append("%s: member name is not camelCase" % p)
        if k in TIMES and e is not None and \
                not (isinstance(e, str) and RFC3339.match(e)):
            bad.append("%s: time %r is not RFC 3339 (or null)" % (p, e))
        if k not in MAPS:
            walk(e, p, bad)


def check_error(v, bad):
    if not isinstance(v, dict) or set(v) != {"error", "code"}:
        bad.append("error: not {\"error\", \"code\"}: %r" % (v,))
    elif not isinstance(v["error"], str) or not v["error"]:
        bad.append("error: \"error\" is not a message: %r" % (v,))
    elif v["code"] not in CODES:
        bad.append("error: code %r is not a documented name" % v["code"])


def main(argv):
    errors = argv[:1] == ["--error"]
    bad_total = 0
    for name in argv[1:] if errors else argv:
        bad = []
        with open(name) as f:
            text = f.read()
        try:
            doc = json.loads(text)
        except ValueError as e:
            bad.append("not JSON (%s): %r" % (e, text[:200]))
        else:
            walk(doc, "$", bad)
            if errors:
                check_error(doc, bad)
        for b in bad:
            print("%s: %s" % (name, b))
        bad_total += len(bad)
    return 1 if bad_total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
