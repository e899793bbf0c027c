#!/usr/bin/env bash
# Bad input, part 1 (issue #2): `cdcsync check` on malformed confs (exit 2, FILE:LINE: what — what
# to do), and `cdcsync check --connect` against real PostgreSQL 15: the ok line, the warning for a
# table without a primary key, and a wrong password that fails clearly without ever being printed.
# Part 3 (issue #10): what only the server can tell — a source and sink that are one database
# under two dsn texts, a slot shared by two connectors of one server, tables that do not exist —
# refused by check --connect, and the same-database pipeline refused by `run` before it creates
# anything (it would replay its own writes forever); two pipelines writing one sink table through
# two dsn texts of one database (a listed table, and tables = *) refused by check --connect.
source "$(dirname "$0")/lib.sh"

# check_conf NAME EXPECTED_RC — runs `cdcsync check` on $WORK/NAME.conf; stdout and stderr go to
# $WORK/NAME.out and $WORK/NAME.err.
check_conf() {
  local name=$1 want=$2 rc=0
  shift 2
  "$CDCSYNC" -c "$WORK/$name.conf" check "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?
  if [ "$rc" != "$want" ]; then
    cat "$WORK/$name.out" "$WORK/$name.err" >&2
    fail "cdcsync check on $name.conf exited $rc, expected $want"
  fi
}

# ---- 1. malformed confs: exit 2 and one FILE:LINE message per mistake, all at once ----
write_conf "$WORK/bad.conf" off <<CONF
[connector.src]
type = postgres
dsn = host=127.0.0.1 port=1 user=postgres dbname=postgres
colour = blue

[connector.dst]
type = postgres
create_tables = maybe

[pipeline.main]
source = src
sink = nowhere
tables = *
CONF
check_conf bad 2
F="$WORK/bad.conf"
assert_grep "$F:8: unknown key colour in [connector.src] — remove it; the keys are listed in cdcsync.conf" "$WORK/bad.err"
assert_grep "$F:10: [connector.dst] has no dsn — add dsn = LIBPQ-CONNINFO" "$WORK/bad.err"
assert_grep "$F:12: create_tables = 'maybe' is not valid — use one of yes | no" "$WORK/bad.err"
assert_grep "$F:16: sink = nowhere names no connector — define [connector.nowhere] or fix the name" "$WORK/bad.err"
[ "$(wc -l <"$WORK/bad.err")" -eq 4 ] || { cat "$WORK/bad.err" >&2; fail "expected exactly 4 error lines"; }
[ ! -s "$WORK/bad.out" ] || fail "a bad conf printed on stdout: $(cat "$WORK/bad.out")"
# `run` refuses the same conf with the same exit code before starting anything.
rc=0
"$CDCSYNC" -c "$F" run >"$WORK/bad-run.out" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "cdcsync run on a bad conf exited $rc, expected 2"
assert_grep "$F:8: unknown key colour" "$WORK/bad-run.out"
[ ! -e "$WORK/state" ] || fail "cdcsync run on a bad conf created its state_dir"

# A literal password in a conf others can read is refused; the same file at mode 600 passes.
pg_start db
P=$PG_db_PORT
cat >"$WORK/pw.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = off

[connector.src]
type = postgres
dsn = host=127.0.0.1 port=$P user=cdc_pw dbname=postgres
password = s3cret-pw

[connector.dst]
type = postgres
dsn = host=127.0.0.1 port=$P user=postgres dbname=sinkdb

[pipeline.main]
source = src
sink = dst
tables = public.orders, public.nopk
CONF
chmod 644 "$WORK/pw.conf"
check_conf pw 2
assert_grep "$WORK/pw.conf:8: password holds a password but $WORK/pw.conf is readable by others — chmod 600 $WORK/pw.conf or use password_file" "$WORK/pw.err"
grep -qF 's3cret-pw' "$WORK/pw.out" "$WORK/pw.err" && fail "the refused conf's password was printed"
# Missing file: exit 2, says which file.
rc=0
"$CDCSYNC" -c "$WORK/none.conf" check >/dev/null 2>"$WORK/none.err" || rc=$?
[ "$rc" = 2 ] || fail "check of a missing conf exited $rc, expected 2"
assert_grep "$WORK/none.conf: cannot read: No such file or directory" "$WORK/none.err"

