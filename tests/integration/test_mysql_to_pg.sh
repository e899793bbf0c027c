#!/usr/bin/env bash
# MySQL → PostgreSQL through the service: initial snapshot of existing rows, then a mixed workload
# (multi-statement transactions, key updates, deletes, truncate, NULLs) over a table holding every
# MySQL type, and a table without key; both sides end with equal ordered contents, compared by
# compare_rows.py on per-type normal forms.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"
export PGTZ=UTC

my_start src 1
pg_start dst
MPORT=$(free_port)

my_wide_table src '12:34:56.789' # PostgreSQL's time holds no negative TIME

my_to_pg_conf m2p '*'

# Normal forms: MY_ALL, KINDS_ALL, MY_NOKEY (mylib.sh), and PostgreSQL's the same: every column
# wrapped as v:VALUE or null; text, bytes and JSON as hex.
PG_ALL="concat_ws(E'\t', 'v:' || id, coalesce('v:' || ti, 'null'), coalesce('v:' || tu, 'null'),
  coalesce('v:' || si, 'null'), coalesce('v:' || su, 'null'), coalesce('v:' || mi, 'null'),
  coalesce('v:' || mu, 'null'), coalesce('v:' || i, 'null'), coalesce('v:' || iu, 'null'),
  coalesce('v:' || bi, 'null'), coalesce('v:' || bu, 'null'), coalesce('v:' || de, 'null'),
  coalesce('v:' || fl, 'null'), coalesce('v:' || db, 'null'),
  coalesce('v:' || encode(convert_to(ch, 'UTF8'), 'hex'), 'null'), coalesce('v:' || encode(convert_to(vc, 'UTF8'), 'hex'), 'null'),
  coalesce('v:' || encode(convert_to(tx, 'UTF8'), 'hex'), 'null'), coalesce('v:' || encode(bl, 'hex'), 'null'),
  coalesce('v:' || encode(convert_to(l1, 'UTF8'), 'hex'), 'null'), coalesce('v:' || encode(convert_to(l1t, 'UTF8'), 'hex'), 'null'),
  coalesce('v:' || encode(bn, 'hex'), 'null'), coalesce('v:' || encode(vb, 'hex'), 'null'),
  coalesce('v:' || d, 'null'), coalesce('v:' || tm, 'null'), coalesce('v:' || dt, 'null'),
  coalesce('v:' || (ts AT TIME ZONE 'UTC'), 'null'), coalesce('v:' || yr, 'null'), coalesce('v:' || bt, 'null'),
  coalesce('v:' || en, 'null'), coalesce('v:' || st, 'null'), coalesce('v:' || encode(convert_to(js::text, 'UTF8'), 'hex'), 'null'))"
PG_NOKEY="concat_ws(E'\t', coalesce('v:' || a, 'null'), coalesce('v:' || encode(convert_to(b, 'UTF8'), 'hex'), 'null'))"

dump_pair() { # TABLE MYEXPR PGEXPR ORDER
  my_on src -e "SET time_zone = '+00:00'; SELECT $2 FROM $1 ORDER BY $4" >"$WORK/my.$1" &&
    psql_on dst -F $'\t' -c "SELECT $3 FROM public.$1 ORDER BY $4" >"$WORK/pg.$1"
}
synced() {
  dump_pair alltypes "$MY_ALL" "$PG_ALL" id && rows_equal "$KINDS_ALL" "$WORK/my.alltypes" "$WORK/pg.alltypes" &&
    dump_pair nokey "$MY_NOKEY" "$PG_NOKEY" "a, b" && rows_equal su "$WORK/my.nokey" "$WORK/pg.nokey"
}

"$CDCSYNC" -c "$WORK/cdcsync.conf" check >"$WORK/check.out" || fail "check failed: $(cat "$WORK/check.out")"
service_start
wait_for "initial snapshot equal" 20 synced
log "initial snapshot equal: $(cat "$WORK/wait.out" | tr '\n' ' ')"

my_on src <<'SQL'
SET time_zone = '+00:00';
-- a multi-statement transaction
BEGIN;
INSERT INTO alltypes (id, vc, de, dt, js) VALUES (10, 'new', 0.0000000001, '2024-06-01 12:00:00.000001', '"s"');
UPDATE alltypes SET vc = CONCAT(vc, ' upd'), iu = iu - 1, fl = -2.25 WHERE id = 1;
DELETE FROM alltypes WHERE id = 3;
INSERT INTO nokey VALUES (3, 'three');
COMMIT;
-- a key update, NULLs over values, values over NULLs
UPDATE alltypes SET id = 20 WHERE id = 10;
UPDATE alltypes SET ti = NULL, bl = NULL, js = NULL, ts = NULL, bt = NULL WHERE id = 1;
UPDATE alltypes SET ti = 7, bl = X'', en = 'b', st = 'y', bt = b'1', tm = '23:59:59.999', yr = 2000 WHERE id = 2;
-- a duplicate row of a table without key: only one of the two goes
DELETE FROM nokey WHERE a = 1 LIMIT 1;
UPDATE nokey SET b = 'was null' WHERE a = 2;
-- many rows in one statement, then some of them in another transaction
INSERT INTO alltypes (id, i, vc, dt) SELECT seq + 100, seq, CONCAT('row ', seq), '2024-01-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_300;
BEGIN;
UPDATE alltypes SET i = -i WHERE id BETWEEN 150 AND 160;
DELETE FROM alltypes WHERE id > 390;
COMMIT;
TRUNCATE nokey;
INSERT INTO nokey VALUES (5, 'after truncate'), (5, 'after truncate');
SQL
wait_for "workload equal" 60 synced
log "workload equal: $(cat "$WORK/wait.out" | tr '\n' ' ')"

# The source's BEGIN starts at the transaction, only COMMIT knows its end: the checkpoint in the
# sink must equal the source's binlog end once idle.
read -r bfile bpos < <(my_on src -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
want="$((10#${bfile##*.})):$bpos"
ckpt() { psql_on dst -c "SELECT pos_hi || ':' || pos_lo FROM cdcsync.checkpoints WHERE pipeline = 'm2p'" | grep -qx "$want"; }
wait_for "checkpoint at the binlog end ($bfile:$bpos)" 30 ckpt
service_stop
finish
