/*
 * value_internal.h - the layout of mpc_value and the helpers shared by the
 * value modules (value.c: the tree; pickle_decode.c / pickle_encode.c: the
 * pickle codec; pyrepr.c / pyparse.c: Python literal syntax; bigint.c:
 * decimal <-> binary conversion of large integers).  Never installed.
 *
 * Nodes are reference counted so that a pickle's memo can share one
 * sub-object between several containers without copying (a hostile memo
 * could otherwise make a copy exponentially large).  The count is private:
 * the public API speaks only of ownership ("containers own their children").
 *
 * Cycles (a list or dict that reaches itself, as Python allows) live in
 * groups: when an insertion may close a cycle, the containers reachable from
 * both ends join one group, and a group is closed downwards (every container
 * reachable from a member is a member).  A member's refs count only the
 * references from outside its group; the group frees all its members at once
 * when the sum of those (ext) drops to zero.  Every cycle lies inside one
 * group, so the groups form a DAG and plain counting stays exact.  Heights
 * of members mean nothing: the walks (repr, encode, equal, the bindings)
 * bound their own recursion with MPC_VALUE_DEPTH_MAX.
 */
#ifndef MPC_VALUE_INTERNAL_H
#define MPC_VALUE_INTERNAL_H

#include "internal.h"

/* Internal kind used only on the decoder's stack: an allowed global. */
#define MPC__V_GLOBAL 100

typedef struct mpc__group {
    size_t ext;          /* references to members from outside the group */
    mpc_value **m;       /* the members */
    size_t n, cap;
    int mark;            /* scratch for mpc__value_join() */
} mpc__group;

struct mpc_value {
    int kind;            /* mpc_vkind, or MPC__V_GLOBAL */
    unsigned refs;       /* owners of this node (outside its group, if any) */
    unsigned char inside;      /* has been put into a container */
    unsigned char hash_state;  /* 0 not computed, 1 hashable (hash valid), 2 unhashable */
    unsigned char mark;        /* scratch for mpc__value_join() */
    mpc__group *grp;     /* the group of a container that is on (or below) a cycle */
    uint32_t height;     /* 1 for scalars and empty containers, else 1 + max child */
    uint64_t hash;
    union {
        int64_t i;       /* BOOL (0/1), INT, and the global id for MPC__V_GLOBAL */
        double f;
        struct {         /* STR (UTF-8), BYTES, BYTEARRAY, BIGINT (decimal) */
            char *data;  /* always NUL-terminated */
            size_t len;
        } s;
        struct {         /* LIST, TUPLE, SET, FROZENSET, DICT (items = k0 v0 k1 v1 ...) */
            mpc_value **items;
            size_t n;    /* number of elements (pairs for DICT) */
            size_t cap;  /* capacity of items in pointers */
            uint32_t *index;   /* hash index for DICT/SET/FROZENSET, NULL while small */
            size_t index_cap;  /* slots, a power of two */
        } c;
    } u;
};

/* Allocates a node of the kind with refs = 1.  NULL on out of memory. */
mpc_value *mpc__value_alloc(int kind);

/* Makes a STR/BYTES/BYTEARRAY/BIGINT node owning a copy of data. */
mpc_value *mpc__value_new_buf(int kind, const void *data, size_t len);

/* Adds a reference (for the decoder's memo and stack). */
static inline mpc_value *mpc__value_ref(mpc_value *v)
{
    v->refs++;
    if (v->grp)
        v->grp->ext++;
    return v;
}

/* Whether a container may still be modified: lists and dicts always (as in
 * Python), a tuple while no hash depends on it, a set while it is not
 * inside another container. */
static inline int mpc__value_can_modify(const mpc_value *c)
{
    if (c->kind == MPC_V_LIST || c->kind == MPC_V_DICT)
        return 1;
    if (c->kind == MPC_V_TUPLE)
        return !c->inside || c->hash_state != 1;
    return !c->inside;
}

/* Container insertion used by the public calls and the decoder.  They take
 * one reference of each item on success; on failure the caller keeps it.
 * max_depth bounds the resulting height.  err may be NULL.
 *   MPC_INVAL  wrong container kind, frozen container, item == container
 *   MPC_VALUE  unhashable key/element, depth limit
 *   MPC_NOMEM */
