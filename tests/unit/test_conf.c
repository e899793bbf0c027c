/* Tests of the conf module: parsing, every error message, secrets, maps, hashes, the reference. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cdcsync/conf.h"

static char tmpdir[] = "/tmp/cdcsync-test-conf-XXXXXX";

static void write_file(const char *path, const char *text, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

/* Loads text as "c.conf" (mode given) from the temp dir; *errs: what conf_load wrote (owned). */
static int load_mode(const char *text, mode_t mode, Conf **ret, char **errs) {
        char *buf = NULL;
        size_t len = 0;
        FILE *err = open_memstream(&buf, &len);
        write_file("c.conf", text, mode);
        *ret = NULL;
        int r = conf_load("c.conf", err, ret);
        fclose(err);
        *errs = buf;
        return r;
}

static int load(const char *text, Conf **ret, char **errs) {
        return load_mode(text, 0600, ret, errs);
}

/* Asserts that text is refused with exactly the errors expected. */
static void expect_errors(const char *text, const char *expected) {
        Conf *c;
        char *errs;
        int r = load(text, &c, &errs);
        if (strcmp(errs, expected) != 0)
                print_error("got:\n%s\nexpected:\n%s\n", errs, expected);
        assert_string_equal(errs, expected);
        assert_int_equal(r, -EINVAL);
        assert_null(c);
        free(errs);
}

#define PG_PAIR "[connector.a]\ntype = postgres\ndsn = host=a\n[connector.b]\ntype = postgres\ndsn = host=b\n"

static const char full_conf[] = "# a full conf\n"
                                "[service]\n"
                                "state_dir = /tmp/state ; inline comment\n"
                                "metrics_listen = [::1]:9781\n"
                                "log_level = debug\n"
                                "metrics_user = prom\n"
                                "metrics_password_file = metrics.pass\n"
                                "metrics_tls_cert = /etc/c.pem\n"
                                "metrics_tls_key = /etc/k.pem\n"
                                "\n"
                                "[connector.pg_main]\n"
                                "  type = postgres\n"
                                "dsn = host=127.0.0.1 port=5432 dbname=shop user=cdc\n"
                                "slot = shop_slot\n"
                                "publication = shop_pub\n"
                                "password_file = pg.pass\n"
                                "create_tables = on\n"
                                "[connector.my]\n"
                                "type = mysql\n"
                                "host = 10.0.0.2\n"
                                "user = repl\n"
                                "database = shop\n"
                                "server_id = 4242\n"
                                "ssl_mode = verify_ca\n"
                                "ssl_ca = /etc/ca.pem\n"
                                "password = ${TEST_CONF_PASS}\n"
                                "[connector.bus]\n"
                                "type = kafka\n"
                                "brokers = k1:9092,k2:9092\n"
                                "group = g1\n"
                                "kafka.security.protocol = ssl\n"
                                "kafka.linger.ms = 5\n"
                                "[pipeline.orders]\n"
                                "source = pg_main\n"
                                "sink = my\n"
                                "tables = public.orders, public.customers\n"
                                "map = public.orders -> shop.orders2, public.* -> other.*\n"
                                "conflict = timestamp\n"
                                "resolve = priority\n"
                                "priority = pg_main, my\n"
                                "batch_max_rows = 100\n"
                                "snapshot = never\n"
                                "start_position = 0/16B3748\n"
                                "[pipeline.to_bus]\n"
                                "source = my\n"
                                "sink = bus\n"
                                "tables = *\n";

static void test_full(void **state) {
        (void)state;
        Conf *c;
        char *errs;
        write_file("metrics.pass", "m3trics\n", 0600);
        write_file("pg.pass", "pgsecret\n\n", 0600);
        setenv("TEST_CONF_PASS", "mysecret", 1);
        int r = load(full_conf, &c, &errs);
        assert_string_equal(errs, "");
        assert_int_equal(r, 0);
        free(errs);
        assert_string_equal(c->path, "c.conf");
        assert_string_equal(c->state_dir, "/tmp/state");
        assert_string_equal(c->metrics_listen, "[::1]:9781");
        assert_int_equal(c->log_level, LOG_LEVEL_DEBUG);
        assert_string_equal(c->metrics_user, "prom");
        assert_string_equal(c->metrics_password, "m3trics");
        assert_string_equal(c->metrics_tls_cert, "/etc/c.pem");
        assert_string_equal(c->metrics_tls_key, "/etc/k.pem");
        assert_int_equal(c->nconnectors, 3);

        const ConnectorConf *pg = conf_connector(c, "pg_main");
        assert_non_null(pg);
        assert_string_equal(pg->type, "postgres");
        assert_string_equal(pg->dsn, "host=127.0.0.1 port=5432 dbname=shop user=cdc");
        assert_string_equal(pg->slot, "shop_slot");
        assert_string_equal(pg->publication, "shop_pub");
        assert_string_equal(pg->password, "pgsecret\n"); /* one newline stripped, not all */
        assert_true(pg->create_tables);
        assert_int_equal(pg->port, 0);
        assert_null(pg->topic);
        assert_int_equal(pg->line, 11);
        assert_string_equal(pg->file, "c.conf");

        const ConnectorConf *my = conf_connector(c, "my");
        assert_string_equal(my->type, "mysql");
        assert_string_equal(my->host, "10.0.0.2");
        assert_int_equal(my->port, 3306);
        assert_string_equal(my->user, "repl");
        assert_string_equal(my->database, "shop");
        assert_int_equal(my->server_id, 4242);
        assert_string_equal(my->ssl_mode, "verify_ca");
        assert_string_equal(my->ssl_ca, "/etc/ca.pem");
        assert_string_equal(my->password, "mysecret");
        assert_false(my->create_tables);

        const ConnectorConf *bus = conf_connector(c, "bus");
        assert_string_equal(bus->brokers, "k1:9092,k2:9092");
        assert_string_equal(bus->topic, "cdc.{connector}.{schema}.{table}");
        assert_string_equal(bus->group, "g1");
        assert_int_equal(bus->nkafka_props, 2);
        assert_string_equal(bus->kafka_props[0].key, "security.protocol");
        assert_string_equal(bus->kafka_props[0].value, "ssl");
        assert_string_equal(bus->kafka_props[1].key, "linger.ms");
        assert_string_equal(bus->kafka_props[1].value, "5");
        assert_null(bus->password);
        assert_null(conf_connector(c, "nope"));

        assert_int_equal(c->npipelines, 2);
        const PipelineConf *o = &c->pipelines[0];
        assert_string_equal(o->name, "orders");
        assert_ptr_equal(o->source, pg);
        assert_ptr_equal(o->sink, my);
        assert_false(o->all_tables);
        assert_int_equal(o->ntables, 2);
        assert_string_equal(o->tables[1], "public.customers");
        assert_int_equal(o->nmaps, 2);
        assert_string_equal(o->maps[0].from, "public.orders");
        assert_string_equal(o->maps[0].to, "shop.orders2");
        assert_int_equal(o->conflict, CONFLICT_TIMESTAMP);
        assert_int_equal(o->resolve, RESOLVE_PRIORITY);
        assert_int_equal(o->npriority, 2);
        assert_string_equal(o->priority[0], "pg_main");
        assert_int_equal(o->batch_max_rows, 100);
        assert_false(o->snapshot);
        assert_int_equal(o->snapshot_mode, SNAPSHOT_NEVER);
        assert_string_equal(o->start_position, "0/16B3748");
        assert_int_equal(o->line, 33);

        const PipelineConf *t = &c->pipelines[1];
        assert_true(t->all_tables);
        assert_int_equal(t->ntables, 0);
        assert_int_equal(t->conflict, CONFLICT_VERSION_VECTOR);
        assert_int_equal(t->resolve, RESOLVE_TIMESTAMP);
        assert_int_equal(t->batch_max_rows, 5000);
        assert_true(t->snapshot);
        assert_int_equal(t->snapshot_mode, SNAPSHOT_INITIAL);
        assert_int_equal(conf_pipeline_copy_mode(t), SNAPSHOT_INITIAL);
        assert_null(t->start_position);
        assert_true(conf_pipeline_has_table(t, "any", "thing"));
        assert_true(conf_pipeline_has_table(o, "public", "orders"));
        assert_false(conf_pipeline_has_table(o, "public", "order"));
        assert_false(conf_pipeline_has_table(o, "publi", "c.orders"));
        assert_null(conf_free(c));
}

