/* Runs a fuzz target's LLVMFuzzerTestOneInput once per file, without libFuzzer: the normal (GCC)
 * and sanitizer builds replay the crafted and crash inputs kept in tests/fixtures/crafted/ as
 * unit tests. Arguments: files or directories (their files, not recursively). A target reports a
 * broken invariant by aborting, so any failure ends the process; 0 when every input ran. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INPUT_MAX (16u << 20)

static int run_file(const char *path) {
        FILE *f = fopen(path, "rbe");
        if (!f) {
                fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno));
                return -1;
        }
        uint8_t *buf = malloc(INPUT_MAX);
        if (!buf) {
                fclose(f);
                return -1;
        }
        size_t n = fread(buf, 1, INPUT_MAX, f);
        int err = ferror(f) || !feof(f);
        fclose(f);
        if (err) {
                fprintf(stderr, "cannot read %s whole (at most %u bytes)\n", path, INPUT_MAX);
                free(buf);
                return -1;
        }
        /* an exact-size copy: ASan sees any read past the input's end */
        uint8_t *in = malloc(n ? n : 1);
        if (!in) {
                free(buf);
                return -1;
        }
        memcpy(in, buf, n);
        free(buf);
        fprintf(stderr, "replay %s (%zu bytes)\n", path, n);
        LLVMFuzzerTestOneInput(in, n);
        free(in);
        return 0;
}

int main(int argc, char **argv) {
        int ran = 0;
        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return 1;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (run_file(argv[i]) < 0)
                                return 1;
                        ran++;
                        continue;
                }
                struct dirent **names;
                int n = scandir(argv[i], &names, NULL, alphasort);
                if (n < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return 1;
                }
                for (int k = 0; k < n; k++) {
                        char path[4096];
                        snprintf(path, sizeof(path), "%s/%s", argv[i], names[k]->d_name);
                        if (names[k]->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                                if (run_file(path) < 0)
                                        return 1;
                                ran++;
                        }
                        free(names[k]);
                }
                free(names);
        }
        fprintf(stderr, "%d input(s) replayed\n", ran);
        return ran > 0 ? 0 : 1;
}
