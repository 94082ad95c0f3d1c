/*
 * test_pickle.c - the pickle codec against pickles written by stock CPython
 * (tests/c/vectors/pickle_vectors.txt, made by gen_pickle_vectors.py), and
 * against hostile pickles.  Tests that need a Python interpreter at run time
 * (large frames, loads of our output by python3 and python2.7) skip with a
 * message when it is missing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpconn.h"

/* --- helpers --- */

typedef struct vec {
    char *name, *origin, *py2str, *repr;
    int proto;
    unsigned char *data;
    size_t len;
} vec;

static vec *vecs;
static size_t nvecs;

static const char *vectors_path(void)
{
    static char path[4096];
    const char *f = __FILE__;
    const char *slash = strrchr(f, '/');
    snprintf(path, sizeof path, "%.*s/vectors/pickle_vectors.txt", slash ? (int)(slash - f) : 1,
             slash ? f : ".");
    return path;
}

static unsigned char *unhex(const char *h, size_t *len)
{
    size_t n = strlen(h) / 2;
    unsigned char *b = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        b[i] = (unsigned char)v;
    }
    *len = n;
    return b;
}

static int load_vectors(void **state)
{
    (void)state;
    FILE *f = fopen(vectors_path(), "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", vectors_path());
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    size_t vcap = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        char *fields[6];
        char *save = NULL, *p = line;
        int k = 0;
        for (; k < 6; k++) {
            fields[k] = strtok_r(k ? NULL : p, "\t", &save);
            if (!fields[k])
                break;
        }
        if (k != 6)
            continue;
        if (nvecs == vcap) {
            vcap = vcap ? vcap * 2 : 256;
            vecs = realloc(vecs, vcap * sizeof *vecs);
        }
        vec *v = &vecs[nvecs++];
        v->name = strdup(fields[0]);
        v->origin = strdup(fields[1]);
        v->proto = atoi(fields[2]);
        v->py2str = strdup(fields[3]);
        v->data = unhex(fields[4], &v->len);
        v->repr = strdup(fields[5]);
    }
    free(line);
    fclose(f);
    return nvecs > 0 ? 0 : -1;
}

static int free_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < nvecs; i++) {
        free(vecs[i].name);
        free(vecs[i].origin);
        free(vecs[i].py2str);
        free(vecs[i].repr);
        free(vecs[i].data);
    }
    free(vecs);
    return 0;
}

static uint64_t fnv1a64(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Whether our repr text matches the vector's (or its hash). */
static int repr_matches(const char *expect, const char *got, size_t got_len)
{
    if (strncmp(expect, "fnv1a64:", 8) == 0) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv1a64(got, got_len));
        return strcmp(expect + 8, hex) == 0;
    }
    return strlen(expect) == got_len && memcmp(expect, got, got_len) == 0;
}

static void opts_for(const vec *v, mpc_decode_options *o)
{
    memset(o, 0, sizeof *o);
    o->py2_str = strcmp(v->py2str, "bytes") == 0    ? MPC_PY2STR_BYTES
                 : strcmp(v->py2str, "latin1") == 0 ? MPC_PY2STR_LATIN1
                                                    : MPC_PY2STR_ASCII;
}

static char *repr_of(const mpc_value *v)
{
    char *s = NULL;
    assert_int_equal(mpc_value_repr(v, &s, NULL, NULL), MPC_OK);
    return s;
}

/* Decodes and expects an error whose message contains each given piece. */
static void expect_refused(const void *p, size_t n, const char *piece1, const char *piece2)
{
    mpc_value *v = (mpc_value *)1;
    mpc_error err;
    memset(&err, 0, sizeof err);
    mpc_status st = mpc_value_decode(p, n, NULL, &v, &err);
    if (st != MPC_VALUE || v != NULL || (piece1 && !strstr(err.message, piece1)) ||
        (piece2 && !strstr(err.message, piece2)))
        fail_msg("status %s, message \"%s\"; wanted VALUE with \"%s\" and \"%s\"",
                 mpc_status_name(st), err.message, piece1 ? piece1 : "", piece2 ? piece2 : "");
}
#define REFUSED(lit, a, b) expect_refused(lit, sizeof(lit) - 1, a, b)

static mpc_value *decode_ok(const void *p, size_t n, const mpc_decode_options *o)
{
    mpc_value *v = NULL;
    mpc_error err;
    memset(&err, 0, sizeof err);
    mpc_status st = mpc_value_decode(p, n, o, &v, &err);
    if (st != MPC_OK)
        fail_msg("decode failed: %s %s", mpc_status_name(st), err.message);
    return v;
}
#define DECODE(lit) decode_ok(lit, sizeof(lit) - 1, NULL)

static void assert_repr(const mpc_value *v, const char *want)
{
    char *s = repr_of(v);
    if (strcmp(s, want) != 0)
        fail_msg("repr \"%s\", wanted \"%s\"", s, want);
    mpc_free(s);
}

/* --- CPython's own pickles --- */

static void every_cpython_vector_decodes_to_what_python_repr_prints(void **state)
{
    (void)state;
    size_t bad = 0;
    for (size_t i = 0; i < nvecs; i++) {
        vec *t = &vecs[i];
        mpc_decode_options o;
        opts_for(t, &o);
        mpc_value *v = NULL;
        mpc_error err;
        memset(&err, 0, sizeof err);
        mpc_status st = mpc_value_decode(t->data, t->len, &o, &v, &err);
        if (st != MPC_OK) {
            if (bad++ < 20)
                print_error("%s %s p%d: %s %s\n", t->name, t->origin, t->proto,
                            mpc_status_name(st), err.message);
            continue;
        }
        char *s;
        size_t n;
        assert_int_equal(mpc_value_repr(v, &s, &n, NULL), MPC_OK);
        if (!repr_matches(t->repr, s, n) && bad++ < 20)
            print_error("%s %s p%d: got %.300s\n   wanted %.300s\n", t->name, t->origin,
                        t->proto, s, t->repr);
        mpc_free(s);
        mpc_value_free(v);
    }
    print_message("%zu vectors checked\n", nvecs);
    assert_int_equal(bad, 0);
}

