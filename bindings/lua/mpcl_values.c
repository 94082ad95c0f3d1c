/*
 * mpcl_values.c - values: conn:send(v), conn:recv(), mpconn.encode/decode/repr.
 *
 * Lua values <-> mpc_value trees (section 4 of mpconn.h), in C: one pass
 * over the Lua value builds the tree (bottom-up: a container is filled
 * before it is added to its parent), the library pickles it; on receipt
 * the library decodes the pickle into a tree and one pass builds the Lua
 * value.  lua/README.md ("Values") has the mapping and every rule; the
 * comments here say how.
 *
 * core.value_setup(slow) makes the sentinel mpconn.null (a full userdata),
 * the metatables of the marked kinds (each holds __mpconn = its mpc_vkind)
 * and the closures.  All of them share one upvalue, the table E below.
 *
 * Lua -> tree (sending) never allocates Lua memory and never raises while
 * it holds a node: every node is owned by the C frame that made it until a
 * container takes it, and an error (ctx->msg) unwinds through the returns,
 * each frame freeing what it owns; only then is the error raised.
 *
 * Tree -> Lua (receiving) allocates Lua tables and strings, which can raise
 * a memory error at any point: the tree and the C scratch memory are kept
 * in a "holder" userdata whose __gc frees them, so a raise leaks nothing. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpcl.h"

#define MPCL_UP_ENV lua_upvalueindex(1)

/* Indexes into E, the shared upvalue. */
enum {
    MPCL_E_NULL = 1,      /* the mpconn.null sentinel */
    MPCL_E_FAIL = 2,      /* fail(h, status, level, message) of lua/mpconn.lua */
    MPCL_E_SEND_PREP = 3, /* send_prep(self, opts, nargs) -> protocol */
    MPCL_E_RECV_PREP = 4, /* recv_prep(self, opts, nargs) -> flags */
    MPCL_E_KIND_KEY = 6,  /* "__mpconn" */
    MPCL_E_ORDER_KEY = 7, /* "__order" */
    MPCL_E_VALUE_KEY = 8, /* "value" */
    MPCL_E_META = 10      /* E[MPCL_E_META + kind]: the metatable of a marked kind */
};

/* Receive flags (recv_prep and decode's options, folded into an integer). */
#define MPCL_R_BYTES_MARKED 0x1  /* bytes/bytearray -> mpconn.bytes/bytearray values */
#define MPCL_R_TUPLE_MARKED 0x2  /* tuple -> mpconn.tuple tables (else mpconn.list) */
#define MPCL_R_ORDERED 0x4       /* dicts carry their key order (__order) */
#define MPCL_R_PY2_SHIFT 4       /* 2 bits: mpc_py2str (default here: BYTES) */
#define MPCL_R_PY2_DEFAULT 0x3   /* "not given": MPC_PY2STR_BYTES */
#define MPCL_R_DEPTH_SHIFT 8     /* max_depth (0: the library default) */

/* Strings at least this long are shared by identity on receipt when the
 * pickle shares them (shorter ones are interned by Lua anyway). */
#define MPCL_SHARE_MIN 64

/* Valid UTF-8 as RFC 3629 defines it: no overlong forms, no surrogates,
 * nothing above U+10FFFF.  ASCII runs are checked 8 bytes at a time. */
static int mpcl_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & UINT64_C(0x8080808080808080)) break;
                i += 8;
            }
            while (i < n && s[i] < 0x80) i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return 0;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
            if (i + 2 >= n || s[i + 1] < lo || s[i + 1] > hi || (s[i + 2] & 0xC0) != 0x80) return 0;
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
            if (i + 3 >= n || s[i + 1] < lo || s[i + 1] > hi || (s[i + 2] & 0xC0) != 0x80
                || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* ---- Lua -> tree ---------------------------------------------------------- */

/* A pointer's slot in a power-of-two table of cap slots. */
static size_t mpcl_ptr_hash(const void *p, size_t cap)
{
    uint64_t k = (uint64_t)(uintptr_t)p;
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

/* A table already converted: its node, shared when the table appears again
 * (as pickle's memo shares one object), and its height. */
typedef struct mpcl_seen { const void *table; mpc_value *node; int height; } mpcl_seen;

typedef struct mpcl_tov {
    lua_State *L;
    int env;          /* stack index of E */
    int kind_key;     /* stack indexes of "__mpconn", "__order", "value" */
    int order_key;
    int value_key;
    int max_depth;    /* deepest nesting accepted (a scalar is depth 1) */
    const void **path; /* path[d]: the table being converted at depth d */
    mpc_value **pathv; /* pathv[d]: its container node (a cycle shares it) */
    int height;       /* the height of the value the last conversion returned */
    mpcl_seen *seen;  /* open addressing over the tables converted so far */
    size_t seen_cap, seen_n;
    char msg[160];    /* the error, once one happened */
    char where[200];  /* where in the value: ["inventory"][2] */
} mpcl_tov;

static mpc_value *mpcl_tov_value(mpcl_tov *x, int idx, int depth);

static mpc_value *mpcl_tov_err(mpcl_tov *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->msg, sizeof x->msg, fmt, ap);
    va_end(ap);
    return NULL;
}

static mpc_value *mpcl_tov_nomem(mpcl_tov *x) { return mpcl_tov_err(x, "out of memory"); }

/* Prepends the step to the key or index at idx ("[3]", "[\"name\"]") to
 * x->where, on the way out of an error. */
static void mpcl_tov_where(mpcl_tov *x, int idx)
{
    char step[64];
    size_t have = strlen(x->where), n;
    lua_State *L = x->L;
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) snprintf(step, sizeof step, "[%lld]", (long long)lua_tointeger(L, idx));
        else snprintf(step, sizeof step, "[%.17g]", (double)lua_tonumber(L, idx));
        break;
    case LUA_TSTRING: {
        size_t len = 0, i, o = 0;
        const char *s = lua_tolstring(L, idx, &len);
        step[o++] = '[';
        step[o++] = '"';
        for (i = 0; i < len && o < 40; i++) step[o++] = (s[i] >= 32 && s[i] < 127 && s[i] != '"') ? s[i] : '?';
        if (i < len) { memcpy(step + o, "...", 3); o += 3; }
        step[o++] = '"';
        step[o++] = ']';
        step[o] = '\0';
        break;
    }
    case LUA_TBOOLEAN: snprintf(step, sizeof step, "[%s]", lua_toboolean(L, idx) ? "true" : "false"); break;
    default: snprintf(step, sizeof step, "[<%s>]", luaL_typename(L, idx)); break;
    }
    n = strlen(step);
    if (have + n >= sizeof x->where) return;
    memmove(x->where + n, x->where, have + 1);
    memcpy(x->where, step, n);
}

