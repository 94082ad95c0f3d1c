/*
 * status.c - the status table (names and messages), error reports, the
 * option defaults and the memory the library hands to callers.  No I/O.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MPC__OUT_OFFSET 64

const char *mpc_version(void) { return MPC_VERSION_STRING; }

const char *mpc_strerror(mpc_status status)
{
    switch (status) {
#define MPC__STATUS_MSG(name, value, msg) case MPC_##name: return msg;
        MPC_STATUS_MAP(MPC__STATUS_MSG)
#undef MPC__STATUS_MSG
    default: return "unknown status";
    }
}

const char *mpc_status_name(mpc_status status)
{
    switch (status) {
#define MPC__STATUS_NAME(name, value, msg) case MPC_##name: return #name;
        MPC_STATUS_MAP(MPC__STATUS_NAME)
#undef MPC__STATUS_NAME
    default: return "UNKNOWN";
    }
}

mpc_status mpc__verror(mpc_error *err, mpc_status status, int sys_errno, const char *fmt,
                       va_list ap)
{
    if (err) {
        err->status = status;
        err->sys_errno = sys_errno;
        if (fmt)
            vsnprintf(err->message, sizeof err->message, fmt, ap);
        else
            snprintf(err->message, sizeof err->message, "%s", mpc_strerror(status));
    }
    return status;
}

mpc_status mpc__error(mpc_error *err, mpc_status status, int sys_errno, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mpc__verror(err, status, sys_errno, fmt, ap);
    va_end(ap);
    return status;
}

void mpc_options_init(mpc_options *opts)
{
    if (opts) {
        memset(opts, 0, sizeof *opts);
        opts->size = sizeof *opts;
    }
}

/* The struct of 0.2, which a zeroed caller (size 0) has. */
#define MPC__OPTIONS_BASE_SIZE (offsetof(mpc_options, nonblocking) + sizeof(int))

const mpc_options *mpc__options_read(const mpc_options *in, mpc_options *out)
{
    memset(out, 0, sizeof *out);
    if (in) {
        size_t n = in->size >= sizeof in->size ? in->size : MPC__OPTIONS_BASE_SIZE;
        memcpy(out, in, n < sizeof *out ? n : sizeof *out);
    }
    out->size = sizeof *out;
    return out;
}

void *mpc__alloc_out(size_t n)
{
    if (n > SIZE_MAX - MPC__OUT_OFFSET)
        return NULL;
    unsigned char *p = malloc(n + MPC__OUT_OFFSET);
    return p ? p + MPC__OUT_OFFSET : NULL;
}

void *mpc__realloc_out(void *ptr, size_t n)
{
    if (!ptr)
        return mpc__alloc_out(n);
    if (n > SIZE_MAX - MPC__OUT_OFFSET)
        return NULL;
    unsigned char *p = realloc((unsigned char *)ptr - MPC__OUT_OFFSET, n + MPC__OUT_OFFSET);
    return p ? p + MPC__OUT_OFFSET : NULL;
}

void mpc_free(void *ptr)
{
    if (ptr)
        free((unsigned char *)ptr - MPC__OUT_OFFSET);
}

void mpc__repr_bytes(const void *data, size_t len, char *out, size_t cap)
{
    const unsigned char *s = data;
    size_t o = 0;
    if (cap == 0)
        return;
    for (size_t i = 0; i < len; i++) {
        char tmp[5];
        int n;
        unsigned char ch = s[i];
        if (ch == '\\' || ch == '\'')
            n = snprintf(tmp, sizeof tmp, "\\%c", ch);
        else if (ch == '\n')
            n = snprintf(tmp, sizeof tmp, "\\n");
        else if (ch == '\r')
            n = snprintf(tmp, sizeof tmp, "\\r");
        else if (ch == '\t')
            n = snprintf(tmp, sizeof tmp, "\\t");
        else if (ch >= 0x20 && ch < 0x7f)
            n = snprintf(tmp, sizeof tmp, "%c", ch);
        else
            n = snprintf(tmp, sizeof tmp, "\\x%02x", ch);
        if (o + (size_t)n + 4 >= cap) {
            if (o + 4 <= cap) {
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        memcpy(out + o, tmp, (size_t)n);
        o += (size_t)n;
    }
    out[o < cap ? o : cap - 1] = '\0';
}