static void reencoding_a_decoded_cpython_pickle_gives_the_same_bytes(void **state)
{
    (void)state;
    size_t bad = 0, checked = 0;
    for (size_t i = 0; i < nvecs; i++) {
        vec *t = &vecs[i];
        if (strncmp(t->origin, "py3", 3) != 0 || t->proto < 2)
            continue;
        mpc_value *v = decode_ok(t->data, t->len, NULL);
        void *out;
        size_t n;
        mpc_error err;
        assert_int_equal(mpc_value_encode(v, t->proto, &out, &n, &err), MPC_OK);
        checked++;
        if ((n != t->len || memcmp(out, t->data, n) != 0) && bad++ < 20) {
            size_t k = 0;
            while (k < n && k < t->len && ((unsigned char *)out)[k] == t->data[k])
                k++;
            print_error("%s p%d: %zu bytes vs CPython %zu, first difference at %zu\n", t->name,
                        t->proto, n, t->len, k);
        }
        mpc_free(out);
        mpc_value_free(v);
    }
    print_message("%zu encodings compared with CPython's bytes\n", checked);
    assert_int_equal(bad, 0);
}

static void parsing_python_repr_text_gives_the_decoded_value(void **state)
{
    (void)state;
    size_t bad = 0;
    for (size_t i = 0; i < nvecs; i++) {
        vec *t = &vecs[i];
        if (strncmp(t->repr, "fnv1a64:", 8) == 0)
            continue;
        if (strstr(t->name, "cycle")) /* "[...]" reads as Ellipsis: no literal for a cycle */
            continue;
        mpc_decode_options o;
        opts_for(t, &o);
        mpc_value *v = decode_ok(t->data, t->len, &o), *p = NULL;
        mpc_error err;
        mpc_status st = mpc_value_parse(t->repr, strlen(t->repr), &p, &err);
        if (st != MPC_OK) {
            if (bad++ < 20)
                print_error("%s: parse failed: %s\n", t->name, err.message);
        } else {
            char *s = repr_of(p);
            if ((strcmp(s, t->repr) != 0 || (!strstr(t->repr, "nan") && !mpc_value_equal(v, p))) &&
                bad++ < 20)
                print_error("%s: parsed back as %s\n", t->name, s);
            mpc_free(s);
        }
        mpc_value_free(p);
        mpc_value_free(v);
    }
    assert_int_equal(bad, 0);
}

/* --- hostile pickles --- */

static void every_refused_opcode_is_named_with_its_offset(void **state)
{
    (void)state;
    REFUSED("\x80\x02}\x94}b.", "refused opcode BUILD", "at offset 5");
    REFUSED("(ios\nsystem\n.", "refused opcode INST of global 'os.system'", "at offset 1");
    REFUSED("(N\x85o.", "refused opcode OBJ", "at offset 3");
    REFUSED("\x80\x02" "c__builtin__\nset\n)\x81.", "refused opcode NEWOBJ of global 'builtins.set'",
            "at offset 20");
    REFUSED("\x80\x04\x8c\x08" "builtins\x8c\x03set\x93)}\x92.",
            "refused opcode NEWOBJ_EX of global 'builtins.set'", "at offset 20");
    REFUSED("P1\n.", "refused opcode PERSID", "at offset 0");
    REFUSED("\x80\x02NQ.", "refused opcode BINPERSID", "at offset 3");
    REFUSED("\x80\x02\x82\x01.", "refused opcode EXT1", "at offset 2");
    REFUSED("\x80\x02\x83\x01\x00.", "refused opcode EXT2", "at offset 2");
    REFUSED("\x80\x02\x84\x01\x00\x00\x00.", "refused opcode EXT4", "at offset 2");
    REFUSED("\x80\x05\x97.", "refused opcode NEXT_BUFFER", "at offset 2");
    REFUSED("\x80\x05N\x98.", "refused opcode READONLY_BUFFER", "at offset 3");
    REFUSED("\x80\x02\xff.", "invalid opcode 0xff", "at offset 2");
    REFUSED("\x80\x06N.", "unsupported pickle protocol: 6", "at offset 0");
}

static void a_pickle_that_calls_os_system_is_refused_naming_the_global(void **state)
{
    (void)state;
    /* pickle.dumps(os.system) on Linux, protocol 4 */
    REFUSED("\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94"
            "\x93\x94.",
            "refused opcode STACK_GLOBAL of global 'posix.system'", "at offset 28");
    /* The classic protocol 0 exploit */
    REFUSED("cos\nsystem\n(S'echo hi'\ntR.", "refused opcode GLOBAL of global 'os.system'",
            "at offset 0");
    REFUSED("\x80\x02" "cposix\nsystem\nq\x00X\x07\x00\x00\x00" "echo hiq\x01\x85q\x02Rq\x03.",
            "global 'posix.system'", "at offset 2");
    REFUSED("\x80\x02" "c__builtin__\neval\n.", "refused opcode GLOBAL of global '__builtin__.eval'",
            "at offset 2");
    REFUSED("\x80\x02" "csubprocess\nPopen\n.", "global 'subprocess.Popen'", NULL);
    /* Python 2's __builtin__ is builtins below protocol 3 only, as CPython
     * maps it: at 3 and above it is a module of its own (not allowed). */
    REFUSED("\x80\x03" "c__builtin__\nset\n]\x85R.", "refused opcode GLOBAL of global "
            "'__builtin__.set'", "at offset 2");
    REFUSED("\x80\x04\x8c\x0b__builtin__\x8c\x03set\x93]\x85R.", "refused opcode STACK_GLOBAL "
            "of global '__builtin__.set'", NULL);
    mpc_value *v = DECODE("\x80\x02" "c__builtin__\nset\n]\x85R.");
    assert_repr(v, "set()");
    mpc_value_free(v);
    v = DECODE("c__builtin__\nfrozenset\n(]tR.");
    assert_repr(v, "frozenset()");
    mpc_value_free(v);
}

