/*
 * test_conn_value.c - values over a connection (mpc_send_value /
 * mpc_recv_value) and the bounded printer (mpc_value_repr_limit): round
 * trips at every protocol the encoder writes, the bytes on the wire, hostile
 * pickles (os.system through GLOBAL, STACK_GLOBAL and REDUCE, truncated and
 * garbage data) that are refused with the opcode and the global named while
 * the connection stays in step, size limits, end of file, and a memo bomb
 * whose text would be astronomically long.  Socketpairs only; every message
 * a blocking call waits for is already written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mpconn.h"

/* ---------------------------------------------------------------- helpers */

static void make_pair(const mpc_options *o, mpc_conn **a, mpc_conn **b)
{
    mpc_error e;
    mpc_status st = mpc_pipe(1, o, a, b, &e);
    if (st != MPC_OK)
        fail_msg("mpc_pipe: %s", e.message);
    /* Nothing in this file should ever wait: a bug must fail, not hang. */
    mpc_conn_set_timeout(*a, 10000);
    mpc_conn_set_timeout(*b, 10000);
}

static mpc_value *parse(const char *text)
{
    mpc_value *v = NULL;
    mpc_error e;
    mpc_status st = mpc_value_parse(text, strlen(text), &v, &e);
    if (st != MPC_OK)
        fail_msg("parse %s: %s", text, e.message);
    return v;
}

static char *repr(const mpc_value *v)
{
    char *s = NULL;
    assert_int_equal(mpc_value_repr(v, &s, NULL, NULL), MPC_OK);
    return s;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, hay);
}

/* Sends one valid value and checks that b receives it: proof that the
 * stream is still in step after whatever came before. */
static void assert_next_value_arrives(mpc_conn *a, mpc_conn *b)
{
    mpc_value *v = parse("{'next': [1, 'two', b'3']}");
    assert_int_equal(mpc_send_value(a, v, 0), MPC_OK);
    mpc_value *got = NULL;
    mpc_status st = mpc_recv_value(b, NULL, &got);
    if (st != MPC_OK)
        fail_msg("next message: %s: %s", mpc_status_name(st), mpc_conn_errmsg(b));
    assert_true(mpc_value_equal(v, got));
    assert_int_equal(mpc_conn_status(b), MPC_OK);
    mpc_value_free(got);
    mpc_value_free(v);
}

/* Writes payload raw as one message (as a hostile peer's send_bytes). */
static void send_raw(mpc_conn *a, const void *p, size_t n)
{
    assert_int_equal(mpc_send_bytes(a, p, n), MPC_OK);
}

static void assert_refused(mpc_conn *b, const char *want1, const char *want2)
{
    mpc_value *got = (mpc_value *)1;
    mpc_status st = mpc_recv_value(b, NULL, &got);
    if (st != MPC_VALUE)
        fail_msg("expected VALUE, got %s: %s", mpc_status_name(st), mpc_conn_errmsg(b));
    assert_null(got);
    assert_int_equal(mpc_conn_status(b), MPC_VALUE);
    assert_contains(mpc_conn_errmsg(b), want1);
    if (want2)
        assert_contains(mpc_conn_errmsg(b), want2);
    assert_int_equal(mpc_conn_buffered(b), 0);
}

static const char broad[] =
    "{'name': 'Ada', 'level': 42, 'scores': [1.5, -0.0, inf, -inf, nan, 1e+300],"
    " 'unicode': '\\u00e9\\u4e2d\\U0001f600\\x00end', 'big': -123456789012345678901234567890,"
    " (1, 'k'): (None, True, False), 'empty': ([], (), {}, set(), frozenset(), b'', ''),"
    " 'sets': [{1, 2, 3}, frozenset({'a'})], 'raw': b'\\x00\\xff', 'ba': bytearray(b'xy')}";

/* ------------------------------------------------------------------ tests */

