/* The conf's documentation, generated from the key tables: the reference conf
 * (conf_print_reference, conf/cdcsync.conf) and the manual page cdcsync.conf(5) (conf_print_man). */
#include <stdio.h>
#include <string.h>

#include "cdcsync/conf.h"
#include "conf_keys.h"

/* ---- the reference ------------------------------------------------------------------------- */

/* Two lines a key: ";KEY = DEFAULT" (or its accepted values), then its help and attributes. */
static void print_keys(FILE *out, const ConfKey *table, size_t n, bool service) {
        for (size_t i = 0; i < n; i++) {
                const ConfKey *k = &table[i];
                char attrs[256] = "", for_types[64], name[32];
                size_t len = 0;
#define ATTR(...) len += (size_t)snprintf(attrs + len, sizeof(attrs) - len, "; " __VA_ARGS__)
                if (k->def)
                        ATTR("values: %s", k->values);
                if (k->required == T_ALL)
                        ATTR("required");
                else if (k->required)
                        ATTR("required for %s", conf_type_name(__builtin_ctz(k->required), name, sizeof(name)));
                if (k->types != T_ALL)
                        ATTR("%s only", conf_types_text(k->types, for_types, sizeof(for_types)));
                if (service && !k->reloadable)
                        ATTR("needs a restart");
#undef ATTR
                fprintf(out, ";%s = %s\n;       %s%s\n", k->name, k->def ? k->def : k->values, k->help, attrs);
        }
}

void conf_print_reference(FILE *out) {
        fputs("; cdcsync.conf — every key, its default and what it does.\n"
              ";\n"
              "; Generated from the key tables in engine/conf_keys.c (conf_print_reference); a unit test\n"
              "; keeps this file equal to them. Copy what you need into /etc/cdcsync/cdcsync.conf;\n"
              "; conf/examples/ holds complete confs for the common pairs.\n"
              ";\n"
              "; Syntax: KEY = VALUE under [SECTION]; ';' or '#' starts a comment line, and ' ;' an\n"
              "; inline comment. Values are taken as written (no quoting). ${ENV_VAR} is replaced by\n"
              "; the environment variable in every value ($$ is a literal $). Errors are reported as\n"
              "; FILE:LINE: what is wrong — what to do, all at once; `cdcsync check` runs them.\n"
              ";\n"
              "; Secrets: password_file = PATH (relative to this file's directory; one trailing\n"
              "; newline is stripped), or a bare NAME read from $CREDENTIALS_DIRECTORY (systemd\n"
              "; LoadCredential=), or password = ${ENV_VAR}. A password written here literally\n"
              "; (password = ..., a DSN's password=, kafka.*password*) is refused unless this file is\n"
              "; private (chmod 600).\n"
              ";\n"
              "; Reload (SIGHUP): log_level applies at once; a pipeline restarts when its section or\n"
              "; one of its connectors' sections changed, the others keep streaming.\n"
              "; Each key shows its default, or the values it takes when it has none (then it is\n"
              "; unset unless required). The file is UTF-8 text of at most 1 MiB, lines of at most\n"
              "; 4093 characters, without control characters.\n\n",
              out);
        fputs("[service]\n", out);
        print_keys(out, conf_service_keys, conf_nservice_keys, true);
        fputs("\n; [connector.NAME] — one system; NAME (letters, digits, '_', '-') is its node id in\n"
              "; version vectors. Keys marked postgres, mysql or kafka belong to that type only.\n"
              ";[connector.NAME]\n",
              out);
        print_keys(out, conf_connector_keys, conf_nconnector_keys, false);
        fputs("\n; [pipeline.NAME] — one source/sink pair. Two pipelines in opposite directions\n"
              "; between the same connectors are bidirectional sync. A pipeline's source slot\n"
              "; (PostgreSQL) or server_id (MySQL) must not be shared with another pipeline, nor\n"
              "; its target tables (unless the two are each other's reverse); its source and sink\n"
              "; must be different databases. `cdcsync check` refuses what would destroy or loop.\n"
              ";[pipeline.NAME]\n",
              out);
        print_keys(out, conf_pipeline_keys, conf_npipeline_keys, false);
}

/* ---- the manual page ----------------------------------------------------------------------- */

/* s as roff text: a backslash is \e, a line never starts with a control character, and lines
 * break between words before 80 bytes (roff fills them again). */