static void reduce_is_refused_outside_the_allow_list_and_its_shapes(void **state)
{
    (void)state;
    REFUSED("\x80\x02])R.", "refused opcode REDUCE of a list", "at offset 4");
    REFUSED("\x80\x02" "c__builtin__\nset\n(K\x01tR.", "refused opcode REDUCE of global "
            "'builtins.set'", "at offset 23");
    REFUSED("\x80\x02" "c__builtin__\nset\n)R.", "REDUCE of global 'builtins.set'", NULL);
    REFUSED("\x80\x02" "c_codecs\nencode\nX\x01\x00\x00\x00" "aX\x04\x00\x00\x00utf8\x86R.",
            "REDUCE of global '_codecs.encode'", NULL);
    REFUSED("\x80\x02" "c_codecs\nencode\nX\x02\x00\x00\x00\xc4\x80X\x06\x00\x00\x00latin1\x86R.",
            "not encodable as latin-1", NULL);
    REFUSED("\x80\x02" "c__builtin__\nbytes\nK\x05\x85R.", "REDUCE of global 'builtins.bytes'",
            NULL);
    REFUSED("\x80\x02" "c__builtin__\nbytearray\nK\x05\x85R.",
            "REDUCE of global 'builtins.bytearray'", NULL);
    /* an allowed global may only be called, never be a value */
    REFUSED("\x80\x02" "c__builtin__\nset\n.", "used as a value", NULL);
    REFUSED("\x80\x02]c__builtin__\nset\na.", "used as a value", NULL);
}

static void truncated_data_at_every_offset_is_an_error(void **state)
{
    (void)state;
    size_t checked = 0;
    for (size_t i = 0; i < nvecs; i++) {
        vec *t = &vecs[i];
        if (strcmp(t->name, "player") && strcmp(t->name, "dict_keys") &&
            strcmp(t->name, "py2_nested") && strcmp(t->name, "shared_list"))
            continue;
        for (size_t cut = 0; cut < t->len; cut++) {
            mpc_value *v = (mpc_value *)1;
            mpc_error err;
            mpc_status st = mpc_value_decode(t->data, cut, NULL, &v, &err);
            if (st != MPC_VALUE || v)
                fail_msg("%s p%d cut at %zu: %s", t->name, t->proto, cut, mpc_status_name(st));
            checked++;
        }
    }
    assert_true(checked > 1000);
}

static void memo_keys_that_were_never_stored_are_an_error(void **state)
{
    (void)state;
    REFUSED("\x80\x02h\x05.", "memo key 5 not found", "at offset 2");
    REFUSED("\x80\x02j\xff\xff\xff\x7f.", "memo key 2147483647 not found", NULL);
    REFUSED("\x80\x04N\x94h\x01.", "memo key 1 not found", NULL);
    REFUSED("g99999999999999999999999\n.", "invalid GET argument", NULL);
    REFUSED("\x80\x02q\x00.", "stack underflow", NULL); /* BINPUT on an empty stack */
    /* Keys are what was stored, in any order, as CPython's dict memo. */
    mpc_value *v = DECODE("\x80\x02Nq\x07K\x01q\x03h\x07h\x03\x86.");
    assert_repr(v, "(None, 1)");
    mpc_value_free(v);
}

static void stack_underflow_and_mark_mismatch_are_errors(void **state)
{
    (void)state;
    REFUSED(".", "stack underflow", "at offset 0");
    REFUSED("\x80\x02" "a.", "stack underflow", "at offset 2");
    REFUSED("\x80\x02]a.", "stack underflow", "at offset 3");
    REFUSED("\x80\x02N(.", "stack underflow", "at offset 4"); /* never below a mark */
    REFUSED("\x80\x02N(0a.", "stack underflow", NULL);
    REFUSED("\x80\x02Nt.", "could not find MARK", "at offset 3");
    REFUSED("\x80\x02]Ne.", "could not find MARK", NULL);
    REFUSED("\x80\x02(K\x01" "d.", "odd number of items for DICT", NULL);
    REFUSED("\x80\x02}(K\x01u.", "odd number of items for SETITEMS", NULL);
    REFUSED("\x80\x02(K\x01" "e.", "stack underflow", NULL); /* APPENDS with no list */
    REFUSED("\x80\x02K\x01K\x02" "a.", "APPEND on a int", NULL);
    REFUSED("\x80\x02\x85.", "stack underflow", NULL);
    REFUSED("\x80\x04\x91.", "could not find MARK", NULL);
    REFUSED("\x80\x04\x93.", "stack underflow", NULL);
    REFUSED("\x80\x04K\x01K\x02\x93.", "STACK_GLOBAL requires str", NULL);
    REFUSED("", "empty pickle", NULL);
    REFUSED("\x80\x02N", "truncated", "at offset 3"); /* no STOP */
    /* POP of a mark on top removes the mark, as CPython does */
    mpc_value *v = DECODE("\x80\x02K\x01(0.");
    assert_repr(v, "1");
    mpc_value_free(v);
}

static void unhashable_keys_are_refused(void **state)
{
    (void)state;
    REFUSED("\x80\x04" "2a.", "stack underflow", NULL);
    /* A dict as its own key: unhashable, as in Python (no cycle through keys). */
    REFUSED("\x80\x04}\x94h\x00Ns.", "unhashable type: 'dict'", NULL);
    REFUSED("\x80\x04}]Ns.", "unhashable type: 'list'", "at offset 5");
    REFUSED("\x80\x04\x8f(]\x90.", "unhashable type: 'list'", NULL);
    REFUSED("\x80\x04(K\x01]\x86\x94}\x94h\x00Ns.", "unhashable type: 'tuple'", NULL);
    REFUSED("\x80\x04(}\x91.", "unhashable type: 'dict'", NULL);
    /* A set cannot reach itself: its items are hashable. */
    REFUSED("\x80\x04\x8f\x94(h\x00\x90.", "unhashable type: 'set'", NULL);
}

