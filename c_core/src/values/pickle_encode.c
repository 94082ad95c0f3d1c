/*
 * pickle_encode.c - writes a value tree as a pickle at protocol 2, 3, 4 or
 * 5, byte for byte as CPython's C pickler (pickle.dumps) writes the same
 * Python object: the same opcodes, memo numbering (MEMOIZE at 4+,
 * BINPUT/LONG_BINPUT below), batches of 1000 for APPENDS/SETITEMS/ADDITEMS,
 * the builtins constructors CPython uses below protocol 4 (with
 * "__builtin__" at protocol 2 for Python 2.7), and at protocol 4+ the same
 * 64 KiB framing, with large str/bytes payloads written outside frames.
 * A node shared between several places of the tree is written once and
 * fetched from the memo afterwards, as CPython does for a shared object;
 * cycles come out as CPython writes them (a list or dict is memoized before
 * its items, a recursive tuple is popped and fetched).
 * Pure: the output is a buffer for the caller.
 */
#include "value_internal.h"

#include <stdlib.h>
#include <string.h>

#define FRAME_TARGET (64 * 1024)
#define FRAME_HEADER 9
#define BATCH 1000
#define NO_FRAME ((size_t)-1)

/* Memo keys for objects that are not nodes of the tree: the globals and
 * the 'latin1' constant, which CPython writes once per pickle. */
static const char memo_keys[6];
#define K_SET (&memo_keys[0])
#define K_FROZENSET (&memo_keys[1])
#define K_BYTEARRAY (&memo_keys[2])
#define K_BYTES (&memo_keys[3])
#define K_ENCODE (&memo_keys[4])
#define K_LATIN1 (&memo_keys[5])

typedef struct enc {
    mpc__buf out;
    int proto;
    int framing;
    size_t frame_start;
    const void **mkeys;
    uint32_t *mvals;
    size_t mslots, mcount;
    mpc_error *err;
    mpc_status status; /* first failure other than out of memory */
    unsigned depth;    /* containers being saved */
} enc;

/* --- output with CPython's framing --- */

static void w(enc *e, const void *data, size_t n)
{
    if (e->framing && e->frame_start == NO_FRAME) {
        e->frame_start = e->out.len;
        static const unsigned char hdr[FRAME_HEADER] = {0x95};
        mpc__buf_put(&e->out, hdr, FRAME_HEADER);
    }
    mpc__buf_put(&e->out, data, n);
}

static void w1(enc *e, unsigned char c) { w(e, &c, 1); }

static void commit_frame(enc *e)
{
    if (e->frame_start == NO_FRAME || e->out.failed)
        return;
    size_t body = e->out.len - e->frame_start - FRAME_HEADER;
    unsigned char *h = e->out.data + e->frame_start;
    if (body >= 4) {
        h[0] = 0x95;
        for (int i = 0; i < 8; i++)
            h[1 + i] = (unsigned char)((uint64_t)body >> (8 * i));
    } else {
        memmove(h, h + FRAME_HEADER, body);
        e->out.len -= FRAME_HEADER;
    }
    e->frame_start = NO_FRAME;
}

static void boundary(enc *e)
{
    if (e->framing && e->frame_start != NO_FRAME &&
        e->out.len - e->frame_start - FRAME_HEADER >= FRAME_TARGET)
        commit_frame(e);
}

/* An opcode with a length header and a payload; large payloads go outside
 * frames, as CPython's _Pickler_write_bytes does. */
static void w_payload(enc *e, const unsigned char *hdr, size_t hn, const void *data, size_t n)
{
    if (n >= FRAME_TARGET) {
        int framing = e->framing;
        commit_frame(e);
        e->framing = 0;
        w(e, hdr, hn);
        w(e, data, n);
        e->framing = framing;
    } else {
        w(e, hdr, hn);
        w(e, data, n);
    }
}

static void put_le(unsigned char *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

/* --- memo --- */

static size_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
    return (size_t)(x ^ (x >> 31));
}