static void test_defaults(void **state) {
        (void)state;
        Conf *c;
        char *errs;
        assert_int_equal(load(PG_PAIR "[pipeline.p]\nsource=a\nsink=b\ntables=s.t\n", &c, &errs), 0);
        free(errs);
        assert_string_equal(c->state_dir, "/var/lib/cdcsync");
        assert_string_equal(c->metrics_listen, "127.0.0.1:9780");
        assert_int_equal(c->log_level, LOG_LEVEL_INFO);
        assert_null(c->metrics_user);
        assert_null(c->connectors[0].slot);
        assert_null(c->connectors[0].publication);
        conf_free(c);
        assert_int_equal(load("[service]\nmetrics_listen = off\n" PG_PAIR
                              "[pipeline.p]\nsource=a\nsink=b\ntables=s.t\n",
                              &c, &errs),
                         0);
        free(errs);
        assert_null(c->metrics_listen);
        assert_int_equal(c->retained_warn_bytes, INT64_C(10) * 1024 * 1024 * 1024);
        conf_free(c);
}

/* retained_warn_bytes: a SIZE, with or without a unit, or off. */
static void test_sizes(void **state) {
        (void)state;
        static const struct {
                const char *text;
                int64_t bytes;
        } ok[] = {
                {"1048576", 1048576},       {"2MiB", 2097152}, {"2 MB", 2000000}, {"3kB", 3000},
                {"1TiB", INT64_C(1) << 40}, {"off", 0},        {"0", 0},
        };
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                char text[512];
                Conf *c;
                char *errs;
                snprintf(text, sizeof(text),
                         "[service]\nretained_warn_bytes = %s\n" PG_PAIR "[pipeline.p]\nsource=a\nsink=b\ntables=s.t\n",
                         ok[i].text);
                assert_int_equal(load(text, &c, &errs), 0);
                free(errs);
                assert_int_equal(c->retained_warn_bytes, ok[i].bytes);
                conf_free(c);
        }
        static const char *const bad[] = {"-1", "2XB", "MiB", "9999999999TiB", "1.5GiB"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char text[512];
                Conf *c;
                char *errs;
                snprintf(text, sizeof(text),
                         "[service]\nretained_warn_bytes = %s\n" PG_PAIR "[pipeline.p]\nsource=a\nsink=b\ntables=s.t\n",
                         bad[i]);
                assert_int_equal(load(text, &c, &errs), -EINVAL);
                assert_non_null(strstr(errs, "retained_warn_bytes"));
                free(errs);
        }
}

static void test_err_sections_and_keys(void **state) {
        (void)state;
        expect_errors("[servce]\nstate_dir = /x\n[connector.a]\ntype = postgres\ndsn = x\nslott = s\n"
                      "dsn = y\n[pipeline.p]\nsource=a\nsink=a\ntables=s.t\nfrobnicate = 1\n"
                      "[connector.a]\nnonsense line\n",
                      "c.conf:1: unknown section [servce] — use [service], [connector.NAME] or "
                      "[pipeline.NAME]\n"
                      "c.conf:6: unknown key slott in [connector.a] — did you mean slot?\n"
                      "c.conf:7: duplicate key dsn (first set at line 5) — keep one\n"
                      "c.conf:10: source and sink are both a — a pipeline joins two different "
                      "connectors\n"
                      "c.conf:12: unknown key frobnicate in [pipeline.p] — remove it; the keys are "
                      "listed in cdcsync.conf\n"
                      "c.conf:13: duplicate section [connector.a] (first at line 3) — merge them into "
                      "one\n"
                      "c.conf:14: cannot read this line — write KEY = VALUE, [SECTION] or a ; comment\n");
        expect_errors("", "c.conf:1: no [pipeline.NAME] section — define at least one pipeline (man "
                          "cdcsync.conf shows the keys and an example)\n");
        expect_errors("; only comments\nstray = 1\n[pipeline.bad name]\n[connector.x\n",
                      "c.conf:1: no [pipeline.NAME] section — define at least one pipeline (man "
                      "cdcsync.conf shows the keys and an example)\n"
                      "c.conf:2: stray is outside any section — put it under [service], "
                      "[connector.NAME] or [pipeline.NAME]\n"
                      "c.conf:3: bad name in [pipeline.bad name] — use 1 to 48 letters, digits, '_' "
                      "or '-'\n"
                      "c.conf:4: section header has no closing ']' — write [NAME]\n");
}

static void test_err_required_and_values(void **state) {
        (void)state;
        expect_errors("[connector.a]\ndsn = x\n[connector.m]\ntype = mysql\nhost = h\n"
                      "[connector.k]\ntype = kafka\n[pipeline.p]\nsource = m\n",
                      "c.conf:1: [connector.a] has no type — add type = postgres | mysql | kafka\n"
                      "c.conf:3: [connector.m] has no server_id — add server_id = 1..4294967295: pipeline p "
                      "reads the server's binlog as a replica with that id\n"
                      "c.conf:6: [connector.k] has no brokers — add brokers = HOST:PORT, ...\n"
                      "c.conf:8: [pipeline.p] has no sink — add sink = CONNECTOR\n"
                      "c.conf:8: [pipeline.p] has no tables — add tables = SCHEMA.TABLE, ... | *\n");
        expect_errors("[service]\nlog_level = loud\nmetrics_listen = 1.2.3.4\n[connector.a]\ntype = pg\n"
                      "[connector.m]\ntype = mysql\nserver_id = 0\nport = 70000\nssl_mode = on\n"
                      "create_tables = maybe\n[connector.k]\ntype = kafka\nbrokers = k\n"
                      "topic = t.{db}\n[pipeline.p]\nsource = m\nsink = k\ntables = a, b.c\n"
                      "conflict = vv\nbatch_max_rows = 0\nsnapshot = later\nmap = a.b => c.d\n",
                      "c.conf:2: log_level = 'loud' is not valid — use one of error | warn | info | debug\n"
                      "c.conf:3: metrics_listen = '1.2.3.4' is not valid — use one of HOST:PORT | "
                      "[IPV6]:PORT | off\n"
                      "c.conf:5: type = 'pg' is not valid — use one of postgres | mysql | kafka\n"
                      "c.conf:8: server_id = '0' is not valid — use a whole number in 1..4294967295\n"
                      "c.conf:9: port = '70000' is not valid — use a whole number in 1..65535\n"
                      "c.conf:10: ssl_mode = 'on' is not valid — use one of disabled | preferred | "
                      "required | verify_ca | verify_identity\n"
                      "c.conf:11: create_tables = 'maybe' is not valid — use one of yes | no\n"
                      "c.conf:15: topic = 't.{db}' is not valid — use TEXT with {connector} {schema} {table}\n"
                      "c.conf:19: tables = 'a, b.c' is not valid — use one of SCHEMA.TABLE, ... | *\n"
                      "c.conf:20: conflict = 'vv' is not valid — use one of version_vector | timestamp "
                      "| none\n"
                      "c.conf:21: batch_max_rows = '0' is not valid — use a whole number in 1..1000000\n"
                      "c.conf:22: snapshot = 'later' is not valid — use one of initial | never | merge | replace\n"
                      "c.conf:23: map = 'a.b => c.d' is not valid — use A.B -> C.D, A.* -> C.*, ...\n");
}

