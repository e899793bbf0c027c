#!/usr/bin/env python3
"""Compares the ordered contents of a table as two servers print them.

usage: compare_rows.py KINDS FILE_A FILE_B

Each file holds one row per line (`mysql -N -B` or `psql -At -F TAB` output), fields separated
by tabs. The SELECTs wrap every column as 'v:' || value, or 'null', so NULL and an empty or
"NULL" string differ, and print strings, bytes and JSON as hex so tabs and newlines survive.
KINDS is one letter per column saying how to read a value into a common form:
  s exact text   x hex bytes   u hex UTF-8 text   n decimal   f double   r float (single precision)
  j hex JSON (compared parsed)   t date/time text (trailing fractional zeros dropped)
Rows are compared in order; the first differences are printed and the exit status is 1."""
import decimal
import json
import struct
import sys


def norm(kind, field):
    if field == "null":
        return None
    if not field.startswith("v:"):
        raise ValueError("field not wrapped as v:...: %r" % field)
    v = field[2:]
    if kind == "s":
        return v
    if kind == "x":
        return v.lower()
    if kind == "u":
        return bytes.fromhex(v).decode("utf-8")
    if kind == "n":
        d = decimal.Decimal(v)
        return "0" if d == 0 else format(d.normalize(), "f")
    if kind == "f":
        return repr(float(v))
    if kind == "r":
        return repr(struct.unpack("f", struct.pack("f", float(v)))[0])
    if kind == "j":
        return json.dumps(json.loads(bytes.fromhex(v).decode("utf-8")), sort_keys=True)
    if kind == "t":
        if "." in v:
            head, frac = v.split(".", 1)
            tail = ""
            for i, c in enumerate(frac):  # keep an offset or suffix after the digits
                if not c.isdigit():
                    frac, tail = frac[:i], frac[i:]
                    break
            frac = frac.rstrip("0")
            v = head + ("." + frac if frac else "") + tail
        return v
    raise ValueError("unknown kind %r" % kind)


def load(path, kinds):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            fields = line.split("\t")
            if len(fields) != len(kinds):
                raise SystemExit("%s:%d: %d fields, expected %d: %r" % (path, n, len(fields), len(kinds), line))
            rows.append(tuple(norm(k, x) for k, x in zip(kinds, fields)))
    return rows


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    kinds = sys.argv[1]
    a, b = load(sys.argv[2], kinds), load(sys.argv[3], kinds)
    if a == b:
        print("%d rows equal" % len(a))
        return 0
    print("rows differ: %d vs %d rows" % (len(a), len(b)))
    shown = 0
    for i in range(max(len(a), len(b))):
        ra = a[i] if i < len(a) else None
        rb = b[i] if i < len(b) else None
        if ra != rb:
            print("row %d:\n  a: %r\n  b: %r" % (i + 1, ra, rb))
            shown += 1
            if shown == 5:
                break
    return 1


if __name__ == "__main__":
    sys.exit(main())
