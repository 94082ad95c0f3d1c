/*
 * test_frame.c - the sans-I/O framing layer: header encoding, the
 * incremental decoder fed in every possible split, the extended (-1) form,
 * hostile lengths and the protocol-error deviation from CPython.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

struct header_case {
    uint64_t len;
    size_t size;
    unsigned char bytes[MPC_FRAME_HEADER_MAX];
};

static const struct header_case cases[] = {
    {0, 4, {0x00, 0x00, 0x00, 0x00}},
    {1, 4, {0x00, 0x00, 0x00, 0x01}},
    {16384, 4, {0x00, 0x00, 0x40, 0x00}},
    {16385, 4, {0x00, 0x00, 0x40, 0x01}},
    {0x7FFFFFFF, 4, {0x7F, 0xFF, 0xFF, 0xFF}},
    {0x80000000u, 12, {0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00}},
    {0x123456789ABCDEF0ull, 12,
     {0xFF, 0xFF, 0xFF, 0xFF, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0}},
    {UINT64_MAX, 12, {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}},
};
#define NCASES (sizeof cases / sizeof cases[0])

/* Feeds the whole buffer in one call and expects a complete header. */
static uint64_t decode_whole(const unsigned char *b, size_t n, size_t *consumed)
{
    mpc_frame_decoder d;
    uint64_t len = 0xDEAD;
    memset(&d, 0, sizeof d);
    assert_int_equal(mpc_frame_feed(&d, b, n, consumed, &len), MPC_OK);
    return len;
}

static void headers_are_encoded_in_the_short_or_extended_form(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        unsigned char out[MPC_FRAME_HEADER_MAX];
        memset(out, 0xAA, sizeof out);
        size_t n = mpc_frame_header(cases[i].len, out);
        assert_int_equal(n, cases[i].size);
        assert_memory_equal(out, cases[i].bytes, n);
    }
}

static void a_payload_of_0x80000000_bytes_gets_minus_one_and_eight_length_bytes(void **state)
{
    (void)state;
    static const unsigned char want[12] = {0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00,
                                           0x00, 0x00, 0x80, 0x00, 0x00, 0x00};
    unsigned char out[MPC_FRAME_HEADER_MAX];
    assert_int_equal(mpc_frame_header(0x80000000u, out), 12);
    assert_memory_equal(out, want, 12);
}

static void every_encoded_header_decodes_to_its_length(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        size_t consumed = 99;
        uint64_t len = decode_whole(cases[i].bytes, cases[i].size, &consumed);
        assert_int_equal(len, cases[i].len);
        assert_int_equal(consumed, cases[i].size);
    }
}

static void the_extended_form_is_accepted_for_a_small_length(void **state)
{
    (void)state;
    static const unsigned char h[12] = {0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 3};
    size_t consumed = 0;
    assert_int_equal(decode_whole(h, sizeof h, &consumed), 3);
    assert_int_equal(consumed, 12);
}

static void the_extended_form_with_zero_length_is_an_empty_message(void **state)
{
    (void)state;
    static const unsigned char h[12] = {0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0};
    size_t consumed = 0;
    assert_int_equal(decode_whole(h, sizeof h, &consumed), 0);
    assert_int_equal(consumed, 12);
}

static void a_hostile_two_to_the_63_length_is_reported_faithfully(void **state)
{
    (void)state;
    static const unsigned char h[12] = {0xFF, 0xFF, 0xFF, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0};
    size_t consumed = 0;
    assert_int_equal(decode_whole(h, sizeof h, &consumed), (uint64_t)1 << 63);
    assert_int_equal(consumed, 12);
}

static void a_negative_length_other_than_minus_one_is_a_protocol_error(void **state)
{
    (void)state;
    static const unsigned char bad[][4] = {
        {0xFF, 0xFF, 0xFF, 0xFE}, /* -2 */
        {0xFF, 0xFF, 0xFF, 0xFB}, /* -5 */
        {0x80, 0x00, 0x00, 0x00}, /* INT32_MIN */
        {0xFF, 0xFF, 0xFF, 0x00},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mpc_frame_decoder d;
        size_t consumed = 99;
        uint64_t len = 77;
        memset(&d, 0, sizeof d);
        assert_int_equal(mpc_frame_feed(&d, bad[i], 4, &consumed, &len), MPC_PROTO);
        assert_int_equal(consumed, 4);
        assert_int_equal(len, 77); /* untouched on error */
        /* The decoder is reset and usable again. */
        static const unsigned char ok[4] = {0, 0, 0, 9};
        assert_int_equal(mpc_frame_feed(&d, ok, 4, &consumed, &len), MPC_OK);
        assert_int_equal(len, 9);
    }
}