/* Two pipelines reading a connector without a type (tests/fixtures/crafted/conf/
 * source_without_type.conf, found by the conf fuzz target): the missing type is the error; the
 * check for two pipelines on one source passed its NULL type to strcmp. */
static void test_err_source_without_type(void **state) {
        (void)state;
        expect_errors("[connector.a]\ndsn = x\n[connector.b]\ntype = postgres\ndsn = y\n"
                      "[pipeline.one]\nsource = a\nsink = b\ntables = public.t\n"
                      "[pipeline.two]\nsource = a\nsink = b\ntables = public.u\n",
                      "c.conf:1: [connector.a] has no type — add type = postgres | mysql | kafka\n");
}

static void test_err_references(void **state) {
        (void)state;
        expect_errors("[connector.a]\ntype = postgres\ndsn = x\nslot = s1\nserver_id = 3\n"
                      "kafka.acks = all\n[connector.m]\ntype = mysql\nserver_id = 7\ndsn = y\n"
                      "[pipeline.p]\nsource = a\nsink = zz\ntables = s.t\npriority = a, qq\n"
                      "[connector.x]\ntype = postgres\ndsn = x2\nslot = Bad-Slot\n"
                      "[pipeline.t]\nsource = x\nsink = a\ntables = s.t, s.t\n"
                      "[pipeline.q]\nsource = a\nsink = m\ntables = s.t\n"
                      "[pipeline.r]\nsource = m\nsink = a\ntables = s.t\n"
                      "[pipeline.s]\nsource = m\nsink = a\ntables = s.v\nresolve = priority\n"
                      "snapshot = initial\nstart_position = f:1\nmap = s.u -> x.y\n",
                      "c.conf:5: server_id does not apply to a postgres connector — remove it (it is "
                      "for mysql)\n"
                      "c.conf:6: kafka.acks does not apply to a postgres connector — remove it (it is "
                      "for kafka)\n"
                      "c.conf:10: dsn does not apply to a mysql connector — remove it (it is for "
                      "postgres)\n"
                      "c.conf:13: sink = zz names no connector — define [connector.zz] or fix the name\n"
                      "c.conf:15: priority names qq, which is no connector — define [connector.qq] or "
                      "fix the name\n"
                      "c.conf:19: slot = 'Bad-Slot' is not valid — use NAME of a-z, 0-9, _ (max 63)\n"
                      "c.conf:23: tables lists s.t twice — keep one\n"
                      "c.conf:25: pipelines p and q both read slot s1 of a — a slot feeds one "
                      "pipeline: remove slot from [connector.a] (each pipeline then gets its own) or "
                      "give each pipeline its own connector\n"
                      "c.conf:33: pipelines r and s both read m with server_id 7 — the server drops one "
                      "of them: give each pipeline its own [connector.*] with its own server_id\n"
                      "c.conf:36: resolve = priority needs an order — add priority = CONNECTOR, ...\n"
                      "c.conf:38: start_position only applies with snapshot = never — add snapshot = "
                      "never or remove start_position\n"
                      "c.conf:39: map renames s.u, which is not in tables — add it to tables or fix "
                      "the name\n");
}

/* server_id: required to read a MySQL server's binlog and for a bidirectional sink, not for the
 * sink of one-way pipelines. */
static void test_server_id(void **state) {
        (void)state;
        Conf *c;
        char *errs;
        assert_int_equal(load(PG_PAIR "[connector.m]\ntype = mysql\ndatabase = shop\n"
                                      "[pipeline.p]\nsource = a\nsink = m\ntables = s.t\n"
                                      "[pipeline.q]\nsource = b\nsink = m\ntables = s.u\n",
                              &c, &errs),
                         0);
        assert_string_equal(errs, "");
        free(errs);
        assert_int_equal(c->connectors[2].server_id, 0);
        assert_false(c->pipelines[0].bidirectional);
        assert_int_equal(c->connectors[2].skip_binlog, 0); /* the default: a sink's writes go to the binlog */
        conf_free(c);
        /* binlog = off: a sink no pipeline reads from may leave the binlog... */
        assert_int_equal(load(PG_PAIR "[connector.m]\ntype = mysql\nbinlog = off\n"
                                      "[pipeline.p]\nsource = a\nsink = m\ntables = s.t\n",
                              &c, &errs),
                         0);
        assert_string_equal(errs, "");
        free(errs);
        assert_int_equal(c->connectors[2].skip_binlog, 1);
        conf_free(c);
        /* ...but not one a pipeline reads: it would miss what the sink applies */
        expect_errors(PG_PAIR "[connector.m]\ntype = mysql\nserver_id = 7\nbinlog = off\n"
                              "[pipeline.am]\nsource = a\nsink = m\ntables = s.t\n"
                              "[pipeline.mb]\nsource = m\nsink = b\ntables = s.u\n",
                      "c.conf:10: binlog = off: pipeline mb reads this server's binlog, which would then lack what "
                      "pipeline am applies to it — set binlog = on\n");
        expect_errors(PG_PAIR "[connector.m]\ntype = mysql\n"
                              "[pipeline.am]\nsource = a\nsink = m\ntables = s.t\n"
                              "[pipeline.ma]\nsource = m\nsink = a\ntables = s.t\n",
                      "c.conf:7: [connector.m] has no server_id — add server_id = 1..4294967295: pipeline ma "
                      "reads the server's binlog as a replica with that id\n");
        /* a sink whose writes a reverse pipeline reads back: that reverse reads the binlog */
        expect_errors("[connector.k]\ntype = kafka\nbrokers = k:9092\n[connector.m]\ntype = mysql\n"
                      "[pipeline.km]\nsource = k\nsink = m\ntables = s.t\n"
                      "[pipeline.mk]\nsource = m\nsink = k\ntables = s.t\n",
                      "c.conf:4: [connector.m] has no server_id — add server_id = 1..4294967295: pipeline mk "
                      "reads the server's binlog as a replica with that id\n");
}

/* ha = on: a pipeline into a sink that keeps no lease (Kafka) would stand by forever. */
static void test_ha_sinks(void **state) {
        (void)state;
        Conf *c;
        char *errs;
        assert_int_equal(
                load("[service]\nha = on\n" PG_PAIR "[pipeline.p]\nsource = a\nsink = b\ntables = s.t\n", &c, &errs),
                0);
        assert_string_equal(errs, "");
        free(errs);
        assert_true(c->ha);
        conf_free(c);
        expect_errors("[service]\nha = on\n" PG_PAIR "[connector.k]\ntype = kafka\nbrokers = k:9092\n"
                      "[pipeline.pk]\nsource = a\nsink = k\ntables = s.t\n",
                      "c.conf:12: ha = on: pipeline pk writes to a kafka sink, which keeps no lease, so no instance "
                      "would ever run it — run it from a conf with ha = off (one instance)\n");
}

/* The first copy's modes: a bidirectional pair never empties a side (replace refused, initial
 * merges); one-way pipelines keep the mode they name. */
