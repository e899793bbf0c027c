/* The error object that crosses the connector interface, and event cleanup. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cdcsync/connector.h"

const char *const cdc_error_kind_names[CDC_ERR_KINDS] = {
        [CDC_ERR_CONNECTION] = "connection",
        [CDC_ERR_SLOT] = "slot",
        [CDC_ERR_SCHEMA] = "schema",
        [CDC_ERR_DATA] = "data",
        [CDC_ERR_CONF] = "conf",
        [CDC_ERR_PRIVILEGE] = "privilege",
        [CDC_ERR_SOURCE] = "source",
        [CDC_ERR_STATE] = "state",
        [CDC_ERR_DISK] = "disk",
        [CDC_ERR_INTERNAL] = "internal",
        [CDC_ERR_QUERY] = "query",
        [CDC_ERR_LEASE] = "lease",
};

int cdc_error(CdcError *err, int code, bool retriable, CdcErrorKind kind, const char *fmt, ...) {
        if (err) {
                va_list ap;
                err->code = code;
                err->retriable = retriable;
                snprintf(err->kind, sizeof(err->kind), "%s",
                         (unsigned)kind < CDC_ERR_KINDS ? cdc_error_kind_names[kind] : "internal");
                va_start(ap, fmt);
                vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
        }
        return code;
}

int cdc_oom(CdcError *err) {
        return cdc_error(err, -ENOMEM, true, CDC_ERR_INTERNAL, "out of memory");
}

void event_clear(Event *ev) {
        if (ev->kind == EVENT_CHANGE)
                change_clear(&ev->change);
        memset(ev, 0, sizeof(*ev));
}
