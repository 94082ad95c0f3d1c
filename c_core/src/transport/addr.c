/*
 * addr.c - parses mpconn's address strings ("host:port", "[v6]:port",
 * "/path", "@abstract") into a struct.  Pure: no resolution, no sockets, no
 * allocation, so every form and every error is unit-tested with literals.
 * Turning the struct into a socket is io_posix.c's job.
 */
#include "transport.h"

#include <string.h>

static mpc_status parse_port(const char *s, const char *text, unsigned *port, mpc_error *err)
{
    unsigned long v = 0;
    size_t n = 0;
    if (*s == '\0')
        return mpc__error(err, MPC_INVAL, 0, "invalid address '%s': missing port", text);
    for (; s[n]; n++) {
        if (s[n] < '0' || s[n] > '9')
            return mpc__error(err, MPC_INVAL, 0, "invalid address '%s': port is not a number",
                              text);
        if (n >= 5)
            break;
        v = v * 10 + (unsigned long)(s[n] - '0');
    }
    if (s[n] != '\0' || v > 65535)
        return mpc__error(err, MPC_INVAL, 0, "invalid address '%s': port out of range 0-65535",
                          text);
    *port = (unsigned)v;
    return MPC_OK;
}

mpc_status mpc__addr_parse(const char *text, mpc__addr *out, mpc_error *err)
{
    if (!text || !out)
        return mpc__error(err, MPC_INVAL, 0, "address is NULL");
    return mpc__addr_parse_n(text, strlen(text), out, err);
}

mpc_status mpc__addr_parse_n(const char *text, size_t len, mpc__addr *out, mpc_error *err)
{
    if (!text || !out)
        return mpc__error(err, MPC_INVAL, 0, "address is NULL");
    memset(out, 0, sizeof *out);
    /* Only an abstract name may hold NUL bytes (any byte is allowed
     * there); everything else is parsed as the C string it must be. */
    if (memchr(text, '\0', len) && text[0] != '@')
        return mpc__error(err, MPC_INVAL, 0, "invalid address: embedded NUL byte");
    if (len == 0)
        return mpc__error(err, MPC_INVAL, 0, "invalid address '': empty");

    if (text[0] == '@') {
        if (len == 1)
            return mpc__error(err, MPC_INVAL, 0, "invalid address '@': empty abstract name");
        /* The name follows a leading NUL in sun_path, so it has one byte
         * less room than a path (which needs its terminating NUL instead). */
        if (len - 1 > MPC__UNIX_PATH_MAX)
            return mpc__error(err, MPC_INVAL, 0,
                              "abstract socket name too long: %zu bytes, the limit is %d",
                              len - 1, MPC__UNIX_PATH_MAX);
        out->kind = MPC__ADDR_ABSTRACT;
        memcpy(out->path, text + 1, len - 1);
        out->path_len = len - 1;
        return MPC_OK;
    }

    if (text[0] != '[' && (strchr(text, '/') || !strchr(text, ':'))) {
        if (len > MPC__UNIX_PATH_MAX)
            return mpc__error(err, MPC_INVAL, 0,
                              "Unix socket path too long: %zu bytes, the limit is %d", len,
                              MPC__UNIX_PATH_MAX);
        out->kind = MPC__ADDR_UNIX;
        memcpy(out->path, text, len);
        out->path_len = len;
        return MPC_OK;
    }

    out->kind = MPC__ADDR_TCP;
    const char *port;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close)
            return mpc__error(err, MPC_INVAL, 0, "invalid address '%s': missing ']'", text);
        size_t hlen = (size_t)(close - text - 1);
        if (hlen == 0)
            return mpc__error(err, MPC_INVAL, 0, "invalid address '%s': empty IPv6 host", text);
        if (hlen > MPC__HOST_MAX)
            return mpc__error(err, MPC_INVAL, 0, "invalid address: host too long");
        if (memchr(text + 1, '[', hlen))
            return mpc__error(err, MPC_INVAL, 0, "invalid address '%s': unexpected '['", text);
        if (close[1] != ':')
            return mpc__error(err, MPC_INVAL, 0,
                              close[1] ? "invalid address '%s': expected ':' after ']'"
                                       : "invalid address '%s': missing port",
                              text);
        memcpy(out->host, text + 1, hlen);
        out->bracketed = 1;
        port = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        size_t hlen = (size_t)(colon - text);
        if (memchr(text, ':', hlen))
            return mpc__error(err, MPC_INVAL, 0,
                              "invalid address '%s': write IPv6 hosts in brackets, "
                              "as [::1]:port",
                              text);
        if (memchr(text, '[', hlen) || memchr(text, ']', hlen))
            return mpc__error(err, MPC_INVAL, 0, "invalid address '%s': unexpected bracket",
                              text);
        if (hlen > MPC__HOST_MAX)
            return mpc__error(err, MPC_INVAL, 0, "invalid address: host too long");
        memcpy(out->host, text, hlen);
        port = colon + 1;
    }
    return parse_port(port, text, &out->port, err);
}