static void test_snapshot_modes(void **state) {
        (void)state;
        expect_errors(PG_PAIR "[pipeline.ab]\nsource = a\nsink = b\ntables = s.t\nsnapshot = replace\n"
                              "[pipeline.ba]\nsource = b\nsink = a\ntables = s.t\n",
                      "c.conf:11: snapshot = replace would empty the tables of b, which pipeline ba copies into a "
                      "— a bidirectional pair merges: use snapshot = merge (or initial, which merges here)\n");
        Conf *c;
        char *errs;
        assert_int_equal(load(PG_PAIR "[pipeline.ab]\nsource = a\nsink = b\ntables = s.t\n"
                                      "[pipeline.ba]\nsource = b\nsink = a\ntables = s.t\nsnapshot = never\n"
                                      "[connector.c]\ntype = postgres\ndsn = host=c\n"
                                      "[pipeline.ac]\nsource = a\nsink = c\ntables = s.t\nsnapshot = replace\n"
                                      "[pipeline.bc]\nsource = b\nsink = c\ntables = s.u\nsnapshot = merge\n",
                              &c, &errs),
                         0);
        free(errs);
        assert_int_equal(c->pipelines[0].snapshot_mode, SNAPSHOT_INITIAL);
        assert_int_equal(conf_pipeline_copy_mode(&c->pipelines[0]), SNAPSHOT_MERGE);
        assert_int_equal(conf_pipeline_copy_mode(&c->pipelines[1]), SNAPSHOT_NEVER);
        assert_false(c->pipelines[1].snapshot);
        assert_int_equal(conf_pipeline_copy_mode(&c->pipelines[2]), SNAPSHOT_REPLACE);
        assert_true(c->pipelines[2].snapshot);
        assert_int_equal(conf_pipeline_copy_mode(&c->pipelines[3]), SNAPSHOT_MERGE);
        char msg[1024];
        conf_copy_refusal(&c->pipelines[2], "s.t", 2000, false, msg, sizeof(msg));
        assert_non_null(strstr(msg,
                               "sink table s.t already holds 2000 rows, and snapshot = initial copies only "
                               "into empty tables, so nothing was copied — in [pipeline.ac] set snapshot = merge"));
        conf_copy_refusal(&c->pipelines[2], "s.t", 1000000, true, msg, sizeof(msg));
        assert_non_null(strstr(msg, "holds at least 1000000 rows"));
        assert_null(conf_free(c));
}

static void test_secrets(void **state) {
        (void)state;
        Conf *c;
        char *errs;
        char conf[512];
        mkdir("sub", 0700);
        write_file("sub/p.pass", "filepass\n", 0600);
        snprintf(conf, sizeof(conf),
                 PG_PAIR "password_file = sub/p.pass\n"
                         "[pipeline.p]\nsource = a\nsink = b\ntables = ${TEST_CONF_SCHEMA}.t\n");
        setenv("TEST_CONF_SCHEMA", "shop", 1);
        unsetenv("CREDENTIALS_DIRECTORY");
        assert_int_equal(load(conf, &c, &errs), 0);
        assert_string_equal(errs, "");
        free(errs);
        assert_string_equal(c->connectors[1].password, "filepass");
        assert_string_equal(c->pipelines[0].tables[0], "shop.t");
        conf_free(c);

        /* a bare name is a systemd credential when $CREDENTIALS_DIRECTORY is set */
        write_file("sub/cred", "credpass", 0600);
        char cwd[512], creds[600];
        assert_non_null(getcwd(cwd, sizeof(cwd)));
        snprintf(creds, sizeof(creds), "%s/sub", cwd);
        setenv("CREDENTIALS_DIRECTORY", creds, 1);
        assert_int_equal(load(PG_PAIR "password_file = cred\npublication = pub$$x$y\n[pipeline.p]\nsource = a\n"
                                      "sink = b\ntables = s.t\n",
                              &c, &errs),
                         0);
        assert_string_equal(errs, "");
        free(errs);
        unsetenv("CREDENTIALS_DIRECTORY");
        assert_string_equal(c->connectors[1].password, "credpass");
        assert_string_equal(c->connectors[1].publication, "pub$x$y");
        conf_free(c);

        unsetenv("TEST_CONF_UNSET");
        write_file("sub/empty", "", 0600);
        expect_errors("[connector.a]\ntype = postgres\ndsn = host=${TEST_CONF_UNSET}\n"
                      "password_file = missing.pass\n[connector.b]\ntype = postgres\ndsn = x\n"
                      "password = ${TEST_CONF_SCHEMA}\npassword_file = sub/empty\n"
                      "[pipeline.p]\nsource = a\nsink = b\ntables = ${oops\n",
                      "c.conf:3: dsn: environment variable TEST_CONF_UNSET is not set — export it before "
                      "starting cdcsync (systemd: Environment= or EnvironmentFile=)\n"
                      "c.conf:4: password_file: cannot read ./missing.pass: No such file or directory — "
                      "create it, readable by the cdcsync user\n"
                      "c.conf:9: both password and password_file are set — keep one\n"
                      "c.conf:13: tables: malformed ${...} — write ${NAME} with letters, digits and '_', "
                      "or $${ for a literal ${\n");
        expect_errors(PG_PAIR "password_file = sub/empty\n[pipeline.p]\nsource=a\nsink=b\ntables=s.t\n",
                      "c.conf:7: password_file: ./sub/empty is empty — write the password into it\n");
}

#define PG_A "[connector.a]\ntype = postgres\ndsn = host=a\n[connector.b]\ntype = postgres\n"

static void test_mode_check(void **state) {
        (void)state;
        static const struct {
                const char *text, *key; /* the connector b lines (from line 6) */
                int line;
        } literal[] = {
                {"dsn = x\npassword = hunter2\n", "password", 7},
                {"dsn = host=x password=hunter2\n", "dsn", 6},
                {"dsn = host=x password = 'hun ter2'\n", "dsn", 6},
                {"dsn = postgresql://u:hunter2@h/db\n", "dsn", 6},
                {"dsn = postgres://u@h/db?sslmode=require&password=hunter2\n", "dsn", 6},
        };
        static const char *const fine[] = {
                "dsn = x\npassword = ${TEST_CONF_SCHEMA}\n",
                "dsn = host=x password=${TEST_CONF_SCHEMA}\n",
                "dsn = postgresql://u@h/db\n",
                "dsn = host=x passfile=/p\n",
        };
        char conf[512], *errs;
        Conf *c;
        setenv("TEST_CONF_SCHEMA", "shop", 1);
        for (size_t i = 0; i < sizeof(literal) / sizeof(literal[0]); i++) {
                snprintf(conf, sizeof(conf), PG_A "%s[pipeline.p]\nsource=a\nsink=b\ntables=s.t\n", literal[i].text);
                assert_int_equal(load_mode(conf, 0640, &c, &errs), -EINVAL);
                char expected[256];
                snprintf(expected, sizeof(expected),
                         "c.conf:%d: %s holds a password but c.conf is "
                         "readable by others — chmod 600 c.conf or use password_file\n",
                         literal[i].line, literal[i].key);
                assert_string_equal(errs, expected);
                assert_null(strstr(errs, "hunter2"));
                free(errs);
                assert_int_equal(load_mode(conf, 0600, &c, &errs), 0);
                free(errs);
                conf_free(c);
        }
        for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
                snprintf(conf, sizeof(conf), PG_A "%s[pipeline.p]\nsource=a\nsink=b\ntables=s.t\n", fine[i]);
                assert_int_equal(load_mode(conf, 0644, &c, &errs), 0);
                free(errs);
                conf_free(c);
        }
        /* a librdkafka password too */
        assert_int_equal(load_mode(PG_PAIR "[connector.k]\ntype=kafka\nbrokers=b\n"
                                           "kafka.sasl.password = hunter2\n[pipeline.p]\nsource=a\nsink=k\n"
                                           "tables=*\n",
                                   0604, &c, &errs),
                         -EINVAL);
        assert_string_equal(errs, "c.conf:10: kafka.sasl.password holds a password but c.conf is "
                                  "readable by others — chmod 600 c.conf or use password_file\n");
        free(errs);
}