static long memo_get(const enc *e, const void *key)
{
    if (!e->mslots)
        return -1;
    size_t mask = e->mslots - 1;
    for (size_t s = ptr_hash(key) & mask;; s = (s + 1) & mask) {
        if (!e->mkeys[s])
            return -1;
        if (e->mkeys[s] == key)
            return (long)e->mvals[s];
    }
}

/* Writes the memo opcode for the next index. */
static void put_memo_op(enc *e, uint32_t idx)
{
    if (e->proto >= 4) {
        w1(e, 0x94);
    } else if (idx < 256) {
        unsigned char b[2] = {'q', (unsigned char)idx};
        w(e, b, 2);
    } else {
        unsigned char b[5] = {'r'};
        put_le(b + 1, idx, 4);
        w(e, b, 5);
    }
}

/* Memoizes a temporary object CPython creates while pickling (a reduce
 * argument tuple, a list(set)); it is never fetched again. */
static void memoize_anon(enc *e) { put_memo_op(e, (uint32_t)e->mcount++); }

static void memoize(enc *e, const void *key)
{
    if ((e->mcount + 1) * 2 > e->mslots) {
        size_t ncap = e->mslots ? e->mslots * 2 : 64;
        const void **nk = calloc(ncap, sizeof *nk);
        uint32_t *nv = calloc(ncap, sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            e->out.failed = 1;
            return;
        }
        for (size_t i = 0; i < e->mslots; i++) {
            if (!e->mkeys[i])
                continue;
            size_t s = ptr_hash(e->mkeys[i]) & (ncap - 1);
            while (nk[s])
                s = (s + 1) & (ncap - 1);
            nk[s] = e->mkeys[i];
            nv[s] = e->mvals[i];
        }
        free(e->mkeys);
        free(e->mvals);
        e->mkeys = nk;
        e->mvals = nv;
        e->mslots = ncap;
    }
    size_t mask = e->mslots - 1, s = ptr_hash(key) & mask;
    while (e->mkeys[s])
        s = (s + 1) & mask;
    uint32_t idx = (uint32_t)e->mcount++;
    e->mkeys[s] = key;
    e->mvals[s] = idx;
    put_memo_op(e, idx);
}

static int emit_get(enc *e, const void *key)
{
    long idx = memo_get(e, key);
    if (idx < 0)
        return 0;
    if (idx < 256) {
        unsigned char b[2] = {'h', (unsigned char)idx};
        w(e, b, 2);
    } else {
        unsigned char b[5] = {'j'};
        put_le(b + 1, (uint64_t)idx, 4);
        w(e, b, 5);
    }
    return 1;
}

/* --- scalars --- */

static void save_int(enc *e, int64_t v)
{
    unsigned char b[16];
    if (v >= 0 && v <= 0xff) {
        b[0] = 'K';
        b[1] = (unsigned char)v;
        w(e, b, 2);
    } else if (v >= 0 && v <= 0xffff) {
        b[0] = 'M';
        put_le(b + 1, (uint64_t)v, 2);
        w(e, b, 3);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        b[0] = 'J';
        put_le(b + 1, (uint64_t)v, 4);
        w(e, b, 5);
    } else {
        /* LONG1 with the minimal two's complement length (CPython's
         * encode_long): bit_length/8 + 1 bytes, minus a redundant 0xff. */
        uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        int bits = 0;
        while (mag) {
            bits++;
            mag >>= 1;
        }
        int n = (bits >> 3) + 1;
        unsigned char t[9];
        for (int i = 0; i < 9; i++)
            t[i] = i < 8 ? (unsigned char)((uint64_t)v >> (8 * i)) : (v < 0 ? 0xff : 0);
        if (v < 0 && n > 1 && t[n - 1] == 0xff && (t[n - 2] & 0x80))
            n--;
        b[0] = 0x8a;
        b[1] = (unsigned char)n;
        memcpy(b + 2, t, (size_t)n);
        w(e, b, (size_t)n + 2);
    }
}

static void save_bigint(enc *e, const mpc_value *v)
{
    unsigned char *le;
    size_t n;
    if (mpc__bigint_to_le(v->u.s.data, v->u.s.len, &le, &n) < 0) {
        e->out.failed = 1;
        return;
    }
    unsigned char h[5];
    if (n < 256) {
        h[0] = 0x8a;
        h[1] = (unsigned char)n;
        w(e, h, 2);
    } else {
        h[0] = 0x8b;
        put_le(h + 1, n, 4);
        w(e, h, 5);
    }
    w(e, le, n);
    free(le);
}

