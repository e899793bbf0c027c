/* Fuzz target: a conf file, loaded as `cdcsync check` and `run` load theirs (from a memfd, so no
 * file is written). Whatever the bytes, conf_load refuses them with its errors or gives a Conf
 * that frees cleanly. Seeds: conf/cdcsync.conf and conf/examples/. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cdcsync/conf.h"
#include "fuzz_common.h"

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (!devnull)
                devnull = fopen("/dev/null", "we");
        FUZZ_CHECK(devnull);
        int fd = memfd_create("cdcsync.conf", MFD_CLOEXEC);
        FUZZ_CHECK(fd >= 0);
        for (size_t off = 0; off < size;) {
                ssize_t n = write(fd, data + off, size - off);
                FUZZ_CHECK(n > 0);
                off += (size_t)n;
        }
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        Conf *c = NULL;
        int r = conf_load(path, devnull, &c);
        FUZZ_CHECK(r == 0 ? c != NULL : c == NULL);
        conf_free(c);
        close(fd);
        return 0;
}