/* The marked kind of the table or userdata at idx (its metatable's
 * __mpconn), or -1.  For a dict marked with a key order, the order table is
 * left on the stack and *order is its index; otherwise nothing is pushed. */
static int mpcl_tov_kind(mpcl_tov *x, int idx, int *order)
{
    lua_State *L = x->L;
    int kind = -1;
    *order = 0;
    if (!lua_getmetatable(L, idx)) return -1;
    lua_pushvalue(L, x->kind_key);
    if (lua_rawget(L, -2) == LUA_TNUMBER) kind = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (kind == MPC_V_DICT) {
        lua_pushvalue(L, x->order_key);
        if (lua_rawget(L, -2) == LUA_TTABLE) {
            lua_remove(L, -2); /* the metatable */
            *order = lua_gettop(L);
            return kind;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return kind;
}

/* 1 if the plain table at idx has exactly the keys 1..n (n = its raw
 * length, n >= 1). */
static int mpcl_is_sequence(lua_State *L, int idx, lua_Integer n)
{
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1)) { lua_pop(L, 1); return 0; }
        {
            lua_Integer k = lua_tointeger(L, -1);
            if (k < 1 || k > n) { lua_pop(L, 1); return 0; }
        }
        count++;
    }
    return count == n;
}

/* A list or tuple from t[1..n]; a nil hole becomes None. */
static mpc_value *mpcl_tov_seq(mpcl_tov *x, int idx, int depth, int kind, lua_Integer n)
{
    lua_State *L = x->L;
    lua_Integer i;
    mpc_value *seq = kind == MPC_V_TUPLE ? mpc_value_new_tuple() : mpc_value_new_list();
    if (!seq) return mpcl_tov_nomem(x);
    x->pathv[depth] = seq;
    int height = 0;
    for (i = 1; i <= n; i++) {
        mpc_value *item;
        lua_rawgeti(L, idx, i);
        item = mpcl_tov_value(x, lua_gettop(L), depth + 1);
        if (item && x->height > height) height = x->height;
        if (!item) {
            lua_pushinteger(L, i);
            mpcl_tov_where(x, -1);
            lua_pop(L, 2);
            mpc_value_free(seq);
            return NULL;
        }
        lua_pop(L, 1);
        if (item == seq && kind == MPC_V_TUPLE) {
            mpc_value_free(item);
            mpc_value_free(seq);
            return mpcl_tov_err(x, "a tuple cannot contain itself");
        }
        if (mpc_value_append(seq, item) != MPC_OK) {
            mpc_value_free(item);
            mpc_value_free(seq);
            return mpcl_tov_nomem(x);
        }
    }
    x->height = height + 1;
    return seq;
}

/* One pair of a dict (or element of a set: val NULL) waiting to be sorted. */
typedef struct mpcl_entry { mpc_value *key, *val; size_t seen; } mpcl_entry;

static int mpcl_entry_rank(const mpc_value *k)
{
    switch (mpc_value_kind(k)) {
    case MPC_V_INT: case MPC_V_FLOAT: return 0;
    case MPC_V_STR: return 1;
    case MPC_V_BYTES: return 2;
    case MPC_V_BOOL: return 3;
    default: return 4;
    }
}

/* -1, 0, 1 as the int or float a is below, equal to or above b, exactly
 * (math.maxinteger is below 2.0^63, though converting it to a double gives
 * 2.0^63).  No nan here: a Lua table key cannot be nan. */
static int mpcl_num_cmp(const mpc_value *a, const mpc_value *b)
{
    int ia = mpc_value_kind(a) == MPC_V_INT, ib = mpc_value_kind(b) == MPC_V_INT;
    if (ia && ib) {
        int64_t i = mpc_value_int(a), j = mpc_value_int(b);
        return i < j ? -1 : i > j;
    }
    if (!ia && !ib) {
        double f = mpc_value_float(a), g = mpc_value_float(b);
        return f < g ? -1 : f > g;
    }
    {
        int64_t i = mpc_value_int(ia ? a : b);
        double f = mpc_value_float(ia ? b : a), t;
        int r; /* int against float */
        if (f >= 9223372036854775808.0) r = -1;
        else if (f < -9223372036854775808.0) r = 1;
        else {
            int64_t k = (int64_t)(t = floor(f)); /* exact: |t| < 2^63 */
            r = i < k ? -1 : i > k ? 1 : (t < f ? -1 : 0);
        }
        return ia ? r : -r;
    }
}

/* Keys in a fixed order: numbers ascending, then str and bytes by their
 * bytes, then false, true, then everything else in traversal order. */
static int mpcl_entry_cmp(const void *pa, const void *pb)
{
    const mpcl_entry *a = (const mpcl_entry *)pa, *b = (const mpcl_entry *)pb;
    int ra = mpcl_entry_rank(a->key), rb = mpcl_entry_rank(b->key);
    if (ra != rb) return ra < rb ? -1 : 1;
    if (ra == 0) {
        int c = mpcl_num_cmp(a->key, b->key);
        if (c) return c;
    } else if (ra == 1 || ra == 2) {
        size_t la = 0, lb = 0;
        const char *sa = mpc_value_str(a->key, &la), *sb = mpc_value_str(b->key, &lb);
        int c = memcmp(sa, sb, la < lb ? la : lb);
        if (c) return c;
        if (la != lb) return la < lb ? -1 : 1;
    } else if (ra == 3) {
        int64_t i = mpc_value_int(a->key), j = mpc_value_int(b->key);
        if (i != j) return i < j ? -1 : 1;
    }
    return a->seen < b->seen ? -1 : (a->seen > b->seen);
}

static void mpcl_entries_free(mpcl_entry *e, size_t from, size_t n)
{
    size_t i;
    for (i = from; i < n; i++) { mpc_value_free(e[i].key); mpc_value_free(e[i].val); }
    free(e);
}

/* Converts the key at kidx and (unless a set) the value at vidx into
 * *e.  0, or -1 with the error (and its place) recorded. */
static int mpcl_tov_pair(mpcl_tov *x, int kidx, int vidx, int depth, int is_set, mpcl_entry *e, int *height)
{
    e->val = NULL;
    if (!(e->key = mpcl_tov_value(x, kidx, depth + 1))) {
        mpcl_tov_where(x, kidx);
        return -1;
    }
    if (x->height > *height) *height = x->height;
    if (!is_set && !(e->val = mpcl_tov_value(x, vidx, depth + 1))) {
        mpcl_tov_where(x, kidx);
        mpc_value_free(e->key);
        e->key = NULL;
        return -1;
    }
    if (!is_set && x->height > *height) *height = x->height;
    return 0;
}