/* Containers that reach themselves, as pickle's memo writes them and in
 * forms CPython never writes (DUP, a list filled after it went inside). */
static void cycles_decode_and_print_as_python(void **state)
{
    (void)state;
    mpc_value *v = DECODE("\x80\x04]\x94h\x00" "a.");
    assert_repr(v, "[[...]]");
    assert_ptr_equal(mpc_value_item(v, 0), v);
    mpc_value_free(v);
    v = DECODE("\x80\x04]2a.");
    assert_repr(v, "[[...]]");
    mpc_value_free(v);
    /* a = []; b = [a]; a.append(b) */
    v = DECODE("\x80\x04]\x94]\x94h\x00" "a\x94" "a.");
    assert_repr(v, "[[[...]]]");
    mpc_value_free(v);
    /* l = []; t = (l,); l.append(t): the list is returned */
    v = DECODE("\x80\x04]\x94(h\x00t\x94h\x00h\x01" "a.");
    assert_repr(v, "[([...],)]");
    mpc_value_free(v);
    /* d = {}; d['k'] = [d, (d,)] */
    v = DECODE("\x80\x04}\x94\x8c\x01k](h\x00h\x00\x85" "es.");
    assert_repr(v, "{'k': [{...}, ({...},)]}");
    mpc_value_free(v);
    /* The value outlives the decoder's memo and stack: everything is freed
     * with the root, also when the root is dropped from the stack (POP) and
     * a member of the cycle is returned. */
    v = DECODE("\x80\x04]\x94]\x94h\x00" "a\x94" "a0h\x01.");
    assert_repr(v, "[[[...]]]");
    mpc_value_free(v);
    /* A failed decode after a cycle formed frees it too (valgrind). */
    REFUSED("\x80\x04]\x94h\x00" "a}]Ns.", "unhashable type: 'list'", NULL);
}

/* A dict given itself as a value under a tuple key (d[()] = d): the dict
 * forms its group while the key is being added, so the key, a container,
 * must join it too.  Left outside, a later join of that tuple (as a new
 * value for the key, or through a list holding it) counted the dict's own
 * reference to it as one from outside the group, which then never reached
 * zero: the whole group leaked (LeakSanitizer, valgrind).  The fuzzer's
 * input is tests/fuzz/corpus/fuzz_pickle/dict_own_value_under_tuple_key_leak. */
static void a_dict_that_is_its_own_value_under_a_tuple_key_is_freed(void **state)
{
    (void)state;
    /* d = {}; d[()] = d; d[()] = () */
    mpc_value *v = DECODE("\x80\x04}\x94)\x94h\x00sh\x01h\x01s.");
    assert_repr(v, "{(): ()}");
    mpc_value_free(v);
    /* d = {}; d[()] = d; d['x'] = [()] */
    v = DECODE("\x80\x04}\x94)\x94h\x00s\x8c\x01x]h\x01" "as.");
    assert_repr(v, "{(): {...}, 'x': [()]}");
    mpc_value_free(v);
    /* The same on a failed decode (truncated: no STOP). */
    REFUSED("\x80\x04}\x94)\x94h\x00sh\x01h\x01s", "truncated", NULL);
    /* The fuzzer's input, with its harness's round trip at protocols 2 and 4. */
    static const char fuzz[] =
        "\x80\x04\x95\x4b\x00\x00\x00\x00\x00\x00\x00\x29\x7d\x94\x8c\x01"
        "\x64\x29\x94\x94\x7d\x86\x73\x94\x68\x01\x68\x02\x73\x86\x29\x7d"
        "\x94\x68\x01\x68\x04\x73\x86\x94\x7d\x94\x68\x01\x68\x06\x73\x86"
        "\x94\x7d\x94\x68\x01\x68\x08\x73\x86\x94\x7d\x94\x68\x01\x68\x0a"
        "\x73\x86\x94\x7d\x94\x68\x01\x68\x0c\x73\x86\x94\x7d\x94\x68\x01"
        "\x68\x0e\x73\x8c\x01\x64\x29\x94\x94\x7d\x86\x73\x94\x68\x01\x68"
        "\x02\x73\x86\x29\x7d\x94\x68\x01\x68\x04\x73\x86\x94\x7d\x94\x68"
        "\x01\x68\x06\x73\x86\x94\x7d\x94\x68\x01\x68\x08\x73\x86\x86\x94"
        "\x2e";
    v = decode_ok(fuzz, sizeof fuzz - 1, NULL);
    static const int protos[] = {2, 4};
    for (size_t i = 0; i < 2; i++) {
        void *out = NULL;
        size_t n = 0;
        mpc_error err;
        assert_int_equal(mpc_value_encode(v, protos[i], &out, &n, &err), MPC_OK);
        mpc_value *back = decode_ok(out, n, NULL);
        assert_true(mpc_value_equal(v, back));
        mpc_value_free(back);
        mpc_free(out);
    }
    mpc_value_free(v);
}

/* CPython's recursive tuple: after its items are saved, a tuple found in
 * the memo is popped (POP per item, or POP_MARK) and fetched (GET). */
