/* A disk whose syncs are slow, for bench/pipelines.sh: preloaded into cdcsync (LD_PRELOAD), it
 * adds SLOW_SYNC_US microseconds to every fsync/fdatasync and to every write through a descriptor
 * opened with O_DSYNC or O_SYNC (LMDB writes its meta page that way), so the state store behaves
 * as on a disk where a synchronous 4 KiB write takes that long (a cloud volume: 1-2 ms) while the
 * rest of the machine stays as it is. The calling thread sleeps, as it would waiting for a device.
 *
 *   cc -shared -fPIC -O2 -o slow_sync.so bench/slow_sync.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long delay_us(void) {
        static long us = -1;
        if (us < 0) {
                const char *e = getenv("SLOW_SYNC_US");
                us = e ? strtol(e, NULL, 10) : 2000;
                if (us < 0)
                        us = 0;
        }
        return us;
}

static void wait_device(void) {
        long us = delay_us();
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
        while (nanosleep(&ts, &ts) < 0)
                ;
}

static int sync_fd(int fd) {
        int fl = fcntl(fd, F_GETFL);
        return fl >= 0 && (fl & (O_DSYNC | O_SYNC));
}

int fsync(int fd) {
        static int (*real)(int);
        if (!real)
                real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
        int r = real(fd);
        wait_device();
        return r;
}

int fdatasync(int fd) {
        static int (*real)(int);
        if (!real)
                real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
        int r = real(fd);
        wait_device();
        return r;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
        static ssize_t (*real)(int, const void *, size_t, off_t);
        if (!real)
                real = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
        ssize_t r = real(fd, buf, n, off);
        if (sync_fd(fd))
                wait_device();
        return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
        return pwrite(fd, buf, n, off);
}
