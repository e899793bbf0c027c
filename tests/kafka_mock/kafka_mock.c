/* A throwaway Kafka cluster for the integration tests: librdkafka's in-process mock brokers,
 * served on loopback until SIGTERM.
 *
 * Usage: kafka_mock [-b BROKERS] [-t TOPIC:PARTITIONS]... [-p PORTFILE] [-c FIFO]
 * With -c, commands are read from the named pipe FIFO (created if absent), one a line:
 * "down ID" / "up ID" take broker ID (1..BROKERS) off the network or back;
 * "freeze ID" / "thaw ID" make it hold every answer back (connections stay open: a frozen path)
 * or answer again;
 * "block TOPIC" makes the cluster answer metadata requests for TOPIC with UNKNOWN_TOPIC_OR_PART,
 * as a broker with auto.create.topics.enable=false does for a topic that does not exist (the mock
 * itself has no such switch: it auto-creates every topic asked for);
 * "create TOPIC" ends that: the topic exists (with the default partition count), as if an
 * operator had created it;
 * "committed GROUP TOPIC:PARTITIONS" prints the offsets consumer group GROUP has committed for
 * partitions 0..PARTITIONS-1 of TOPIC, as a line "offsets GROUP TOPIC O0 O1 ..." (-1: none), read
 * with OffsetFetch by a client that does not join the group.
 * Each command is answered by a line "ok ..." or "error ..." on stdout. A test drives outages
 * with them.
 * Prints the bootstrap servers ("127.0.0.1:p1,127.0.0.1:p2,...") as one line on stdout (and into
 * PORTFILE when given, written whole then renamed, so a test can wait for it). Topics not created
 * with -t are auto-created by the mock on first use with its default partition count (4). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* Kafka's rule for topic names: 1..249 of [A-Za-z0-9._-]. */
static bool topic_valid(const char *t) {
        size_t n = strlen(t);
        if (n == 0 || n > 249)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= '0' && t[i] <= '9') ||
                      t[i] == '.' || t[i] == '_' || t[i] == '-'))
                        return false;
        return true;
}

/* "committed GROUP TOPIC:PARTITIONS": the group's committed offsets, one line. */
static void print_committed(rd_kafka_mock_cluster_t *mc, char *arg) {
        char *topic = strchr(arg, ' '), *colon = topic ? strrchr(topic, ':') : NULL, errstr[512];
        long parts;
        if (!topic || !colon || parse_int(colon + 1, 1, 1000, &parts) < 0) {
                printf("error: want 'committed GROUP TOPIC:PARTITIONS'\n");
                return;
        }
        *topic++ = '\0';
        *colon = '\0';
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_t *rk = NULL;
        if (rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), errstr,
                              sizeof(errstr)) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "group.id", arg, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
            !(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr)))) {
                rd_kafka_conf_destroy(conf);
                printf("error: committed: %s\n", errstr);
                return;
        }
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)parts);
        for (long i = 0; i < parts; i++)
                rd_kafka_topic_partition_list_add(l, topic, (int32_t)i);
        rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, 5000);
        if (e) {
                printf("error: committed %s %s: %s\n", arg, topic, rd_kafka_err2str(e));
        } else {
                printf("offsets %s %s", arg, topic);
                for (int i = 0; i < l->cnt; i++)
                        printf(" %lld", (long long)(l->elems[i].offset < 0 ? -1 : l->elems[i].offset));
                printf("\nok committed %s %s:%ld\n", arg, topic, parts);
        }
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_destroy(rk);
}

