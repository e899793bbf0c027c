#!/usr/bin/env python3
"""Reads a PostgreSQL or MySQL → Kafka pipeline's topics back with kcat and checks them against the source.

Checks every message's envelope (fields, key, headers, op), the tombstone after each delete, the
per-key order (first deliveries of a key's changes in one partition, in source order), and that
replaying the de-duplicated changes in source order gives exactly the source table's rows.
Repeats (at-least-once after a crash) are counted and printed, never hidden.
Exit 0: all good; 1: a difference (printed on stderr)."""
import argparse, base64, collections, datetime, json, re, subprocess, sys
from decimal import Decimal

P = argparse.ArgumentParser()
P.add_argument("--bootstrap", required=True)
P.add_argument("--source", default="pg", choices=["pg", "mysql"])
P.add_argument("--pghost")
P.add_argument("--pgport")
P.add_argument("--mysock", help="a MariaDB server's socket (--source mysql; user root)")
P.add_argument("--mydb", default="test")
P.add_argument("--connector", required=True)
P.add_argument("--mode", default="quiet", choices=["quiet", "report"])
P.add_argument("--require-op", action="append", default=[], help="TABLE:OP that must occur")
P.add_argument("--insert-once", action="append", default=[], help="TABLE whose every source row must have a c message")
P.add_argument("--vclock", action="store_true",
               help="every change carries source.cdcsync_vclock, its counters never go back along a key's "
                    "history and grow from one source transaction to the next")
P.add_argument("tables", nargs="+")
A = P.parse_args()

PLACEHOLDER = "__debezium_unavailable_value"
problems = []


def problem(msg):
    problems.append(msg)


