#!/usr/bin/env bash
# What flows into Kafka from a MariaDB source (mask_columns, exclude_columns, skip, soft_delete),
# read back with kcat: over the initial copy (op r) and the stream, no message carries the
# excluded column, the key column is masked everywhere (value, before image, message key) and the
# same id always gives the same hash, a redacted column is null, a delete arrives as an update
# setting deleted_at (no op d, no tombstone), and the truncate is not sent.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"
source "$SRCDIR/tests/kafka_mock/kafka_lib.sh"

my_start src 1
kafka_mock_start
my_on src -e "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(100), pw VARCHAR(100), note VARCHAR(100));
  INSERT INTO users SELECT seq, CONCAT('u', seq, '@example.com'), CONCAT('pw', seq), CONCAT('note ', seq)
  FROM seq_1_to_10;"

write_conf "$WORK/cdcsync.conf" off info <<CONF
[connector.msrc]
$(my_connector src 9301)

[connector.bus]
type = kafka
brokers = $KAFKA_BOOTSTRAP

[pipeline.shaped]
source = msrc
sink = bus
tables = test.users
exclude_columns = test.users: pw
mask_columns = test.users.id: sha256, test.users.email: redact
skip = truncate
soft_delete = deleted_at
CONF

service_start
topic=cdc.msrc.test.users
messages() { kcat -b "$KAFKA_BOOTSTRAP" -C -t "$topic" -e -J -q 2>/dev/null; }
count_at_least() { [ "$(messages | wc -l)" -ge "$1" ]; }
wait_for "the copy in kafka" 60 count_at_least 10
my_on src -e "UPDATE users SET note = 'changed' WHERE id = 2; DELETE FROM users WHERE id = 3;
  INSERT INTO users VALUES (11, 'u11@example.com', 'pw11', 'late'); TRUNCATE users;
  INSERT INTO users VALUES (12, 'u12@example.com', 'pw12', 'after the truncate');"
wait_for "the stream in kafka" 60 count_at_least 14
messages >"$WORK/topic.jsonl"
python3 - "$WORK/topic.jsonl" <<'PY' || fail "the messages are not shaped as configured"
import hashlib, json, sys
h = lambda i: hashlib.sha256(str(i).encode()).hexdigest()
msgs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bad = []
ops = []
for m in msgs:
    if m["payload"] is None:
        bad.append(f"a tombstone at offset {m['offset']} (deletes are soft)")
        continue
    v = json.loads(m["payload"])
    ops.append((v["op"], (v["after"] or v["before"] or {}).get("id")))
    for img in (v["before"], v["after"]):
        if img is None:
            continue
        if "pw" in img:
            bad.append(f"offset {m['offset']}: the excluded column pw was sent")
        if img.get("email") is not None:
            bad.append(f"offset {m['offset']}: the redacted email was sent: {img['email']}")
        if img.get("id") not in [h(i) for i in range(1, 13)]:
            bad.append(f"offset {m['offset']}: id {img.get('id')!r} is not a masked id")
    if not any(h(i) in m["key"] for i in range(1, 13)):
        bad.append(f"offset {m['offset']}: the message key {m['key']} does not carry the masked id")
by_key = {}
for op, k in ops:
    by_key.setdefault(k, []).append(op)
want = {h(i): ["r"] for i in range(1, 11)}
want[h(2)] = ["r", "u"]
want[h(3)] = ["r", "u"]
want[h(11)] = ["c"]
want[h(12)] = ["c"]
if by_key != want:
    bad.append(f"operations per masked id {by_key} instead of {want}")
soft = [json.loads(m["payload"])["after"] for m in msgs if m["payload"] and json.loads(m["payload"])["op"] == "u"]
soft = [a for a in soft if a["id"] == h(3)]
if len(soft) != 1 or not soft[0].get("deleted_at") or soft[0].get("note") != "note 3":
    bad.append(f"the soft delete of id 3 is {soft}")
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
service_stop
echo "ok"