/* Adds *e to the dict or set d (which then owns both nodes).  An error if
 * the key is unhashable or equals a key already there ("collide"). */
static int mpcl_tov_add(mpcl_tov *x, mpc_value *d, int is_set, mpcl_entry *e, int kidx)
{
    size_t before = mpc_value_len(d);
    mpc_status st = is_set ? mpc_value_set_add(d, e->key) : mpc_value_dict_set(d, e->key, e->val);
    if (st != MPC_OK) {
        const char *kname = mpc_vkind_name(mpc_value_kind(e->key));
        mpc_value_free(e->key);
        mpc_value_free(e->val);
        e->key = e->val = NULL;
        if (st == MPC_NOMEM) { mpcl_tov_nomem(x); return -1; }
        mpcl_tov_err(x, "%s of type %s is unhashable in Python (use mpconn.tuple or mpconn.frozenset for "
                     "a container key)", is_set ? "set item" : "dict key", kname);
        if (kidx) mpcl_tov_where(x, kidx);
        return -1;
    }
    e->key = e->val = NULL;
    if (mpc_value_len(d) == before) {
        mpcl_tov_err(x, "two %s are equal in Python (1 == 1.0 == true, 0 == false)",
                     is_set ? "set items" : "dict keys");
        if (kidx) mpcl_tov_where(x, kidx);
        return -1;
    }
    return 0;
}

/* Appends *e to the growable array. */
static int mpcl_entries_push(mpcl_entry **v, size_t *n, size_t *cap, const mpcl_entry *e)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        mpcl_entry *p = (mpcl_entry *)realloc(*v, nc * sizeof *p);
        if (!p) return -1;
        *v = p;
        *cap = nc;
    }
    (*v)[(*n)++] = *e;
    return 0;
}

/* A dict (or set: the keys whose value is neither nil nor false) from the
 * table at idx.  With an order table (index order, 0 if none) the keys it
 * lists come first in its order, the rest follow sorted. */
static mpc_value *mpcl_tov_map(mpcl_tov *x, int idx, int depth, int kind, int order)
{
    lua_State *L = x->L;
    int is_set = kind == MPC_V_SET || kind == MPC_V_FROZENSET;
    mpc_value *d = kind == MPC_V_SET ? mpc_value_new_set()
                 : kind == MPC_V_FROZENSET ? mpc_value_new_frozenset() : mpc_value_new_dict();
    mpcl_entry *v = NULL, e;
    size_t n = 0, cap = 0, i, placed = 0, again = 0;
    int height = 0;
    if (!d) return mpcl_tov_nomem(x);
    x->pathv[depth] = d;
    if (order) {
        lua_Integer j, m = (lua_Integer)lua_rawlen(L, order);
        for (j = 1; j <= m; j++) {
            size_t before;
            int kidx;
            lua_rawgeti(L, order, j);
            kidx = lua_gettop(L);
            if (lua_isnil(L, kidx)) { lua_pop(L, 1); continue; }
            lua_pushvalue(L, kidx);
            if (lua_rawget(L, idx) == LUA_TNIL) { lua_pop(L, 2); continue; }
            if (mpcl_tov_pair(x, kidx, kidx + 1, depth, 0, &e, &height) < 0) goto fail_pop2;
            before = mpc_value_len(d);
            if (mpc_value_dict_set(d, e.key, e.val) != MPC_OK) {
                e.seen = 0;
                if (mpcl_tov_add(x, d, 0, &e, kidx) < 0) goto fail_pop2; /* records the error */
            } else if (mpc_value_len(d) == before) {
                /* The order lists the key twice (fine), or two keys of the
                 * table are equal in Python. */
                lua_Integer q;
                int dup = 0;
                for (q = 1; q < j && !dup; q++) {
                    lua_rawgeti(L, order, q);
                    dup = lua_rawequal(L, -1, kidx);
                    lua_pop(L, 1);
                }
                if (!dup) {
                    mpcl_tov_err(x, "two dict keys are equal in Python (1 == 1.0 == true, 0 == false)");
                    mpcl_tov_where(x, kidx);
                    goto fail_pop2;
                }
            } else {
                placed++;
            }
            lua_pop(L, 2);
        }
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kidx = lua_gettop(L) - 1;
        if (is_set && !lua_toboolean(L, -1)) { lua_pop(L, 1); continue; }
        if (mpcl_tov_pair(x, kidx, kidx + 1, depth, is_set, &e, &height) < 0) goto fail_pop2;
        if (order && mpc_value_dict_get(d, e.key)) {
            /* Placed by the order pass (or equal to a key that was: counted). */
            mpc_value_free(e.key);
            mpc_value_free(e.val);
            if (++again > placed) {
                mpcl_tov_err(x, "two dict keys are equal in Python (1 == 1.0 == true, 0 == false)");
                mpcl_tov_where(x, kidx);
                goto fail_pop2;
            }
            lua_pop(L, 1);
            continue;
        }
        e.seen = n;
        if (mpcl_entries_push(&v, &n, &cap, &e) < 0) {
            mpc_value_free(e.key);
            mpc_value_free(e.val);
            mpcl_tov_nomem(x);
            goto fail_pop2;
        }
        lua_pop(L, 1);
    }
    if (n > 1) qsort(v, n, sizeof *v, mpcl_entry_cmp);
    for (i = 0; i < n; i++) {
        if (mpcl_tov_add(x, d, is_set, &v[i], 0) < 0) {
            mpcl_entries_free(v, i + 1, n);
            mpc_value_free(d);
            return NULL;
        }
    }
    free(v);
    x->height = height + 1;
    return d;
fail_pop2:
    lua_pop(L, 2);
    mpcl_entries_free(v, 0, n);
    mpc_value_free(d);
    return NULL;
}

/* The "value" field (a string) of a marked bytes/bytearray/bigint table. */
static const char *mpcl_tov_field(mpcl_tov *x, int idx, size_t *len)
{
    const char *s;
    lua_pushvalue(x->L, x->value_key);
    if (lua_rawget(x->L, idx) != LUA_TSTRING) { lua_pop(x->L, 1); return NULL; }
    s = lua_tolstring(x->L, -1, len);
    lua_pop(x->L, 1); /* still referenced by the table */
    return s;
}

/* The slot of table t in x->seen (its table is NULL if t is absent). */
static size_t mpcl_seen_slot(const mpcl_tov *x, const void *t)
{
    size_t i = mpcl_ptr_hash(t, x->seen_cap);
    while (x->seen[i].table && x->seen[i].table != t) i = (i + 1) & (x->seen_cap - 1);
    return i;
}

/* Records that table t became node v (of height x->height).  -1 if out of
 * memory. */