def psql(sql):
    return subprocess.run(["psql", "-X", "-h", A.pghost, "-p", A.pgport, "-U", "postgres", "-d", "postgres",
                           "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True,
                          text=True).stdout


def mysql(sql):
    return subprocess.run(["mariadb", f"--socket={A.mysock}", "-uroot", "-N", "-B", "-r",
                           "--default-character-set=utf8mb4", "-e", "SET time_zone = '+00:00'; " + sql], check=True,
                          capture_output=True, text=True).stdout


def lsn(text):
    """A position header in a comparable form: a PostgreSQL LSN, or MySQL's FILE.NNNNNN:OFFSET."""
    if A.source == "mysql":
        f, off = text.rsplit(":", 1)
        return (int(f.rsplit(".", 1)[1]), int(off))
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def myq(ident):
    return "`" + ident.replace("`", "``") + "`"


MY_BIN = ("binary", "varbinary", "blob", "tinyblob", "mediumblob", "longblob")
MY_NUM = ("tinyint", "smallint", "mediumint", "int", "bigint", "decimal", "float", "double", "year")


def my_norm(dtype, v):
    """A MySQL source value (as selected by my_table) or an envelope value in one comparable form."""
    if v is None:
        return None
    if dtype in MY_NUM:
        return Decimal(str(v))
    if dtype in ("datetime", "timestamp"):
        return datetime.datetime.fromisoformat(v[:-1] if v.endswith("Z") else v)
    if dtype == "json" or dtype == "longtext" and isinstance(v, str) and v[:1] in "[{":
        return json.loads(v, parse_float=Decimal) if isinstance(v, str) else v
    return v


def my_table(schema, name):
    """Column types, key columns and rows (normal forms) of a MySQL table."""
    cols = [l.split("\t") for l in mysql(
        f"SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = '{schema}' "
        f"AND table_name = '{name}' ORDER BY ordinal_position").splitlines()]
    types = dict(cols)
    keycols = mysql(f"SELECT column_name FROM information_schema.key_column_usage WHERE table_schema = '{schema}' "
                    f"AND table_name = '{name}' AND constraint_name = 'PRIMARY' ORDER BY ordinal_position").split()
    exprs = []
    for c, t in cols:
        q = myq(c)
        if t in MY_BIN:
            e = f"HEX({q})"
        elif t in ("datetime", "timestamp"):
            e = f"DATE_FORMAT({q}, '%Y-%m-%d %H:%i:%s.%f')"
        elif t in MY_NUM:
            e = f"CAST({q} AS CHAR)"
        else:
            e = q
        exprs.append(f"'{c}', {e}")
    rows = [json.loads(l, parse_float=Decimal) for l in mysql(
        f"SELECT JSON_OBJECT({', '.join(exprs)}) FROM {myq(schema)}.{myq(name)}").splitlines() if l.strip()]
    return types, keycols, [{c: my_norm(types[c], v) for c, v in r.items()} for r in rows]


def my_env_row(types, row):
    out = {}
    for c, v in row.items():
        if types[c] in MY_BIN and v is not None:
            out[c] = base64.b64decode(v).hex().upper()
        else:
            out[c] = my_norm(types[c], v)
    return out


def kcat(topic):
    out = subprocess.run(["kcat", "-b", A.bootstrap, "-C", "-t", topic, "-e", "-J", "-q"], capture_output=True,
                         text=True, timeout=120)
    if out.returncode != 0:
        return None
    return [json.loads(l, parse_float=Decimal) for l in out.stdout.splitlines() if l.strip()]


def norm(dtype, v):
    """A source (row_to_json) or envelope value in one comparable form."""
    if v is None:
        return None
    if dtype in ("numeric", "double precision", "real"):
        return Decimal(str(v)) if not isinstance(v, str) or re.match(r"^-?[0-9.eE+-]+$", v) else v
    if dtype == "timestamp with time zone":
        return datetime.datetime.fromisoformat(v) if v not in ("infinity", "-infinity") else v
    if dtype == "bytea":
        return bytes.fromhex(v[2:]) if v.startswith("\\x") else base64.b64decode(v)
    if dtype == "jsonb" and isinstance(v, str):
        return json.loads(v, parse_float=Decimal)
    return v


def norm_row(types, row, from_source):
    out = {}
    for c, v in row.items():
        if not from_source and types[c] == "bytea" and v is not None:
            out[c] = base64.b64decode(v)
        else:
            out[c] = norm(types[c], v)
    return out


total = repeats = tombstones = placeholders = 0
ops_seen = collections.Counter()
for table in A.tables:
    schema, name = table.split(".")
    if A.source == "mysql":
        types, keycols, my_rows = my_table(schema, name)
    else:
      types = dict(l.split("|", 1) for l in psql(
        f"SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = '{schema}' "
        f"AND table_name = '{name}'").splitlines())
      keycols = psql(f"SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND "
                   f"a.attnum = ANY(i.indkey) WHERE i.indrelid = '{schema}.{name}'::regclass AND i.indisprimary "
                   f"ORDER BY array_position(i.indkey, a.attnum)").split()
    topic = f"cdc.{A.connector}.{schema}.{name}"
    if A.source == "mysql" and not keycols:
        problem(f"{table}: no primary key (the checker needs one)")
        continue
    msgs = kcat(topic)
    if msgs is None:
        problem(f"{topic}: cannot be read")
        continue
    seen = {}
    changes = []
    by_part_key = collections.defaultdict(list)  # (partition, key) -> messages in offset order
    key_parts = collections.defaultdict(set)
    for m in sorted(msgs, key=lambda m: (m["partition"], m["offset"])):
        total += 1
        where = f"{topic}[{m['partition']}]@{m['offset']}"
        h = m.get("headers") or []
        hdr = {h[i]: h[i + 1] for i in range(0, len(h), 2)}
        for k in ("cdcsync.position", "cdcsync.sequence", "cdcsync.source"):
            if k not in hdr:
                problem(f"{where}: header {k} missing")
        if hdr.get("cdcsync.source") != A.connector:
            problem(f"{where}: header cdcsync.source is {hdr.get('cdcsync.source')!r}")
        key = m["key"]
        key_parts[key].add(m["partition"])
        by_part_key[(m["partition"], key)].append(m)
        if m["payload"] is None:
            tombstones += 1
            prev = by_part_key[(m["partition"], key)][-2:-1]
            if key is None or not prev or prev[0]["payload"] is None or \
                    json.loads(prev[0]["payload"])["op"] != "d":
                problem(f"{where}: tombstone not right after a delete of its key")
            m["_id"] = (lsn(hdr["cdcsync.position"]), int(hdr["cdcsync.sequence"]), "tomb", key)
            continue
        v = json.loads(m["payload"], parse_float=Decimal)
        if set(v) != {"before", "after", "source", "op", "ts_ms"}:
            problem(f"{where}: envelope fields {sorted(v)}")
            continue
        s, op = v["source"], v["op"]
        ops_seen[(table, op)] += 1
        if A.source == "mysql":
            want = {"connector": "mysql", "name": A.connector, "db": schema, "table": name,
                    "snapshot": "true" if op == "r" else "false"}
            if "schema" in s or "lsn" in s:
                problem(f"{where}: a MySQL source block with schema/lsn: {s}")
            # file/pos: where the change's transaction commits in the binlog, as the header says
            hp = hdr.get("cdcsync.position", "")
            if not isinstance(s.get("pos"), int) or f"{s.get('file')}:{s.get('pos')}" != hp or \
                    not re.match(r"^[^:]+\.[0-9]{6}$", str(s.get("file"))):
                problem(f"{where}: source file/pos {s.get('file')!r}/{s.get('pos')!r}, header position {hp!r}")
        else:
            want = {"connector": "postgresql", "name": A.connector, "db": "postgres", "schema": schema,
                    "table": name, "snapshot": "true" if op == "r" else "false"}
            if not re.match(r"^[0-9A-F]+/[0-9A-F]+$", s.get("lsn", "")):
                problem(f"{where}: source.lsn malformed: {s}")
        for f, w in want.items():
            if s.get(f) != w:
                problem(f"{where}: source.{f} is {s.get(f)!r}, want {w!r}")
        if not isinstance(s.get("txId"), int) or not isinstance(s.get("ts_ms"), int) or \
                not isinstance(v["ts_ms"], int):
            problem(f"{where}: source txId/ts_ms or ts_ms malformed: {s}")
        seq = json.loads(s.get("sequence", "null"))
        if seq != [hdr.get("cdcsync.position"), hdr.get("cdcsync.sequence")]:
            problem(f"{where}: source.sequence {seq} does not match the headers")
        if s.get("version", "").startswith("cdcsync-") is False:
            problem(f"{where}: source.version {s.get('version')!r}")
        row = v["after"] if op in ("c", "r", "u") else v["before"]
        if op == "t":
            if key is not None or v["before"] is not None or v["after"] is not None:
                problem(f"{where}: truncate with key or images")
        elif op not in ("c", "r", "u", "d"):
            problem(f"{where}: op {op!r}")
        else:
            if row is None or (op == "d" and v["after"] is not None) or (op in ("c", "r") and v["before"] is not None):
                problem(f"{where}: op {op} with before={v['before']!r} after={v['after']!r}")
                continue
            wkey = {c: row[c] for c in keycols}
            if json.loads(key, parse_float=Decimal) != wkey:
                problem(f"{where}: key {key} but the row's key is {wkey}")
        if row:
            placeholders += sum(1 for x in row.values() if x == PLACEHOLDER)
        m["_id"] = (lsn(hdr["cdcsync.position"]), int(hdr["cdcsync.sequence"]), op, key)
        m["_v"] = v
        vc = s.get("cdcsync_vclock")
        if vc is not None and (not isinstance(vc, dict) or not vc or
                               not all(isinstance(n, int) and n > 0 for n in vc.values())):
            problem(f"{where}: source.cdcsync_vclock malformed: {vc!r}")
        elif A.vclock and vc is not None and A.source == "pg" and vc.get(A.connector) != m["_id"][0]:
            # one-way: the source's own counter is the commit position of the row's last write
            problem(f"{where}: source.cdcsync_vclock {vc} does not count {A.connector} at the commit position "
                    f"{hdr['cdcsync.position']} ({m['_id'][0]})")
    for k, parts in key_parts.items():
        if k is not None and len(parts) > 1:
            problem(f"{topic}: key {k} in partitions {sorted(parts)}")
    # The delete half of a key change (delete + tombstone + create sharing one sequence) has no
    # vector: the version is the new key's.
    created_ids = {m["_id"][:2] for m in msgs if m.get("_v") and m["_v"]["op"] == "c"}
    # Per key and partition: the first deliveries are in source order; repeats are counted.
    for (part, key), ms in by_part_key.items():
        last = None
        last_vc = None
        for m in ms:
            if m["_id"] in seen:
                repeats += 1
                continue
            seen[m["_id"]] = m
            order = m["_id"][:2]
            if key is not None and last is not None and order < last:
                problem(f"{topic}[{part}] key {key}: {order} after {last}: out of order")
            last = order
            if m["payload"] is not None:
                changes.append(m)
            if A.vclock and m["payload"] is not None and m["_v"]["op"] != "t":
                vc = m["_v"]["source"].get("cdcsync_vclock")
                if vc is None:
                    if not (m["_v"]["op"] == "d" and order in created_ids):
                        problem(f"{topic}[{part}]@{m['offset']} key {key}: no source.cdcsync_vclock")
                    continue
                if last_vc is not None:
                    prev_vc, prev_pos = last_vc
                    if any(vc.get(n, 0) < c for n, c in prev_vc.items()):
                        problem(f"{topic}[{part}] key {key}: vclock {vc} after {prev_vc}: went back")
                    elif order[0] != prev_pos and vc == prev_vc:
                        problem(f"{topic}[{part}] key {key}: vclock {vc} did not grow from one transaction "
                                f"to the next")
                last_vc = (vc, order[0])
    # Replay the de-duplicated changes in source order (delete, tombstone, create of a key change
    # share one sequence; delete before create).
    rank = {"d": 0, "t": 0, "u": 1, "c": 1, "r": 1}
    state = {}
    for m in sorted(changes, key=lambda m: (m["_id"][0], m["_id"][1], rank[m["_v"]["op"]])):
        v = m["_v"]
        if v["op"] == "t":
            state.clear()
        elif v["op"] == "d":
            state.pop(m["key"], None)
        else:
            after = dict(v["after"])
            old = state.get(m["key"])
            for c, x in after.items():
                if x == PLACEHOLDER:
                    if old is None:
                        problem(f"{topic}: placeholder for {c} of a row never seen: {m['key']}")
                    else:
                        after[c] = old[c]
            state[m["key"]] = after
    if A.source == "mysql":
        src = my_rows
        want = {json.dumps([r[c] for c in keycols], default=str): r for r in src}
        got = {}
        for r in state.values():
            n = my_env_row(types, r)
            got[json.dumps([n[c] for c in keycols], default=str)] = n
    else:
        src = json.loads(psql(f"SELECT coalesce(json_agg(t), '[]') FROM {schema}.{name} t") or "[]",
                         parse_float=Decimal)
        want = {json.dumps({c: r[c] for c in keycols}, default=str): norm_row(types, r, True) for r in src}
        got = {json.dumps(json.loads(k, parse_float=Decimal), default=str): norm_row(types, r, False)
               for k, r in state.items()}
    if want != got:
        missing = [k for k in want if k not in got]
        extra = [k for k in got if k not in want]
        diff = [k for k in want if k in got and want[k] != got[k]]
        problem(f"{topic}: replay differs from the source: {len(missing)} missing {missing[:5]}, {len(extra)} extra "
                f"{extra[:5]}, {len(diff)} different " +
                "; ".join(f"{k}: source {want[k]} kafka {got[k]}" for k in diff[:3]))
    for spec in A.insert_once:
        if spec != table:
            continue
        created = {m["key"] for m in changes if m["_v"]["op"] in ("c", "r")}
        lost = [r for r in src if json.dumps({c: r[c] for c in keycols}, separators=(",", ":"), default=str)
                not in created]
        if lost:
            problem(f"{topic}: {len(lost)} source rows without a create message, e.g. {lost[:3]}")

for spec in A.require_op:
    t, op = spec.rsplit(":", 1)
    if not ops_seen[(t, op)]:
        problem(f"no op {op!r} message for {t}")

if A.mode == "report" or problems:
    print(f"kafka_check: {total} messages, {tombstones} tombstones, {repeats} repeats, {placeholders} "
          f"TOAST placeholders, ops {dict(sorted((f'{t}:{o}', n) for (t, o), n in ops_seen.items()))}",
          file=sys.stderr)
for p in problems[:20]:
    print("kafka_check: " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