# ---- 2. check --connect ----
psql_on db -c "CREATE DATABASE sinkdb"
psql_on db <<'SQL'
CREATE TABLE orders (id int PRIMARY KEY, v text);
CREATE TABLE nopk (a int, b text);
CREATE TABLE other_nopk (a int);
SQL
chmod 600 "$WORK/pw.conf"
check_conf pw 0 --connect
assert_grep "$WORK/pw.conf: ok (2 connectors, 1 pipelines)" "$WORK/pw.out"
assert_grep "pipeline main: src → dst ok" "$WORK/pw.out"
assert_grep "warning: pipeline main: table public.nopk has no primary key or replica identity: its inserts sync, but PostgreSQL itself rejects UPDATE and DELETE on it while it is published — add a primary key or ALTER TABLE ... REPLICA IDENTITY FULL" "$WORK/pw.out"
# Only the pipeline's own tables are warned about.
grep -q other_nopk "$WORK/pw.out" && fail "warned about a table the pipeline does not sync"
# With a replica identity the warning goes.
psql_on db -c "ALTER TABLE nopk REPLICA IDENTITY FULL"
check_conf pw 0 --connect
grep -q "warning:" "$WORK/pw.out" && fail "warned about a table with REPLICA IDENTITY FULL: $(cat "$WORK/pw.out")"

# A wrong password (from password_file, the recommended way): exit 1, a clear message, and the
# password in no output.
printf 'Wr0ng-pa55word\n' >"$WORK/src.pass"
chmod 600 "$WORK/src.pass"
sed -i "s|^password = s3cret-pw|password_file = $WORK/src.pass|" "$WORK/pw.conf"
check_conf pw 1 --connect
assert_grep "pipeline main: source src: connector src: cannot connect to postgresql: " "$WORK/pw.out"
assert_grep 'password authentication failed for user "cdc_pw"' "$WORK/pw.out"
assert_grep "— check the password (password_file or password) in [connector.src] and the role's pg_hba.conf entry" "$WORK/pw.out"
grep -qF 'Wr0ng-pa55word' "$WORK/pw.out" "$WORK/pw.err" && fail "the password appeared in check's output"
# The service says the same in its log, retries, and never logs the password either.
sed -i "s|^metrics_listen = off|metrics_listen = 127.0.0.1:$(free_port)|" "$WORK/pw.conf"
service_start "$WORK/pw.conf"
wait_for "the password failure in the log" 20 grep -qF 'password authentication failed for user "cdc_pw"' "$WORK/service.log"
service_stop
grep -qF 'Wr0ng-pa55word' "$WORK/service.log" && fail "the password appeared in the service log"
# The right password in the same file connects: the failure above was the password, nothing else.
printf 's3cret-pw\n' >"$WORK/src.pass"
check_conf pw 0 --connect
assert_grep "pipeline main: src → dst ok" "$WORK/pw.out"

# ---- 3. what only the server can tell ----
SYSID=$(psql_on db -c "SELECT system_identifier FROM pg_control_system()")
cat >"$WORK/same.conf" <<CONF
[service]
state_dir = $WORK/state-same
metrics_listen = 127.0.0.1:$(free_port)

[connector.tcp]
type = postgres
dsn = host=127.0.0.1 port=$P user=postgres dbname=postgres
slot = shared_slot

[connector.sock]
type = postgres
dsn = host=$PG_db_DIR port=$P user=postgres dbname=postgres

[connector.sock2]
type = postgres
dsn = host=$PG_db_DIR port=$P user=postgres dbname=sinkdb
slot = shared_slot

[pipeline.loop]
source = tcp
sink = sock
tables = public.orders

[pipeline.other]
source = sock2
sink = tcp
tables = public.orders, public.gone, nowhere.t
map = public.orders -> public.orders_copy
CONF
chmod 600 "$WORK/same.conf"
# The conf alone cannot tell (two dsn texts): check passes, check --connect refuses.
check_conf same 0
check_conf same 1 --connect
assert_grep "pipeline loop: source tcp and sink sock are one database (PostgreSQL system $SYSID, database postgres) — it would read its own writes back and apply them again, forever: point the sink at another database" "$WORK/same.out"
assert_grep "pipeline other: source sock2 has no tables public.orders, public.gone, nowhere.t — create them, or fix tables in [pipeline.other]" "$WORK/same.out"
assert_grep "pipelines loop and other both use replication slot shared_slot on one server (sources tcp and sock2: PostgreSQL system $SYSID) — a slot feeds one pipeline: set slot = to another name in [connector.sock2]" "$WORK/same.out"
grep -E "^pipeline (loop|other): .* ok$" "$WORK/same.out" && fail "a refused pipeline was called ok: $(cat "$WORK/same.out")"
psql_on db -d sinkdb -c "CREATE TABLE orders (id int PRIMARY KEY, v text)"
sed -i 's/, public.gone, nowhere.t$//; s/^slot = shared_slot$//' "$WORK/same.conf"
check_conf same 1 --connect
grep -q "no table\|replication slot" "$WORK/same.out" && fail "still refused once fixed: $(cat "$WORK/same.out")"
assert_grep "pipeline other: sock2 → tcp ok" "$WORK/same.out"

