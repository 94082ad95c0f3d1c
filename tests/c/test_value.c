/*
 * test_value.c - the value tree API (constructors, accessors, ownership,
 * Python's equality and hashing), the literal parser and the repr printer.
 * The pickle codec is tested in test_pickle.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpconn.h"

static mpc_value *parse(const char *text)
{
    mpc_value *v = NULL;
    mpc_error err;
    memset(&err, 0, sizeof err);
    if (mpc_value_parse(text, strlen(text), &v, &err) != MPC_OK)
        fail_msg("parse(%s): %s", text, err.message);
    return v;
}

static void assert_repr(const mpc_value *v, const char *want)
{
    char *s = NULL;
    size_t n = 0;
    assert_int_equal(mpc_value_repr(v, &s, &n, NULL), MPC_OK);
    if (strcmp(s, want) != 0 || n != strlen(want))
        fail_msg("repr \"%s\", wanted \"%s\"", s, want);
    mpc_free(s);
}

/* parse(text) prints as want. */
static void reads_as(const char *text, const char *want)
{
    mpc_value *v = parse(text);
    assert_repr(v, want);
    mpc_value_free(v);
}

static void parse_fails(const char *text, const char *piece)
{
    mpc_value *v = (mpc_value *)1;
    mpc_error err;
    memset(&err, 0, sizeof err);
    mpc_status st = mpc_value_parse(text, strlen(text), &v, &err);
    if (st != MPC_VALUE || v != NULL || !strstr(err.message, piece))
        fail_msg("parse(%s): %s \"%s\", wanted VALUE with \"%s\"", text, mpc_status_name(st),
                 err.message, piece);
}

/* Issue 14, item 8: ".e5" is a SyntaxError in Python (an exponent needs a
 * mantissa digit), and the digit buffer grows before an exponent as it
 * does before a digit (510, 1022, ... characters before the 'e' were
 * refused while one more or one less was read). */
static void the_parser_reads_exponents_as_python_does(void **state)
{
    (void)state;
    parse_fails(".e5", "invalid number literal");
    parse_fails("-.e5", "invalid number literal");
    parse_fails(".E1", "invalid number literal");
    reads_as("1.e5", "100000.0");
    reads_as(".5e1", "5.0");
    reads_as("5.", "5.0");
    for (size_t before = 505; before < 2060; before++) {
        char text[2100];
        memset(text, '0', before);
        text[before - 2] = '1';
        text[before - 1] = '.';
        memcpy(text + before, "e2", 3); /* "00...01.e2" */
        mpc_value *v = NULL;
        mpc_error err;
        memset(&err, 0, sizeof err);
        if (mpc_value_parse(text, strlen(text), &v, &err) != MPC_OK)
            fail_msg("a float with %zu characters before 'e': %s", before, err.message);
        assert_true(mpc_value_float(v) == 100.0);
        mpc_value_free(v);
    }
}