/* One control command; the line is NUL-terminated, without its newline. */
static void run_command(rd_kafka_mock_cluster_t *mc, long brokers, char *line) {
        char *arg = strchr(line, ' ');
        long id;
        if (arg)
                *arg++ = '\0';
        if (strcmp(line, "committed") == 0 && arg) {
                print_committed(mc, arg);
        } else if (strcmp(line, "block") == 0 || strcmp(line, "create") == 0) {
                if (!arg || !topic_valid(arg)) {
                        printf("error: want '%s TOPIC' with a valid topic name\n", line);
                } else {
                        /* The topic error is what metadata requests for it answer; clearing it
                         * leaves the (auto-created) topic visible. */
                        rd_kafka_mock_topic_set_error(mc, arg,
                                                      line[0] == 'b' ? RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                                                                     : RD_KAFKA_RESP_ERR_NO_ERROR);
                        printf("ok %s %s\n", line, arg);
                }
        } else if (!arg || parse_int(arg, 1, brokers, &id) < 0) {
                printf("error: want 'down ID', 'up ID', 'freeze ID' or 'thaw ID' with ID 1..%ld\n", brokers);
        } else if (strcmp(line, "freeze") == 0 || strcmp(line, "thaw") == 0) {
                /* A frozen broker keeps its connections and answers nothing (no FIN, no RST): its
                 * responses are held back for an hour. */
                rd_kafka_resp_err_t e = rd_kafka_mock_broker_set_rtt(mc, (int32_t)id, line[0] == 'f' ? 3600 * 1000 : 0);
                if (e)
                        printf("error: %s %ld: %s\n", line, id, rd_kafka_err2str(e));
                else
                        printf("ok %s %ld\n", line, id);
        } else if (strcmp(line, "down") == 0 || strcmp(line, "up") == 0) {
                bool down = line[0] == 'd';
                rd_kafka_resp_err_t e = down ? rd_kafka_mock_broker_set_down(mc, (int32_t)id)
                                             : rd_kafka_mock_broker_set_up(mc, (int32_t)id);
                if (e)
                        printf("error: %s %ld: %s\n", line, id, rd_kafka_err2str(e));
                else
                        printf("ok %s %ld\n", line, id);
        } else {
                printf("error: unknown command '%s'\n", line);
        }
        fflush(stdout);
}

/* Serves the control pipe until SIGTERM. Opened read-write so that writers coming and going never
 * give end-of-file; lines longer than the buffer are dropped. */
static int serve_fifo(rd_kafka_mock_cluster_t *mc, long brokers, const char *path) {
        if (mkfifo(path, 0600) < 0 && errno != EEXIST)
                return -errno;
        int fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        char buf[256];
        size_t len = 0;
        while (!stop_requested) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                if (poll(&pfd, 1, 200) <= 0)
                        continue;
                ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
                if (n <= 0)
                        continue;
                len += (size_t)n;
                char *nl;
                while ((nl = memchr(buf, '\n', len))) {
                        *nl = '\0';
                        run_command(mc, brokers, buf);
                        len -= (size_t)(nl + 1 - buf);
                        memmove(buf, nl + 1, len);
                }
                if (len == sizeof(buf) - 1)
                        len = 0;
        }
        close(fd);
        return 0;
}

int main(int argc, char **argv) {
        long brokers = 3;
        const char *portfile = NULL, *fifo = NULL;
        char errstr[512];
        int opt, rc = 1;

        /* First pass: options that are needed before the cluster exists. */
        while ((opt = getopt(argc, argv, "b:t:p:c:")) != -1) {
                switch (opt) {
                case 'b':
                        if (parse_int(optarg, 1, 16, &brokers) < 0) {
                                fprintf(stderr, "kafka_mock: -b wants 1..16 brokers, not '%s'\n", optarg);
                                return 2;
                        }
                        break;
                case 't': break;
                case 'p': portfile = optarg; break;
                case 'c': fifo = optarg; break;
                default:
                        fprintf(stderr,
                                "usage: kafka_mock [-b BROKERS] [-t TOPIC:PARTITIONS]... [-p PORTFILE] [-c FIFO]\n");
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
        while ((opt = getopt(argc, argv, "b:t:p:c:")) != -1) {
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
        if (fifo) {
                int r = serve_fifo(mc, brokers, fifo);
                if (r < 0) {
                        fprintf(stderr, "kafka_mock: control pipe %s: %s\n", fifo, strerror(-r));
                        goto out;
                }
        } else {
                while (!stop_requested)
                        pause();
        }
        rc = 0;
out:
        if (mc)
                rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(rk);
        return rc;
}