static void test_map(void **state) {
        (void)state;
        Conf *c;
        char *errs, s[16], t[16];
        assert_int_equal(load(PG_PAIR "[connector.m]\ntype = mysql\nserver_id = 1\ndatabase = shopdb\n"
                                      "[pipeline.p]\nsource = a\nsink = b\ntables = *\n"
                                      "map = public.orders -> shop.orders_v2, sbtest.* -> public.*, "
                                      "public.* -> mirror.*\n"
                                      "[pipeline.q]\nsource = a\nsink = m\ntables = s.t, s.u\nmap = s.u -> x.y\n",
                              &c, &errs),
                         0);
        free(errs);
        const PipelineConf *p = &c->pipelines[0], *q = &c->pipelines[1];
        assert_int_equal(conf_map_table(p, "public", "orders", s, sizeof(s), t, sizeof(t)), 0);
        assert_string_equal(s, "shop");
        assert_string_equal(t, "orders_v2");
        assert_int_equal(conf_map_table(p, "sbtest", "sbtest1", s, sizeof(s), t, sizeof(t)), 0);
        assert_string_equal(s, "public");
        assert_string_equal(t, "sbtest1");
        assert_int_equal(conf_map_table(p, "public", "other", s, sizeof(s), t, sizeof(t)), 0);
        assert_string_equal(s, "mirror");
        assert_string_equal(t, "other");
        assert_int_equal(conf_map_table(p, "sb", "x", s, sizeof(s), t, sizeof(t)), 0);
        assert_string_equal(s, "sb");
        assert_string_equal(t, "x");
        /* a MySQL sink's database is the default target schema */
        assert_int_equal(conf_map_table(q, "s", "t", s, sizeof(s), t, sizeof(t)), 0);
        assert_string_equal(s, "shopdb");
        assert_string_equal(t, "t");
        assert_int_equal(conf_map_table(q, "s", "u", s, sizeof(s), t, sizeof(t)), 0);
        assert_string_equal(s, "x");
        assert_string_equal(t, "y");
        /* too small: -ENAMETOOLONG, outputs untouched */
        memcpy(s, "keep", 5);
        assert_int_equal(conf_map_table(p, "public", "orders", s, 4, t, sizeof(t)), -ENAMETOOLONG);
        assert_string_equal(s, "keep");
        assert_int_equal(conf_map_table(p, "public", "orders", s, sizeof(s), t, 9), -ENAMETOOLONG);
        assert_int_equal(conf_map_table(p, "public", "orders", s, 5, t, 10), 0);
        conf_free(c);
}

/* Hashes of the pipelines (orders, other) and connectors (a, b, c) of a conf. */
static void hashes(const char *text, uint64_t h[5]) {
        Conf *c;
        char *errs;
        int r = load(text, &c, &errs);
        if (r)
                print_error("%s", errs);
        assert_int_equal(r, 0);
        free(errs);
        h[0] = c->pipelines[0].hash;
        h[1] = c->pipelines[1].hash;
        for (int i = 0; i < 3; i++)
                h[2 + i] = c->connectors[i].hash;
        conf_free(c);
}

static void test_hash(void **state) {
        (void)state;
#define HASH_CONF(c_line, extra)                                                                                       \
        PG_PAIR "[connector.c]\ntype = postgres\n" c_line "\n[pipeline.orders]\nsource = a\nsink = b\n"                \
                "tables = s.t\n[pipeline.other]\nsource = b\nsink = c\ntables = *\n" extra
        static const char base[] = HASH_CONF("dsn = host=c", "");
        uint64_t h0[5], h1[5];
        hashes(base, h0);
        for (int i = 0; i < 5; i++)
                for (int j = i + 1; j < 5; j++)
                        assert_true(h0[i] != h0[j]);
        /* comments, blank lines, spacing and key order are no change */
        hashes("; hi\n[connector.a]\ndsn=host=a\ntype=postgres\n\n[connector.b]\ntype = postgres\n"
               "dsn = host=b ; b\n[connector.c]\ntype = postgres\ndsn = host=c\n"
               "[pipeline.orders]\ntables = s.t\nsink = b\nsource = a\n"
               "[pipeline.other]\nsource = b\nsink = c\ntables = *\n",
               h1);
        assert_memory_equal(h0, h1, sizeof(h0));
        /* connector a changes: a and the pipeline reading it change, nothing else */
        char text[1024];
        snprintf(text, sizeof(text), "%s", base);
        memcpy(strstr(text, "host=a"), "host=z", 6);
        hashes(text, h1);
        assert_true(h1[0] != h0[0] && h1[2] != h0[2]);
        assert_true(h1[1] == h0[1] && h1[3] == h0[3] && h1[4] == h0[4]);
        /* pipeline other changes: only it */
        hashes(HASH_CONF("dsn = host=c", "batch_max_rows = 10\n"), h1);
        assert_true(h1[1] != h0[1]);
        assert_true(h1[0] == h0[0] && h1[2] == h0[2] && h1[3] == h0[3] && h1[4] == h0[4]);
        /* a rotated password file (same conf text) is a change of its connector */
        write_file("c.pass", "one", 0600);
        hashes(HASH_CONF("dsn = host=c\npassword_file = c.pass", ""), h0);
        write_file("c.pass", "two", 0600);
        hashes(HASH_CONF("dsn = host=c\npassword_file = c.pass", ""), h1);
        assert_true(h1[4] != h0[4] && h1[1] != h0[1]);
        assert_true(h1[0] == h0[0] && h1[2] == h0[2] && h1[3] == h0[3]);
}

static char *read_all(const char *path) {
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        char *buf = NULL;
        size_t cap = 0;
        ssize_t n = getdelim(&buf, &cap, '\0', f);
        fclose(f);
        assert_true(n >= 0);
        return buf;
}

/* What conf_load wrote for path (not text: a device, a FIFO, a directory). */
static int load_path(const char *path, Conf **ret, char **errs) {
        size_t len = 0;
        FILE *err = open_memstream(errs, &len);
        *ret = NULL;
        int r = conf_load(path, err, ret);
        fclose(err);
        return r;
}

/* Inputs that crashed or misled the checker: a connector without a (valid) type used by two
 * pipelines reached a string comparison with NULL; /dev/zero, a FIFO and a huge line or file were
 * read without bound (or waited on forever); bytes that are not UTF-8 text passed as names and
 * were echoed raw. */