static void recursive_tuples_encode_as_cpython(void **state)
{
    (void)state;
    static const struct {
        const char *hex, *repr;
    } cases[] = {
        {"80025d71006800857101613068012e", "([(...)],)"},
        {"8002284b015d7100284b0168004b024b03747101614b024b033168012e", "(1, [(...)], 2, 3)"},
        {"80025d710068006800867101616800303068012e", "([(...)], [(...)])"},
        {"8004950b000000000000005d9468008594613068012e", "([(...)],)"},
        {"8005951900000000000000284b015d94284b0168004b024b037494614b024b033168012e",
         "(1, [(...)], 2, 3)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        unsigned char *p = unhex(cases[i].hex, &n);
        mpc_value *v = decode_ok(p, n, NULL);
        assert_repr(v, cases[i].repr);
        void *out;
        size_t on;
        mpc_error err;
        assert_int_equal(mpc_value_encode(v, p[1], &out, &on, &err), MPC_OK);
        assert_int_equal(on, n);
        assert_memory_equal(out, p, n);
        mpc_free(out);
        mpc_value_free(v);
        free(p);
    }
}

/* A few hundred bytes that share one list at every level, with a cycle at
 * every level too, expand to 2^30 paths: repr with a limit, encoding and
 * freeing cost what the message costs. */
static void a_small_hostile_cyclic_pickle_costs_what_it_holds(void **state)
{
    (void)state;
    unsigned char p[400];
    size_t n = 0;
    p[n++] = 0x80;
    p[n++] = 4;
    p[n++] = ']'; /* root: memo 0 */
    p[n++] = 0x94;
    p[n++] = ']'; /* level 0: memo 1 */
    p[n++] = 0x94;
    p[n++] = '0';
    for (int i = 1; i <= 30; i++) {
        /* level i (memo i + 1) = [level i-1, level i-1, root] */
        p[n++] = '(';
        p[n++] = 'h';
        p[n++] = (unsigned char)i;
        p[n++] = '2';
        p[n++] = 'h';
        p[n++] = 0;
        p[n++] = 'l';
        p[n++] = 0x94;
        p[n++] = '0';
    }
    p[n++] = 'h'; /* root.append(level 30): every level is on a cycle */
    p[n++] = 31;
    p[n++] = 'a';
    p[n++] = '.';
    assert_true(n < 300);
    mpc_value *v = decode_ok(p, n, NULL);
    char *s = NULL;
    size_t len = 0;
    mpc_error err;
    assert_int_equal(mpc_value_repr_limit(v, 1 << 20, &s, &len, &err), MPC_VALUE);
    assert_non_null(strstr(err.message, "longer than"));
    void *out;
    assert_int_equal(mpc_value_encode(v, 4, &out, &len, &err), MPC_OK);
    assert_true(len < 400);
    mpc_value *back = decode_ok(out, len, NULL);
    assert_true(mpc_value_equal(v, back));
    mpc_free(out);
    mpc_value_free(back);
    mpc_value_free(v);
}

/* A cycle lets a pickle grow a path longer than the depth limit (a list
 * filled after it went inside another); every walk stops at the limit
 * with an error instead of exhausting the stack. */
static void a_long_path_through_a_cycle_is_an_error_for_every_walk(void **state)
{
    (void)state;
    size_t levels = 100000, n = 0;
    unsigned char *p = malloc(16 * levels + 16);
    p[n++] = 0x80;
    p[n++] = 4;
    p[n++] = ']';
    p[n++] = 0x94;
    p[n++] = '2';
    p[n++] = 'a'; /* root = [root] */
    for (size_t i = 0; i < levels; i++) {
        /* GET the newest list, append a new one to it (it is inside). */
        p[n++] = 'j';
        p[n++] = (unsigned char)i;
        p[n++] = (unsigned char)(i >> 8);
        p[n++] = (unsigned char)(i >> 16);
        p[n++] = 0;
        p[n++] = ']';
        p[n++] = 0x94;
        p[n++] = 'a';
        p[n++] = '0';
    }
    p[n++] = '.';
    mpc_value *v = decode_ok(p, n, NULL);
    char *s = NULL;
    size_t len = 0;
    mpc_error err;
    assert_int_equal(mpc_value_repr_limit(v, SIZE_MAX, &s, &len, &err), MPC_VALUE);
    assert_non_null(strstr(err.message, "nesting deeper than"));
    /* the unbounded printer reports the same error the same way */
    s = (char *)1;
    len = 99;
    memset(&err, 0, sizeof err);
    assert_int_equal(mpc_value_repr(v, &s, &len, &err), MPC_VALUE);
    assert_null(s);
    assert_int_equal(len, 0);
    assert_int_equal(err.status, MPC_VALUE);
    assert_string_equal(err.message, "nesting deeper than 2000 levels through a cycle");
    void *out = NULL;
    assert_int_equal(mpc_value_encode(v, 4, &out, &len, &err), MPC_VALUE);
    assert_non_null(strstr(err.message, "nesting deeper than"));
    assert_true(mpc_value_equal(v, v));
    mpc_value_free(v);
    free(p);
}

static void deep_nesting_is_refused_without_recursion(void **state)
{
    (void)state;
    size_t depth = 100000, n = 0;
    unsigned char *p = malloc(3 * depth + 8);
    p[n++] = 0x80;
    p[n++] = 2;
    for (size_t i = 0; i < depth; i++)
        p[n++] = ']';
    for (size_t i = 0; i + 1 < depth; i++)
        p[n++] = 'a';
    p[n++] = '.';
    expect_refused(p, n, "nesting deeper than 1000", NULL);
    /* the same with marks and tuples */
    n = 2;
    for (size_t i = 0; i < depth; i++)
        p[n++] = '(';
    for (size_t i = 0; i < depth; i++)
        p[n++] = 't';
    p[n++] = '.';
    expect_refused(p, n, "nesting deeper than 1000", NULL);
    /* and with TUPLE1 chains */
    n = 2;
    p[n++] = 'N';
    for (size_t i = 0; i < depth; i++)
        p[n++] = 0x85;
    p[n++] = '.';
    expect_refused(p, n, "nesting deeper than 1000", NULL);
    /* The limit is an option; 1000 itself is accepted by default. */
    n = 2;
    p[n++] = 'N';
    for (size_t i = 0; i < 999; i++)
        p[n++] = 0x85;
    p[n++] = '.';
    mpc_value *v = decode_ok(p, n, NULL);
    mpc_value_free(v);
    mpc_decode_options o = {0};
    o.max_depth = 10;
    mpc_error err;
    assert_int_equal(mpc_value_decode(p, n, &o, &v, &err), MPC_VALUE);
    assert_non_null(strstr(err.message, "nesting deeper than 10"));
    free(p);
}

static void counts_claiming_more_than_the_message_holds_are_errors(void **state)
{
    (void)state;
    REFUSED("\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x10" "abc.", "truncated", "at offset 2");
    REFUSED("\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff" "abc.", "truncated", NULL);
    REFUSED("\x80\x05\x96\x00\x00\x00\x00\x00\x00\x00\x40" "abc.", "truncated", NULL);
    REFUSED("\x80\x02X\xff\xff\xff\xff" "abc.", "truncated", NULL);
    REFUSED("\x80\x02" "B\xff\xff\xff\xff" "abc.", "truncated", NULL);
    REFUSED("\x80\x02\x8b\xff\xff\xff\x7f\x01.", "truncated", NULL);
    REFUSED("\x80\x02\x8b\xff\xff\xff\xff\x01.", "negative byte count", NULL);
    REFUSED("\x80\x02T\xff\xff\xff\xff.", "negative byte count", NULL);
    REFUSED("\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x40N.", "truncated", "at offset 2");
    REFUSED("\x80\x02\x8c\x05" "ab.", "truncated", NULL);
    /* a LONG4 within the message but beyond the digit limit */
    unsigned char big[2 + 5 + 4000 + 1] = {0x80, 2, 0x8b, 0xa0, 0x0f, 0, 0};
    memset(big + 7, 0x11, 4000);
    big[sizeof big - 1] = '.';
    expect_refused(big, sizeof big, "exceeds the limit of 4300 digits", NULL);
}

static void a_failed_decode_leaves_nothing_behind_for_the_next(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        REFUSED("cos\nsystem\n(S'echo hi'\ntR.", "os.system", NULL);
        REFUSED("\x80\x04}]Ns.", "unhashable", NULL);
        mpc_value *v = DECODE("\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01" "a\x94K\x01s.");
        assert_repr(v, "{'a': 1}");
        mpc_value_free(v);
    }
}

