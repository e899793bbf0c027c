/* Bidirectional sync: which transactions a pipeline reads are its reverse pipelines' own writes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cdcsync/bidi.h"
#include "cdcsync/connector.h"

int bidi_peers(const Conf *c, const PipelineConf *p, BidiPeers *ret) {
        BidiPeers b = {0};
        for (int i = 0; i < c->npipelines; i++) {
                const PipelineConf *q = &c->pipelines[i];
                if (q == p || strcmp(q->source_name, p->sink_name) != 0 || strcmp(q->sink_name, p->source_name) != 0)
                        continue;
                if (b.nmarks == BIDI_MAX_MARKS)
                        return -E2BIG;
                char *m = b.marks[b.nmarks];
                int n = -1;
                /* The mark q's sink leaves on its writes, as its log tells them. */
                const ConnectorType *t = connector_type(q->sink->type);
                if (t)
                        n = t->write_mark(q, m, BIDI_MARK_MAX);
                if (n < 0 || n >= BIDI_MARK_MAX)
                        continue; /* a sink that leaves no mark, or a name that cannot match */
                b.nmarks++;
                if (!b.reverse[0] && strlen(q->name) < sizeof(b.reverse))
                        memcpy(b.reverse, q->name, strlen(q->name) + 1);
        }
        *ret = b;
        return 0;
}

bool bidi_is_echo(const BidiPeers *b, const char *origin) {
        if (!b || !origin[0])
                return false;
        for (int i = 0; i < b->nmarks; i++)
                if (strcmp(b->marks[i], origin) == 0)
                        return true;
        return false;
}