static void scalars_are_built_and_read_back(void **state)
{
    (void)state;
    mpc_value *v = mpc_value_new_int(-42);
    assert_int_equal(mpc_value_kind(v), MPC_V_INT);
    assert_int_equal(mpc_value_int(v), -42);
    assert_true(mpc_value_float(v) == -42.0);
    mpc_value_free(v);
    v = mpc_value_new_str("a\0b", 3);
    size_t n;
    const char *s = mpc_value_str(v, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(s, "a\0b", 3);
    assert_int_equal(s[3], '\0');
    assert_int_equal(mpc_value_len(v), 3);
    assert_repr(v, "'a\\x00b'");
    mpc_value_free(v);
    assert_null(mpc_value_new_str("\xff", 1));
    assert_null(mpc_value_new_str("\xc0\x80", 2)); /* overlong */
    v = mpc_value_new_bigint("-000123", 7);
    assert_int_equal(mpc_value_kind(v), MPC_V_INT);
    assert_int_equal(mpc_value_int(v), -123);
    mpc_value_free(v);
    v = mpc_value_new_bigint("+9223372036854775808", 20);
    assert_int_equal(mpc_value_kind(v), MPC_V_BIGINT);
    assert_string_equal(mpc_value_str(v, NULL), "9223372036854775808");
    assert_string_equal(mpc_vkind_name(mpc_value_kind(v)), "int");
    mpc_value_free(v);
    assert_null(mpc_value_new_bigint("12a", 3));
    assert_null(mpc_value_new_bigint("", 0));
    v = mpc_value_new_bool(7);
    assert_int_equal(mpc_value_int(v), 1);
    assert_repr(v, "True");
    mpc_value_free(v);
    mpc_value_free(NULL);
    assert_int_equal(mpc_value_kind(NULL), MPC_V_NONE);
    assert_null(mpc_value_str(NULL, &n));
    assert_int_equal(n, 0);
}

static void containers_own_their_children_and_keep_order(void **state)
{
    (void)state;
    mpc_value *d = mpc_value_new_dict();
    assert_int_equal(mpc_value_dict_set(d, mpc_value_new_str("b", 1), mpc_value_new_int(1)),
                     MPC_OK);
    assert_int_equal(mpc_value_dict_set(d, mpc_value_new_str("a", 1), mpc_value_new_int(2)),
                     MPC_OK);
    mpc_value *l = mpc_value_new_list();
    assert_int_equal(mpc_value_append(l, mpc_value_new_none()), MPC_OK);
    assert_int_equal(mpc_value_append(l, mpc_value_new_float(0.5)), MPC_OK);
    assert_int_equal(mpc_value_dict_set(d, mpc_value_new_int(3), l), MPC_OK);
    assert_repr(d, "{'b': 1, 'a': 2, 3: [None, 0.5]}");
    assert_int_equal(mpc_value_len(d), 3);
    assert_string_equal(mpc_value_str(mpc_value_dict_key(d, 1), NULL), "a");
    assert_int_equal(mpc_value_int(mpc_value_dict_val(d, 1)), 2);
    assert_ptr_equal(mpc_value_dict_get_str(d, "b", 1), mpc_value_dict_val(d, 0));
    assert_null(mpc_value_dict_get_str(d, "zz", 2));
    assert_null(mpc_value_dict_key(d, 3));
    assert_ptr_equal(mpc_value_item(l, 1), mpc_value_item(mpc_value_dict_val(d, 2), 1));
    assert_null(mpc_value_item(l, 2));
    /* A list inside another container can still change, as in Python. */
    assert_int_equal(mpc_value_append(l, mpc_value_new_int(9)), MPC_OK);
    assert_repr(d, "{'b': 1, 'a': 2, 3: [None, 0.5, 9]}");
    mpc_value *x = mpc_value_new_none();
    assert_int_equal(mpc_value_append(d, x), MPC_INVAL);
    mpc_value_free(x); /* still ours after a failure */
    mpc_value_free(d);
}

/* Lists and dicts may contain themselves (directly or through other
 * containers), as in Python; repr prints "[...]" / "{...}" / "(...)" where
 * Python does, and everything is freed with the last owner (valgrind). */
static void lists_and_dicts_can_contain_themselves(void **state)
{
    (void)state;
    mpc_value *self = mpc_value_new_list();
    assert_int_equal(mpc_value_append(self, mpc_value_share(self)), MPC_OK);
    assert_repr(self, "[[...]]");
    assert_ptr_equal(mpc_value_item(self, 0), self);
    mpc_value *other = mpc_value_new_list();
    assert_int_equal(mpc_value_append(other, mpc_value_share(other)), MPC_OK);
    /* Equality terminates (Python would raise RecursionError here). */
    assert_true(mpc_value_equal(self, other));
    assert_true(mpc_value_equal(self, self));
    assert_int_equal(mpc_value_append(other, mpc_value_new_int(1)), MPC_OK);
    assert_false(mpc_value_equal(self, other));
    mpc_value_free(other);

    /* d = {}; d['self'] = d; a dict cannot be its own key (unhashable) */
    mpc_value *d = mpc_value_new_dict();
    assert_int_equal(mpc_value_dict_set(d, mpc_value_new_str("self", 4), mpc_value_share(d)),
                     MPC_OK);
    assert_repr(d, "{'self': {...}}");
    mpc_value *v = mpc_value_new_none();
    assert_int_equal(mpc_value_dict_set(d, d, v), MPC_VALUE);
    mpc_value_free(v);

    /* l = []; t = (l,); l.append(t): a tuple on a cycle through a list */
    mpc_value *l = mpc_value_new_list(), *t = mpc_value_new_tuple();
    assert_int_equal(mpc_value_append(l, t), MPC_OK);
    assert_int_equal(mpc_value_append(t, mpc_value_share(l)), MPC_OK);
    assert_repr(l, "[([...],)]");
    assert_repr(t, "([(...)],)");
    /* A member of a cycle kept alive by another owner outlives the root. */
    mpc_value *kept = mpc_value_share(t);
    mpc_value_free(l);
    assert_repr(kept, "([(...)],)");
    /* nested: a = [b, a], b = [a], and the dict holds the cycle */
    mpc_value *a = mpc_value_new_list(), *b = mpc_value_new_list();
    assert_int_equal(mpc_value_append(b, mpc_value_share(a)), MPC_OK);
    assert_int_equal(mpc_value_append(a, b), MPC_OK);
    assert_int_equal(mpc_value_append(a, mpc_value_share(a)), MPC_OK);
    assert_repr(a, "[[[...]], [...]]");
    assert_int_equal(mpc_value_dict_set(d, mpc_value_new_int(1), a), MPC_OK);
    assert_int_equal(mpc_value_dict_set(d, mpc_value_new_int(2), kept), MPC_OK);
    assert_repr(d, "{'self': {...}, 1: [[[...]], [...]], 2: ([(...)],)}");
    /* Replacing a value that closed a cycle releases it. */
    assert_int_equal(mpc_value_dict_set(d, mpc_value_new_str("self", 4), mpc_value_new_int(0)),
                     MPC_OK);
    assert_repr(d, "{'self': 0, 1: [[[...]], [...]], 2: ([(...)],)}");
    /* The encoder writes them as CPython does. */
    void *out;
    size_t n;
    mpc_error err;
    assert_int_equal(mpc_value_encode(self, 2, &out, &n, &err), MPC_OK);
    assert_int_equal(n, 9);
    assert_memory_equal(out, "\x80\x02]q\x00h\x00" "a.", 9);
    mpc_free(out);
    mpc_value_free(self);
    mpc_value_free(d);

    /* Sets and frozensets cannot reach themselves (their items are
     * hashable); a set or a tuple used as a key is frozen once inside. */
    mpc_value *s = mpc_value_new_set();
    assert_int_not_equal(mpc_value_set_add(s, s), MPC_OK);
    mpc_value *holder = mpc_value_new_list();
    assert_int_equal(mpc_value_append(holder, s), MPC_OK);
    v = mpc_value_new_int(1);
    assert_int_equal(mpc_value_set_add(s, v), MPC_INVAL);
    mpc_value_free(v);
    mpc_value *key = mpc_value_new_tuple(), *kd = mpc_value_new_dict();
    assert_int_equal(mpc_value_dict_set(kd, key, mpc_value_new_none()), MPC_OK);
    v = mpc_value_new_int(1);
    assert_int_equal(mpc_value_append(key, v), MPC_INVAL);
    mpc_value_free(v);
    assert_int_equal(mpc_value_append(holder, kd), MPC_OK);
    mpc_value_free(holder);
}

static void equal_keys_follow_python_rules(void **state)
{
    (void)state;
    /* 1 == 1.0 == True: one key, the first key kept, the last value. */
    reads_as("{1: 'a', 1.0: 'b', True: 'c'}", "{1: 'c'}");
    reads_as("{1, 1.0, True, 2, 2.0}", "{1, 2}");
    reads_as("{0: 1, False: 2, 0.0: 3, -0.0: 4}", "{0: 4}");
    reads_as("{(1, 2): 1, (1.0, 2.0): 2}", "{(1, 2): 2}");
    reads_as("{frozenset({1, 2}): 1, frozenset({2, 1}): 2}", "{frozenset({1, 2}): 2}");
    reads_as("{'a': 1, b'a': 2}", "{'a': 1, b'a': 2}");
    reads_as("{18446744073709551616: 1, 18446744073709551616.0: 2}",
             "{18446744073709551616: 2}");
    parse_fails("{[1]: 2}", "unhashable type: 'list'");
    parse_fails("{(1, [2]): 2}", "unhashable type: 'tuple'");
    parse_fails("{{1}}", "unhashable type: 'set'");
    parse_fails("{bytearray(b'x'): 1}", "unhashable type: 'bytearray'");
    /* large dicts use the hash index */
    mpc_value *d = mpc_value_new_dict();
    for (int i = 0; i < 5000; i++)
        assert_int_equal(mpc_value_dict_set(d, mpc_value_new_int(i % 2500), mpc_value_new_int(i)),
                         MPC_OK);
    assert_int_equal(mpc_value_len(d), 2500);
    mpc_value *k = mpc_value_new_float(17.0);
    assert_int_equal(mpc_value_int(mpc_value_dict_get(d, k)), 2517);
    mpc_value_free(k);
    mpc_value_free(d);
    /* equality across kinds */
    mpc_value *a = parse("[1, b'x', {1, 2}, {'k': (1,)}]");
    mpc_value *b = parse("[1.0, bytearray(b'x'), frozenset({2, 1}), {'k': (True,)}]");
    assert_true(mpc_value_equal(a, b));
    mpc_value_free(b);
    b = parse("[1.0, bytearray(b'x'), frozenset({2, 1}), {'k': [True]}]");
    assert_false(mpc_value_equal(a, b));
    mpc_value_free(b);
    mpc_value_free(a);
    a = mpc_value_new_float(NAN);
    assert_true(mpc_value_equal(a, a));
    b = mpc_value_new_float(NAN);
    assert_false(mpc_value_equal(a, b));
    mpc_value_free(a);
    mpc_value_free(b);
}

static void the_parser_reads_python_literal_syntax(void **state)
{
    (void)state;
    reads_as("  None ", "None");
    reads_as("[1, -2, +3, 0x_ff, 0o17, 0b101, 1_000_000, -0, 00]",
             "[1, -2, 3, 255, 15, 5, 1000000, 0, 0]");
    reads_as("[1.5, .5, 5., 1e3, 1E-5, 1_0.5e1_0, -0.0, 1e400, -1e400]",
             "[1.5, 0.5, 5.0, 1000.0, 1e-05, 105000000000.0, -0.0, inf, -inf]");
    reads_as("[inf, -inf, nan, float('inf'), float(\"-inf\"), float('nan'), float('1.5')]",
             "[inf, -inf, nan, inf, -inf, nan, 1.5]");
    reads_as("123456789012345678901234567890", "123456789012345678901234567890");
    reads_as("-0x10000000000000000", "-18446744073709551616");
    reads_as("'a' \"b\" '''c\nd''' r'\\n' u'e'", "'abc\\nd\\\\ne'");
    reads_as("'\\x41\\101\\u00e9\\U0001F600\\n\\t\\\\\\'\\q\\\n'", "\"AAé😀\\n\\t\\\\'\\\\q\"");
    reads_as("b'\\x00\\xff' B\"\\u0041\" rb'\\x'", "b'\\x00\\xff\\\\u0041\\\\x'");
    reads_as("\"it's\"", "\"it's\"");
    reads_as("'\\ud800'", "'\\ud800'");
    reads_as("((), (1), (1,), (1, 2,), [], [1,], {}, {1: 2,}, {1,})",
             "((), 1, (1,), (1, 2), [], [1], {}, {1: 2}, {1})");
    reads_as("[set(), set([1, 2]), set((3,)), frozenset(), frozenset({1}), frozenset([2, 2])]",
             "[set(), {1, 2}, {3}, frozenset(), frozenset({1}), frozenset({2})]");
    reads_as("[bytearray(), bytearray(b'a\\x00')]", "[bytearray(b''), bytearray(b'a\\x00')]");
    reads_as("{'nested': [{'a': (1, [2, {3}])}]}", "{'nested': [{'a': (1, [2, {3}])}]}");
    parse_fails("", "unexpected end of input");
    parse_fails("[1, 2", "expected ']'");
    parse_fails("(1 2)", "expected ',' or ')'");
    parse_fails("{1: 2, 3}", "expected ':'");
    parse_fails("01", "leading zeros");
    parse_fails("1_", "invalid decimal literal");
    parse_fails("1__0", "invalid decimal literal");
    parse_fails("1j", "complex numbers are not supported");
    parse_fails("os.system", "unknown name");
    parse_fails("__import__('os')", "unknown name");
    parse_fails("'abc", "unterminated string literal");
    parse_fails("'a\nb'", "unterminated string literal");
    parse_fails("b'\xc3\xa9'", "bytes can only contain ASCII literal characters");
    parse_fails("'a' b'b'", "cannot mix bytes and nonbytes literals");
    parse_fails("'\\x4'", "truncated \\xXX escape");
    parse_fails("'\\N{DASH}'", "\\N{...} escapes are not supported");
    parse_fails("f'x'", "invalid string prefix");
    parse_fails("1 2", "unexpected text after the value");
    parse_fails("--1", "expected a number after the sign");
    parse_fails("float('0x10')", "float()");
    parse_fails("bytearray('x')", "bytearray() takes a bytes literal");
    parse_fails("\xff", "not valid UTF-8");
    /* nesting bound */
    char *deep = malloc(200001);
    memset(deep, '[', 100000);
    memset(deep + 100000, ']', 100000);
    deep[200000] = '\0';
    parse_fails(deep, "nesting deeper than 1000");
    free(deep);
}

static void repr_matches_python_for_strings_and_floats(void **state)
{
    (void)state;
    reads_as("'\\x00\\x1f\\x7f\\x80\\x9f\\xa0\\xad\\xff'", "'\\x00\\x1f\\x7f\\x80\\x9f\\xa0\\xadÿ'");
    reads_as("'\\u2028\\u3000\\ufeff\\U000e0001\\U0010ffff\\u0378'",
             "'\\u2028\\u3000\\ufeff\\U000e0001\\U0010ffff\\u0378'");
    reads_as("'中文 ñ ẞ 😀 \\u00a7'", "'中文 ñ ẞ 😀 §'");
    reads_as("['\"', \"'\", '\\'\"']", "['\"', \"'\", '\\'\"']");
    reads_as("[b'\"', b\"'\", b'\\'\"', b'\\x7f\\x80']", "[b'\"', b\"'\", b'\\'\"', b'\\x7f\\x80']");
    static const struct {
        double d;
        const char *want;
    } floats[] = {
        {0.1, "0.1"}, {1e16, "1e+16"}, {1e15, "1000000000000000.0"}, {1e-5, "1e-05"},
        {1e-4, "0.0001"}, {-0.0, "-0.0"}, {1.0, "1.0"}, {2.5e-308, "2.5e-308"},
        {5e-324, "5e-324"}, {1.7976931348623157e308, "1.7976931348623157e+308"},
        {123.456, "123.456"}, {0.30000000000000004, "0.30000000000000004"},
        {9007199254740993.0, "9007199254740992.0"}, {1e22, "1e+22"}, {1e23, "1e+23"},
    };
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        mpc_value *v = mpc_value_new_float(floats[i].d);
        assert_repr(v, floats[i].want);
        mpc_value_free(v);
    }
}