static void save_float(enc *e, double f)
{
    uint64_t bits;
    memcpy(&bits, &f, sizeof bits);
    unsigned char b[9] = {'G'};
    for (int i = 0; i < 8; i++)
        b[1 + i] = (unsigned char)(bits >> (56 - 8 * i));
    w(e, b, 9);
}

/* A str (UTF-8 already) without memo handling. */
static void save_str_data(enc *e, const char *s, size_t n)
{
    unsigned char h[9];
    if (e->proto >= 4 && n < 256) {
        h[0] = 0x8c;
        h[1] = (unsigned char)n;
        w_payload(e, h, 2, s, n);
    } else if (n <= 0xffffffffu) {
        h[0] = 'X';
        put_le(h + 1, n, 4);
        w_payload(e, h, 5, s, n);
    } else if (e->proto >= 4) {
        h[0] = 0x8d;
        put_le(h + 1, n, 8);
        w_payload(e, h, 9, s, n);
    } else if (!e->status) {
        e->status = mpc__error(e->err, MPC_VALUE, 0,
                               "cannot serialize a string larger than 4GiB at protocol %d",
                               e->proto);
    }
}

static void save_constant_str(enc *e, const void *key, const char *s)
{
    boundary(e);
    if (!emit_get(e, key)) {
        save_str_data(e, s, strlen(s));
        memoize(e, key);
    }
}

/* save() of one of the builtins, memoized as CPython does (at protocol 4
 * the module and name are themselves saved as str objects). */
static void save_global(enc *e, const void *key, const char *mod, const char *name)
{
    boundary(e);
    if (emit_get(e, key))
        return;
    if (e->proto >= 4) {
        boundary(e);
        save_str_data(e, mod, strlen(mod));
        memoize_anon(e);
        boundary(e);
        save_str_data(e, name, strlen(name));
        memoize_anon(e);
        w1(e, 0x93);
    } else {
        w1(e, 'c');
        w(e, mod, strlen(mod));
        w1(e, '\n');
        w(e, name, strlen(name));
        w1(e, '\n');
    }
    memoize(e, key);
}

static const char *builtins_module(const enc *e) { return e->proto < 3 ? "__builtin__" : "builtins"; }

/* Latin-1 text of bytes as UTF-8 (each byte one code point). */
static char *latin1_utf8(const unsigned char *s, size_t n, size_t *out_len)
{
    char *t = malloc(2 * n + 1);
    if (!t)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += mpc__utf8_put(s[i], (unsigned char *)t + o);
    *out_len = o;
    return t;
}

/* bytes at protocol 2: bytes() or _codecs.encode(u'...', 'latin1'), as
 * save_reduce writes them (without the final memoize of the result). */
static void save_bytes_p2(enc *e, const unsigned char *s, size_t n)
{
    if (n == 0) {
        save_global(e, K_BYTES, builtins_module(e), "bytes");
        boundary(e); /* save(()) */
        w1(e, ')');
        w1(e, 'R');
        return;
    }
    save_global(e, K_ENCODE, "_codecs", "encode");
    size_t tl;
    char *t = latin1_utf8(s, n, &tl);
    if (!t) {
        e->out.failed = 1;
        return;
    }
    boundary(e); /* save(argument tuple) */
    boundary(e); /* save(str) */
    save_str_data(e, t, tl);
    free(t);
    memoize_anon(e);
    save_constant_str(e, K_LATIN1, "latin1");
    w1(e, 0x86);
    memoize_anon(e);
    w1(e, 'R');
}

