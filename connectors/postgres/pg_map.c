/* The PostgreSQL sink's string-keyed hash map (see pg_sink_int.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/hash.h"
#include "postgres/pg_sink_int.h"

uint64_t pg_map_hash_str(const char *s) {
        return hash_fnv1a(HASH_FNV1A_INIT, s, strlen(s));
}

MapEntry *pg_map_find(const Map *m, const char *key) {
        if (m->cap == 0)
                return NULL;
        for (size_t i = pg_map_hash_str(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
                if (!m->e[i].key)
                        return NULL;
                if (strcmp(m->e[i].key, key) == 0)
                        return &m->e[i];
        }
}

void pg_map_clear(Map *m) {
        for (size_t i = 0; i < m->cap; i++) {
                free(m->e[i].key);
                free(m->e[i].name);
        }
        free(m->e);
        memset(m, 0, sizeof(*m));
}

/* Takes ownership of key and name (also on failure). */
int pg_map_add(Map *m, char *key, char *name) {
        if ((m->n + 1) * 2 > m->cap) {
                size_t cap = m->cap ? m->cap * 2 : 64;
                MapEntry *e = calloc(cap, sizeof(*e));
                if (!e) {
                        free(key);
                        free(name);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < m->cap; i++) {
                        size_t j;
                        if (!m->e[i].key)
                                continue;
                        for (j = pg_map_hash_str(m->e[i].key) & (cap - 1); e[j].key; j = (j + 1) & (cap - 1))
                                ;
                        e[j] = m->e[i];
                }
                free(m->e);
                m->e = e;
                m->cap = cap;
        }
        size_t j;
        for (j = pg_map_hash_str(key) & (m->cap - 1); m->e[j].key; j = (j + 1) & (m->cap - 1))
                ;
        m->e[j].key = key;
        m->e[j].name = name;
        m->n++;
        return 0;
}