static void test_err_crash_inputs(void **state) {
        (void)state;
        Conf *c;
        char *errs;
        expect_errors("[connector.a]\ndsn = x\n[connector.b]\ntype = postgres\ndsn = y\n"
                      "[pipeline.p]\nsource = a\nsink = b\ntables = s.t\n"
                      "[pipeline.q]\nsource = a\nsink = b\ntables = s.u\n",
                      "c.conf:1: [connector.a] has no type — add type = postgres | mysql | kafka\n");
        expect_errors("[connector.a]\ntype = pg\ndsn = x\n[connector.b]\ntype = mysql\nserver_id = 1\n"
                      "[pipeline.p]\nsource = a\nsink = b\ntables = s.t\n"
                      "[pipeline.q]\nsource = a\nsink = b\ntables = s.u\n[pipeline.r]\nsource = b\nsink = a\n"
                      "tables = s.t\n",
                      "c.conf:2: type = 'pg' is not valid — use one of postgres | mysql | kafka\n");

        /* Lines and files are bounded before anything is allocated for them. */
        char *huge = malloc(6000);
        assert_non_null(huge);
        memset(huge, 'x', 5999);
        huge[5999] = '\0';
        memcpy(huge, "tables = ", 9);
        char *text = NULL;
        assert_true(asprintf(&text, PG_PAIR "[pipeline.p]\nsource = a\nsink = b\n%s\n", huge) > 0);
        expect_errors(text, "c.conf:7: [pipeline.p] has no tables — add tables = SCHEMA.TABLE, ... | *\n"
                            "c.conf:10: line is longer than 4093 characters — shorten it\n");
        free(text);
        free(huge);
        FILE *f = fopen("c.conf", "we");
        assert_non_null(f);
        for (int i = 0; i < 40000; i++) /* 1.2 MB of comments */
                fputs("; a comment line to make a big file\n", f);
        fclose(f);
        assert_int_equal(load_path("c.conf", &c, &errs), -EINVAL);
        assert_string_equal(errs, "c.conf: is 1440000 bytes, more than the 1048576 a conf may hold — check that -c "
                                  "names the conf file\n");
        assert_null(c);
        free(errs);
        assert_int_equal(load_path("/dev/zero", &c, &errs), -EINVAL);
        assert_string_equal(errs, "/dev/zero: is a character device, not a file — give the path of the conf file\n");
        free(errs);
        assert_int_equal(mkfifo("fifo", 0600), 0);
        assert_int_equal(load_path("fifo", &c, &errs), -EINVAL); /* no writer: it must not wait for one */
        assert_string_equal(errs, "fifo: is a pipe (FIFO), not a file — give the path of the conf file\n");
        free(errs);
        unlink("fifo");
        assert_int_equal(load_path(".", &c, &errs), -EINVAL);
        assert_string_equal(errs, ".: is a directory, not a file — give the path of the conf file\n");
        free(errs);

        /* Text only: names and values that are not UTF-8, control characters, and what ${ENV}
         * brings in; the messages quote nothing raw. */
        expect_errors(PG_PAIR "[pipeline.p\xe9]\nsource = a\nsink = b\ntables = s.t\n"
                              "[pipeline.q]\nsource = a\nsink = b\ntables = s.caf\xe9, s.u\n"
                              "map = s.u -> s.\x1b[31mred\n",
                      "c.conf:7: byte 12 is not UTF-8 text (0xe9) — save the file as UTF-8\n"
                      "c.conf:11: [pipeline.q] has no tables — add tables = SCHEMA.TABLE, ... | *\n"
                      "c.conf:14: byte 15 is not UTF-8 text (0xe9) — save the file as UTF-8\n"
                      "c.conf:15: byte 16 is a control character (0x1b) — remove it (a conf is plain text)\n");
        expect_errors(PG_PAIR "[pipeline.p\xc3\xa9]\nsource = a\nsink = b\ntables = s.t\n",
                      "c.conf:1: no [pipeline.NAME] section — define at least one pipeline (man cdcsync.conf "
                      "shows the keys and an example)\n"
                      "c.conf:7: bad name in [pipeline.p\xc3\xa9] — use 1 to 48 letters, digits, '_' or '-'\n");
        setenv("TEST_CONF_BAD", "s.t\xff", 1);
        expect_errors(PG_PAIR "[pipeline.p]\nsource = a\nsink = b\ntables = ${TEST_CONF_BAD}\n",
                      "c.conf:10: tables: byte 4 of its value (after ${...}) is not UTF-8 text — fix the variable\n");
        setenv("TEST_CONF_BAD", "s.t\n[pipeline.x]", 1);
        expect_errors(PG_PAIR "[pipeline.p]\nsource = a\nsink = b\ntables = ${TEST_CONF_BAD}\n",
                      "c.conf:10: tables: byte 4 of its value (after ${...}) is a control character — fix the "
                      "variable\n");
        unsetenv("TEST_CONF_BAD");
        /* Binary garbage: whatever is reported is text. */
        unsigned char garbage[4096];
        unsigned x = 12345;
        for (size_t i = 0; i < sizeof(garbage); i++) {
                x = x * 1103515245 + 12345;
                garbage[i] = (unsigned char)(x >> 16);
        }
        garbage[100] = '\n', garbage[200] = '[', garbage[300] = '\n', garbage[301] = '[';
        f = fopen("c.conf", "we");
        assert_non_null(f);
        fwrite(garbage, 1, sizeof(garbage), f);
        fclose(f);
        assert_int_equal(load_path("c.conf", &c, &errs), -EINVAL);
        assert_non_null(strstr(errs, "c.conf:1: "));
        for (const unsigned char *u = (const unsigned char *)errs; *u; u++)
                assert_true(*u == '\n' || (*u >= 0x20 && *u != 0x7f));
        free(errs);
}

#define TWO_SOURCES                                                                                                    \
        "[connector.s1]\ntype = postgres\ndsn = host=h1\n[connector.s2]\ntype = postgres\ndsn = host=h2\n"             \
        "[connector.d]\ntype = postgres\ndsn = host=h3\n"

