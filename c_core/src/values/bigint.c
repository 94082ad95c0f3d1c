/*
 * bigint.c - conversion of integers beyond 64 bits between decimal text
 * (how mpc_value keeps them), pickle's two's complement little-endian bytes
 * (LONG1/LONG4), and source digits in base 2/8/10/16 (the literal parser).
 * No arithmetic beyond that is offered.  Conversions are quadratic in the
 * number of digits, which is why callers bound the digits first (4300 by
 * default, as CPython 3.11+ does for int/str conversion).
 */
#include "value_internal.h"

#include <stdlib.h>
#include <string.h>

/* Magnitude as little-endian base 2^32 limbs. */
typedef struct {
    uint32_t *d;
    size_t n;
} limbs;

static void trim(limbs *m)
{
    while (m->n && m->d[m->n - 1] == 0)
        m->n--;
}

/* m = m * mul + add. m->d has room for one more limb. */
static void muladd(limbs *m, uint32_t mul, uint32_t add)
{
    uint64_t carry = add;
    for (size_t i = 0; i < m->n; i++) {
        uint64_t t = (uint64_t)m->d[i] * mul + carry;
        m->d[i] = (uint32_t)t;
        carry = t >> 32;
    }
    if (carry)
        m->d[m->n++] = (uint32_t)carry;
}

/* Decimal text of a magnitude (destroys m). */
static char *to_decimal(limbs *m, int negative, size_t max_digits, size_t *out_len)
{
    size_t cap = m->n * 10 + 2; /* 2^32 < 10^10 */
    char *rev = malloc(cap);
    if (!rev)
        return NULL;
    size_t k = 0;
    trim(m);
    while (m->n) {
        uint64_t rem = 0;
        for (size_t i = m->n; i-- > 0;) {
            uint64_t cur = (rem << 32) | m->d[i];
            m->d[i] = (uint32_t)(cur / 1000000000u);
            rem = cur % 1000000000u;
        }
        trim(m);
        for (int j = 0; j < 9; j++) {
            rev[k++] = (char)('0' + rem % 10);
            rem /= 10;
            if (!m->n && !rem)
                break;
        }
    }
    if (k == 0)
        rev[k++] = '0';
    if (k > max_digits) {
        free(rev);
        return NULL;
    }
    char *out = malloc(k + 2);
    if (!out) {
        free(rev);
        return NULL;
    }
    size_t o = 0;
    if (negative)
        out[o++] = '-';
    while (k)
        out[o++] = rev[--k];
    out[o] = '\0';
    free(rev);
    *out_len = o;
    return out;
}

/* If magnitude fits an int64 with the sign, sets *small and returns 1. */
static int fits_int64(const limbs *m, int negative, int64_t *small)
{
    if (m->n > 2)
        return 0;
    uint64_t v = m->n == 0 ? 0 : m->n == 1 ? m->d[0] : ((uint64_t)m->d[1] << 32) | m->d[0];
    if (!negative && v <= (uint64_t)INT64_MAX) {
        *small = (int64_t)v;
        return 1;
    }
    if (negative && v <= (uint64_t)INT64_MAX + 1) {
        *small = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
        return 1;
    }
    return 0;
}

