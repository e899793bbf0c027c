#!/usr/bin/env python3
"""Seed corpora of the fuzz targets, cut from the captured fixtures into each target's input form.

usage: seeds.py SRCDIR OUTDIR  -- writes OUTDIR/<target>/<name> (targets: see tests/fuzz/fuzz_*.c)
"""
import os
import struct
import sys


def write(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pgoutput(src, out):
    """One CopyData payload per record of stream.bin (4-byte big-endian length, payload)."""
    data = open(os.path.join(src, "tests/fixtures/pgoutput/stream.bin"), "rb").read()
    off = n = 0
    while off + 4 <= len(data):
        (size,) = struct.unpack(">I", data[off:off + 4])
        write(out, "pgoutput", "stream-%03d" % n, data[off + 4:off + 4 + size])
        off += 4 + size
        n += 1


def binlog_events(data):
    """(offset, bytes) of each event of a binlog file with checksums, after its magic."""
    off, events = 4, []
    while off + 19 <= len(data):
        (size,) = struct.unpack("<I", data[off + 9:off + 13])
        events.append(data[off:off + size])
        off += size
    return events


def binlog(src, out):
    """Whole files (flags: checksums, with and without column infos), and per rows event its
    FORMAT_DESCRIPTION, the TABLE_MAP before it and the event: small inputs mutate well."""
    for fixture in ("types", "compressed"):
        data = open(os.path.join(src, "tests/fixtures/binlog/%s.binlog" % fixture), "rb").read()
        events = binlog_events(data)
        write(out, "binlog", fixture + "-all", b"\x01" + b"".join(events))
        write(out, "binlog", fixture + "-all-info", b"\x03" + b"".join(events))
        fde, table_map = events[0], None
        for i, e in enumerate(events):
            kind = e[4]
            if kind == 19:
                table_map = e
            elif table_map and (23 <= kind <= 25 or 30 <= kind <= 32 or 166 <= kind <= 171):
                write(out, "binlog", "%s-%03d-rows%d" % (fixture, i, kind), b"\x03" + fde + table_map + e)
            elif kind in (2, 4, 165):
                write(out, "binlog", "%s-%03d-event%d" % (fixture, i, kind), b"\x01" + fde + e)


def kafka(src, out):
    """Messages of cdcsync's Kafka sink captured from a real run, and Debezium's forms."""
    path = os.path.join(src, "tests/fixtures/kafka/pg_to_kafka.txt")
    for n, line in enumerate(open(path, "rb").read().splitlines()):
        key, value = line.split(b"\t", 1)
        write(out, "kafka", "captured-%02d" % n, key + b"\0" + value)
    debezium = [
        b'{"id":1}\0{"before":null,"after":{"id":1,"name":"a","price":1.5,"ok":true,"tags":[1]},'
        b'"source":{"db":"shop","table":"t","ts_ms":1700000000000},"op":"c","ts_ms":1700000000001}',
        b'{"id":1}\0{"before":{"id":1,"name":"a"},"after":null,"source":{"schema":"s","table":"t"},"op":"d"}',
        b'{"schema":{"type":"struct","fields":[{"type":"int32","field":"id"}]},"payload":{"id":7}}\0'
        b'{"schema":{"type":"struct","fields":[{"type":"struct","fields":[{"type":"int32","field":"id"},'
        b'{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"},'
        b'"field":"amount"},{"type":"bytes","field":"blob"}],"field":"after"},{"type":"struct","fields":'
        b'[{"type":"int32","field":"id"}],"field":"before"}]},"payload":{"before":{"id":7},"after":{"id":7,'
        b'"amount":"/zc=","blob":"AP8Q"},"source":{"schema":"public","table":"t","ts_ms":5},"op":"u"}}',
        b'{"schema":null,"payload":null}',
        b'{"source":{"schema":"s","table":"t"},"op":"t"}',
    ]
    for n, m in enumerate(debezium):
        write(out, "kafka", "debezium-%02d" % n, m)


def conf(src, out):
    for d in ("conf", "conf/examples"):
        for name in sorted(os.listdir(os.path.join(src, d))):
            if name.endswith(".conf"):
                write(out, "conf", name, open(os.path.join(src, d, name), "rb").read())


def leb128(n):
    b = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        b.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(b)


def vclock_bin(entries):
    return bytes([len(entries)]) + b"".join(bytes([len(k)]) + k + leb128(v) for k, v in sorted(entries))


def vclock(src, out):
    """Text and binary forms as the writers produce them (vclock_format, vclock_encode,
    version_encode: format 1, flags, vv, [wvv], ts (8 bytes), origin, seq)."""
    vectors = [[], [(b"pg_a", 42), (b"pg_b", 7)], [(b"src", 22231600)], [(b"a" * 63, 2**64 - 1), (b"b", 128)]]
    for n, v in enumerate(vectors):
        text = b"{" + b",".join(k + b":" + str(c).encode() for k, c in sorted(v)) + b"}"
        write(out, "vclock", "text-%d" % n, b"T" + text)
        write(out, "vclock", "bin-%d" % n, b"V" + vclock_bin(v))
    vv, wvv = vclock_bin([(b"pg_a", 3)]), vclock_bin([(b"pg_a", 3), (b"pg_b", 1)])
    ts = struct.pack(">q", 1700000000123456)
    write(out, "vclock", "version-0", b"R\x01\x00" + vv + ts + b"\x04pg_a" + leb128(0))
    write(out, "vclock", "version-1", b"R\x01\x03" + wvv + vv + ts + b"\x04pg_b" + leb128(300))


def status(src, out):
    for d in ("tests/fixtures/status", "tests/fixtures/crafted/status"):
        for name in sorted(os.listdir(os.path.join(src, d))):
            write(out, "status", name, open(os.path.join(src, d, name), "rb").read())


def main():
    src, out = sys.argv[1], sys.argv[2]
    for f in (pgoutput, binlog, kafka, conf, vclock, status):
        f(src, out)


if __name__ == "__main__":
    main()