/* What would destroy or loop is refused, naming the pipelines and what to do. */
static void test_err_destroy_or_loop(void **state) {
        (void)state;
        Conf *c;
        char *errs;
        /* Two pipelines writing one sink table: by name, after map, into one MySQL database. */
        expect_errors(TWO_SOURCES "[pipeline.p]\nsource = s1\nsink = d\ntables = s.t, s.v\n"
                                  "[pipeline.q]\nsource = s2\nsink = d\ntables = s.t\n"
                                  "[pipeline.r]\nsource = s2\nsink = d\ntables = x.u\nmap = x.u -> s.v\n",
                      "c.conf:14: pipelines p and q both write table s.t of sink d — each would overwrite and delete "
                      "the other's rows (a truncate, or a snapshot = replace copy, empties the table under the other): "
                      "give each target table one writer (fix tables or map), or make the two pipelines each other's "
                      "reverse for sync in both directions\n"
                      "c.conf:18: pipelines p and r both write table s.v of sink d — each would overwrite and delete "
                      "the other's rows (a truncate, or a snapshot = replace copy, empties the table under the other): "
                      "give each target table one writer (fix tables or map), or make the two pipelines each other's "
                      "reverse for sync in both directions\n");
        expect_errors(TWO_SOURCES "[connector.d2]\ntype = postgres\ndsn = host=h3\n"
                                  "[pipeline.p]\nsource = s1\nsink = d\ntables = s.t\n"
                                  "[pipeline.q]\nsource = s2\nsink = d2\ntables = s.t\n",
                      "c.conf:17: pipelines p and q both write table s.t of one database (sinks d and d2: the same "
                      "dsn) — each would overwrite and delete the other's rows (a truncate, or a snapshot = replace "
                      "copy, empties the table under the other): give each target table one writer (fix tables or "
                      "map), or make the two pipelines each other's reverse for sync in both directions\n");
        expect_errors(TWO_SOURCES "[connector.m]\ntype = mysql\nserver_id = 9\ndatabase = shop\n"
                                  "[pipeline.p]\nsource = s1\nsink = m\ntables = a.t, b.t\n",
                      "c.conf:14: pipeline p writes both a.t and b.t into table shop.t of sink m — their rows would "
                      "mix and overwrite each other: give each its own target table (fix map, or remove database "
                      "from the sink)\n");
        /* Each other's reverse (bidirectional), or one consumer group: fine. */
        assert_int_equal(load(TWO_SOURCES "[pipeline.p]\nsource = s1\nsink = d\ntables = s.t\n"
                                          "[pipeline.q]\nsource = d\nsink = s1\ntables = s.t\n"
                                          "[connector.k]\ntype = kafka\nbrokers = b:9092\ngroup = g\n"
                                          "[pipeline.k1]\nsource = k\nsink = s2\ntables = s.t\n"
                                          "[pipeline.k2]\nsource = k\nsink = s2\ntables = s.t\n",
                              &c, &errs),
                         0);
        assert_string_equal(errs, "");
        assert_int_equal(c->nwarnings, 0);
        free(errs);
        conf_free(c);
        /* tables = * cannot be compared without the servers: a warning, for check and the log. */
        assert_int_equal(load(TWO_SOURCES "[pipeline.p]\nsource = s1\nsink = d\ntables = *\n"
                                          "[pipeline.q]\nsource = s2\nsink = d\ntables = s.t\n",
                              &c, &errs),
                         0);
        free(errs);
        assert_int_equal(c->nwarnings, 1);
        assert_string_equal(c->warnings[0],
                            "c.conf:10: pipeline p copies every table of s1 (tables = *) into d, which pipeline q "
                            "writes too — where their tables meet, each would overwrite and delete the other's rows: "
                            "list p's tables, or run cdcsync check --connect to compare them");
        conf_free(c);

        /* Source and sink one database: it would replay its own writes forever. */
        expect_errors(TWO_SOURCES "[connector.d2]\ntype = postgres\ndsn = host=h1\n"
                                  "[pipeline.p]\nsource = s1\nsink = d2\ntables = s.t\nmap = s.t -> s.t2\n",
                      "c.conf:13: pipeline p: source s1 and sink d2 are one database (the same dsn) — it would read "
                      "its own writes back and apply them again, forever: point the sink at another database\n");
        const char *my = "[connector.m1]\ntype = mysql\nhost = db\nserver_id = 1\n"
                         "[connector.m2]\ntype = mysql\nhost = db\nserver_id = 2\ndatabase = %s\n"
                         "[pipeline.p]\nsource = m1\nsink = m2\ntables = shop.t\n";
        char text[1024];
        snprintf(text, sizeof(text), my, "shop");
        expect_errors(text, "c.conf:10: pipeline p: source m1 and sink m2 are one server (the same host and port) and "
                            "the pipeline writes into database shop, which it reads — it would read its own writes "
                            "back and apply them again, forever: write into another database (map) or another "
                            "server\n");
        snprintf(text, sizeof(text), my, "copy"); /* another database of the server: no loop */
        assert_int_equal(load(text, &c, &errs), 0);
        free(errs);
        conf_free(c);

        /* Names that collide: derived slot and publication names, explicit ones on one server. */
        expect_errors(TWO_SOURCES "[pipeline.a-b]\nsource = s1\nsink = d\ntables = s.t\n"
                                  "[pipeline.a_b]\nsource = s2\nsink = d\ntables = s.u\n"
                                  "[pipeline.A_B]\nsource = s2\nsink = d\ntables = s.v\n",
                      "c.conf:14: pipelines a-b and a_b both get cdcsync_a_b as their replication slot and "
                      "publication name (cdcsync_<pipeline>, lower-cased, every character but a-z and 0-9 made '_') "
                      "— rename one of them\n"
                      "c.conf:18: pipelines a-b and A_B both get cdcsync_a_b as their replication slot and "
                      "publication name (cdcsync_<pipeline>, lower-cased, every character but a-z and 0-9 made '_') "
                      "— rename one of them\n");
        expect_errors("[connector.s1]\ntype = postgres\ndsn = host=h1\nslot = x\n"
                      "[connector.s1b]\ntype = postgres\ndsn = host=h1\nslot = x\npublication = pub\n"
                      "[connector.s1c]\ntype = postgres\ndsn = host=h1\npublication = pub\n"
                      "[connector.d]\ntype = postgres\ndsn = host=h3\n"
                      "[pipeline.p]\nsource = s1\nsink = d\ntables = s.t\n"
                      "[pipeline.q]\nsource = s1b\nsink = d\ntables = s.u\n"
                      "[pipeline.r]\nsource = s1c\nsink = d\ntables = s.v\n",
                      "c.conf:21: pipelines p and q both use replication slot x on one server (sources s1 and s1b: "
                      "the same dsn) — a slot feeds one pipeline: set slot = to another name in [connector.s1b]\n"
                      "c.conf:25: pipelines q and r both use publication pub in one database (sources s1b and s1c: "
                      "the same dsn) — a publication holds one pipeline's tables: set publication = to another "
                      "name in [connector.s1c]\n");
        expect_errors("[connector.s]\ntype = postgres\ndsn = host=h1\npublication = pub\n"
                      "[connector.d]\ntype = postgres\ndsn = host=h3\n"
                      "[pipeline.p]\nsource = s\nsink = d\ntables = s.t\n"
                      "[pipeline.q]\nsource = s\nsink = d\ntables = s.u\n",
                      "c.conf:12: pipelines p and q both use publication pub of s — a publication holds one "
                      "pipeline's tables: remove publication from [connector.s] (each pipeline then gets its own) or "
                      "give each pipeline its own connector\n");

        /* on_bad_message belongs to a Kafka source; dead_letter_topic to dead_letter. */
        expect_errors(TWO_SOURCES "[pipeline.p]\nsource = s1\nsink = d\ntables = s.t\non_bad_message = skip\n"
                                  "dead_letter_topic = dl\n",
                      "c.conf:14: on_bad_message applies to a kafka source — remove it (a postgres source stops on "
                      "what it cannot read)\n"
                      "c.conf:15: dead_letter_topic is used only with on_bad_message = dead_letter — set that, or "
                      "remove dead_letter_topic\n");
        expect_errors("[connector.k]\ntype = kafka\nbrokers = b:9092\n" PG_PAIR
                      "[pipeline.p]\nsource = k\nsink = a\ntables = s.t\non_bad_message = dead_letter\n"
                      "dead_letter_topic = dead letters\n[pipeline.q]\nsource = k\nsink = b\ntables = s.t\n"
                      "on_bad_message = never\n",
                      "c.conf:15: dead_letter_topic = 'dead letters' is not valid — use 1 to 249 of a-z, A-Z, 0-9, "
                      "'.', '_', '-'\n"
                      "c.conf:20: on_bad_message = 'never' is not valid — use one of error | skip | dead_letter\n");
        assert_int_equal(load("[connector.k]\ntype = kafka\nbrokers = b:9092\n" PG_PAIR
                              "[pipeline.p]\nsource = k\nsink = a\ntables = s.t\non_bad_message = dead_letter\n"
                              "[pipeline.q]\nsource = k\nsink = b\ntables = s.t\non_bad_message = skip\n"
                              "[pipeline.r]\nsource = k\nsink = b\ntables = s.u\n",
                              &c, &errs),
                         0);
        free(errs);
        assert_int_equal(c->pipelines[0].on_bad_message, BAD_MESSAGE_DEAD_LETTER);
        assert_string_equal(c->pipelines[0].dead_letter_topic, "cdcsync.dead.p");
        assert_int_equal(c->pipelines[1].on_bad_message, BAD_MESSAGE_SKIP);
        assert_null(c->pipelines[1].dead_letter_topic);
        assert_int_equal(c->pipelines[2].on_bad_message, BAD_MESSAGE_ERROR);
        conf_free(c);
}

