/*
 * utf8.c - UTF-8 helpers and the growable output buffer used by the value
 * printers and the pickle encoder.  Pure: no I/O, no global state.
 *
 * str values are stored as UTF-8 in which encoded lone surrogates
 * (U+D800..U+DFFF as three bytes) are allowed, because CPython's pickle
 * encodes and decodes str with the 'surrogatepass' error handler, so such
 * strings do cross the wire.
 */
#include "value_internal.h"

#include <stdlib.h>
#include <string.h>

int mpc__utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
            min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
            min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return 0;
        }
        if (len - i <= need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            unsigned char cc = s[i + k];
            if ((cc & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if (cp < min || cp > 0x10ffff)
            return 0;
        i += need + 1;
    }
    return 1;
}

uint32_t mpc__utf8_next(const unsigned char *s, size_t len, size_t *i)
{
    unsigned char c = s[*i];
    size_t need = c < 0x80 ? 0 : c < 0xe0 ? 1 : c < 0xf0 ? 2 : 3;
    uint32_t cp = need == 0 ? c : need == 1 ? (c & 0x1fu) : need == 2 ? (c & 0x0fu) : (c & 0x07u);
    (*i)++;
    for (size_t k = 0; k < need && *i < len; k++, (*i)++)
        cp = (cp << 6) | (s[*i] & 0x3fu);
    return cp;
}

size_t mpc__utf8_put(uint32_t cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

int mpc__buf_reserve(mpc__buf *b, size_t extra)
{
    if (b->failed)
        return 0;
    if (extra <= b->cap - b->len)
        return 1;
    if (extra > SIZE_MAX / 2 - b->len) {
        b->failed = 1;
        return 0;
    }
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap - b->len < extra)
        ncap *= 2;
    unsigned char *p = mpc__realloc_out(b->data, ncap);
    if (!p) {
        b->failed = 1;
        return 0;
    }
    b->data = p;
    b->cap = ncap;
    return 1;
}

void mpc__buf_put(mpc__buf *b, const void *data, size_t len)
{
    if (len == 0 || !mpc__buf_reserve(b, len))
        return;
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

void mpc__buf_byte(mpc__buf *b, unsigned char c)
{
    if (!mpc__buf_reserve(b, 1))
        return;
    b->data[b->len++] = c;
}

void mpc__buf_str(mpc__buf *b, const char *s) { mpc__buf_put(b, s, strlen(s)); }

void mpc__buf_release(mpc__buf *b)
{
    mpc_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