static void encoding_refuses_bad_arguments(void **state)
{
    (void)state;
    mpc_value *v = mpc_value_new_none();
    void *out = (void *)1;
    size_t n = 1;
    mpc_error err;
    assert_int_equal(mpc_value_encode(v, 1, &out, &n, &err), MPC_INVAL);
    assert_null(out);
    assert_int_equal(mpc_value_encode(v, 6, &out, &n, &err), MPC_INVAL);
    assert_int_equal(mpc_value_encode(NULL, 4, &out, &n, &err), MPC_INVAL);
    assert_int_equal(mpc_value_encode(v, 0, &out, &n, &err), MPC_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "\x80\x04N.", 4);
    mpc_free(out);
    assert_int_equal(mpc_value_encode(v, 2, &out, &n, NULL), MPC_OK);
    assert_memory_equal(out, "\x80\x02N.", 4);
    mpc_free(out);
    mpc_value_free(v);
    memset(&err, 0, sizeof err);
    assert_int_equal(mpc_value_repr(NULL, (char **)&out, &n, &err), MPC_INVAL);
    assert_int_equal(err.status, MPC_INVAL);
    assert_string_equal(err.message, "value and out must not be NULL");
    assert_int_equal(mpc_value_repr(NULL, (char **)&out, &n, NULL), MPC_INVAL);
    assert_int_equal(mpc_value_decode(NULL, 3, NULL, &v, NULL), MPC_INVAL);
    assert_int_equal(mpc_value_parse("1", 1, NULL, NULL), MPC_INVAL);
}

