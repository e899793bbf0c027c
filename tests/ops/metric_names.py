"""metric_names.py SCRAPE FILE... — the cdcsync_* metric names that alert rules and dashboards use
against what the service exports.

SCRAPE is a GET /metrics answer of a running cdcsync. Every cdcsync_* name in each FILE (the
whole text: expressions, descriptions, annotations) must be an exported family (with _bucket,
_sum and _count for a histogram), or one of EXPECTED, the names announced for later. Prints the
names it checked and those expected; exits 1 naming each name that is neither, and each
expected name that is exported by now (then remove it from EXPECTED). A .json FILE is a Grafana
dashboard: each of its panels must query something. --require NAME,... : names FILE's queries
(rule exprs, dashboard targets) must use."""
import json
import re
import sys

# Names announced for later, not exported yet: rules and panels on them stay empty until the
# service exports them. None at present (cdcsync_source_retained_bytes is exported since #15).
EXPECTED = {}

NAME = re.compile(r"\bcdcsync_[a-z0-9_]*[a-z0-9]\b")


def exported(scrape):
    names = set()
    for line in scrape.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)$", line)
        if not m:
            continue
        names.add(m.group(1))
        if m.group(2) == "histogram":
            names.update(m.group(1) + s for s in ("_bucket", "_sum", "_count"))
        elif m.group(2) == "summary":
            names.update(m.group(1) + s for s in ("_sum", "_count"))
    return names


def queries(path, text):
    """The query expressions of a rules file or a dashboard, and the problems of its structure."""
    problems = []
    if not path.endswith(".json"):
        return re.findall(r"^\s*expr:\s*(.+)$", text, re.M), problems
    dash = json.loads(text)
    exprs = []

    def walk(panels):
        for p in panels:
            if p.get("type") == "row":
                walk(p.get("panels", []))
                continue
            got = [t.get("expr", "") for t in p.get("targets", []) if t.get("expr", "").strip()]
            if not got:
                problems.append(f"panel {p.get('title')!r} queries nothing")
            exprs.extend(got)

    walk(dash.get("panels", []))
    return exprs, problems


def main(argv):
    require = []
    if len(argv) > 2 and argv[1] == "--require":
        require = argv[2].split(",")
        argv = argv[:1] + argv[3:]
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    have = exported(open(argv[1]).read())
    if "cdcsync_pipeline_up" not in have:
        print(f"{argv[1]} is no cdcsync scrape (no cdcsync_pipeline_up family)")
        return 1
    bad = []
    for name in sorted(EXPECTED):
        if name in have:
            bad.append(f"{name} is exported now: remove it from EXPECTED in tests/ops/metric_names.py")
    for path in argv[2:]:
        text = open(path).read()
        used = set(NAME.findall(text))
        exprs, problems = queries(path, text)
        bad += [f"{path}: {p}" for p in problems]
        in_queries = set(NAME.findall("\n".join(exprs)))
        for name in sorted(used - have - set(EXPECTED)):
            bad.append(f"{path}: {name} is not exported by cdcsync (nor an expected name)")
        for name in require:
            if name not in in_queries:
                bad.append(f"{path}: no query uses {name}")
        waiting = sorted(used & set(EXPECTED) - have)
        print(f"{path}: {len(exprs)} queries; exported names used: {' '.join(sorted(used & have))}")
        for name in waiting:
            print(f"{path}: expected, not exported yet: {name} ({EXPECTED[name]})")
    for b in bad:
        print("FAIL:", b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