static void a_protocol_error_fed_one_byte_at_a_time_shows_on_the_fourth_byte(void **state)
{
    (void)state;
    static const unsigned char h[4] = {0xFF, 0xFF, 0xFF, 0xFE};
    mpc_frame_decoder d;
    size_t consumed;
    uint64_t len;
    memset(&d, 0, sizeof d);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mpc_frame_feed(&d, h + i, 1, &consumed, &len), MPC_AGAIN);
        assert_int_equal(consumed, 1);
    }
    assert_int_equal(mpc_frame_feed(&d, h + 3, 1, &consumed, &len), MPC_PROTO);
    assert_int_equal(consumed, 1);
}

static void a_truncated_header_asks_for_more_input(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        for (size_t cut = 0; cut < cases[i].size; cut++) {
            mpc_frame_decoder d;
            size_t consumed = 99;
            uint64_t len = 55;
            memset(&d, 0, sizeof d);
            assert_int_equal(mpc_frame_feed(&d, cases[i].bytes, cut, &consumed, &len), MPC_AGAIN);
            assert_int_equal(consumed, cut);
            assert_int_equal(len, 55);
        }
    }
}

static void empty_input_consumes_nothing_and_asks_for_more(void **state)
{
    (void)state;
    mpc_frame_decoder d;
    size_t consumed = 99;
    uint64_t len = 0;
    memset(&d, 0, sizeof d);
    assert_int_equal(mpc_frame_feed(&d, NULL, 0, &consumed, &len), MPC_AGAIN);
    assert_int_equal(consumed, 0);
}

static void every_header_split_at_every_byte_offset_decodes_the_same(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        const unsigned char *b = cases[i].bytes;
        size_t n = cases[i].size;
        for (size_t a = 0; a <= n; a++) {
            for (size_t c = a; c <= n; c++) {
                /* Three chunks: [0,a) [a,c) [c,n). */
                mpc_frame_decoder d;
                size_t consumed;
                uint64_t len = 0;
                memset(&d, 0, sizeof d);
                mpc_status st = mpc_frame_feed(&d, b, a, &consumed, &len);
                assert_int_equal(st, a == n ? MPC_OK : MPC_AGAIN);
                assert_int_equal(consumed, a);
                if (a == n) {
                    assert_int_equal(len, cases[i].len);
                    continue;
                }
                st = mpc_frame_feed(&d, b + a, c - a, &consumed, &len);
                assert_int_equal(st, c == n ? MPC_OK : MPC_AGAIN);
                assert_int_equal(consumed, c - a);
                if (c == n) {
                    assert_int_equal(len, cases[i].len);
                    continue;
                }
                st = mpc_frame_feed(&d, b + c, n - c, &consumed, &len);
                assert_int_equal(st, MPC_OK);
                assert_int_equal(consumed, n - c);
                assert_int_equal(len, cases[i].len);
            }
        }
    }
}

static void one_byte_at_a_time_decodes_every_header(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        mpc_frame_decoder d;
        size_t consumed;
        uint64_t len = 0;
        memset(&d, 0, sizeof d);
        for (size_t k = 0; k < cases[i].size; k++) {
            mpc_status st = mpc_frame_feed(&d, cases[i].bytes + k, 1, &consumed, &len);
            assert_int_equal(consumed, 1);
            assert_int_equal(st, k + 1 == cases[i].size ? MPC_OK : MPC_AGAIN);
        }
        assert_int_equal(len, cases[i].len);
    }
}