static void man_text(FILE *out, const char *s) {
        size_t col = 0;
        while (*s) {
                size_t word = strcspn(s, " ");
                if (col > 0 && col + 1 + word > 78) {
                        fputc('\n', out);
                        col = 0;
                } else if (col > 0) {
                        fputc(' ', out);
                        col++;
                }
                if (col == 0 && (*s == '.' || *s == '\''))
                        col += (size_t)fprintf(out, "\\&");
                for (size_t i = 0; i < word; i++)
                        col += (size_t)fprintf(out, "%s", s[i] == '\\' ? "\\e" : (char[]){s[i], '\0'});
                s += word;
                s += strspn(s, " ");
        }
}

/* One tagged paragraph a key: "KEY = VALUES", then its help, default and attributes. */
static void man_keys(FILE *out, const ConfKey *table, size_t n, bool service) {
        for (size_t i = 0; i < n; i++) {
                const ConfKey *k = &table[i];
                char for_types[64];
                fputs(".TP\n\\fB", out);
                man_text(out, k->name);
                fputs("\\fR = \\fI", out);
                man_text(out, k->values);
                fputs("\\fR\n", out);
                man_text(out, k->help);
                fputs(".\n", out);
                if (k->def) {
                        fputs("Default: \\fB", out);
                        man_text(out, k->def);
                        fputs("\\fR.\n", out);
                }
                if (k->required == T_ALL)
                        fputs("Required.\n", out);
                if (k->types != T_ALL)
                        fprintf(out, "Only for %s connectors%s.\n",
                                conf_types_text(k->types, for_types, sizeof(for_types)),
                                k->required ? ", where it is required" : "");
                if (service && !k->reloadable)
                        fputs("A change needs a restart.\n", out);
        }
}

