/* cdcsync's command line (being built: run, check, status land with the pipeline). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
        if (argc > 1 && strcmp(argv[1], "--version") == 0) {
                printf("cdcsync %s\n", CDCSYNC_VERSION);
                return 0;
        }
        fprintf(stderr, "cdcsync: not yet usable\n");
        return 1;
}
