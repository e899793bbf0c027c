/* The error object that crosses the connector interface, and event cleanup. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cdcsync/connector.h"

int cdc_error(CdcError *err, int code, bool retriable, const char *kind, const char *fmt, ...) {
        if (err) {
                va_list ap;
                err->code = code;
                err->retriable = retriable;
                snprintf(err->kind, sizeof(err->kind), "%s", kind);
                va_start(ap, fmt);
                vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
        }
        return code;
}

int cdc_oom(CdcError *err) {
        return cdc_error(err, -ENOMEM, true, "internal", "out of memory");
}

void event_clear(Event *ev) {
        if (ev->kind == EVENT_CHANGE)
                change_clear(&ev->change);
        memset(ev, 0, sizeof(*ev));
}