static int mpcl_seen_add(mpcl_tov *x, const void *t, mpc_value *v)
{
    size_t i;
    if ((x->seen_n + 1) * 2 > x->seen_cap) {
        size_t nc = x->seen_cap ? x->seen_cap * 2 : 64;
        mpcl_seen *old = x->seen, *nw = (mpcl_seen *)calloc(nc, sizeof *nw);
        size_t ocap = x->seen_cap;
        if (!nw) return -1;
        x->seen = nw;
        x->seen_cap = nc;
        for (i = 0; i < ocap; i++)
            if (old[i].table) x->seen[mpcl_seen_slot(x, old[i].table)] = old[i];
        free(old);
    }
    i = mpcl_seen_slot(x, t);
    x->seen[i].table = t;
    x->seen[i].node = v;
    x->seen[i].height = x->height;
    x->seen_n++;
    return 0;
}

static mpc_value *mpcl_tov_table_new(mpcl_tov *x, int idx, int depth);

/* A table met again is the same node again (mpc_value_share): a value that
 * shares sub-tables costs what it holds, not its expansion, and Python gets
 * one object, as from a pickle's memo.  A table met again while it is still
 * being converted (a cycle) is its container node, made before its items. */
static mpc_value *mpcl_tov_table(mpcl_tov *x, int idx, int depth)
{
    const void *self = lua_topointer(x->L, idx);
    mpc_value *v;
    int d;
    if (x->seen_cap) {
        size_t i = mpcl_seen_slot(x, self);
        if (x->seen[i].table) {
            if (depth - 1 + x->seen[i].height > x->max_depth)
                return mpcl_tov_err(x, "nesting deeper than %d levels", x->max_depth);
            x->height = x->seen[i].height;
            return mpc_value_share(x->seen[i].node);
        }
    }
    for (d = 1; d < depth; d++) {
        if (x->path[d] == self) {
            x->height = 1;
            if (!x->pathv[d]) return mpcl_tov_err(x, "the table contains itself (a cycle)");
            return mpc_value_share(x->pathv[d]);
        }
    }
    if (!(v = mpcl_tov_table_new(x, idx, depth))) return NULL;
    if (mpcl_seen_add(x, self, v) < 0) {
        mpc_value_free(v);
        return mpcl_tov_nomem(x);
    }
    return v;
}

static mpc_value *mpcl_tov_table_new(mpcl_tov *x, int idx, int depth)
{
    lua_State *L = x->L;
    const void *self = lua_topointer(L, idx);
    int kind, order;
    mpc_value *v;
    size_t len = 0;
    const char *s;
    if (depth > x->max_depth) return mpcl_tov_err(x, "nesting deeper than %d levels", x->max_depth);
    x->path[depth] = self;
    x->pathv[depth] = NULL;
    x->height = 1;
    if (!lua_checkstack(L, 12)) return mpcl_tov_err(x, "out of Lua stack space");
    kind = mpcl_tov_kind(x, idx, &order);
    switch (kind) {
    case MPC_V_LIST: case MPC_V_TUPLE:
        return mpcl_tov_seq(x, idx, depth, kind, (lua_Integer)lua_rawlen(L, idx));
    case MPC_V_DICT: case MPC_V_SET: case MPC_V_FROZENSET:
        v = mpcl_tov_map(x, idx, depth, kind, order);
        if (order) lua_remove(L, order);
        return v;
    case MPC_V_BYTES: case MPC_V_BYTEARRAY:
        if (!(s = mpcl_tov_field(x, idx, &len)))
            return mpcl_tov_err(x, "a marked %s has no string in its field 'value'", mpc_vkind_name(kind));
        v = kind == MPC_V_BYTES ? mpc_value_new_bytes(s, len) : mpc_value_new_bytearray(s, len);
        return v ? v : mpcl_tov_nomem(x);
    case MPC_V_BIGINT:
        if (!(s = mpcl_tov_field(x, idx, &len)) || !(v = mpc_value_new_bigint(s, len)))
            return mpcl_tov_err(x, "a marked bigint needs decimal text \"[-+]digits\" (at most 4300 digits) "
                                "in its field 'value'");
        return v;
    case -1: {
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        if (n > 0 && mpcl_is_sequence(L, idx, n)) return mpcl_tov_seq(x, idx, depth, MPC_V_LIST, n);
        return mpcl_tov_map(x, idx, depth, MPC_V_DICT, 0);
    }
    default:
        return mpcl_tov_err(x, "a table with an unknown __mpconn mark %d", kind);
    }
}

static mpc_value *mpcl_tov_value(mpcl_tov *x, int idx, int depth)
{
    lua_State *L = x->L;
    mpc_value *v = NULL;
    x->height = 1;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: v = mpc_value_new_none(); break;
    case LUA_TBOOLEAN: v = mpc_value_new_bool(lua_toboolean(L, idx)); break;
    case LUA_TNUMBER:
        v = lua_isinteger(L, idx) ? mpc_value_new_int((int64_t)lua_tointeger(L, idx))
                                  : mpc_value_new_float((double)lua_tonumber(L, idx));
        break;
    case LUA_TSTRING: {
        size_t n = 0;
        const char *s = lua_tolstring(L, idx, &n);
        v = mpcl_utf8_valid((const unsigned char *)s, n) ? mpc_value_new_str(s, n) : mpc_value_new_bytes(s, n);
        break;
    }
    case LUA_TTABLE: return mpcl_tov_table(x, idx, depth);
    case LUA_TUSERDATA:
        lua_rawgeti(L, x->env, MPCL_E_NULL);
        if (lua_rawequal(L, -1, idx)) { lua_pop(L, 1); v = mpc_value_new_none(); break; }
        lua_pop(L, 1);
        /* fall through */
    default:
        return mpcl_tov_err(x, "cannot send a value of type %s", luaL_typename(L, idx));
    }
    return v ? v : mpcl_tov_nomem(x);
}

/* The tree of the Lua value at idx (caller owns), or NULL with the message
 * of the error pushed (the caller raises it).  Pushes three keys and pops
 * them again; env is the index of E. */