int mpc__bigint_from_le(const unsigned char *b, size_t n, size_t max_digits, int64_t *small,
                        char **text, size_t *text_len)
{
    if (n == 0) {
        *small = 0;
        return 0;
    }
    int negative = (b[n - 1] & 0x80) != 0;
    /* Skip redundant sign bytes so the size estimate below is honest. */
    unsigned char pad = negative ? 0xff : 0x00;
    while (n > 1 && b[n - 1] == pad && ((b[n - 2] & 0x80) != 0) == negative)
        n--;
    /* 8 bits are at least 2.4 decimal digits: refuse before any work. */
    if (n > 2 && (n - 2) * 12 / 5 > max_digits)
        return -1;
    limbs m;
    m.n = (n + 3) / 4 + 1;
    m.d = calloc(m.n, sizeof *m.d);
    if (!m.d)
        return -1;
    for (size_t i = 0; i < n; i++)
        m.d[i / 4] |= (uint32_t)(unsigned char)(negative ? ~b[i] : b[i]) << (8 * (i % 4));
    if (negative) {
        /* magnitude = ~x + 1, only over the n bytes present */
        size_t limbs_used = (n + 3) / 4;
        uint64_t carry = 1;
        for (size_t i = 0; i < limbs_used + 1 && carry; i++) {
            uint64_t t = (uint64_t)m.d[i] + carry;
            m.d[i] = (uint32_t)t;
            carry = t >> 32;
        }
    }
    trim(&m);
    if (fits_int64(&m, negative, small)) {
        free(m.d);
        return 0;
    }
    *text = to_decimal(&m, negative, max_digits, text_len);
    free(m.d);
    return *text ? 1 : -1;
}

int mpc__bigint_parse(const char *digits, size_t n, int negative, int base, size_t max_digits,
                      int64_t *small, char **text, size_t *text_len)
{
    while (n > 1 && digits[0] == '0') {
        digits++;
        n--;
    }
    if (n == 0)
        return -1;
    /* Bits per digit: 4 for base 16, and an upper bound for base 10 (3.33). */
    int bits_per = base == 2 ? 1 : base == 8 ? 3 : 4;
    /* Bound the work: base 10 by digits, others by bits (3.33 bits/digit). */
    if (base == 10 ? n > max_digits : (double)n * bits_per > (double)max_digits * 3.33 + 8)
        return -1;
    limbs m;
    m.d = calloc(n * (size_t)bits_per / 32 + 2, sizeof *m.d);
    if (!m.d)
        return -1;
    m.n = 0;
    for (size_t i = 0; i < n; i++) {
        char c = digits[i];
        int dv = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99;
        if (dv >= base) {
            free(m.d);
            return -1;
        }
        muladd(&m, (uint32_t)base, (uint32_t)dv);
    }
    trim(&m);
    if (fits_int64(&m, negative, small)) {
        free(m.d);
        return 0;
    }
    *text = to_decimal(&m, negative, max_digits, text_len);
    free(m.d);
    return *text ? 1 : -1;
}

int mpc__bigint_to_le(const char *text, size_t len, unsigned char **out, size_t *out_len)
{
    int negative = 0;
    size_t i = 0;
    if (i < len && (text[i] == '-' || text[i] == '+'))
        negative = text[i++] == '-';
    if (i == len)
        return -1;
    limbs m;
    m.d = calloc((len - i) / 9 + 2, sizeof *m.d);
    if (!m.d)
        return -1;
    m.n = 0;
    for (; i < len; i++) {
        if (text[i] < '0' || text[i] > '9') {
            free(m.d);
            return -1;
        }
        muladd(&m, 10, (uint32_t)(text[i] - '0'));
    }
    trim(&m);
    /* bit length of the magnitude */
    size_t bits = 0;
    if (m.n) {
        uint32_t top = m.d[m.n - 1];
        bits = (m.n - 1) * 32;
        while (top) {
            bits++;
            top >>= 1;
        }
    }
    size_t nbytes = (bits >> 3) + 1;
    unsigned char *b = malloc(nbytes);
    if (!b) {
        free(m.d);
        return -1;
    }
    for (size_t k = 0; k < nbytes; k++) {
        size_t li = k / 4;
        b[k] = li < m.n ? (unsigned char)(m.d[li] >> (8 * (k % 4))) : 0;
    }
    free(m.d);
    if (negative) {
        unsigned carry = 1;
        for (size_t k = 0; k < nbytes; k++) {
            unsigned t = (unsigned)(unsigned char)~b[k] + carry;
            b[k] = (unsigned char)t;
            carry = t >> 8;
        }
        if (nbytes > 1 && b[nbytes - 1] == 0xff && (b[nbytes - 2] & 0x80))
            nbytes--;
    }
    *out = b;
    *out_len = nbytes;
    return 0;
}
