#!/usr/bin/env python3
"""Checks what a bench's topic holds against the source table, by key, for the messages the mock
cluster kept (librdkafka's mock keeps only the newest ~5 MB of each partition, so the benches
count every message by offsets and check content on this kept tail).

  kafka_verify.py --bootstrap B --topic T --key id --rows FILE

FILE holds the source table's rows now, one JSON object a line (column name: value). For each
partition the kept messages must have consecutive offsets ending at the partition's last one, and
every key must stay in one partition. The last message of a key in the kept tail is then the
last message of that key in the topic, so it must describe the row as the source holds it now:
a create/update/read whose `after` equals the source row, or a delete/tombstone of a key the
source no longer has. Prints `key=value` lines (kept messages, keys checked, ops seen); exit 1
with the differences on stderr."""
import argparse, collections, datetime, json, re, subprocess, sys
from decimal import Decimal

P = argparse.ArgumentParser()
P.add_argument("--bootstrap", required=True)
P.add_argument("--topic", required=True)
P.add_argument("--key", required=True, help="the key column")
P.add_argument("--rows", required=True, help="source rows, one JSON object a line")
P.add_argument("--prefix", default="", help="prefix of the printed keys")
A = P.parse_args()

NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def norm(v):
    """A source or envelope value in one comparable form: numbers as Decimal, timestamps as UTC
    datetimes, CHAR padding dropped."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return Decimal(str(v))
    if isinstance(v, str):
        if NUMBER.fullmatch(v):
            return Decimal(v)
        if len(v) >= 19 and v[4:5] == "-" and v[10:11] in ("T", " "):
            try:
                d = datetime.datetime.fromisoformat(v.replace("Z", "+00:00").replace(" ", "T", 1))
                return d.astimezone(datetime.timezone.utc) if d.tzinfo else d
            except ValueError:
                pass
        return v.rstrip(" ")
    return v


src = {}
with open(A.rows) as f:
    for line in f:
        if line.strip():
            r = json.loads(line)
            src[norm(r[A.key])] = {c: norm(v) for c, v in r.items()}

out = subprocess.run(["kcat", "-b", A.bootstrap, "-C", "-t", A.topic, "-e", "-q", "-f", "%p\t%o\t%k\t%s\n"],
                     check=True, capture_output=True, text=True).stdout
hi = subprocess.run(["kcat", "-b", A.bootstrap, "-C", "-t", A.topic, "-o", "-1", "-e", "-q", "-f", "%p\t%o\n"],
                    check=True, capture_output=True, text=True).stdout
last_offset = {int(p): int(o) for p, o in (l.split("\t") for l in hi.splitlines() if l)}

problems = []
offsets = collections.defaultdict(list)
last = {}  # key -> (partition, offset, value or None)
part_of = {}
ops = collections.Counter()
kept = 0
for line in out.splitlines():
    if not line:
        continue
    p, o, k, v = line.split("\t", 3)
    p, o, kept = int(p), int(o), kept + 1
    offsets[p].append(o)
    key = norm(json.loads(k)[A.key])
    if part_of.setdefault(key, p) != p:
        problems.append(f"key {key} in partitions {part_of[key]} and {p}")
    val = json.loads(v) if v else None
    ops["tombstone" if val is None else val["op"]] += 1
    last[key] = val

for p, os in offsets.items():
    if os != list(range(os[0], os[0] + len(os))) or os[-1] != last_offset.get(p):
        problems.append(f"partition {p}: kept offsets {os[0]}..{os[-1]} ({len(os)}) are not the consecutive tail "
                        f"ending at {last_offset.get(p)}")

for key, val in last.items():
    row = src.get(key)
    if val is None or val["op"] == "d":
        if row is not None:
            problems.append(f"key {key}: deleted last in the topic, but the source has {row}")
        continue
    after = {c: norm(x) for c, x in (val.get("after") or {}).items()}
    if row is None:
        problems.append(f"key {key}: {val['op']} last in the topic, but the source has no such row")
    elif after != row:
        diff = {c: (after.get(c), row.get(c)) for c in set(after) | set(row) if after.get(c) != row.get(c)}
        problems.append(f"key {key}: last message differs from the source row (topic, source): {diff}")

for m in problems[:20]:
    print(f"kafka_verify {A.topic}: {m}", file=sys.stderr)
if len(problems) > 20:
    print(f"kafka_verify {A.topic}: ... {len(problems) - 20} more", file=sys.stderr)
pre = A.prefix
print(f"{pre}kept_messages={kept}")
print(f"{pre}kept_keys_checked={len(last)}")
print(f"{pre}kept_ops=" + ",".join(f"{o}:{n}" for o, n in sorted(ops.items())))
sys.exit(1 if problems or kept == 0 else 0)