static void protocol_0_text_opcodes_decode_as_cpython(void **state)
{
    (void)state;
    mpc_value *v = DECODE("I12345678901234567890\n.");
    assert_int_equal(mpc_value_kind(v), MPC_V_BIGINT);
    assert_repr(v, "12345678901234567890");
    mpc_value_free(v);
    v = DECODE("(L-5L\nI00\nI01\nI-9223372036854775808\nF-0.0\nFnan\nF1e300\ntp0\n.");
    assert_repr(v, "(-5, False, True, -9223372036854775808, -0.0, nan, 1e+300)");
    mpc_value_free(v);
    v = DECODE("(S'a\\x41\\'\\n'\nS\"q'\"\nVx\\u00e9\\U0001f600\\\\u0041\nV\\\\\\u0041\nt.");
    assert_repr(v, "(\"aA'\\n\", \"q'\", 'xé😀\\\\\\\\u0041', '\\\\\\\\A')");
    mpc_value_free(v);
    REFUSED("S'abc\n.", "must be quoted", NULL);
    REFUSED("F0x10\n.", "could not convert string to float", NULL);
    /* A FLOAT literal beyond the double range is CPython's OverflowError
     * (an explicit inf and an underflow are values). */
    REFUSED("F1e+716\n.", "value too large to convert to float in FLOAT", "at offset 0");
    REFUSED("F-1e400\n.", "value too large", NULL);
    v = DECODE("(F1e-400\nF-inf\nFinfinity\nt.");
    assert_repr(v, "(0.0, -inf, inf)");
    mpc_value_free(v);
    REFUSED("I1x\n.", "invalid literal for int()", NULL);
    /* INT forms CPython reads with strtol's rules (octal 011 = 9, hex, a
     * sign on a two-character bool): only plain decimal is accepted. */
    REFUSED("I011\n.", "only the plain decimal CPython writes is accepted", "at offset 0");
    REFUSED("I0x10\n.", "invalid literal for int()", NULL);
    REFUSED("I-0\n.", "invalid literal for int()", NULL);
    REFUSED("I+1\n.", "invalid literal for int()", NULL);
    REFUSED("I-\n.", "invalid literal for int()", NULL);
    REFUSED("I\n.", "invalid literal for int()", NULL);
    REFUSED("L007L\n.", "invalid literal for int() in LONG", NULL);
    REFUSED("L+7L\n.", "invalid literal for int() in LONG", NULL);
    REFUSED("L1_000L\n.", "invalid literal for int() in LONG", NULL);
    v = DECODE("(I0\nI-10\nI10\nL0L\nL-7L\nL99999999999999999999L\nt.");
    assert_repr(v, "(0, -10, 10, 0, -7, 99999999999999999999)");
    mpc_value_free(v);
    REFUSED("V\\u12\n.", "truncated \\uXXXX", NULL);
    /* Python 2 str: ASCII by default, as Python 3's loads(); options. */
    REFUSED("U\x04" "caf\xe9.", "non-ASCII byte 0xe9 in a Python 2 str of SHORT_BINSTRING", NULL);
    mpc_decode_options o = {0};
    o.py2_str = MPC_PY2STR_LATIN1;
    v = decode_ok("U\x04" "caf\xe9.", 7, &o);
    assert_repr(v, "'café'");
    mpc_value_free(v);
    o.py2_str = MPC_PY2STR_BYTES;
    v = decode_ok("U\x04" "caf\xe9.", 7, &o);
    assert_repr(v, "b'caf\\xe9'");
    mpc_value_free(v);
    /* bytes after STOP are ignored, as CPython's loads() */
    v = DECODE("N.garbage");
    assert_repr(v, "None");
    mpc_value_free(v);
    /* invalid UTF-8 in BINUNICODE (CPython: UnicodeDecodeError) */
    REFUSED("X\x02\x00\x00\x00\xc3\x28.", "invalid UTF-8 in BINUNICODE", NULL);
}