static void api_built_trees_are_bounded_in_depth(void **state)
{
    (void)state;
    mpc_value *v = mpc_value_new_none();
    int depth = 1;
    for (; depth < MPC_VALUE_DEPTH_MAX + 5; depth++) {
        mpc_value *l = mpc_value_new_list();
        if (mpc_value_append(l, v) != MPC_OK) {
            mpc_value_free(l);
            break;
        }
        v = l;
    }
    assert_int_equal(depth, MPC_VALUE_DEPTH_MAX);
    void *out;
    size_t n;
    assert_int_equal(mpc_value_encode(v, 4, &out, &n, NULL), MPC_OK);
    mpc_value *back = NULL;
    mpc_decode_options o = {0};
    o.max_depth = MPC_VALUE_DEPTH_MAX;
    assert_int_equal(mpc_value_decode(out, n, &o, &back, NULL), MPC_OK);
    assert_true(mpc_value_equal(v, back));
    mpc_value_free(back);
    assert_int_equal(mpc_value_decode(out, n, NULL, &back, NULL), MPC_VALUE);
    assert_null(back);
    mpc_free(out);
    mpc_value_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scalars_are_built_and_read_back),
        cmocka_unit_test(containers_own_their_children_and_keep_order),
        cmocka_unit_test(lists_and_dicts_can_contain_themselves),
        cmocka_unit_test(equal_keys_follow_python_rules),
        cmocka_unit_test(the_parser_reads_python_literal_syntax),
        cmocka_unit_test(the_parser_reads_exponents_as_python_does),
        cmocka_unit_test(repr_matches_python_for_strings_and_floats),
        cmocka_unit_test(encoding_refuses_bad_arguments),
        cmocka_unit_test(api_built_trees_are_bounded_in_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