static mpc_value *mpcl_to_value(lua_State *L, int idx, int env, int max_depth)
{
    mpcl_tov x;
    const void *path[MPC_VALUE_DEPTH_MAX + 2];
    mpc_value *pathv[MPC_VALUE_DEPTH_MAX + 2];
    mpc_value *v;
    int base = lua_gettop(L);
    memset(&x, 0, offsetof(mpcl_tov, msg));
    x.msg[0] = x.where[0] = '\0';
    x.L = L;
    x.env = env;
    x.max_depth = max_depth > 0 && max_depth <= MPC_VALUE_DEPTH_MAX ? max_depth : MPC_VALUE_DEPTH_DEFAULT;
    x.path = path;
    x.pathv = pathv;
    luaL_checkstack(L, 16, "send");
    lua_rawgeti(L, env, MPCL_E_KIND_KEY);
    x.kind_key = lua_gettop(L);
    lua_rawgeti(L, env, MPCL_E_ORDER_KEY);
    x.order_key = lua_gettop(L);
    lua_rawgeti(L, env, MPCL_E_VALUE_KEY);
    x.value_key = lua_gettop(L);
    v = mpcl_tov_value(&x, idx, 1);
    free(x.seen);
    lua_settop(L, base);
    if (!v) {
        if (x.where[0]) lua_pushfstring(L, "%s (at value%s)", x.msg, x.where);
        else lua_pushstring(L, x.msg);
    }
    return v;
}

/* ---- tree -> Lua ----------------------------------------------------------- */

/* The pointer set of the holder (mpcl_hold, mpcl.h) counts how often
 * each container (and long string) occurs in the tree: the decoder shares
 * memoized sub-objects, and so do we (one Lua table per shared node, as
 * Python gets one object), which also keeps a small pickle that shares a
 * node many times from costing a Lua table per occurrence. */
/* The slot of p in the set (its key is NULL if p is absent). */
static size_t mpcl_hold_slot(const mpcl_hold *h, const void *p)
{
    size_t i = mpcl_ptr_hash(p, h->cap);
    while (h->keys[i] && h->keys[i] != p) i = (i + 1) & (h->cap - 1);
    return i;
}

static int mpcl_hold_grow(mpcl_hold *h)
{
    size_t i, nc = h->cap ? h->cap * 2 : 256;
    const mpc_value **ok = h->keys;
    unsigned char *oc = h->cnt;
    size_t ocap = h->cap;
    h->keys = (const mpc_value **)calloc(nc, sizeof *h->keys);
    h->cnt = (unsigned char *)calloc(nc, 1);
    if (!h->keys || !h->cnt) {
        free(h->keys);
        free(h->cnt);
        h->keys = ok;
        h->cnt = oc;
        return -1;
    }
    h->cap = nc;
    for (i = 0; i < ocap; i++) {
        if (ok[i]) {
            size_t s = mpcl_hold_slot(h, ok[i]);
            h->keys[s] = ok[i];
            h->cnt[s] = oc[i];
        }
    }
    free(ok);
    free(oc);
    return 0;
}

static int mpcl_share_candidate(const mpc_value *v)
{
    switch (mpc_value_kind(v)) {
    case MPC_V_LIST: case MPC_V_TUPLE: case MPC_V_DICT: case MPC_V_SET: case MPC_V_FROZENSET: return 1;
    case MPC_V_STR: case MPC_V_BYTES: case MPC_V_BYTEARRAY: case MPC_V_BIGINT:
        return mpc_value_len(v) >= MPCL_SHARE_MIN;
    default: return 0;
    }
}

/* Counts the occurrences of every candidate node under v, without
 * descending twice into a shared one (so the walk is linear in the size of
 * the pickle, and ends on cycles).  -1 on out of memory, -2 for a path
 * longer than MPC_VALUE_DEPTH_MAX (only a cycle can make one). */
static int mpcl_hold_count(mpcl_hold *h, const mpc_value *v, int depth)
{
    int rc;
    size_t i, n, s;
    mpc_vkind k;
    if (!mpcl_share_candidate(v)) return 0;
    if ((h->n + 1) * 2 > h->cap && mpcl_hold_grow(h) < 0) return -1;
    s = mpcl_hold_slot(h, v);
    if (h->keys[s]) {
        if (h->cnt[s] == 1) { h->cnt[s] = 2; h->shared++; }
        return 0;
    }
    h->keys[s] = v;
    h->cnt[s] = 1;
    h->n++;
    k = mpc_value_kind(v);
    n = mpc_value_len(v);
    if (k >= MPC_V_LIST && depth >= MPC_VALUE_DEPTH_MAX) return -2;
    if (k == MPC_V_DICT) {
        for (i = 0; i < n; i++)
            if ((rc = mpcl_hold_count(h, mpc_value_dict_key(v, i), depth + 1)) < 0
                || (rc = mpcl_hold_count(h, mpc_value_dict_val(v, i), depth + 1)) < 0)
                return rc;
    } else if (k >= MPC_V_LIST) {
        for (i = 0; i < n; i++)
            if ((rc = mpcl_hold_count(h, mpc_value_item(v, i), depth + 1)) < 0) return rc;
    }
    return 0;
}

typedef struct mpcl_fromv {
    lua_State *L;
    int env, memo;   /* stack indexes of E and of the memo table (0: nothing shared) */
    unsigned flags;
    mpcl_hold *h;
    int depth;       /* containers being converted */
    char msg[160];
} mpcl_fromv;

#define MPCL_AS_KEY 1  /* the value becomes a Lua table key */
#define MPCL_IN_KEY 2  /* inside a key: tuples stay marked tuples (hashable) */

static int mpcl_fromv_push(mpcl_fromv *x, const mpc_value *v, int how);