static void only_header_bytes_are_consumed_when_payload_follows(void **state)
{
    (void)state;
    /* Short header, payload "abc", then more. */
    static const unsigned char s[] = {0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 1};
    size_t consumed = 0;
    assert_int_equal(decode_whole(s, sizeof s, &consumed), 3);
    assert_int_equal(consumed, 4);
    /* Extended header for 3 bytes, then "abc". */
    static const unsigned char x[] = {0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c'};
    assert_int_equal(decode_whole(x, sizeof x, &consumed), 3);
    assert_int_equal(consumed, 12);
}

static void several_headers_back_to_back_are_decoded_in_turn(void **state)
{
    (void)state;
    unsigned char stream[NCASES * MPC_FRAME_HEADER_MAX];
    size_t n = 0;
    for (size_t i = 0; i < NCASES; i++)
        n += mpc_frame_header(cases[i].len, stream + n);

    /* In one big buffer: each call consumes exactly one header. */
    mpc_frame_decoder d;
    memset(&d, 0, sizeof d);
    size_t off = 0;
    for (size_t i = 0; i < NCASES; i++) {
        size_t consumed = 0;
        uint64_t len = 0;
        assert_int_equal(mpc_frame_feed(&d, stream + off, n - off, &consumed, &len), MPC_OK);
        assert_int_equal(consumed, cases[i].size);
        assert_int_equal(len, cases[i].len);
        off += consumed;
    }
    assert_int_equal(off, n);

    /* In 5-byte chunks that straddle header boundaries. */
    memset(&d, 0, sizeof d);
    size_t next = 0;
    off = 0;
    while (off < n) {
        size_t chunk = n - off < 5 ? n - off : 5;
        size_t pos = 0;
        while (pos < chunk) {
            size_t consumed = 0;
            uint64_t len = 0;
            mpc_status st = mpc_frame_feed(&d, stream + off + pos, chunk - pos, &consumed, &len);
            assert_true(consumed > 0);
            pos += consumed;
            if (st == MPC_OK) {
                assert_true(next < NCASES);
                assert_int_equal(len, cases[next].len);
                next++;
            } else {
                assert_int_equal(st, MPC_AGAIN);
                assert_int_equal(pos, chunk);
            }
        }
        off += chunk;
    }
    assert_int_equal(next, NCASES);
}

static void a_decoder_with_garbage_private_state_starts_over_safely(void **state)
{
    (void)state;
    mpc_frame_decoder d;
    memset(&d, 0xEE, sizeof d);
    static const unsigned char h[4] = {0, 0, 1, 0};
    size_t consumed;
    uint64_t len = 0;
    assert_int_equal(mpc_frame_feed(&d, h, 4, &consumed, &len), MPC_OK);
    assert_int_equal(consumed, 4);
    assert_int_equal(len, 256);
}

static void a_null_decoder_is_an_invalid_argument(void **state)
{
    (void)state;
    static const unsigned char h[4] = {0, 0, 0, 1};
    size_t consumed = 5;
    uint64_t len;
    assert_int_equal(mpc_frame_feed(NULL, h, 4, &consumed, &len), MPC_INVAL);
    assert_int_equal(consumed, 0);
    mpc_frame_decoder d;
    memset(&d, 0, sizeof d);
    assert_int_equal(mpc_frame_feed(&d, NULL, 4, &consumed, &len), MPC_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(headers_are_encoded_in_the_short_or_extended_form),
        cmocka_unit_test(a_payload_of_0x80000000_bytes_gets_minus_one_and_eight_length_bytes),
        cmocka_unit_test(every_encoded_header_decodes_to_its_length),
        cmocka_unit_test(the_extended_form_is_accepted_for_a_small_length),
        cmocka_unit_test(the_extended_form_with_zero_length_is_an_empty_message),
        cmocka_unit_test(a_hostile_two_to_the_63_length_is_reported_faithfully),
        cmocka_unit_test(a_negative_length_other_than_minus_one_is_a_protocol_error),
        cmocka_unit_test(a_protocol_error_fed_one_byte_at_a_time_shows_on_the_fourth_byte),
        cmocka_unit_test(a_truncated_header_asks_for_more_input),
        cmocka_unit_test(empty_input_consumes_nothing_and_asks_for_more),
        cmocka_unit_test(every_header_split_at_every_byte_offset_decodes_the_same),
        cmocka_unit_test(one_byte_at_a_time_decodes_every_header),
        cmocka_unit_test(only_header_bytes_are_consumed_when_payload_follows),
        cmocka_unit_test(several_headers_back_to_back_are_decoded_in_turn),
        cmocka_unit_test(a_decoder_with_garbage_private_state_starts_over_safely),
        cmocka_unit_test(a_null_decoder_is_an_invalid_argument),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