/* --- with a Python interpreter at run time --- */

static int have(const char *exe) { return access(exe, X_OK) == 0; }

#define PY3 "/root/.pyenv/versions/3.11.7/bin/python3"
#define PY27 "/root/.pyenv/versions/2.7.18/bin/python"

static const char *python3(void)
{
    static const char *cands[] = {PY3, "/usr/bin/python3", "/usr/local/bin/python3"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++)
        if (have(cands[i]))
            return cands[i];
    return NULL;
}

/* Runs "exe -c script arg" and returns its stdout (malloc'd) or NULL. */
static char *run(const char *exe, const char *script, const char *arg, size_t *len)
{
    char tmpl[] = "/tmp/mpc_test_py_XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0)
        return NULL;
    FILE *sf = fdopen(fd, "w");
    fputs(script, sf);
    fclose(sf);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "timeout 60 %s %s %s", exe, tmpl, arg ? arg : "");
    FILE *p = popen(cmd, "r");
    if (!p) {
        unlink(tmpl);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (cap - n < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    int rc = pclose(p);
    unlink(tmpl);
    buf[n] = '\0';
    if (rc != 0) {
        print_error("%s failed (%d): %s\n", exe, rc, buf);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static char *write_temp(const void *data, size_t n)
{
    char *path = strdup("/tmp/mpc_test_pk_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
    return path;
}

static const char *const roundtrip_texts[] = {
    "None", "True", "[1, -1, 255, 256, 65536, -2147483649, 9223372036854775807, "
    "-9223372036854775808, 18446744073709551616, -340282366920938463463374607431768211456]",
    "[0.0, -0.0, 1.5, 1e+16, 1e-05, inf, -inf, 3.141592653589793, 5e-324]",
    "['', 'abc', \"it's\", 'nul\\x00', 'é中😀', '\\ud800', 'x' * 0 or 'y']",
    "[b'', b'\\x00\\xff', bytearray(b''), bytearray(b'ab\\x80')]",
    "((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [], {}, set(), frozenset())",
    "{'name': 'Alice', 'tags': {'a'}, 'fz': frozenset({1, 2}), (1, 'k'): None, 2: b'v'}",
    "[[1, [2, [3, [4, {'deep': (5,)}]]]]]",
};

static void python_loads_what_we_encode_at_protocols_2_to_5(void **state)
{
    (void)state;
    const char *py = python3();
    if (!py) {
        print_message("SKIP: no python3 found\n");
        skip();
    }
    static const char script[] =
        "import pickle, sys\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "sys.stdout.write(repr(pickle.loads(data)))\n";
    size_t checked = 0;
    for (size_t i = 0; i < sizeof roundtrip_texts / sizeof roundtrip_texts[0]; i++) {
        const char *text = roundtrip_texts[i];
        mpc_value *v = NULL;
        mpc_error err;
        if (strstr(text, " * 0 or"))
            text = "['', 'abc', \"it's\", 'nul\\x00', 'é中😀', '\\ud800']";
        if (mpc_value_parse(text, strlen(text), &v, &err) != MPC_OK)
            fail_msg("parse %s: %s", text, err.message);
        char *want = repr_of(v);
        for (int proto = 2; proto <= 5; proto++) {
            void *out;
            size_t n, rn;
            assert_int_equal(mpc_value_encode(v, proto, &out, &n, &err), MPC_OK);
            char *path = write_temp(out, n);
            char *got = run(py, script, path, &rn);
            unlink(path);
            free(path);
            assert_non_null(got);
            if (strcmp(got, want) != 0)
                fail_msg("protocol %d: python3 loaded %s, wanted %s", proto, got, want);
            free(got);
            mpc_free(out);
            checked++;
        }
        mpc_free(want);
        mpc_value_free(v);
    }
    print_message("%zu encodings loaded by %s\n", checked, py);
}

static void python_2_7_loads_what_we_encode_at_protocol_2(void **state)
{
    (void)state;
    if (!have(PY27)) {
        print_message("SKIP: %s not installed\n", PY27);
        skip();
    }
    /* Python 2.7 loads our pickle and pickles the result again at protocol
     * 2; decoding that (py2 str as bytes) must give back an equal value. */
    static const char script[] =
        "import pickle, sys, binascii\n"
        "v = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "sys.stdout.write(pickle.dumps(v, 2))\n";
    for (size_t i = 0; i < sizeof roundtrip_texts / sizeof roundtrip_texts[0]; i++) {
        const char *text = roundtrip_texts[i];
        if (strstr(text, " * 0 or"))
            text = "['', 'abc', \"it's\", 'nul\\x00', 'é中😀']";
        mpc_value *v = NULL, *back = NULL;
        mpc_error err;
        assert_int_equal(mpc_value_parse(text, strlen(text), &v, &err), MPC_OK);
        void *out;
        size_t n, rn;
        assert_int_equal(mpc_value_encode(v, 2, &out, &n, &err), MPC_OK);
        char *path = write_temp(out, n);
        char *got = run(PY27, script, path, &rn);
        unlink(path);
        free(path);
        assert_non_null(got);
        mpc_decode_options o = {0};
        o.py2_str = MPC_PY2STR_BYTES;
        if (mpc_value_decode(got, rn, &o, &back, &err) != MPC_OK)
            fail_msg("%s: decoding Python 2.7's pickle: %s", text, err.message);
        if (!mpc_value_equal(v, back)) {
            char *a = repr_of(v), *b = repr_of(back);
            fail_msg("Python 2.7 changed %s into %s", a, b);
        }
        free(got);
        mpc_free(out);
        mpc_value_free(v);
        mpc_value_free(back);
    }
}

static void large_pickles_crossing_frames_match_cpython_both_ways(void **state)
{
    (void)state;
    const char *py = python3();
    if (!py) {
        print_message("SKIP: no python3 found\n");
        skip();
    }
    /* For each case: CPython's pickle, then its repr, as two files. */
    static const char script[] =
        "import pickle, sys\n"
        "cases = [(list(range(40000)), 4), (['x' * 70000, b'y' * 70000, 'z', bytearray(70000)], 4),\n"
        "         (['x' * 70000, b'y' * 70000, 'z', bytearray(70000)], 5),\n"
        "         ({i: str(i) for i in range(30000)}, 4), (set(range(20000)), 4),\n"
        "         ([[i, (i,), {'k': i}] for i in range(9000)], 4), (list(range(40000)), 2),\n"
        "         (['x' * 70000, [1.5] * 9000], 2)]\n"
        "case = cases[int(sys.argv[1])]\n"
        "data = pickle.dumps(case[0], case[1])\n"
        "sys.stdout.buffer.write(len(data).to_bytes(8, 'little') + bytes([case[1]]) + data"
        " + repr(pickle.loads(data)).encode())\n";
    for (int c = 0; c < 8; c++) {
        char arg[8];
        size_t n;
        snprintf(arg, sizeof arg, "%d", c);
        char *out = run(py, script, arg, &n);
        assert_non_null(out);
        uint64_t plen = 0;
        for (int k = 7; k >= 0; k--)
            plen = (plen << 8) | (unsigned char)out[k];
        int proto = (unsigned char)out[8];
        const unsigned char *pk = (unsigned char *)out + 9;
        const char *want = out + 9 + plen;
        mpc_value *v = decode_ok(pk, plen, NULL);
        char *got = repr_of(v);
        if (strcmp(got, want) != 0)
            fail_msg("case %d: repr differs (%zu vs %zu chars)", c, strlen(got), strlen(want));
        void *enc;
        size_t en;
        mpc_error err;
        assert_int_equal(mpc_value_encode(v, proto, &enc, &en, &err), MPC_OK);
        if (en != plen || memcmp(enc, pk, en) != 0) {
            size_t k = 0;
            while (k < en && k < plen && ((unsigned char *)enc)[k] == pk[k])
                k++;
            fail_msg("case %d: %zu bytes vs CPython %zu, first difference at %zu", c, en,
                     (size_t)plen, k);
        }
        mpc_free(enc);
        mpc_free(got);
        mpc_value_free(v);
        free(out);
    }
}

static void float_repr_matches_python_for_many_doubles(void **state)
{
    (void)state;
    const char *py = python3();
    if (!py) {
        print_message("SKIP: no python3 found\n");
        skip();
    }
    static const char script[] =
        "import random, struct, sys\n"
        "r = random.Random(5)\n"
        "vals = [r.random() * 10 ** r.randint(-30, 30) for _ in range(3000)]\n"
        "vals += [struct.unpack('<d', r.getrandbits(64).to_bytes(8, 'little'))[0] for _ in range(3000)]\n"
        "vals += [float(i) for i in range(-50, 50)] + [2.0 ** e for e in range(-1074, 1024, 7)]\n"
        "vals += [1e15, 1e16, 9999999999999998.0, 0.0001, 0.00001, 123456789012345680.0]\n"
        "for v in vals:\n"
        "    sys.stdout.write('%016x %s\\n' % (struct.unpack('<Q', struct.pack('<d', v))[0], repr(v)))\n";
    size_t n;
    char *out = run(py, script, NULL, &n);
    assert_non_null(out);
    size_t count = 0, bad = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long long bits;
        char want[64];
        if (sscanf(line, "%llx %63s", &bits, want) != 2)
            continue;
        double d;
        uint64_t b64 = bits;
        memcpy(&d, &b64, sizeof d);
        mpc_value *v = mpc_value_new_float(d);
        char *got = repr_of(v);
        if (strcmp(got, want) != 0 && bad++ < 10)
            print_error("%016llx: got %s, Python %s\n", bits, got, want);
        mpc_free(got);
        mpc_value_free(v);
        count++;
    }
    free(out);
    assert_true(count > 6000);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_cpython_vector_decodes_to_what_python_repr_prints),
        cmocka_unit_test(reencoding_a_decoded_cpython_pickle_gives_the_same_bytes),
        cmocka_unit_test(parsing_python_repr_text_gives_the_decoded_value),
        cmocka_unit_test(every_refused_opcode_is_named_with_its_offset),
        cmocka_unit_test(a_pickle_that_calls_os_system_is_refused_naming_the_global),
        cmocka_unit_test(reduce_is_refused_outside_the_allow_list_and_its_shapes),
        cmocka_unit_test(truncated_data_at_every_offset_is_an_error),
        cmocka_unit_test(memo_keys_that_were_never_stored_are_an_error),
        cmocka_unit_test(stack_underflow_and_mark_mismatch_are_errors),
        cmocka_unit_test(unhashable_keys_are_refused),
        cmocka_unit_test(cycles_decode_and_print_as_python),
        cmocka_unit_test(a_dict_that_is_its_own_value_under_a_tuple_key_is_freed),
        cmocka_unit_test(recursive_tuples_encode_as_cpython),
        cmocka_unit_test(a_small_hostile_cyclic_pickle_costs_what_it_holds),
        cmocka_unit_test(a_long_path_through_a_cycle_is_an_error_for_every_walk),
        cmocka_unit_test(deep_nesting_is_refused_without_recursion),
        cmocka_unit_test(counts_claiming_more_than_the_message_holds_are_errors),
        cmocka_unit_test(a_failed_decode_leaves_nothing_behind_for_the_next),
        cmocka_unit_test(protocol_0_text_opcodes_decode_as_cpython),
        cmocka_unit_test(python_loads_what_we_encode_at_protocols_2_to_5),
        cmocka_unit_test(python_2_7_loads_what_we_encode_at_protocol_2),
        cmocka_unit_test(large_pickles_crossing_frames_match_cpython_both_ways),
        cmocka_unit_test(float_repr_matches_python_for_many_doubles),
    };
    return cmocka_run_group_tests(tests, load_vectors, free_vectors);
}