static void a_value_sent_with_send_value_arrives_equal_at_every_protocol(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    make_pair(NULL, &a, &b);
    mpc_value *v = parse(broad);
    char *want = repr(v);
    static const int protocols[] = {0, 2, 3, 4, 5};
    for (size_t i = 0; i < sizeof protocols / sizeof protocols[0]; i++) {
        assert_int_equal(mpc_send_value(a, v, protocols[i]), MPC_OK);
        mpc_value *got = NULL;
        mpc_status st = mpc_recv_value(b, NULL, &got);
        if (st != MPC_OK)
            fail_msg("protocol %d: %s", protocols[i], mpc_conn_errmsg(b));
        char *text = repr(got);
        assert_string_equal(text, want);
        /* nan != nan, so compare the text, and equality of a nan-free part */
        assert_true(mpc_value_equal(mpc_value_dict_get_str(v, "unicode", 7),
                                    mpc_value_dict_get_str(got, "unicode", 7)));
        mpc_free(text);
        mpc_value_free(got);
    }
    mpc_free(want);
    mpc_value_free(v);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void send_value_puts_exactly_the_encoded_pickle_in_one_message(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    make_pair(NULL, &a, &b);
    mpc_value *v = parse("[1, 'x', (2.5,)]");
    for (int proto = 2; proto <= 5; proto++) {
        void *enc = NULL;
        size_t enc_len = 0;
        assert_int_equal(mpc_value_encode(v, proto, &enc, &enc_len, NULL), MPC_OK);
        assert_int_equal(mpc_send_value(a, v, proto), MPC_OK);
        void *msg = NULL;
        size_t len = 0;
        assert_int_equal(mpc_recv_bytes(b, MPC_NO_LIMIT, &msg, &len), MPC_OK);
        assert_int_equal(len, enc_len);
        assert_memory_equal(msg, enc, len);
        assert_int_equal(((unsigned char *)msg)[1], proto);
        mpc_free(msg);
        mpc_free(enc);
    }
    /* protocol 0 means 4 */
    assert_int_equal(mpc_send_value(a, v, 0), MPC_OK);
    void *msg = NULL;
    size_t len = 0;
    assert_int_equal(mpc_recv_bytes(b, MPC_NO_LIMIT, &msg, &len), MPC_OK);
    assert_true(len > 2);
    assert_int_equal(((unsigned char *)msg)[0], 0x80);
    assert_int_equal(((unsigned char *)msg)[1], 4);
    mpc_free(msg);
    mpc_value_free(v);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void a_value_python_sent_is_decoded(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    make_pair(NULL, &a, &b);
    /* pickle.dumps({'name': 'Ada', 'hp': [1, 2]}, 4) from CPython 3.11 */
    static const unsigned char p[] =
        "\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x04name\x94\x8c\x03"
        "Ada\x94\x8c\x02hp\x94]\x94(K\x01K\x02" "eu.";
    send_raw(a, p, sizeof p - 1);
    mpc_value *got = NULL;
    assert_int_equal(mpc_recv_value(b, NULL, &got), MPC_OK);
    char *text = repr(got);
    assert_string_equal(text, "{'name': 'Ada', 'hp': [1, 2]}");
    mpc_free(text);
    mpc_value_free(got);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void a_pickle_calling_os_system_is_refused_naming_opcode_and_global(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    make_pair(NULL, &a, &b);
    /* The classic protocol 0 payload: os.system('echo hi'). */
    static const char classic[] = "cos\nsystem\n(S'echo hi'\ntR.";
    send_raw(a, classic, sizeof classic - 1);
    assert_refused(b, "refused opcode GLOBAL of global 'os.system'", "at offset 0");
    assert_next_value_arrives(a, b);

    /* pickle.dumps(os.system, 4): STACK_GLOBAL of posix.system. */
    static const unsigned char sg[] = "\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix"
                                      "\x94\x8c\x06system\x94\x93\x94.";
    send_raw(a, sg, sizeof sg - 1);
    assert_refused(b, "STACK_GLOBAL", "'posix.system'");
    assert_next_value_arrives(a, b);

    /* An object whose __reduce__ returns (os.system, ('touch /tmp/x',)),
     * protocol 2: GLOBAL then REDUCE. */
    static const unsigned char red[] = "\x80\x02\x63posix\nsystem\nq\x00X\x0c\x00\x00\x00touch "
                                       "/tmp/xq\x01\x85q\x02Rq\x03.";
    send_raw(a, red, sizeof red - 1);
    assert_refused(b, "refused opcode GLOBAL of global 'posix.system'", NULL);
    assert_next_value_arrives(a, b);

    /* REDUCE of an allowed global with arguments CPython never writes. */
    static const char bad_reduce[] = "c__builtin__\nset\n(S'abc'\ntR.";
    send_raw(a, bad_reduce, sizeof bad_reduce - 1);
    assert_refused(b, "REDUCE", "set");
    assert_next_value_arrives(a, b);

    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void truncated_garbage_and_empty_messages_are_value_errors_and_the_stream_goes_on(
    void **state)
{
    (void)state;
    mpc_conn *a, *b;
    make_pair(NULL, &a, &b);
    static const unsigned char truncated[] = "\x80\x04\x95\x1e\x00\x00\x00\x00\x00\x00\x00}\x94("
                                             "\x8c\x04name";
    send_raw(a, truncated, sizeof truncated - 1);
    assert_refused(b, "truncated", NULL);
    assert_next_value_arrives(a, b);

    send_raw(a, "", 0);
    assert_refused(b, "empty pickle data", NULL);
    assert_next_value_arrives(a, b);

    send_raw(a, "hello world", 11);
    assert_refused(b, "offset", NULL);
    assert_next_value_arrives(a, b);

    /* BINGET of a memo key that was never stored. */
    static const unsigned char memo[] = "\x80\x02h\x07.";
    send_raw(a, memo, sizeof memo - 1);
    assert_refused(b, "memo", NULL);
    assert_next_value_arrives(a, b);

    /* BUILD (sets attributes of an object): refused outright. */
    static const unsigned char build[] = "\x80\x02}b.";
    send_raw(a, build, sizeof build - 1);
    assert_refused(b, "refused opcode BUILD", NULL);
    assert_next_value_arrives(a, b);

    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void decode_options_are_applied(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    make_pair(NULL, &a, &b);
    mpc_value *v = parse("[[[['deep']]]]");
    assert_int_equal(mpc_send_value(a, v, 4), MPC_OK);
    mpc_decode_options o;
    memset(&o, 0, sizeof o);
    o.max_depth = 3;
    mpc_value *got = (mpc_value *)1;
    assert_int_equal(mpc_recv_value(b, &o, &got), MPC_VALUE);
    assert_null(got);
    assert_contains(mpc_conn_errmsg(b), "nesting deeper than 3");
    assert_next_value_arrives(a, b);
    mpc_value_free(v);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void an_unsupported_protocol_sends_nothing(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    make_pair(NULL, &a, &b);
    mpc_value *v = parse("1");
    assert_int_equal(mpc_send_value(a, v, 1), MPC_INVAL);
    assert_int_equal(mpc_conn_status(a), MPC_INVAL);
    assert_true(strlen(mpc_conn_errmsg(a)) > 0);
    assert_int_equal(mpc_send_value(a, NULL, 4), MPC_INVAL);
    int ready = -1;
    assert_int_equal(mpc_poll(b, MPC_NOWAIT, &ready), MPC_OK);
    assert_int_equal(ready, 0);
    /* a is not broken */
    assert_next_value_arrives(a, b);
    mpc_value_free(v);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void recv_value_reports_end_of_file_and_size_limits_like_recv_bytes(void **state)
{
    (void)state;
    mpc_options o;
    mpc_options_init(&o);
    o.max_message_size = 64;
    mpc_conn *a, *b;
    make_pair(&o, &a, &b);
    mpc_value *small = parse("'short'");
    assert_int_equal(mpc_send_value(a, small, 4), MPC_OK);
    mpc_value *got = NULL;
    assert_int_equal(mpc_recv_value(b, NULL, &got), MPC_OK);
    mpc_value_free(got);
    mpc_value_free(small);

    char text[200];
    memset(text, 'x', sizeof text);
    mpc_value *large = mpc_value_new_str(text, sizeof text);
    assert_non_null(large);
    assert_int_equal(mpc_send_value(a, large, 4), MPC_OK);
    got = (mpc_value *)1;
    assert_int_equal(mpc_recv_value(b, NULL, &got), MPC_TOOLONG);
    assert_null(got);
    mpc_value_free(large);
    mpc_conn_close(a);
    mpc_conn_close(b);

    make_pair(NULL, &a, &b);
    mpc_conn_close(a);
    got = (mpc_value *)1;
    assert_int_equal(mpc_recv_value(b, NULL, &got), MPC_EOF);
    assert_null(got);
    assert_int_equal(mpc_recv_value(b, NULL, NULL), MPC_INVAL);
    assert_int_equal(mpc_recv_value(NULL, NULL, &got), MPC_INVAL);
    mpc_conn_close(b);
}

/* A memo bomb: list k holds list k-1 twice, for 64 levels.  It is a few
 * hundred bytes and decodes to a small shared tree, but its full text would
 * be about 2^64 characters. */
static void a_memo_bomb_decodes_and_its_repr_stops_at_the_limit(void **state)
{
    (void)state;
    unsigned char p[1024];
    size_t n = 0;
    p[n++] = 0x80;
    p[n++] = 2;
    p[n++] = ']';       /* EMPTY_LIST */
    p[n++] = 'q';       /* BINPUT 0 */
    p[n++] = 0;
    p[n++] = '0';       /* POP */
    for (int level = 0; level < 64; level++) {
        p[n++] = '(';   /* MARK */
        p[n++] = 'h';   /* BINGET 0 */
        p[n++] = 0;
        p[n++] = 'h';
        p[n++] = 0;
        p[n++] = 'l';   /* LIST */
        p[n++] = 'q';   /* BINPUT 0 (replaces the memo entry) */
        p[n++] = 0;
        p[n++] = '0';
    }
    p[n++] = 'h';
    p[n++] = 0;
    p[n++] = '.';
    mpc_conn *a, *b;
    make_pair(NULL, &a, &b);
    send_raw(a, p, n);
    mpc_value *got = NULL;
    mpc_status st = mpc_recv_value(b, NULL, &got);
    if (st != MPC_OK)
        fail_msg("bomb: %s", mpc_conn_errmsg(b));
    char *text = (char *)1;
    size_t len = 99;
    mpc_error e;
    assert_int_equal(mpc_value_repr_limit(got, 1 << 20, &text, &len, &e), MPC_VALUE);
    assert_null(text);
    assert_int_equal(len, 0);
    assert_int_equal(e.status, MPC_VALUE);
    assert_string_equal(e.message, "the repr is longer than 1048576 bytes");
    mpc_value_free(got);
    assert_next_value_arrives(a, b);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void repr_limit_allows_text_of_exactly_the_limit(void **state)
{
    (void)state;
    mpc_value *v = parse("[1, 'ab', None]");
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(mpc_value_repr_limit(v, 17, &text, &len, NULL), MPC_OK);
    assert_string_equal(text, "[1, 'ab', None]");
    assert_int_equal(len, 15);
    mpc_free(text);
    assert_int_equal(mpc_value_repr_limit(v, 15, &text, &len, NULL), MPC_OK);
    assert_int_equal(len, 15);
    mpc_free(text);
    assert_int_equal(mpc_value_repr_limit(v, 14, &text, &len, NULL), MPC_VALUE);
    assert_null(text);
    assert_int_equal(mpc_value_repr_limit(v, 0, &text, &len, NULL), MPC_VALUE);
    assert_int_equal(mpc_value_repr_limit(NULL, 10, &text, &len, NULL), MPC_INVAL);
    /* one long scalar over the limit */
    mpc_value *s = mpc_value_new_str("0123456789", 10);
    assert_int_equal(mpc_value_repr_limit(s, 11, &text, &len, NULL), MPC_VALUE);
    assert_int_equal(mpc_value_repr_limit(s, 12, &text, &len, NULL), MPC_OK);
    assert_string_equal(text, "'0123456789'");
    mpc_free(text);
    mpc_value_free(s);
    mpc_value_free(v);
    /* bytearray escapes a single quote even inside double quotes, as
     * CPython's bytearray repr does (bytes does not). */
    v = parse("[bytearray(b\"'\"), b\"'\"]");
    text = repr(v);
    assert_string_equal(text, "[bytearray(b\"\\'\"), b\"'\"]");
    mpc_free(text);
    mpc_value_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_value_sent_with_send_value_arrives_equal_at_every_protocol),
        cmocka_unit_test(send_value_puts_exactly_the_encoded_pickle_in_one_message),
        cmocka_unit_test(a_value_python_sent_is_decoded),
        cmocka_unit_test(a_pickle_calling_os_system_is_refused_naming_opcode_and_global),
        cmocka_unit_test(
            truncated_garbage_and_empty_messages_are_value_errors_and_the_stream_goes_on),
        cmocka_unit_test(decode_options_are_applied),
        cmocka_unit_test(an_unsupported_protocol_sends_nothing),
        cmocka_unit_test(recv_value_reports_end_of_file_and_size_limits_like_recv_bytes),
        cmocka_unit_test(a_memo_bomb_decodes_and_its_repr_stops_at_the_limit),
        cmocka_unit_test(repr_limit_allows_text_of_exactly_the_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