static void save_bytes_data(enc *e, const unsigned char *s, size_t n)
{
    unsigned char h[9];
    if (n < 256) {
        h[0] = 'C';
        h[1] = (unsigned char)n;
        w_payload(e, h, 2, s, n);
    } else if (n <= 0xffffffffu) {
        h[0] = 'B';
        put_le(h + 1, n, 4);
        w_payload(e, h, 5, s, n);
    } else if (e->proto >= 4) {
        h[0] = 0x8e;
        put_le(h + 1, n, 8);
        w_payload(e, h, 9, s, n);
    } else if (!e->status) {
        e->status = mpc__error(e->err, MPC_VALUE, 0,
                               "cannot serialize a bytes object larger than 4 GiB at protocol %d",
                               e->proto);
    }
}

static void save(enc *e, const mpc_value *v);

static void save_items(enc *e, const mpc_value *v, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        save(e, v->u.c.items[i]);
}

/* A tuple on a cycle is saved again from inside its own items and is in
 * the memo when they are done: CPython then drops what it pushed (a POP per
 * item, or POP_MARK) and fetches the tuple from the memo. */
static void save_tuple(enc *e, const mpc_value *v)
{
    size_t n = v->u.c.n;
    if (n == 0) {
        w1(e, ')');
        return;
    }
    if (n <= 3) {
        save_items(e, v, 0, n);
        if (memo_get(e, v) >= 0) {
            for (size_t i = 0; i < n; i++)
                w1(e, '0');
            emit_get(e, v);
            return;
        }
        w1(e, (unsigned char)(0x84 + n));
    } else {
        w1(e, '(');
        save_items(e, v, 0, n);
        if (memo_get(e, v) >= 0) {
            w1(e, '1');
            emit_get(e, v);
            return;
        }
        w1(e, 't');
    }
    memoize(e, v);
}

/* MARK items APPENDS in batches (a one-element list uses APPEND). */
static void save_list_items(enc *e, const mpc_value *v)
{
    size_t n = v->u.c.n;
    if (n == 0)
        return;
    if (n == 1) {
        save(e, v->u.c.items[0]);
        w1(e, 'a');
        return;
    }
    size_t total = 0;
    do {
        size_t end = total + BATCH < n ? total + BATCH : n;
        w1(e, '(');
        save_items(e, v, total, end);
        total = end;
        w1(e, 'e');
    } while (total < n);
}

static void save_set_like(enc *e, const mpc_value *v)
{
    int frozen = v->kind == MPC_V_FROZENSET;
    size_t n = v->u.c.n;
    if (e->proto < 4) {
        /* reduce(set, (list(v),)) */
        save_global(e, frozen ? K_FROZENSET : K_SET, builtins_module(e),
                    frozen ? "frozenset" : "set");
        boundary(e); /* save(argument tuple) */
        boundary(e); /* save(list) */
        w1(e, ']');
        memoize_anon(e); /* the temporary list */
        save_list_items(e, v);
        w1(e, 0x85);
        memoize_anon(e); /* the argument tuple */
        w1(e, 'R');
        memoize(e, v);
        return;
    }
    if (frozen) {
        w1(e, '(');
        save_items(e, v, 0, n);
        w1(e, 0x91);
        memoize(e, v);
        return;
    }
    w1(e, 0x8f);
    memoize(e, v);
    if (n == 0)
        return;
    size_t total = 0, batch;
    do {
        size_t end = total + BATCH < n ? total + BATCH : n;
        batch = end - total;
        w1(e, '(');
        save_items(e, v, total, end);
        total = end;
        w1(e, 0x90);
    } while (batch == BATCH);
}

static void save_dict(enc *e, const mpc_value *v)
{
    size_t n = v->u.c.n;
    w1(e, '}');
    memoize(e, v);
    if (n == 0)
        return;
    if (n == 1) {
        save(e, v->u.c.items[0]);
        save(e, v->u.c.items[1]);
        w1(e, 's');
        return;
    }
    size_t total = 0, batch;
    do {
        size_t end = total + BATCH < n ? total + BATCH : n;
        batch = end - total;
        w1(e, '(');
        save_items(e, v, 2 * total, 2 * end);
        total = end;
        w1(e, 'u');
    } while (batch == BATCH);
}