# `run` refuses the pipeline whose source and sink are one database before it creates anything:
# no slot, no publication, no checkpoint table, no row written; counted, and /healthz says why.
psql_on db -c "TRUNCATE orders; INSERT INTO orders VALUES (1, 'one'), (2, 'two')"
slots_before=$(psql_on db -c "SELECT count(*) FROM pg_replication_slots")
sed -i '/^\[pipeline.other\]/,$d' "$WORK/same.conf"
service_start "$WORK/same.conf"
SP=$(sed -n 's/^metrics_listen = 127.0.0.1://p' "$WORK/same.conf")
wait_for "the loop refused at run" 30 grep -qF "[pipeline=loop source=tcp sink=sock] pipeline loop: source tcp and sink sock are one database (PostgreSQL system $SYSID, database postgres) — it would read its own writes back and apply them again, forever: point the sink at another database — the pipeline is stopped until this is fixed" "$WORK/service.log"
# the log line is written before the counter moves: wait for the count, do not race it
refusal_counted() { curl -s "http://127.0.0.1:$SP/metrics" | grep -qx 'cdcsync_errors_total{pipeline="loop",kind="conf"} 1'; }
wait_for "the refusal counted as a conf error" 30 refusal_counted
curl -s "http://127.0.0.1:$SP/healthz" | grep -qF "one database" || fail "/healthz does not say why loop is down"
service_stop
[ "$(psql_on db -c "SELECT count(*) FROM pg_replication_slots")" = "$slots_before" ] || fail "run created a slot for the refused pipeline"
[ -z "$(psql_on db -c "SELECT pubname FROM pg_publication WHERE pubname = 'cdcsync_loop'")" ] || fail "run created a publication for the refused pipeline"
[ -z "$(psql_on db -c "SELECT 1 FROM pg_namespace WHERE nspname = 'cdcsync'")" ] || fail "run created the cdcsync schema in the source database"
[ "$(psql_on db -c "COPY (SELECT * FROM orders ORDER BY id) TO STDOUT")" = $'1\tone\n2\ttwo' ] || fail "orders changed"

# Two pipelines writing one sink table through sinks whose dsn texts differ (another host form,
# another user) but which are one database: only the server can tell, so check passes and check
# --connect refuses each pair — a listed table mapped into another's target, and tables = *
# (its tables asked from the source) meeting a listed one — before any pipeline's own checks.
printf 's3cret-pw\n' >"$WORK/pw2.pass"
chmod 600 "$WORK/pw2.pass"
cat >"$WORK/two.conf" <<CONF
[service]
state_dir = $WORK/state-two
metrics_listen = off

[connector.src]
type = postgres
dsn = host=127.0.0.1 port=$P user=postgres dbname=postgres

[connector.s1]
type = postgres
dsn = host=127.0.0.1 port=$P user=postgres dbname=sinkdb

[connector.s2]
type = postgres
dsn = host=127.0.0.1 port=$P user=cdc_pw dbname=sinkdb
password_file = $WORK/pw2.pass

[connector.s3]
type = postgres
dsn = host=$PG_db_DIR port=$P user=postgres dbname=sinkdb

[pipeline.a]
source = src
sink = s1
tables = public.orders

[pipeline.b]
source = src
sink = s2
tables = public.nopk
map = public.nopk -> public.orders

[pipeline.c]
source = src
sink = s3
tables = *
CONF
chmod 600 "$WORK/two.conf"
check_conf two 0
grep -q "both write" "$WORK/two.out" "$WORK/two.err" && fail "check without --connect claimed to know: $(cat "$WORK/two.out")"
slots_before=$(psql_on db -c "SELECT count(*) FROM pg_replication_slots")
check_conf two 1 --connect
CLASH="— each would overwrite and delete the other's rows (a truncate, or a snapshot = replace copy, empties the table under the other): give each target table one writer (fix tables or map), or make the two pipelines each other's reverse for sync in both directions"
assert_grep "pipelines a and b both write table public.orders of one database (sinks s1 and s2: PostgreSQL system $SYSID, database sinkdb) $CLASH" "$WORK/two.out"
assert_grep "pipelines a and c both write table public.orders of one database (sinks s1 and s3: PostgreSQL system $SYSID, database sinkdb) $CLASH" "$WORK/two.out"
[ "$(grep -c "both write" "$WORK/two.out")" = 2 ] || fail "expected exactly the two clashes on public.orders: $(cat "$WORK/two.out")"
grep -E "^pipeline (a|b|c): .* ok$" "$WORK/two.out" && fail "a refused pipeline was called ok: $(cat "$WORK/two.out")"
[ "$(psql_on db -c "SELECT count(*) FROM pg_replication_slots")" = "$slots_before" ] || fail "check --connect created a slot"
[ -z "$(psql_on db -c "SELECT pubname FROM pg_publication WHERE pubname IN ('cdcsync_a', 'cdcsync_b', 'cdcsync_c')")" ] || fail "check --connect created a publication"
[ -z "$(psql_on db -d sinkdb -c "SELECT 1 FROM pg_namespace WHERE nspname = 'cdcsync'")" ] || fail "check --connect created the cdcsync schema in the sink"
[ "$(psql_on db -d sinkdb -c "SELECT count(*) FROM orders")" = 0 ] || fail "check --connect wrote into the sink's orders"
finish