mpc_status mpc__value_append(mpc_value *seq, mpc_value *item, uint32_t max_depth, mpc_error *err);
mpc_status mpc__value_set_add(mpc_value *set, mpc_value *item, uint32_t max_depth,
                              mpc_error *err);
mpc_status mpc__value_dict_set(mpc_value *d, mpc_value *key, mpc_value *val, uint32_t max_depth,
                               mpc_error *err);

/* 1 if v can be a dict key / set element (computes and caches its hash). */
int mpc__value_hashable(mpc_value *v);

/* Validates UTF-8 as CPython's 'surrogatepass' decoder does (encoded
 * surrogates U+D800..U+DFFF accepted, overlong forms and values beyond
 * U+10FFFF refused).  Returns 1 if valid. */
int mpc__utf8_valid(const unsigned char *s, size_t len);

/* Decodes one code point at s[*i] (valid input assumed) and advances *i. */
uint32_t mpc__utf8_next(const unsigned char *s, size_t len, size_t *i);

/* Appends the UTF-8 (surrogatepass) encoding of cp to out; returns bytes (1..4). */
size_t mpc__utf8_put(uint32_t cp, unsigned char *out);

/* Unicode "printable" as Python's str.isprintable() for one code point
 * (table generated from Python 3.11's unicodedata, see unicode_printable.c). */
int mpc__unicode_printable(uint32_t cp);

/* A growable byte buffer for the printers and the encoder.  Allocated with
 * mpc__alloc_out so the result can be handed to the caller (mpc_free()). */
typedef struct mpc__buf {
    unsigned char *data;
    size_t len, cap;
    int failed;          /* an allocation failed; further writes are ignored */
} mpc__buf;

int mpc__buf_reserve(mpc__buf *b, size_t extra);
void mpc__buf_put(mpc__buf *b, const void *data, size_t len);
void mpc__buf_byte(mpc__buf *b, unsigned char c);
void mpc__buf_str(mpc__buf *b, const char *s);
void mpc__buf_release(mpc__buf *b);

/* Big integers.  Decimal text is "[-]digits" without leading zeros.
 * Little-endian two's complement bytes are pickle's LONG1/LONG4 payload. */
/* Converts a two's complement little-endian byte string into either *small
 * (returns 0) or, when it does not fit in int64, a malloc'd decimal text in
 * *text (returns 1).  Returns -1 on out of memory or if the decimal text
 * would have more than max_digits digits. */
int mpc__bigint_from_le(const unsigned char *b, size_t n, size_t max_digits, int64_t *small,
                        char **text, size_t *text_len);
/* Parses digits in base 2, 8, 10 or 16 (optional '_' between digits already
 * removed by the caller), with a sign, into int64 or decimal text as above.
 * Returns 0 small, 1 big, -1 invalid / too long / out of memory. */
int mpc__bigint_parse(const char *digits, size_t n, int negative, int base, size_t max_digits,
                      int64_t *small, char **text, size_t *text_len);
/* Writes the minimal two's complement little-endian encoding of a decimal
 * text (CPython's encode_long) into a malloc'd buffer.  -1 on error. */
int mpc__bigint_to_le(const char *text, size_t len, unsigned char **out, size_t *out_len);

/* The largest decimal text accepted for big integers by default, as in
 * CPython 3.11+ (sys.int_info.default_max_str_digits). */
#define MPC__BIGINT_DIGITS_DEFAULT 4300

/* Decodes backslash escapes of a Python string literal body (quotes already
 * removed) into out.  is_str: \u, \U and \N are escapes and raw bytes are
 * copied (the body is UTF-8); otherwise (bytes) \u is kept literally and,
 * unless raw_ok, a non-ASCII byte is an error.  Unknown escapes are kept
 * with their backslash, as Python does.  Returns 0, or -1 with *why and
 * *at (offset in s) set. */
int mpc__unescape(const char *s, size_t n, int is_str, int raw_ok, mpc__buf *out,
                  const char **why, size_t *at);

#endif