static void save_bytearray(enc *e, const mpc_value *v)
{
    const unsigned char *s = (const unsigned char *)v->u.s.data;
    size_t n = v->u.s.len;
    if (e->proto >= 5) {
        unsigned char h[9] = {0x96};
        put_le(h + 1, n, 8);
        w_payload(e, h, 9, s, n);
        memoize(e, v);
        return;
    }
    /* reduce(bytearray, ()) or reduce(bytearray, (bytes,)) */
    save_global(e, K_BYTEARRAY, builtins_module(e), "bytearray");
    boundary(e); /* save(argument tuple) */
    if (n == 0) {
        w1(e, ')');
    } else {
        boundary(e); /* save(bytes) */
        if (e->proto < 3)
            save_bytes_p2(e, s, n);
        else
            save_bytes_data(e, s, n);
        memoize_anon(e); /* the temporary bytes */
        w1(e, 0x85);
        memoize_anon(e); /* the argument tuple */
    }
    w1(e, 'R');
    memoize(e, v);
}

/* As CPython's save(): a frame may end before any object is written. */
static void save(enc *e, const mpc_value *v)
{
    if (e->out.failed || e->status)
        return;
    boundary(e);
    switch (v->kind) {
    case MPC_V_NONE: w1(e, 'N'); break;
    case MPC_V_BOOL: w1(e, v->u.i ? 0x88 : 0x89); break;
    case MPC_V_INT: save_int(e, v->u.i); break;
    case MPC_V_BIGINT: save_bigint(e, v); break;
    case MPC_V_FLOAT: save_float(e, v->u.f); break;
    default:
        if (emit_get(e, v))
            break;
        /* Only a path through a cycle can be this long (CPython would
         * raise RecursionError). */
        if (e->depth >= MPC_VALUE_DEPTH_MAX) {
            if (!e->status)
                e->status = mpc__error(e->err, MPC_VALUE, 0,
                                       "nesting deeper than %d levels through a cycle",
                                       MPC_VALUE_DEPTH_MAX);
            break;
        }
        e->depth++;
        switch (v->kind) {
        case MPC_V_STR:
            save_str_data(e, v->u.s.data, v->u.s.len);
            memoize(e, v);
            break;
        case MPC_V_BYTES:
            if (e->proto < 3)
                save_bytes_p2(e, (const unsigned char *)v->u.s.data, v->u.s.len);
            else
                save_bytes_data(e, (const unsigned char *)v->u.s.data, v->u.s.len);
            memoize(e, v);
            break;
        case MPC_V_BYTEARRAY: save_bytearray(e, v); break;
        case MPC_V_TUPLE: save_tuple(e, v); break;
        case MPC_V_LIST:
            w1(e, ']');
            memoize(e, v);
            save_list_items(e, v);
            break;
        case MPC_V_DICT: save_dict(e, v); break;
        case MPC_V_SET:
        case MPC_V_FROZENSET: save_set_like(e, v); break;
        default:
            if (!e->status)
                e->status = mpc__error(e->err, MPC_INVAL, 0, "not a value");
            break;
        }
        e->depth--;
    }
}

mpc_status mpc_value_encode(const mpc_value *v, int protocol, void **out, size_t *len,
                            mpc_error *err)
{
    if (out)
        *out = NULL;
    if (len)
        *len = 0;
    if (!v || !out || !len)
        return mpc__error(err, MPC_INVAL, 0, "NULL argument");
    if (protocol == 0)
        protocol = 4;
    if (protocol < 2 || protocol > 5)
        return mpc__error(err, MPC_INVAL, 0, "unsupported pickle protocol %d (use 2 to 5)",
                          protocol);
    enc e;
    memset(&e, 0, sizeof e);
    e.proto = protocol;
    e.err = err;
    e.frame_start = NO_FRAME;
    unsigned char proto[2] = {0x80, (unsigned char)protocol};
    w(&e, proto, 2);
    e.framing = protocol >= 4;
    save(&e, v);
    w1(&e, '.');
    commit_frame(&e);
    free(e.mkeys);
    free(e.mvals);
    if (e.status || e.out.failed) {
        mpc__buf_release(&e.out);
        return e.status ? e.status : mpc__error(err, MPC_NOMEM, 0, "out of memory");
    }
    *out = e.out.data;
    *len = e.out.len;
    return MPC_OK;
}