static int mpcl_fromv_err(mpcl_fromv *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->msg, sizeof x->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* Sets the metatable of the kind on the table on top. */
static void mpcl_fromv_mark(mpcl_fromv *x, int kind)
{
    lua_rawgeti(x->L, x->env, MPCL_E_META + kind);
    lua_setmetatable(x->L, -2);
}

/* A marked bytes/bytearray/bigint table {value = s}, pushed. */
static void mpcl_fromv_boxed(mpcl_fromv *x, int kind, const char *s, size_t n)
{
    lua_State *L = x->L;
    lua_createtable(L, 0, 1);
    lua_rawgeti(L, x->env, MPCL_E_VALUE_KEY);
    lua_pushlstring(L, s, n);
    lua_rawset(L, -3);
    mpcl_fromv_mark(x, kind);
}

static int mpcl_fromv_int_hint(size_t n) { return n > (size_t)INT_MAX ? 0 : (int)n; }

/* Does a dict or set hold both str and bytes keys that become the same kind
 * of Lua string (bytes not marked)?  Then keys are checked for collisions. */
static int mpcl_fromv_mixed(mpcl_fromv *x, const mpc_value *v, int is_dict)
{
    size_t i, n = mpc_value_len(v);
    int str = 0, bytes = 0;
    if (x->flags & MPCL_R_BYTES_MARKED) return 0;
    for (i = 0; i < n; i++) {
        mpc_vkind k = mpc_value_kind(is_dict ? mpc_value_dict_key(v, i) : mpc_value_item(v, i));
        str |= k == MPC_V_STR;
        bytes |= k == MPC_V_BYTES;
    }
    return str && bytes;
}

/* Pushes the key of a dict/set, with the checks Lua needs. */
static int mpcl_fromv_key(mpcl_fromv *x, const mpc_value *k, int tidx, int check)
{
    lua_State *L = x->L;
    if (mpc_value_kind(k) == MPC_V_FLOAT && isnan(mpc_value_float(k)))
        return mpcl_fromv_err(x, "a dict key or set item is nan, which cannot be a Lua table key");
    if (mpcl_fromv_push(x, k, MPCL_AS_KEY | MPCL_IN_KEY) < 0) return -1;
    if (check && lua_type(L, -1) == LUA_TSTRING) {
        lua_pushvalue(L, -1);
        if (lua_rawget(L, tidx) != LUA_TNIL) {
            size_t n = 0;
            const char *s = lua_tolstring(L, -2, &n);
            return mpcl_fromv_err(x, "the str and bytes keys '%.40s' both become the same Lua string "
                                  "(receive with {bytes = \"marked\"})", n ? s : "");
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Records the table on top as the Lua value of a shared node (memo_key),
 * before its items are converted, so that a cycle finds it. */
static void mpcl_fromv_memo(mpcl_fromv *x, const void *memo_key)
{
    if (!memo_key) return;
    lua_pushvalue(x->L, -1);
    lua_rawsetp(x->L, x->memo, memo_key);
}

static int mpcl_fromv_container(mpcl_fromv *x, const mpc_value *v, mpc_vkind k, int how, const void *memo_key)
{
    lua_State *L = x->L;
    size_t i, n = mpc_value_len(v);
    int t;
    if (!lua_checkstack(L, 8)) return mpcl_fromv_err(x, "out of Lua stack space");
    if (x->depth >= MPC_VALUE_DEPTH_MAX)
        return mpcl_fromv_err(x, "nesting deeper than %d levels through a cycle", MPC_VALUE_DEPTH_MAX);
    if (k == MPC_V_LIST || k == MPC_V_TUPLE) {
        int sub = how & MPCL_IN_KEY;
        lua_createtable(L, mpcl_fromv_int_hint(n), 0);
        t = lua_gettop(L);
        mpcl_fromv_memo(x, memo_key);
        x->depth++;
        for (i = 0; i < n; i++) {
            if (mpcl_fromv_push(x, mpc_value_item(v, i), sub) < 0) return -1;
            lua_rawseti(L, t, (lua_Integer)i + 1);
        }
        x->depth--;
        mpcl_fromv_mark(x, k == MPC_V_TUPLE && ((x->flags & MPCL_R_TUPLE_MARKED) || (how & MPCL_IN_KEY))
                               ? MPC_V_TUPLE : MPC_V_LIST);
        return 0;
    }
    if (k == MPC_V_DICT) {
        int check = mpcl_fromv_mixed(x, v, 1), order = 0;
        lua_createtable(L, 0, mpcl_fromv_int_hint(n));
        t = lua_gettop(L);
        mpcl_fromv_memo(x, memo_key);
        x->depth++;
        if (x->flags & MPCL_R_ORDERED) {
            lua_createtable(L, mpcl_fromv_int_hint(n), 0);
            order = lua_gettop(L);
        }
        for (i = 0; i < n; i++) {
            if (mpcl_fromv_key(x, mpc_value_dict_key(v, i), t, check) < 0) return -1;
            if (order) {
                lua_pushvalue(L, -1);
                lua_rawseti(L, order, (lua_Integer)i + 1);
            }
            if (mpcl_fromv_push(x, mpc_value_dict_val(v, i), 0) < 0) return -1;
            lua_rawset(L, t);
        }
        x->depth--;
        if (order) {
            /* A metatable of its own: {__mpconn = DICT, __order = keys,
             * __name, __index...} copied from the dict metatable. */
            lua_createtable(L, 0, 6);
            lua_rawgeti(L, x->env, MPCL_E_META + MPC_V_DICT);
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, -5);
            }
            lua_pop(L, 1);
            lua_rawgeti(L, x->env, MPCL_E_ORDER_KEY);
            lua_pushvalue(L, order);
            lua_rawset(L, -3);
            lua_setmetatable(L, t);
            lua_pop(L, 1); /* the order table */
        }
        return 0;
    }
    /* SET, FROZENSET: {item = true} */
    {
        int check = mpcl_fromv_mixed(x, v, 0);
        lua_createtable(L, 0, mpcl_fromv_int_hint(n));
        t = lua_gettop(L);
        mpcl_fromv_memo(x, memo_key);
        for (i = 0; i < n; i++) {
            if (mpcl_fromv_key(x, mpc_value_item(v, i), t, check) < 0) return -1;
            lua_pushboolean(L, 1);
            lua_rawset(L, t);
        }
        mpcl_fromv_mark(x, k);
        return 0;
    }
}

static int mpcl_fromv_push(mpcl_fromv *x, const mpc_value *v, int how)
{
    lua_State *L = x->L;
    mpc_vkind k = mpc_value_kind(v);
    const char *s;
    size_t n = 0;
    const void *memo_key = NULL;
    switch (k) {
    case MPC_V_NONE: lua_rawgeti(L, x->env, MPCL_E_NULL); return 0;
    case MPC_V_BOOL: lua_pushboolean(L, (int)mpc_value_int(v)); return 0;
    case MPC_V_INT: lua_pushinteger(L, (lua_Integer)mpc_value_int(v)); return 0;
    case MPC_V_FLOAT: lua_pushnumber(L, (lua_Number)mpc_value_float(v)); return 0;
    default: break;
    }
    if (x->memo) {
        size_t slot;
        if (!mpcl_share_candidate(v)) goto convert;
        slot = mpcl_hold_slot(x->h, v);
        if (!x->h->keys[slot] || x->h->cnt[slot] < 2) goto convert;
        /* A shared node: one Lua value per node (and per "inside a key or
         * not", which decides how tuples are marked). */
        memo_key = (const char *)v + ((how & MPCL_IN_KEY) ? 1 : 0);
        if (lua_rawgetp(L, x->memo, memo_key) != LUA_TNIL) return 0;
        lua_pop(L, 1);
    }
convert:
    s = mpc_value_str(v, &n);
    switch (k) {
    case MPC_V_STR: lua_pushlstring(L, s, n); break;
    case MPC_V_BYTES: case MPC_V_BYTEARRAY:
        if (x->flags & MPCL_R_BYTES_MARKED) mpcl_fromv_boxed(x, k, s, n);
        else lua_pushlstring(L, s, n);
        break;
    case MPC_V_BIGINT: mpcl_fromv_boxed(x, k, s, n); break;
    case MPC_V_LIST: case MPC_V_TUPLE: case MPC_V_DICT: case MPC_V_SET: case MPC_V_FROZENSET:
        /* The container records itself in the memo before its items. */
        return mpcl_fromv_container(x, v, k, how, memo_key);
    default: return mpcl_fromv_err(x, "unexpected value kind %d", (int)k);
    }
    if (memo_key) {
        lua_pushvalue(L, -1);
        lua_rawsetp(L, x->memo, memo_key);
    }
    return 0;
}

/* Pushes the Lua value of h->tree (None at the top: nil) and returns 1, or
 * pushes nil, message, "VALUE" and returns 3.  NOMEM as nil, message,
 * "NOMEM".  Releases what h holds. */
static int mpcl_from_value(lua_State *L, int env, mpcl_hold *h, unsigned flags)
{
    mpcl_fromv x;
    int base = lua_gettop(L), rc;
    memset(&x, 0, sizeof x);
    x.L = L;
    x.env = env;
    x.flags = flags;
    x.h = h;
    if (mpc_value_kind(h->tree) == MPC_V_NONE) {
        mpcl_hold_release(h);
        lua_pushnil(L);
        return 1;
    }
    rc = mpcl_hold_count(h, h->tree, 0);
    if (rc < 0) {
        mpcl_hold_release(h);
        lua_pushnil(L);
        if (rc == -2) {
            lua_pushfstring(L, "recv: nesting deeper than %d levels through a cycle", MPC_VALUE_DEPTH_MAX);
            lua_pushliteral(L, "VALUE");
        } else {
            lua_pushliteral(L, "recv: out of memory");
            lua_pushliteral(L, "NOMEM");
        }
        return 3;
    }
    if (h->shared) {
        lua_newtable(L);
        x.memo = lua_gettop(L);
    }
    rc = mpcl_fromv_push(&x, h->tree, 0);
    mpcl_hold_release(h);
    if (rc < 0) {
        lua_settop(L, base);
        lua_pushnil(L);
        lua_pushstring(L, x.msg);
        lua_pushliteral(L, "VALUE");
        return 3;
    }
    if (x.memo) lua_remove(L, x.memo);
    return 1;
}

static void mpcl_decode_options(unsigned flags, mpc_decode_options *o)
{
    unsigned py2 = (flags >> MPCL_R_PY2_SHIFT) & 0x3;
    memset(o, 0, sizeof *o);
    o->py2_str = py2 == MPCL_R_PY2_DEFAULT ? MPC_PY2STR_BYTES : (mpc_py2str)py2;
    o->max_depth = flags >> MPCL_R_DEPTH_SHIFT;
}

/* ---- the closures ------------------------------------------------------------ */

/* Calls E[which](self, opts, nargs) for a call the fast path does not take;
 * it raises on misuse and returns an integer (a protocol or flags).  The
 * stack is left as self, value-or-nil, integer. */
static lua_Integer mpcl_value_prep(lua_State *L, int which, int valpos, int *hidx, mpc_conn **c)
{
    int nargs = lua_gettop(L);
    lua_Integer r;
    if (nargs < valpos + 2) lua_settop(L, valpos + 2); /* the options slot exists (nil: none) */
    lua_rawgeti(L, MPCL_UP_ENV, which);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, valpos + 2); /* the options (none: nil) */
    lua_pushinteger(L, nargs - 1);
    lua_call(L, 3, 1);
    r = lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_settop(L, valpos ? 2 : 1);
    if (!valpos) lua_pushnil(L);
    if (!(*c = mpcl_self(L, 2, hidx))) luaL_error(L, "mpconn: prep accepted a connection without a handle");
    return r;
}

/* conn:send(v [, opts]) -> true | nil, message, code.  Raises if v cannot
 * be sent (a function, a cycle, ...): nothing was sent then. */
static int mpcl_send_value(lua_State *L)
{
    int hidx = 0, env = MPCL_UP_ENV;
    mpc_conn *c = NULL;
    lua_Integer protocol = 4, depth = 0;
    mpcl_hold *h;
    mpc_status st;
    if (lua_gettop(L) != 2 || !(c = mpcl_self(L, 2, &hidx))) {
        /* send_prep packs protocol + 256 * max_depth. */
        lua_Integer packed = mpcl_value_prep(L, MPCL_E_SEND_PREP, 1, &hidx, &c);
        protocol = packed & 0xff;
        depth = packed >> 8;
    }
    h = mpcl_hold_new(L);
    if (!(h->tree = mpcl_to_value(L, 2, env, (int)depth))) return luaL_error(L, "send: %s", lua_tostring(L, -1));
    c = mpcl_live(L, hidx, "send");
    st = mpc_send_value(c, h->tree, (int)protocol);
    mpcl_hold_release(h);
    if (st == MPC_OK) { lua_pushboolean(L, 1); return 1; }
    lua_rawgeti(L, env, MPCL_E_FAIL);
    return mpcl_fail_with(L, lua_gettop(L), hidx, c, st);
}

/* conn:recv([opts]) -> value | nil, message, code.  A None message is a
 * single nil. */
static int mpcl_recv_value(lua_State *L)
{
    int hidx = 0, env = MPCL_UP_ENV;
    mpc_conn *c = NULL;
    lua_Integer flags = (lua_Integer)MPCL_R_PY2_DEFAULT << MPCL_R_PY2_SHIFT;
    mpc_decode_options o;
    mpcl_hold *h;
    mpc_status st;
    if (lua_gettop(L) != 1 || !(c = mpcl_self(L, 1, &hidx)))
        flags = mpcl_value_prep(L, MPCL_E_RECV_PREP, 0, &hidx, &c);
    mpcl_decode_options((unsigned)flags, &o);
    h = mpcl_hold_new(L);
    c = mpcl_live(L, hidx, "recv");
    st = mpc_recv_value(c, &o, &h->tree);
    if (st != MPC_OK) {
        lua_rawgeti(L, env, MPCL_E_FAIL);
        return mpcl_fail_with(L, lua_gettop(L), hidx, c, st);
    }
    return mpcl_from_value(L, env, h, (unsigned)flags);
}

/* encode(v, protocol, max_depth) -> pickle string (raises if v cannot be
 * sent). */
static int mpcl_encode(lua_State *L)
{
    int env = MPCL_UP_ENV;
    lua_Integer protocol = luaL_checkinteger(L, 2), depth = luaL_optinteger(L, 3, 0);
    mpcl_hold *h;
    size_t n = 0;
    mpc_status st;
    mpc_error err;
    lua_settop(L, 3);
    h = mpcl_hold_new(L);
    if (!(h->tree = mpcl_to_value(L, 1, env, (int)depth))) return luaL_error(L, "encode: %s", lua_tostring(L, -1));
    st = mpc_value_encode(h->tree, (int)protocol, &h->buf, &n, &err);
    if (st != MPC_OK) {
        lua_pushfstring(L, "encode: %s", err.message);
        mpcl_hold_release(h);
        return lua_error(L);
    }
    lua_pushlstring(L, (const char *)h->buf, n);
    mpcl_hold_release(h);
    return 1;
}

/* decode(s, flags) -> value | nil, message, "VALUE" */
static int mpcl_decode(lua_State *L)
{
    int env = MPCL_UP_ENV;
    size_t n = 0;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_Integer flags = luaL_checkinteger(L, 2);
    mpc_decode_options o;
    mpc_error err;
    mpcl_hold *h;
    mpc_status st;
    mpcl_decode_options((unsigned)flags, &o);
    h = mpcl_hold_new(L);
    st = mpc_value_decode(s, n, &o, &h->tree, &err);
    if (st != MPC_OK) {
        lua_pushnil(L);
        lua_pushstring(L, err.message);
        lua_pushstring(L, mpc_status_name(st));
        return 3;
    }
    return mpcl_from_value(L, env, h, (unsigned)flags);
}

/* repr(v, max_len) -> what Python's repr prints for the value v is sent as
 * (raises if v cannot be sent, returns nil, message, "VALUE" if the text
 * would be longer than max_len). */
static int mpcl_repr(lua_State *L)
{
    int env = MPCL_UP_ENV;
    lua_Integer max_len = luaL_checkinteger(L, 2);
    mpcl_hold *h;
    char *text = NULL;
    size_t n = 0;
    mpc_error err;
    mpc_status st;
    lua_settop(L, 2);
    h = mpcl_hold_new(L);
    if (!(h->tree = mpcl_to_value(L, 1, env, 0))) return luaL_error(L, "repr: %s", lua_tostring(L, -1));
    st = mpc_value_repr_limit(h->tree, max_len < 0 ? SIZE_MAX : (size_t)max_len, &text, &n, &err);
    h->buf = text;
    if (st != MPC_OK) {
        lua_pushnil(L);
        lua_pushstring(L, err.message);
        lua_pushstring(L, mpc_status_name(st));
        mpcl_hold_release(h);
        return 3;
    }
    lua_pushlstring(L, text, n);
    mpcl_hold_release(h);
    return 1;
}

/* core.value_setup(slow) -> {null, meta = {list = mt, ...}, kinds = {...},
 * send, recv, encode, decode, repr}.  slow holds the Lua parts:
 * fail(h, st), send_prep(self, opts, nargs) -> protocol and
 * recv_prep(self, opts, nargs) -> flags. */
int mpcl_value_setup(lua_State *L)
{
    static const struct { const char *name; int kind; } kinds[] = {
        {"list", MPC_V_LIST}, {"tuple", MPC_V_TUPLE}, {"dict", MPC_V_DICT}, {"set", MPC_V_SET},
        {"frozenset", MPC_V_FROZENSET}, {"bytes", MPC_V_BYTES}, {"bytearray", MPC_V_BYTEARRAY},
        {"bigint", MPC_V_BIGINT},
    };
    static const struct { const char *name; lua_CFunction fn; } fns[] = {
        {"send", mpcl_send_value}, {"recv", mpcl_recv_value},
        {"encode", mpcl_encode}, {"decode", mpcl_decode}, {"repr", mpcl_repr},
    };
    static const struct { const char *name; lua_Integer value; } consts[] = {
        {"R_BYTES_MARKED", MPCL_R_BYTES_MARKED}, {"R_TUPLE_MARKED", MPCL_R_TUPLE_MARKED},
        {"R_ORDERED", MPCL_R_ORDERED}, {"R_PY2_SHIFT", MPCL_R_PY2_SHIFT},
        {"R_DEPTH_SHIFT", MPCL_R_DEPTH_SHIFT}, {"DEPTH_MAX", MPC_VALUE_DEPTH_MAX},
    };
    static const struct { int slot; const char *name; } slow[] = {
        {MPCL_E_FAIL, "fail"}, {MPCL_E_SEND_PREP, "send_prep"}, {MPCL_E_RECV_PREP, "recv_prep"},
    };
    size_t i;
    int env, res, meta, kt;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_createtable(L, MPCL_E_META + 16, 0);
    env = lua_gettop(L);
    for (i = 0; i < sizeof slow / sizeof slow[0]; i++) {
        if (lua_getfield(L, 1, slow[i].name) != LUA_TFUNCTION)
            return luaL_error(L, "value_setup: slow.%s must be a function", slow[i].name);
        lua_rawseti(L, env, slow[i].slot);
    }
    lua_pushliteral(L, "__mpconn");
    lua_rawseti(L, env, MPCL_E_KIND_KEY);
    lua_pushliteral(L, "__order");
    lua_rawseti(L, env, MPCL_E_ORDER_KEY);
    lua_pushliteral(L, "value");
    lua_rawseti(L, env, MPCL_E_VALUE_KEY);

    lua_createtable(L, 0, 10);
    res = lua_gettop(L);
    /* mpconn.null: a full userdata of its own, with a metatable marking it. */
    lua_newuserdatauv(L, 0, 0);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, MPC_V_NONE);
    lua_setfield(L, -2, "__mpconn");
    lua_pushliteral(L, "mpconn.null");
    lua_setfield(L, -2, "__name");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawseti(L, env, MPCL_E_NULL);
    lua_setfield(L, res, "null");
    lua_createtable(L, 0, 8);
    meta = lua_gettop(L);
    lua_createtable(L, 0, 8);
    kt = lua_gettop(L);
    for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, kinds[i].kind);
        lua_setfield(L, -2, "__mpconn");
        lua_pushfstring(L, "mpconn.%s", kinds[i].name);
        lua_setfield(L, -2, "__name");
        lua_pushvalue(L, -1);
        lua_rawseti(L, env, MPCL_E_META + kinds[i].kind);
        lua_setfield(L, meta, kinds[i].name);
        lua_pushinteger(L, kinds[i].kind);
        lua_setfield(L, kt, kinds[i].name);
    }
    lua_pushinteger(L, MPC_V_NONE);
    lua_setfield(L, kt, "null");
    lua_setfield(L, res, "kinds");
    lua_setfield(L, res, "meta");
    for (i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        lua_pushvalue(L, env);
        lua_pushcclosure(L, fns[i].fn, 1);
        lua_setfield(L, res, fns[i].name);
    }
    for (i = 0; i < sizeof consts / sizeof consts[0]; i++) {
        lua_pushinteger(L, consts[i].value);
        lua_setfield(L, res, consts[i].name);
    }
    return 1;
}
