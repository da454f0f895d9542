#!/usr/bin/python3
"""A strict reader of the Prometheus text exposition format, version 0.0.4,
for the metrics tests (promtool, the real peer, runs beside it: it reads
the format as Prometheus does and lints names, but it does not check a
histogram's buckets against its count, nor that every family says what
it is).

Usage:
  prom-check.py check FILE          the text is well formed (below); exit
                                    1 naming the first line that is not
  prom-check.py value FILE SERIES   prints the value of SERIES
  prom-check.py delta BEFORE AFTER SERIES N
                                    AFTER's value of SERIES minus BEFORE's
                                    is N (exit 1 saying what it is)
  prom-check.py absent FILE REGEX   no series matches REGEX (exit 1 naming
                                    one that does)

SERIES is written as in the text, 'name{a="x",b="y"}', labels in any order.
FILE may be - for stdin.  As a module: parse(text) returns {series: value}.

Well formed, here: every line is a comment, a HELP, a TYPE or a sample, by
the format's grammar (names, label escapes \\\\ \\" \\n, values as Go reads
floats, no timestamps: cryptvold writes none); each family has exactly one
HELP and one TYPE, before its samples, and its samples in one block; no
series twice, no label twice in one series; counters named *_total, never
negative; each histogram series (its labels without le) has buckets with
ascending bounds ending with +Inf, cumulative, +Inf equal to _count, and a
_sum; the text ends with a line feed.
"""

import math
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class Bad(Exception):
    pass


def parse_value(s, where):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not FLOAT.fullmatch(s):
        raise Bad("%s: value %r is not a number" % (where, s))
    return float(s)


def parse_labels(s, i, where):
    """s[i] is '{'; returns (labels as a list of pairs, index after '}')."""
    labels = []
    i += 1
    while True:
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise Bad("%s: bad label name at %r" % (where, s[i:i + 20]))
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise Bad("%s: label %s: expected =\"" % (where, name))
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise Bad("%s: label %s: value not closed" % (where, name))
            c = s[i]
            if c == "\\":
                e = s[i + 1:i + 2]
                if e not in ("\\", '"', "n"):
                    raise Bad("%s: label %s: bad escape \\%s" % (where, name, e))
                val.append({"\\": "\\", '"': '"', "n": "\n"}[e])
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                val.append(c)
                i += 1
        if any(n == name for n, _ in labels):
            raise Bad("%s: label %s twice" % (where, name))
        labels.append((name, "".join(val)))
        if i < len(s) and s[i] == ",":
            i += 1
        elif i < len(s) and s[i] == "}":
            continue
        else:
            raise Bad("%s: expected , or } after label %s" % (where, name))


def escape(v):
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def key(name, labels):
    if not labels:
        return name
    return name + "{" + ",".join('%s="%s"' % (n, escape(v))
                                 for n, v in sorted(labels)) + "}"


def parse_series(s):
    """'name{a="x"}' -> its canonical key."""
    m = NAME.match(s)
    if not m:
        raise Bad("series %r: bad name" % s)
    labels = []
    if m.end() < len(s):
        if s[m.end()] != "{":
            raise Bad("series %r: expected {" % s)
        labels, end = parse_labels(s, m.end(), "series %r" % s)
        if end != len(s):
            raise Bad("series %r: text after }" % s)
    return key(m.group(0), labels)


def unescape_help(h, where):
    out, i = [], 0
    while i < len(h):
        if h[i] == "\\":
            e = h[i + 1:i + 2]
            if e not in ("\\", "n"):
                raise Bad("%s: bad escape \\%s in HELP" % (where, e))
            out.append("\\" if e == "\\" else "\n")
            i += 2
        else:
            out.append(h[i])
            i += 1
    return "".join(out)


class Family:
    def __init__(self, name):
        self.name, self.type, self.help = name, None, None
        self.samples = 0


def family_of(name, families):
    """The declared family a sample name belongs to."""
    if name in families:
        return families[name]
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[:-len(suffix)]
        if name.endswith(suffix) and base in families and \
                families[base].type in ("histogram", "summary"):
            return families[base]
    return None


