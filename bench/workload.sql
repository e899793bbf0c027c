-- One pgbench transaction of the catch-up backlog (bench/pg_catchup.sh): like pgbench's tpcb-like
-- script, a random account row updated, a hot branch row updated, a row inserted, one deleted.
\set aid random(1, :nrows)
\set bid random(1, 100)
\set did random(1, :nrows)
BEGIN;
UPDATE bench_rows SET k = k + 1, v = md5(v) WHERE id = :aid;
UPDATE bench_hot SET total = total + :aid WHERE id = :bid;
INSERT INTO bench_rows (id, k, v) VALUES (nextval('bench_ids'), :aid, md5(:aid::text));
DELETE FROM bench_rows WHERE id = :did;
END;
