/* A throwaway Kafka cluster for the integration tests: librdkafka's in-process mock brokers,
 * served on loopback until SIGTERM.
 *
 * Usage: kafka_mock [-b BROKERS] [-t TOPIC:PARTITIONS]... [-p PORTFILE]
 * Prints the bootstrap servers ("127.0.0.1:p1,127.0.0.1:p2,...") as one line on stdout (and into
 * PORTFILE when given, written whole then renamed, so a test can wait for it). Topics not created
 * with -t are auto-created by the mock on first use with its default partition count (4). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
        (void)sig;
        stop_requested = 1;
}

static int parse_int(const char *s, long min, long max, long *ret) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int write_file(const char *path, const char *text) {
        char tmp[4096];
        if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
                return -ENAMETOOLONG;
        FILE *f = fopen(tmp, "we");
        if (!f)
                return -errno;
        fprintf(f, "%s\n", text);
        if (fclose(f) != 0)
                return -errno;
        return rename(tmp, path) < 0 ? -errno : 0;
}

int main(int argc, char **argv) {
        long brokers = 3;
        const char *portfile = NULL;
        char errstr[512];
        int opt, rc = 1;

        /* First pass: options that are needed before the cluster exists. */
        while ((opt = getopt(argc, argv, "b:t:p:")) != -1) {
                switch (opt) {
                case 'b':
                        if (parse_int(optarg, 1, 16, &brokers) < 0) {
                                fprintf(stderr, "kafka_mock: -b wants 1..16 brokers, not '%s'\n", optarg);
                                return 2;
                        }
                        break;
                case 't': break;
                case 'p': portfile = optarg; break;
                default:
                        fprintf(stderr, "usage: kafka_mock [-b BROKERS] [-t TOPIC:PARTITIONS]... [-p PORTFILE]\n");
                        return 2;
                }
        }

        /* The mock cluster lives inside a client handle; a producer that is never used to produce
         * is the lightest one. */
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "kafka_mock: %s\n", errstr);
                rd_kafka_conf_destroy(conf);
                return 1;
        }
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "kafka_mock: cannot create the client handle: %s\n", errstr);
                rd_kafka_conf_destroy(conf);
                return 1;
        }
        rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, (int)brokers);
        if (!mc) {
                fprintf(stderr, "kafka_mock: cannot create the mock cluster\n");
                goto out;
        }

        optind = 1;
        while ((opt = getopt(argc, argv, "b:t:p:")) != -1) {
                if (opt != 't')
                        continue;
                char *colon = strrchr(optarg, ':');
                long parts;
                if (!colon || colon == optarg || parse_int(colon + 1, 1, 1000, &parts) < 0) {
                        fprintf(stderr, "kafka_mock: -t wants TOPIC:PARTITIONS, not '%s'\n", optarg);
                        rc = 2;
                        goto out;
                }
                *colon = '\0';
                rd_kafka_resp_err_t e =
                        rd_kafka_mock_topic_create(mc, optarg, (int)parts, (int)(brokers < 3 ? brokers : 3));
                if (e) {
                        fprintf(stderr, "kafka_mock: cannot create topic '%s': %s\n", optarg, rd_kafka_err2str(e));
                        goto out;
                }
        }

        struct sigaction sa = {.sa_handler = on_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);

        const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
        printf("%s\n", bootstraps);
        fflush(stdout);
        if (portfile) {
                int r = write_file(portfile, bootstraps);
                if (r < 0) {
                        fprintf(stderr, "kafka_mock: cannot write %s: %s\n", portfile, strerror(-r));
                        goto out;
                }
        }
        while (!stop_requested)
                pause();
        rc = 0;
out:
        if (mc)
                rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(rk);
        return rc;
}