def check_histogram(fam, series):
    groups = {}
    for (name, labels), v in series.items():
        if family_of(name, {fam.name: fam}) is not fam:
            continue
        rest = tuple(sorted((n, x) for n, x in labels if n != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if name == fam.name + "_bucket":
            le = dict(labels).get("le")
            if le is None:
                raise Bad("%s%s: a bucket without le" % (name, list(rest)))
            g["buckets"].append((parse_value(le, name + " le"), v))
        elif name == fam.name + "_sum":
            g["sum"] = v
        elif name == fam.name + "_count":
            g["count"] = v
        else:
            raise Bad("%s: not a histogram's sample" % name)
    for rest, g in groups.items():
        where = "%s%s" % (fam.name, key("", list(rest)))
        b = g["buckets"]
        if not b or b[-1][0] != math.inf:
            raise Bad("%s: no +Inf bucket last" % where)
        for (l1, c1), (l2, c2) in zip(b, b[1:]):
            if not l2 > l1:
                raise Bad("%s: bucket bounds not ascending (%g, %g)" % (where, l1, l2))
            if c2 < c1:
                raise Bad("%s: buckets not cumulative (le=%g: %g, le=%g: %g)"
                          % (where, l1, c1, l2, c2))
        if g["count"] is None or g["sum"] is None:
            raise Bad("%s: no _count or no _sum" % where)
        if g["count"] != b[-1][1]:
            raise Bad("%s: _count %g is not the +Inf bucket's %g"
                      % (where, g["count"], b[-1][1]))


def parse(text):
    """Checks text; returns {canonical series: value}."""
    if text and not text.endswith("\n"):
        raise Bad("the text does not end with a line feed")
    families, order, series, values = {}, [], {}, {}
    current = None
    for n, line in enumerate(text.split("\n")[:-1] if text else [], 1):
        where = "line %d" % n
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.fullmatch(name):
                    raise Bad("%s: bad metric name %r" % (where, name))
                fam = families.get(name)
                if fam is None:
                    fam = families[name] = Family(name)
                    order.append(fam)
                elif fam.samples or fam is not current:
                    raise Bad("%s: %s %s after its samples or another family"
                              % (where, parts[1], name))
                current = fam
                if parts[1] == "HELP":
                    if fam.help is not None:
                        raise Bad("%s: second HELP for %s" % (where, name))
                    fam.help = unescape_help(parts[3] if len(parts) > 3 else "", where)
                else:
                    t = parts[3] if len(parts) > 3 else ""
                    if fam.type is not None:
                        raise Bad("%s: second TYPE for %s" % (where, name))
                    if t not in TYPES:
                        raise Bad("%s: TYPE %r is not a type" % (where, t))
                    fam.type = t
            continue
        m = NAME.match(line)
        if not m:
            raise Bad("%s: not a sample: %r" % (where, line[:60]))
        name, i, labels = m.group(0), m.end(), []
        if i < len(line) and line[i] == "{":
            labels, i = parse_labels(line, i, where)
        if line[i:i + 1] != " ":
            raise Bad("%s: expected a space before the value" % where)
        rest = line[i + 1:].split(" ")
        if len(rest) != 1:
            raise Bad("%s: a timestamp or trailing text: %r" % (where, line[i:]))
        v = parse_value(rest[0], where)
        fam = family_of(name, families)
        if fam is None or fam.type is None:
            raise Bad("%s: %s has no TYPE before it" % (where, name))
        if fam is not current:
            raise Bad("%s: %s is apart from the rest of its family" % (where, name))
        fam.samples += 1
        k = key(name, labels)
        if k in values:
            raise Bad("%s: %s twice" % (where, k))
        if fam.type == "counter":
            if not name.endswith("_total"):
                raise Bad("%s: counter %s is not named *_total" % (where, name))
            if math.isnan(v) or v < 0:
                raise Bad("%s: counter %s is %r" % (where, k, v))
        values[k] = v
        series[(name, tuple(labels))] = v
    for fam in order:
        if fam.help is None or fam.type is None:
            raise Bad("family %s has no %s" % (fam.name, "HELP" if fam.help is None else "TYPE"))
        if fam.type == "histogram":
            check_histogram(fam, series)
    return values


def read(path):
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def fmt(v):
    return "%d" % v if v == int(v) else repr(v)


def main(argv):
    try:
        if len(argv) == 2 and argv[0] == "check":
            parse(read(argv[1]))
        elif len(argv) == 3 and argv[0] == "value":
            k = parse_series(argv[2])
            vals = parse(read(argv[1]))
            if k not in vals:
                raise Bad("%s: no series %s" % (argv[1], k))
            print(fmt(vals[k]))
        elif len(argv) == 5 and argv[0] == "delta":
            k = parse_series(argv[3])
            before, after = parse(read(argv[1])), parse(read(argv[2]))
            for name, vals in ((argv[1], before), (argv[2], after)):
                if k not in vals:
                    raise Bad("%s: no series %s" % (name, k))
            got, want = after[k] - before[k], float(argv[4])
            if got != want:
                raise Bad("%s moved by %s, expected %s (from %s to %s)"
                          % (k, fmt(got), fmt(want), fmt(before[k]), fmt(after[k])))
        elif len(argv) == 3 and argv[0] == "absent":
            for k in parse(read(argv[1])):
                if re.search(argv[2], k):
                    raise Bad("%s: %s is there" % (argv[1], k))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (Bad, OSError, UnicodeDecodeError) as e:
        print("prom-check: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