/* sync_sequences: PostgreSQL -> PostgreSQL only; its interval only with it. */
static void test_sync_sequences(void **state) {
        (void)state;
        Conf *c;
        char *errs;
        expect_errors(TWO_SOURCES "[connector.k]\ntype = kafka\nbrokers = b:9092\n"
                                  "[pipeline.p]\nsource = s1\nsink = k\ntables = s.t\nsync_sequences = yes\n"
                                  "[pipeline.q]\nsource = s2\nsink = d\ntables = s.t\nsync_sequences_interval_s = 5\n",
                      "c.conf:17: sync_sequences = yes carries sequence values from a PostgreSQL source into a "
                      "PostgreSQL sink, but pipeline p reads postgres and writes kafka — remove sync_sequences\n"
                      "c.conf:22: sync_sequences_interval_s is used only with sync_sequences = yes — set that, or "
                      "remove sync_sequences_interval_s\n");
        assert_int_equal(load(TWO_SOURCES "[pipeline.p]\nsource = s1\nsink = d\ntables = s.t\nsync_sequences = yes\n"
                                          "sync_sequences_interval_s = 5\n[pipeline.q]\nsource = s2\nsink = d\n"
                                          "tables = s.u\n",
                              &c, &errs),
                         0);
        free(errs);
        assert_true(c->pipelines[0].sync_sequences);
        assert_int_equal(c->pipelines[0].sync_sequences_interval_s, 5);
        assert_false(c->pipelines[1].sync_sequences);
        assert_int_equal(c->pipelines[1].sync_sequences_interval_s, 60);
        conf_free(c);
}

static void test_reference_file(void **state) {
        (void)state;
        const char *fixtures = getenv("FIXTURES");
        char path[1024];
        assert_non_null(fixtures);
        snprintf(path, sizeof(path), "%s/../../conf/cdcsync.conf", fixtures);
        char *printed = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&printed, &len);
        conf_print_reference(out);
        fclose(out);
        if (getenv("CDCSYNC_WRITE_REFERENCE")) /* regenerate: CDCSYNC_WRITE_REFERENCE=1 test_conf */
                write_file(path, printed, 0644);
        char *file = read_all(path);
        if (strcmp(file, printed) != 0)
                print_error("conf/cdcsync.conf differs from conf_print_reference(): rerun test_conf "
                            "with CDCSYNC_WRITE_REFERENCE=1 and commit the file\n");
        assert_string_equal(file, printed);
        free(file);
        /* every key of every table is documented */
        static const char *const keys[] = {";state_dir = /var/lib/cdcsync",    ";log_level = info",
                                           ";type = postgres | mysql | kafka", ";kafka.* = VALUE",
                                           ";topic = cdc.{connector}",         ";batch_max_rows = 5000",
                                           ";metrics_tls_key = PATH"};
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
                assert_non_null(strstr(printed, keys[i]));
        free(printed);
}

/* man/cdcsync.conf.5 is conf_print_man's output, documents every key of every table, and says the
 * same as the reference for each. */
static void test_man_file(void **state) {
        (void)state;
        const char *fixtures = getenv("FIXTURES");
        char path[1024];
        assert_non_null(fixtures);
        snprintf(path, sizeof(path), "%s/../../man/cdcsync.conf.5", fixtures);
        char *printed = NULL, *ref = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&printed, &len);
        conf_print_man(out);
        fclose(out);
        if (getenv("CDCSYNC_WRITE_REFERENCE")) /* regenerate: CDCSYNC_WRITE_REFERENCE=1 test_conf */
                write_file(path, printed, 0644);
        char *file = read_all(path);
        if (strcmp(file, printed) != 0)
                print_error("man/cdcsync.conf.5 differs from conf_print_man(): rerun test_conf "
                            "with CDCSYNC_WRITE_REFERENCE=1 and commit the file\n");
        assert_string_equal(file, printed);
        free(file);
        /* every key in the reference (";KEY = ...") has its tagged paragraph ("\fBKEY\fR = ") */
        out = open_memstream(&ref, &len);
        conf_print_reference(out);
        fclose(out);
        int nkeys = 0;
        for (const char *l = ref; (l = strstr(l, "\n;")) != NULL; l++) {
                size_t n = strcspn(l + 2, " =\n");
                if (l[2] == ' ' || l[2] == '\n' || l[2 + n] != ' ' || strncmp(l + 2 + n, " = ", 3) != 0)
                        continue; /* prose, not a key */
                char tag[80];
                snprintf(tag, sizeof(tag), "\n.TP\n\\fB%.*s\\fR = ", (int)n, l + 2);
                if (!strstr(printed, tag))
                        print_error("the man page lacks %s\n", tag + 5);
                assert_non_null(strstr(printed, tag));
                nkeys++;
        }
        assert_true(nkeys >= 35);
        free(ref);
        free(printed);
}

static void test_examples(void **state) {
        (void)state;
        static const char *const names[] = {"pg-to-pg.conf", "pg-to-mysql.conf", "bidirectional-pg.conf"};
        const char *fixtures = getenv("FIXTURES");
        assert_non_null(fixtures);
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                char path[1024], *errs = NULL;
                size_t len = 0;
                snprintf(path, sizeof(path), "%s/../../conf/examples/%s", fixtures, names[i]);
                /* checked-in files are 0644, and the examples hold no literal password */
                FILE *err = open_memstream(&errs, &len);
                Conf *c = NULL;
                char creds[1024];
                snprintf(creds, sizeof(creds), "%s/conf", fixtures);
                setenv("CREDENTIALS_DIRECTORY", creds, 1);
                int r = conf_load(path, err, &c);
                unsetenv("CREDENTIALS_DIRECTORY");
                fclose(err);
                if (r)
                        print_error("%s", errs);
                assert_int_equal(r, 0);
                assert_true(c->npipelines >= 1);
                free(errs);
                conf_free(c);
        }
}

static int group_setup(void **state) {
        (void)state;
        return mkdtemp(tmpdir) && chdir(tmpdir) == 0 ? 0 : -1;
}

static int group_teardown(void **state) {
        (void)state;
        static const char *const files[] = {"c.conf",   "metrics.pass", "pg.pass", "sub/p.pass",
                                            "sub/cred", "sub/empty",    "c.pass"};
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
                unlink(files[i]);
        rmdir("sub");
        return chdir("/") == 0 && rmdir(tmpdir) == 0 ? 0 : -1;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_full),
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_err_sections_and_keys),
                cmocka_unit_test(test_err_required_and_values),
                cmocka_unit_test(test_err_references),
                cmocka_unit_test(test_err_source_without_type),
                cmocka_unit_test(test_server_id),
                cmocka_unit_test(test_ha_sinks),
                cmocka_unit_test(test_snapshot_modes),
                cmocka_unit_test(test_err_crash_inputs),
                cmocka_unit_test(test_err_destroy_or_loop),
                cmocka_unit_test(test_secrets),
                cmocka_unit_test(test_mode_check),
                cmocka_unit_test(test_map),
                cmocka_unit_test(test_hash),
                cmocka_unit_test(test_sizes),
                cmocka_unit_test(test_sync_sequences),
                cmocka_unit_test(test_reference_file),
                cmocka_unit_test(test_man_file),
                cmocka_unit_test(test_examples),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