void conf_print_man(FILE *out) {
        fprintf(out,
                ".\\\" cdcsync.conf(5). Generated from the key tables in engine/conf_keys.c (conf_print_man);\n"
                ".\\\" a unit test keeps this file equal to them: do not edit it, edit the tables.\n"
                ".TH CDCSYNC.CONF 5 2026-12-04 \"cdcsync %s\" \"File Formats Manual\"\n",
                CDCSYNC_VERSION);
        fputs(".SH NAME\n"
              "cdcsync.conf \\- configuration file of the cdcsync change-data-capture service\n"
              ".SH SYNOPSIS\n"
              ".B /etc/cdcsync/cdcsync.conf\n"
              ".SH DESCRIPTION\n"
              "The conf names the systems cdcsync talks to (connectors) and the pipelines\n"
              "between them: each pipeline reads the changes of a source connector's tables\n"
              "and applies them to a sink connector.\n"
              ".BR cdcsync (1)\n"
              "reads it at start, on\n"
              ".B SIGHUP\n"
              "and for\n"
              ".BR \"cdcsync check\" .\n"
              ".PP\n"
              "The file is INI text:\n"
              ".I KEY\n"
              "=\n"
              ".I VALUE\n"
              "lines under\n"
              ".B [service]\n"
              "(at most one),\n"
              ".BI [connector. NAME ]\n"
              "and\n"
              ".BI [pipeline. NAME ]\n"
              "headers; a NAME is 1 to 48 letters, digits, '_' or '-'.\n"
              "A line starting with ';' or '#' is a comment, and so is the rest of a line\n"
              "after a blank and ';'.\n"
              "Values are taken as written, without quoting.\n"
              "The file is a regular file of at most 1 MiB of UTF-8 text without control\n"
              "characters, in lines of at most 4093 characters.\n"
              ".BI ${ ENV_VAR }\n"
              "in any value is replaced by that environment variable ($$ is a literal $);\n"
              "an unset variable is an error.\n"
              ".PP\n"
              "Errors are reported all at once, each as\n"
              ".IR FILE : LINE :\n"
              "what is wrong \\(em what to do.\n"
              ".B cdcsync check\n"
              "runs every check without starting anything, and an unknown key is named with\n"
              "the key it most resembles.\n"
              ".PP\n"
              "The installed\n"
              ".I /etc/cdcsync/cdcsync.conf\n"
              "is the reference with every key commented out: the service refuses it until\n"
              "a pipeline is defined.\n"
              "Complete examples are installed in\n"
              ".IR /usr/share/doc/cdcsync/examples/ .\n"
              ".SS Secrets\n"
              "A password never has to sit in the conf:\n"
              ".B password_file\n"
              "=\n"
              ".I PATH\n"
              "(relative to the conf's directory; one trailing newline is stripped), a bare\n"
              ".B password_file\n"
              "=\n"
              ".I NAME\n"
              "read from\n"
              ".B $CREDENTIALS_DIRECTORY\n"
              "(systemd\n"
              ".BR LoadCredential= ),\n"
              "or\n"
              ".B password\n"
              "=\n"
              ".BR ${ENV_VAR} .\n"
              "A password written literally (password = ..., a dsn's password=, a kafka.* key\n"
              "holding password or secret) is refused unless the conf file is private\n"
              "(mode 600).\n"
              "Passwords never reach a log line or an error message.\n"
              ".SS Reload\n"
              "On\n"
              ".B SIGHUP\n"
              "(systemctl reload cdcsync) the file is read again; a conf with errors is\n"
              "rejected and the running one stays.\n"
              ".B log_level\n"
              "applies at once; a pipeline restarts from its checkpoint when its section or\n"
              "one of its connectors' sections changed, the others keep streaming; the\n"
              "service keys marked so need a restart.\n"
              ".SH KEYS\n"
              "Each key is shown with the values it takes. A key with a default takes it\n"
              "when unset; a key without one is unset unless required.\n"
              ".SS [service]\n"
              "How the service runs. The section may be left out.\n",
              out);
        man_keys(out, conf_service_keys, conf_nservice_keys, true);
        fputs(".SS [connector.NAME]\n"
              "One system: a PostgreSQL database, a MariaDB/MySQL server or a Kafka cluster.\n"
              "NAME is the connector's node id in version vectors.\n"
              "A connector may be the source of one pipeline and the sink of another.\n",
              out);
        man_keys(out, conf_connector_keys, conf_nconnector_keys, false);
        fputs(".SS [pipeline.NAME]\n"
              "One source/sink pair. Two pipelines in opposite directions between the same\n"
              "connectors are bidirectional sync. A pipeline's source slot (PostgreSQL) or\n"
              "server_id (MySQL) must not be shared with another pipeline, nor its target\n"
              "tables (unless the two are each other's reverse); its source and sink must be\n"
              "different databases; two pipelines' names must not give one slot or\n"
              "publication name (cdcsync_<pipeline>, lower-cased, other characters made '_').\n"
              ".B cdcsync check\n"
              "refuses what would destroy or loop, and\n"
              ".B check \\-\\-connect\n"
              "asks the servers what the conf cannot tell.\n",
              out);
        man_keys(out, conf_pipeline_keys, conf_npipeline_keys, false);
        fputs(".SH FILES\n"
              ".TP\n"
              ".I /etc/cdcsync/cdcsync.conf\n"
              "The conf read by default and by the systemd unit; root:cdcsync, mode 0640.\n"
              ".TP\n"
              ".I /usr/share/doc/cdcsync/cdcsync.conf.example\n"
              "Every key with its default and help, as in this page.\n"
              ".TP\n"
              ".I /usr/share/doc/cdcsync/examples/\n"
              "Complete confs for the common pairs.\n"
              ".SH EXAMPLES\n"
              "One PostgreSQL database streamed into another:\n"
              ".PP\n"
              ".in +4n\n"
              ".EX\n"
              "[service]\n"
              "state_dir      = /var/lib/cdcsync\n"
              "metrics_listen = 127.0.0.1:9780\n"
              "\n"
              "[connector.shop]\n"
              "type = postgres\n"
              "dsn  = host=db1 dbname=shop user=cdcsync sslmode=verify\\-full\n"
              "password_file = /etc/cdcsync/shop.pass\n"
              "\n"
              "[connector.replica]\n"
              "type = postgres\n"
              "dsn  = host=db2 dbname=shop user=cdcsync sslmode=verify\\-full\n"
              "password_file = replica.pass\n"
              "create_tables = yes\n"
              "\n"
              "[pipeline.orders]\n"
              "source = shop\n"
              "sink   = replica\n"
              "tables = public.orders, public.customers\n"
              ".EE\n"
              ".in\n"
              ".SH SEE ALSO\n"
              ".BR cdcsync (1),\n"
              ".BR systemd.exec (5),\n"
              ".BR systemd-sysusers (8),\n"
              ".BR systemd-tmpfiles (8)\n",
              out);
}
