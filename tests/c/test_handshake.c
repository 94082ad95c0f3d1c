/*
 * test_handshake.c - the sans-I/O handshake against the transcripts of
 * PROTOCOL.md 2.5 (captured from real CPython processes, authkey b"secret",
 * server random 00 01 02 ..., client random 80 81 ...), every dialect
 * combination of the table in 2.4, every allowed digest, CPython's error
 * texts, the STRICT dialect and the edge cases (empty key, caps).
 *
 * Expected MACs were computed once with Python's hmac module, e.g.
 *   python3 -c 'import hmac;print(hmac.new(b"secret",bytes(range(20)),"md5").hexdigest())'
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

#define KEY "secret"
#define KEYLEN 6

static unsigned char srv_rand[MPC_HS_MODERN_RANDOM]; /* 00 01 .. 27 */
static unsigned char cli_rand[MPC_HS_MODERN_RANDOM]; /* 80 81 .. a7 */

static int setup(void **state)
{
    (void)state;
    for (int i = 0; i < MPC_HS_MODERN_RANDOM; i++) {
        srv_rand[i] = (unsigned char)i;
        cli_rand[i] = (unsigned char)(0x80 + i);
    }
    return 0;
}

/* Decodes hex into out; returns the byte count. */
static size_t unhex(const char *hex, unsigned char *out)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (unsigned char)v;
    }
    return n;
}

/* Builds "{name}" + the MAC given in hex. */
static size_t prefixed(const char *name, const char *hex, unsigned char *out)
{
    size_t n = (size_t)sprintf((char *)out, "{%s}", name);
    return n + unhex(hex, out + n);
}

/* Builds "#CHALLENGE#" + body. */
static size_t challenge_of(const void *body, size_t len, unsigned char *out)
{
    memcpy(out, MPC_HS_CHALLENGE, 11);
    memcpy(out + 11, body, len);
    return 11 + len;
}

static const char legacy_srv_md5[] = "7defa9cc46abc3583325d17ccda75190";
static const char legacy_cli_md5[] = "853ac2883af57cefa5d6df14aa501ca0";
static const char modern_srv_sha256[] =
    "fc57fbe650d6124b98215e7b5d197d5807ad69982d275a9735ea2d56f1fa6989";
static const char modern_cli_sha256[] =
    "c7558206f53527f232e4c2d810fa62449467e325a24ba2ff74b94ebfd271e583";
static const char mixed_srv_md5[] = "8e48d2bb349b4b72b9382999ed5b62eb";
static const char mixed_cli_md5[] = "dcd0926815af6e2a3d8a103486872f8b";

/* Expected challenge payloads. */
static size_t legacy_challenge(const unsigned char *rnd, unsigned char *out)
{
    return challenge_of(rnd, MPC_HS_LEGACY_RANDOM, out);
}

static size_t modern_challenge(const char *digest, const unsigned char *rnd, unsigned char *out)
{
    unsigned char body[64];
    size_t n = (size_t)sprintf((char *)body, "{%s}", digest);
    memcpy(body + n, rnd, MPC_HS_MODERN_RANDOM);
    return challenge_of(body, n + MPC_HS_MODERN_RANDOM, out);
}

static void expect_frame_header(size_t payload_len, const unsigned char want[4])
{
    unsigned char h[MPC_FRAME_HEADER_MAX];
    assert_int_equal(mpc_frame_header(payload_len, h), 4);
    assert_memory_equal(h, want, 4);
}

/* Our challenger (cd) builds a challenge from rnd, which must equal want;
 * our responder (rd) must answer with want_reply; the challenger accepts. */
static void run_leg(mpc_dialect cd, const char *digest, const unsigned char *rnd,
                    const unsigned char *want, size_t want_len, mpc_dialect rd,
                    const unsigned char *want_reply, size_t want_reply_len)
{
    unsigned char ch[MPC_HS_FRAME_MAX], reply[MPC_HS_FRAME_MAX];
    size_t ch_len = 0, reply_len = 0;
    mpc_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(mpc_hs_challenge(cd, digest, rnd, MPC_HS_MODERN_RANDOM, ch, sizeof ch,
                                      &ch_len, &err),
                     MPC_OK);
    assert_int_equal(ch_len, want_len);
    assert_memory_equal(ch, want, want_len);
    assert_int_equal(mpc_hs_respond(rd, KEY, KEYLEN, ch, ch_len, reply, sizeof reply,
                                    &reply_len, &err),
                     MPC_OK);
    assert_int_equal(reply_len, want_reply_len);
    assert_memory_equal(reply, want_reply, want_reply_len);
    assert_int_equal(mpc_hs_verify(cd, KEY, KEYLEN, ch, ch_len, reply, reply_len, &err), MPC_OK);
    assert_int_equal(mpc_hs_check_welcome(MPC_HS_WELCOME, 9, &err), MPC_OK);
}

/* A CPython peer's reply we cannot produce ourselves (our responder always
 * answers a "{name}" challenge with "{name}"): our challenger must accept
 * it. */
static void accept_foreign_reply(mpc_dialect cd, const unsigned char *rnd,
                                 const unsigned char *reply, size_t reply_len)
{
    unsigned char ch[MPC_HS_FRAME_MAX];
    size_t ch_len = 0;
    mpc_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(mpc_hs_challenge(cd, NULL, rnd, MPC_HS_MODERN_RANDOM, ch, sizeof ch,
                                      &ch_len, &err),
                     MPC_OK);
    assert_int_equal(mpc_hs_verify(cd, KEY, KEYLEN, ch, ch_len, reply, reply_len, &err), MPC_OK);
}

static void the_legacy_transcript_replays_byte_for_byte(void **state)
{
    (void)state;
    unsigned char want[64], mac[64];
    static const unsigned char h31[4] = {0, 0, 0, 0x1F}, h16[4] = {0, 0, 0, 0x10};
    static const mpc_dialect responders[] = {MPC_DIALECT_LEGACY, MPC_DIALECT_MODERN};

    for (size_t i = 0; i < 2; i++) {
        /* Steps 1-3: server challenges with 00..13, client answers. */
        size_t n = legacy_challenge(srv_rand, want);
        expect_frame_header(n, h31);
        size_t m = unhex(legacy_srv_md5, mac);
        expect_frame_header(m, h16);
        run_leg(MPC_DIALECT_LEGACY, NULL, srv_rand, want, n, responders[i], mac, m);
        /* Steps 4-6: client challenges with 80..93, server answers. */
        n = legacy_challenge(cli_rand, want);
        m = unhex(legacy_cli_md5, mac);
        run_leg(MPC_DIALECT_LEGACY, NULL, cli_rand, want, n, responders[i], mac, m);
    }
}

static void the_modern_transcript_replays_byte_for_byte(void **state)
{
    (void)state;
    unsigned char want[96], reply[96];
    static const unsigned char h59[4] = {0, 0, 0, 0x3B}, h40[4] = {0, 0, 0, 0x28};
    static const mpc_dialect dialects[] = {MPC_DIALECT_MODERN, MPC_DIALECT_STRICT};

    for (size_t c = 0; c < 2; c++) {
        for (size_t r = 0; r < 2; r++) {
            size_t n = modern_challenge("sha256", srv_rand, want);
            assert_int_equal(n, 59);
            expect_frame_header(n, h59);
            size_t m = prefixed("sha256", modern_srv_sha256, reply);
            assert_int_equal(m, 40);
            expect_frame_header(m, h40);
            run_leg(dialects[c], "sha256", srv_rand, want, n, dialects[r], reply, m);
            n = modern_challenge("sha256", cli_rand, want);
            m = prefixed("sha256", modern_cli_sha256, reply);
            run_leg(dialects[c], NULL, cli_rand, want, n, dialects[r], reply, m);
        }
    }
}

static void a_modern_server_accepts_a_legacy_client(void **state)
{
    (void)state;
    unsigned char want[64], mac[64];
    /* Leg 1: {sha256} challenge; the 3.11 client answers raw MD5 over all
     * 48 bytes of M (8e48d2bb...). */
    size_t m = unhex(mixed_srv_md5, mac);
    accept_foreign_reply(MPC_DIALECT_MODERN, srv_rand, mac, m);
    /* Leg 2: the client's legacy challenge; our modern server answers. */
    size_t n = legacy_challenge(cli_rand, want);
    m = unhex(legacy_cli_md5, mac);
    run_leg(MPC_DIALECT_LEGACY, NULL, cli_rand, want, n, MPC_DIALECT_MODERN, mac, m);
}

static void a_modern_client_works_with_a_legacy_server(void **state)
{
    (void)state;
    unsigned char want[64], mac[64];
    /* Leg 1: the legacy challenge; our modern client answers 7defa9cc. */
    size_t n = legacy_challenge(srv_rand, want);
    size_t m = unhex(legacy_srv_md5, mac);
    run_leg(MPC_DIALECT_LEGACY, NULL, srv_rand, want, n, MPC_DIALECT_MODERN, mac, m);
    /* Leg 2: our {sha256} challenge; the 3.11 server answers raw MD5 over
     * the 48 bytes (dcd09268...), which we accept. */
    m = unhex(mixed_cli_md5, mac);
    accept_foreign_reply(MPC_DIALECT_MODERN, cli_rand, mac, m);
}

static void the_strict_dialect_refuses_every_md5_leg_of_the_mixed_transcripts(void **state)
{
    (void)state;
    unsigned char ch[96], mac[64], out[MPC_HS_FRAME_MAX];
    size_t out_len;
    mpc_error err;

    /* As challenger: raw MD5 replies (8e48d2bb, dcd09268) are refused. */
    size_t n = modern_challenge("sha256", srv_rand, ch);
    size_t m = unhex(mixed_srv_md5, mac);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_STRICT, KEY, KEYLEN, ch, n, mac, m, &err),
                     MPC_AUTH);
    assert_non_null(strstr(err.message, "MD5 refused"));
    /* As responder: the legacy 20-byte challenge is not answered. */
    n = legacy_challenge(cli_rand, ch);
    assert_int_equal(
        mpc_hs_respond(MPC_DIALECT_STRICT, KEY, KEYLEN, ch, n, out, sizeof out, &out_len, &err),
        MPC_AUTH);
    assert_non_null(strstr(err.message, "MD5 refused"));
}

static void a_legacy_challenger_refuses_a_prefixed_reply(void **state)
{
    (void)state;
    unsigned char ch[64], reply[96], out[MPC_HS_FRAME_MAX];
    size_t out_len;
    mpc_error err;
    size_t n = legacy_challenge(srv_rand, ch);
    /* A correct "{md5}" form of the right MAC is still not what 3.11 takes. */
    size_t m = prefixed("md5", legacy_srv_md5, reply);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_LEGACY, KEY, KEYLEN, ch, n, reply, m, &err),
                     MPC_AUTH);
    assert_string_equal(err.message, "digest received was wrong");
    /* Nor is a sha256 answer to the modern form of the challenge. */
    n = modern_challenge("sha256", srv_rand, ch);
    assert_int_equal(
        mpc_hs_respond(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, out, sizeof out, &out_len, &err),
        MPC_OK);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_LEGACY, KEY, KEYLEN, ch, n, out, out_len, &err),
                     MPC_AUTH);
    assert_string_equal(err.message, "digest received was wrong");
}

struct digest_vec {
    const char *name;
    const char *own;   /* HMAC-name over "{name}" + 00..27 */
    const char *cross; /* HMAC-name over "{sha256}" + 00..27 */
};

static const struct digest_vec digests[] = {
    {"md5", "e8928e8cca3ace2d777017168dc6a0b2", "8e48d2bb349b4b72b9382999ed5b62eb"},
    {"sha256", "fc57fbe650d6124b98215e7b5d197d5807ad69982d275a9735ea2d56f1fa6989",
     "fc57fbe650d6124b98215e7b5d197d5807ad69982d275a9735ea2d56f1fa6989"},
    {"sha384",
     "bae78a3376369f7b803a8473318a9b7062495b47434159ac84fc92ddb33c51b277c44c3edd9a5f9cb7d628f21abe"
     "2665",
     "98030e6b3d09dd7eb5b7cf5f0a8c32b12ddb22d4d698e98b35f0f4690116fa5bcd125f45b2d89a7fc2f902c009a6"
     "f961"},
    {"sha3_256", "82e8fa62f363295b6655abecf0e98e510224c559e9745af9741c357aec358f90",
     "4267b9809ac390ef0e6594601ec515dd8b6c2134c01fbdcd90fcc05750ec16ce"},
    {"sha3_384",
     "bfbe71d4e622f58ebf6cbe049af4c8fe518645b482915af0940d678c37c0b46dd1a2a448f9ee5141c91bba42b46a"
     "7862",
     "8f7c0b025ef0a88432bc2c75e9272002839245e5afc9d59271c99679e10afcd3bffa25c63dae3cfdeab6bcf4de17"
     "d2ac"},
};
#define NDIGESTS (sizeof digests / sizeof digests[0])

static void every_allowed_digest_round_trips_with_the_expected_mac(void **state)
{
    (void)state;
    for (size_t i = 0; i < NDIGESTS; i++) {
        unsigned char want[96], reply[96];
        size_t n = modern_challenge(digests[i].name, srv_rand, want);
        size_t m = prefixed(digests[i].name, digests[i].own, reply);
        run_leg(MPC_DIALECT_MODERN, digests[i].name, srv_rand, want, n, MPC_DIALECT_MODERN, reply,
                m);
        if (strcmp(digests[i].name, "md5") != 0)
            run_leg(MPC_DIALECT_STRICT, digests[i].name, srv_rand, want, n, MPC_DIALECT_STRICT,
                    reply, m);
    }
}

static void a_reply_in_another_allowed_digest_is_accepted(void **state)
{
    (void)state;
    for (size_t i = 0; i < NDIGESTS; i++) {
        unsigned char reply[96];
        size_t m = prefixed(digests[i].name, digests[i].cross, reply);
        accept_foreign_reply(MPC_DIALECT_MODERN, srv_rand, reply, m);
        if (strcmp(digests[i].name, "md5") != 0) {
            accept_foreign_reply(MPC_DIALECT_STRICT, srv_rand, reply, m);
        } else {
            unsigned char ch[96];
            mpc_error err;
            size_t n = modern_challenge("sha256", srv_rand, ch);
            assert_int_equal(mpc_hs_verify(MPC_DIALECT_STRICT, KEY, KEYLEN, ch, n, reply, m, &err),
                             MPC_AUTH);
            assert_non_null(strstr(err.message, "MD5 refused"));
        }
    }
}

static void a_sha512_prefix_is_rejected_both_ways(void **state)
{
    (void)state;
    unsigned char ch[128], reply[128], out[MPC_HS_FRAME_MAX];
    size_t out_len;
    mpc_error err;
    /* As a reply. */
    size_t n = modern_challenge("sha256", srv_rand, ch);
    size_t m = (size_t)sprintf((char *)reply, "{sha512}");
    memset(reply + m, 0x41, 64);
    m += 64;
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, reply, m, &err),
                     MPC_AUTH);
    assert_true(strncmp(err.message,
                        "unsupported message length, missing digest prefix, or unsupported "
                        "digest: message=b'{sha512}AAAA",
                        strlen("unsupported message length, missing digest prefix, or "
                               "unsupported digest: message=b'{sha512}AAAA"))
                == 0);
    /* As a challenge. */
    n = modern_challenge("sha512", srv_rand, ch);
    assert_int_equal(
        mpc_hs_respond(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, out, sizeof out, &out_len, &err),
        MPC_AUTH);
    assert_non_null(strstr(err.message, "or unsupported digest: message=b'{sha512}\\x00\\x01"));
    /* And we never build one. */
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_MODERN, "sha512", srv_rand, 40, ch, sizeof ch,
                                      &out_len, &err),
                     MPC_INVAL);
}

static void a_wrong_key_gives_digest_received_was_wrong_in_every_dialect(void **state)
{
    (void)state;
    static const mpc_dialect dialects[] = {MPC_DIALECT_LEGACY, MPC_DIALECT_MODERN,
                                           MPC_DIALECT_STRICT};
    for (size_t c = 0; c < 3; c++) {
        for (size_t r = 0; r < 3; r++) {
            unsigned char ch[MPC_HS_FRAME_MAX], reply[MPC_HS_FRAME_MAX];
            size_t ch_len, reply_len;
            mpc_error err;
            assert_int_equal(mpc_hs_challenge(dialects[c], NULL, srv_rand, 40, ch, sizeof ch,
                                              &ch_len, &err),
                             MPC_OK);
            mpc_status st = mpc_hs_respond(dialects[r], "wrong!", 6, ch, ch_len, reply,
                                           sizeof reply, &reply_len, &err);
            if (dialects[c] == MPC_DIALECT_LEGACY && dialects[r] == MPC_DIALECT_STRICT) {
                assert_int_equal(st, MPC_AUTH); /* refuses to answer at all */
                continue;
            }
            assert_int_equal(st, MPC_OK);
            assert_int_equal(
                mpc_hs_verify(dialects[c], KEY, KEYLEN, ch, ch_len, reply, reply_len, &err),
                MPC_AUTH);
            assert_int_equal(err.status, MPC_AUTH);
            assert_string_equal(err.message, "digest received was wrong");
        }
    }
}

static void a_single_flipped_bit_in_the_mac_is_rejected(void **state)
{
    (void)state;
    unsigned char ch[96], reply[96];
    mpc_error err;
    size_t n = modern_challenge("sha256", srv_rand, ch);
    size_t m = prefixed("sha256", modern_srv_sha256, reply);
    for (size_t i = 8; i < m; i++) {
        reply[i] ^= 0x01;
        assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, reply, m, &err),
                         MPC_AUTH);
        assert_string_equal(err.message, "digest received was wrong");
        reply[i] ^= 0x01;
    }
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, reply, m, &err),
                     MPC_OK);
}

static void short_and_twenty_byte_replies_are_raw_md5_in_modern_mode(void **state)
{
    (void)state;
    unsigned char ch[96], reply[64];
    mpc_error err;
    size_t n = modern_challenge("sha256", srv_rand, ch);
    /* A wrong 16-byte reply. */
    memset(reply, 0x5A, 16);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, reply, 16, &err),
                     MPC_AUTH);
    assert_string_equal(err.message, "digest received was wrong");
    /* A 20-byte reply, even one starting with the right MD5. */
    unhex(mixed_srv_md5, reply);
    memset(reply + 16, 0, 4);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, reply, 20, &err),
                     MPC_AUTH);
    assert_string_equal(err.message, "expected 'md5' of length 16 got 20");
    /* A 20-byte reply that looks prefixed is still taken as raw MD5. */
    size_t m = prefixed("md5", "00112233445566778899aabb", reply);
    assert_int_equal(m, 17);
    memcpy(reply + m, "xyz", 3);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, reply, 20, &err),
                     MPC_AUTH);
    assert_string_equal(err.message, "expected 'md5' of length 16 got 20");
}

static void a_prefixed_mac_of_the_wrong_length_names_the_expected_length(void **state)
{
    (void)state;
    unsigned char ch[96], reply[96];
    mpc_error err;
    size_t n = modern_challenge("sha256", srv_rand, ch);
    size_t m = prefixed("sha256", legacy_srv_md5, reply); /* 8 + 16 bytes */
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, reply, m, &err),
                     MPC_AUTH);
    assert_string_equal(err.message, "expected 'sha256' of length 32 got 16");
    m = prefixed("sha3_384", modern_srv_sha256, reply);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, reply, m, &err),
                     MPC_AUTH);
    assert_string_equal(err.message, "expected 'sha3_384' of length 48 got 32");
    /* "{md5}" with nothing after it. */
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, "{md5}", 5, &err),
                     MPC_AUTH);
    assert_string_equal(err.message, "expected 'md5' of length 16 got 0");
}

static void garbage_replies_are_unsupported_and_quoted(void **state)
{
    (void)state;
    static const char *const prefix =
        "unsupported message length, missing digest prefix, or unsupported digest: message=b'";
    struct {
        const char *reply;
        size_t len;
        const char *quoted;
    } cases[] = {
        {"", 0, ""},
        {"x", 1, "x"},
        {"hello, this is not a digest", 27, "hello, this is not a digest"},
        {"sha256}0123456789abcdef0123456789abcdef", 39, "sha256}0123456789abcdef0123456789abcdef"},
        {"{sha256 0123456789abcdef0123456789abcdef", 40,
         "{sha256 0123456789abcdef0123456789abcdef"},
        {"{}0123456789abcdef0123456789", 28, "{}0123456789abcdef0123456789"},
        {"{SHA256}0123456789abcdef0123456789abcdef", 40,
         "{SHA256}0123456789abcdef0123456789abcdef"},
        /* '}' at index 10: beyond the first 10 bytes. */
        {"{sha3_2566}0123456789abcdef0123456789abcdef", 43,
         "{sha3_2566}0123456789abcdef0123456789abcdef"},
        {"{md5\n}\x01'\\0123456789abcdef0123456789", 35,
         "{md5\\n}\\x01\\'\\\\0123456789abcdef0123456789"},
    };
    unsigned char ch[96];
    size_t n = modern_challenge("sha256", srv_rand, ch);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char want[MPC_ERRMSG_MAX];
        mpc_error err;
        snprintf(want, sizeof want, "%s%s'", prefix, cases[i].quoted);
        assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, cases[i].reply,
                                       cases[i].len, &err),
                         MPC_AUTH);
        assert_string_equal(err.message, want);
        assert_int_equal(mpc_hs_verify(MPC_DIALECT_STRICT, KEY, KEYLEN, ch, n, cases[i].reply,
                                       cases[i].len, &err),
                         MPC_AUTH);
        assert_string_equal(err.message, want);
    }
}

static void a_closing_brace_at_the_tenth_byte_is_still_found(void **state)
{
    (void)state;
    /* "{sha3_384}" has its '}' at index 9, the last allowed position. */
    unsigned char ch[96], reply[96];
    size_t n = modern_challenge("sha3_384", srv_rand, ch);
    size_t m = prefixed("sha3_384", digests[4].own, reply);
    mpc_error err;
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, reply, m, &err),
                     MPC_OK);
}

static void the_responder_reports_a_missing_challenge_prefix(void **state)
{
    (void)state;
    unsigned char out[MPC_HS_FRAME_MAX];
    size_t out_len;
    mpc_error err;
    assert_int_equal(mpc_hs_respond(MPC_DIALECT_MODERN, KEY, KEYLEN, "#WELCOME#", 9, out,
                                    sizeof out, &out_len, &err),
                     MPC_AUTH);
    assert_string_equal(err.message, "Protocol error, expected challenge: message=b'#WELCOME#'");
    assert_int_equal(mpc_hs_respond(MPC_DIALECT_LEGACY, KEY, KEYLEN, "#challenge#abcdefghijklmnopqrst",
                                    31, out, sizeof out, &out_len, &err),
                     MPC_AUTH);
    assert_string_equal(
        err.message, "Protocol error, expected challenge: message=b'#challenge#abcdefghijklmnopqrst'");
    assert_int_equal(
        mpc_hs_respond(MPC_DIALECT_MODERN, KEY, KEYLEN, "", 0, out, sizeof out, &out_len, &err),
        MPC_AUTH);
    assert_string_equal(err.message, "Protocol error, expected challenge: message=b''");
}

static void a_short_challenge_is_reported_with_its_real_length(void **state)
{
    (void)state;
    unsigned char ch[64], out[MPC_HS_FRAME_MAX];
    size_t out_len;
    mpc_error err;
    for (size_t k = 0; k < MPC_HS_LEGACY_RANDOM; k++) {
        char want[64];
        size_t n = challenge_of(srv_rand, k, ch);
        snprintf(want, sizeof want, "challenge too short: %zu bytes", k);
        assert_int_equal(
            mpc_hs_respond(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, out, sizeof out, &out_len, &err),
            MPC_AUTH);
        assert_string_equal(err.message, want);
    }
}

static void an_unprefixed_challenge_longer_than_twenty_bytes_is_unsupported(void **state)
{
    (void)state;
    unsigned char ch[64], out[MPC_HS_FRAME_MAX];
    size_t out_len;
    mpc_error err;
    size_t n = challenge_of("abcdefghijklmnopqrstu", 21, ch);
    assert_int_equal(
        mpc_hs_respond(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, out, sizeof out, &out_len, &err),
        MPC_AUTH);
    assert_string_equal(err.message,
                        "unsupported message length, missing digest prefix, or unsupported "
                        "digest: message=b'abcdefghijklmnopqrstu'");
}

static void a_twenty_byte_challenge_is_legacy_even_with_a_sha256_prefix(void **state)
{
    (void)state;
    unsigned char ch[64], out[MPC_HS_FRAME_MAX], want[16];
    size_t out_len;
    mpc_error err;
    /* "{sha256}" + 12 bytes = 20 bytes: answered with raw MD5. */
    static const char body[] = "{sha256}abcdefghijkl";
    size_t n = challenge_of(body, 20, ch);
    assert_int_equal(
        mpc_hs_respond(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, out, sizeof out, &out_len, &err),
        MPC_OK);
    assert_int_equal(out_len, 16);
    /* python3 -c 'import hmac;print(hmac.new(b"secret",b"{sha256}abcdefghijkl","md5").hexdigest())' */
    unhex("a02e3762e91caea6166497ea12595b17", want);
    assert_memory_equal(out, want, 16);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, out, out_len, &err),
                     MPC_OK);
    /* STRICT refuses it as a 20-byte legacy challenge. */
    assert_int_equal(
        mpc_hs_respond(MPC_DIALECT_STRICT, KEY, KEYLEN, ch, n, out, sizeof out, &out_len, &err),
        MPC_AUTH);
    assert_non_null(strstr(err.message, "MD5 refused"));
}

static void the_strict_dialect_refuses_md5_in_both_directions(void **state)
{
    (void)state;
    unsigned char ch[96], out[MPC_HS_FRAME_MAX], reply[64];
    size_t ch_len, out_len;
    mpc_error err;
    /* We never build an MD5 challenge. */
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_STRICT, "md5", srv_rand, 40, ch, sizeof ch,
                                      &ch_len, &err),
                     MPC_INVAL);
    assert_int_equal(err.status, MPC_INVAL);
    /* We do not answer {md5} challenges. */
    size_t n = modern_challenge("md5", srv_rand, ch);
    assert_int_equal(
        mpc_hs_respond(MPC_DIALECT_STRICT, KEY, KEYLEN, ch, n, out, sizeof out, &out_len, &err),
        MPC_AUTH);
    assert_non_null(strstr(err.message, "MD5 refused"));
    /* ... but MODERN does, with the known MAC. */
    assert_int_equal(
        mpc_hs_respond(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, out, sizeof out, &out_len, &err),
        MPC_OK);
    size_t m = prefixed("md5", digests[0].own, reply);
    assert_int_equal(out_len, m);
    assert_memory_equal(out, reply, m);
    /* We do not accept raw or {md5} replies, even correct ones. */
    n = modern_challenge("sha256", srv_rand, ch);
    m = unhex(mixed_srv_md5, reply);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, reply, m, &err),
                     MPC_OK);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_STRICT, KEY, KEYLEN, ch, n, reply, m, &err),
                     MPC_AUTH);
    assert_non_null(strstr(err.message, "MD5 refused"));
    m = prefixed("md5", mixed_srv_md5, reply);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, reply, m, &err),
                     MPC_OK);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_STRICT, KEY, KEYLEN, ch, n, reply, m, &err),
                     MPC_AUTH);
    assert_non_null(strstr(err.message, "MD5 refused"));
}

/* CPython's ChallengeResponseTest.test_challengeresponse. */
static void the_cpython_challenge_response_test_passes(void **state)
{
    (void)state;
    static const struct {
        const char *prefix;
        const char *mac;
    } cases[] = {
        {"", "f7528657e3de0259edd67ef81a92ac3f"},
        {"{md5}", "d0edfbfaf013f3e41bf995438567e7a2"},
        {"{sha256}", "bb551af0be7c3145c92bbe3d2d58508c0c028982cab6e4dab3844e724dfa8922"},
    };
    for (size_t i = 0; i < 3; i++) {
        unsigned char body[64], ch[96], out[MPC_HS_FRAME_MAX], want[64];
        size_t out_len;
        mpc_error err;
        size_t p = strlen(cases[i].prefix);
        memcpy(body, cases[i].prefix, p);
        memcpy(body + p, "is-twenty-bytes-long", 20);
        size_t n = challenge_of(body, p + 20, ch);
        assert_int_equal(mpc_hs_respond(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, out, sizeof out,
                                        &out_len, &err),
                         MPC_OK);
        assert_memory_equal(out, cases[i].prefix, p);
        size_t m = unhex(cases[i].mac, want);
        assert_int_equal(out_len, p + m);
        assert_memory_equal(out + p, want, m);
        assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, out, out_len, &err),
                         MPC_OK);
    }
}

static void an_empty_key_is_a_real_key(void **state)
{
    (void)state;
    unsigned char want[96], mac[64], out[MPC_HS_FRAME_MAX];
    size_t out_len;
    mpc_error err;
    static const char empty[1] = "";
    size_t n = legacy_challenge(srv_rand, want);
    assert_int_equal(mpc_hs_respond(MPC_DIALECT_MODERN, empty, 0, want, n, out, sizeof out,
                                    &out_len, &err),
                     MPC_OK);
    size_t m = unhex("eee7e8c8fa6d98a59d76c44ce7018548", mac);
    assert_int_equal(out_len, m);
    assert_memory_equal(out, mac, m);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_LEGACY, empty, 0, want, n, out, out_len, &err),
                     MPC_OK);
    /* The empty key is not interchangeable with another key. */
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_LEGACY, KEY, KEYLEN, want, n, out, out_len, &err),
                     MPC_AUTH);

    n = modern_challenge("sha256", srv_rand, want);
    assert_int_equal(mpc_hs_respond(MPC_DIALECT_MODERN, empty, 0, want, n, out, sizeof out,
                                    &out_len, &err),
                     MPC_OK);
    m = prefixed("sha256", "d18b190a737f779d3125c4a2dfddcebf933e2f2713bc92fbe386ca25df9fd7af", mac);
    assert_int_equal(out_len, m);
    assert_memory_equal(out, mac, m);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, empty, 0, want, n, out, out_len, &err),
                     MPC_OK);
}

static void the_welcome_check_is_exact(void **state)
{
    (void)state;
    mpc_error err;
    err.status = MPC_EOF;
    assert_int_equal(mpc_hs_check_welcome("#WELCOME#", 9, &err), MPC_OK);
    assert_int_equal(err.status, MPC_EOF); /* untouched on success */
    static const struct {
        const char *msg;
        size_t len;
    } bad[] = {
        {"#WELCOME#x", 10}, {"#WELCOME#\0", 10}, {"#WELCOME", 8}, {"#FAILURE#", 9},
        {"#welcome#", 9},   {"", 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        assert_int_equal(mpc_hs_check_welcome(bad[i].msg, bad[i].len, &err), MPC_AUTH);
        assert_int_equal(err.status, MPC_AUTH);
        assert_string_equal(err.message, "digest sent was rejected");
    }
    assert_int_equal(mpc_hs_check_welcome(NULL, 0, NULL), MPC_AUTH);
    assert_int_equal(mpc_hs_check_welcome("#WELCOME#", 9, NULL), MPC_OK);
}

static void challenges_are_built_as_documented_and_validated(void **state)
{
    (void)state;
    unsigned char out[MPC_HS_FRAME_MAX], want[96];
    size_t out_len = 0;
    mpc_error err;

    /* NULL digest = sha256; LEGACY ignores the digest's form. */
    size_t n = modern_challenge("sha256", srv_rand, want);
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_STRICT, NULL, srv_rand, 40, out, sizeof out,
                                      &out_len, &err),
                     MPC_OK);
    assert_int_equal(out_len, n);
    assert_memory_equal(out, want, n);
    n = legacy_challenge(srv_rand, want);
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_LEGACY, "sha384", srv_rand, 20, out, sizeof out,
                                      &out_len, &err),
                     MPC_OK);
    assert_int_equal(out_len, n);
    assert_memory_equal(out, want, n);

    /* Too few random bytes. */
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_LEGACY, NULL, srv_rand, 19, out, sizeof out,
                                      &out_len, &err),
                     MPC_INVAL);
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_MODERN, NULL, srv_rand, 39, out, sizeof out,
                                      &out_len, &err),
                     MPC_INVAL);
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_MODERN, NULL, NULL, 40, out, sizeof out,
                                      &out_len, &err),
                     MPC_INVAL);
    /* Unknown digests and dialects. */
    static const char *const bad[] = {"sha512", "SHA256", "", "sha3_2566", "sha256 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(mpc_hs_challenge(MPC_DIALECT_MODERN, bad[i], srv_rand, 40, out,
                                          sizeof out, &out_len, &err),
                         MPC_INVAL);
    assert_int_equal(mpc_hs_challenge((mpc_dialect)7, NULL, srv_rand, 40, out, sizeof out,
                                      &out_len, &err),
                     MPC_INVAL);
    /* Output caps: exactly enough works, one less fails and writes nothing
     * to *out_len. */
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_MODERN, NULL, srv_rand, 40, out, 59, &out_len,
                                      &err),
                     MPC_OK);
    out_len = 12345;
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_MODERN, NULL, srv_rand, 40, out, 58, &out_len,
                                      &err),
                     MPC_INVAL);
    assert_int_equal(out_len, 12345);
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_LEGACY, NULL, srv_rand, 20, out, 31, &out_len,
                                      &err),
                     MPC_OK);
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_LEGACY, NULL, srv_rand, 20, out, 30, &out_len,
                                      &err),
                     MPC_INVAL);
    /* The longest challenge fits a handshake frame. */
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_MODERN, "sha3_384", srv_rand, 40, out,
                                      MPC_HS_FRAME_MAX, &out_len, NULL),
                     MPC_OK);
    assert_int_equal(out_len, 11 + 10 + 40);
}

static void the_reply_output_cap_is_checked(void **state)
{
    (void)state;
    unsigned char ch[96], out[MPC_HS_FRAME_MAX];
    size_t out_len = 777;
    mpc_error err;
    size_t n = legacy_challenge(srv_rand, ch);
    assert_int_equal(
        mpc_hs_respond(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, out, 15, &out_len, &err), MPC_INVAL);
    assert_int_equal(out_len, 777);
    assert_int_equal(
        mpc_hs_respond(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, out, 16, &out_len, &err), MPC_OK);
    assert_int_equal(out_len, 16);
    n = modern_challenge("sha256", srv_rand, ch);
    out_len = 777;
    assert_int_equal(
        mpc_hs_respond(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, out, 39, &out_len, &err), MPC_INVAL);
    assert_int_equal(out_len, 777);
    assert_int_equal(
        mpc_hs_respond(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, out, 40, &out_len, &err), MPC_OK);
    assert_int_equal(out_len, 40);
}

static void a_handshake_frame_of_the_maximum_size_is_handled(void **state)
{
    (void)state;
    /* A 256-byte challenge (the read cap) with the longest digest. */
    unsigned char ch[MPC_HS_FRAME_MAX], out[MPC_HS_FRAME_MAX], big[MPC_HS_FRAME_MAX];
    size_t out_len;
    mpc_error err;
    memcpy(ch, "#CHALLENGE#{sha3_384}", 21);
    for (size_t i = 21; i < sizeof ch; i++)
        ch[i] = (unsigned char)i;
    assert_int_equal(mpc_hs_respond(MPC_DIALECT_STRICT, KEY, KEYLEN, ch, sizeof ch, out,
                                    sizeof out, &out_len, &err),
                     MPC_OK);
    assert_int_equal(out_len, 10 + 48);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_STRICT, KEY, KEYLEN, ch, sizeof ch, out, out_len,
                                   &err),
                     MPC_OK);
    /* A 256-byte garbage reply: the quoted text is truncated, the message
     * stays NUL-terminated within its buffer. */
    memset(big, 0xFE, sizeof big);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, sizeof ch, big,
                                   sizeof big, &err),
                     MPC_AUTH);
    assert_true(strlen(err.message) < MPC_ERRMSG_MAX);
    assert_non_null(strstr(err.message, "message=b'\\xfe\\xfe"));
    assert_non_null(strstr(err.message, "...'"));
}

static void error_messages_never_contain_the_key(void **state)
{
    (void)state;
    static const char key[] = "KEYMATERIAL";
    const size_t klen = sizeof key - 1;
    unsigned char ch[96], out[MPC_HS_FRAME_MAX];
    size_t out_len;
    mpc_error err;
    size_t n = modern_challenge("sha256", srv_rand, ch);
    const struct {
        const void *reply;
        size_t len;
    } replies[] = {{"garbage reply here!!!!", 22}, {"0123456789abcdef", 16}, {"{sha256}short", 13}};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, key, klen, ch, n, replies[i].reply,
                                       replies[i].len, &err),
                         MPC_AUTH);
        assert_null(strstr(err.message, key));
    }
    assert_int_equal(mpc_hs_respond(MPC_DIALECT_MODERN, key, klen, "#CHALLENGE#x", 12, out,
                                    sizeof out, &out_len, &err),
                     MPC_AUTH);
    assert_null(strstr(err.message, key));
}

static void verify_wants_the_challenge_with_its_prefix(void **state)
{
    (void)state;
    unsigned char mac[16];
    mpc_error err;
    unhex(legacy_srv_md5, mac);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_LEGACY, KEY, KEYLEN, srv_rand, 20, mac, 16, &err),
                     MPC_INVAL);
    assert_int_equal(mpc_hs_verify((mpc_dialect)-1, KEY, KEYLEN, srv_rand, 20, mac, 16, &err),
                     MPC_INVAL);
}

static void the_functions_accept_a_null_error_report(void **state)
{
    (void)state;
    unsigned char ch[96], out[MPC_HS_FRAME_MAX];
    size_t out_len;
    size_t n = modern_challenge("sha256", srv_rand, ch);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, KEY, KEYLEN, ch, n, "junk", 4, NULL),
                     MPC_AUTH);
    assert_int_equal(mpc_hs_respond(MPC_DIALECT_MODERN, KEY, KEYLEN, "junk", 4, out, sizeof out,
                                    &out_len, NULL),
                     MPC_AUTH);
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_MODERN, "nope", srv_rand, 40, out, sizeof out,
                                      &out_len, NULL),
                     MPC_INVAL);
}

static void the_random_source_gives_fresh_bytes(void **state)
{
    (void)state;
    unsigned char a[32], b[32], zero[32];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    memset(zero, 0, sizeof zero);
    assert_int_equal(mpc_random(a, sizeof a), MPC_OK);
    assert_int_equal(mpc_random(b, sizeof b), MPC_OK);
    assert_memory_not_equal(a, b, sizeof a);
    assert_memory_not_equal(a, zero, sizeof a);
    assert_int_equal(mpc_random(NULL, 0), MPC_OK);
    assert_int_equal(mpc_random(NULL, 1), MPC_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_legacy_transcript_replays_byte_for_byte),
        cmocka_unit_test(the_modern_transcript_replays_byte_for_byte),
        cmocka_unit_test(a_modern_server_accepts_a_legacy_client),
        cmocka_unit_test(a_modern_client_works_with_a_legacy_server),
        cmocka_unit_test(the_strict_dialect_refuses_every_md5_leg_of_the_mixed_transcripts),
        cmocka_unit_test(a_legacy_challenger_refuses_a_prefixed_reply),
        cmocka_unit_test(every_allowed_digest_round_trips_with_the_expected_mac),
        cmocka_unit_test(a_reply_in_another_allowed_digest_is_accepted),
        cmocka_unit_test(a_sha512_prefix_is_rejected_both_ways),
        cmocka_unit_test(a_wrong_key_gives_digest_received_was_wrong_in_every_dialect),
        cmocka_unit_test(a_single_flipped_bit_in_the_mac_is_rejected),
        cmocka_unit_test(short_and_twenty_byte_replies_are_raw_md5_in_modern_mode),
        cmocka_unit_test(a_prefixed_mac_of_the_wrong_length_names_the_expected_length),
        cmocka_unit_test(garbage_replies_are_unsupported_and_quoted),
        cmocka_unit_test(a_closing_brace_at_the_tenth_byte_is_still_found),
        cmocka_unit_test(the_responder_reports_a_missing_challenge_prefix),
        cmocka_unit_test(a_short_challenge_is_reported_with_its_real_length),
        cmocka_unit_test(an_unprefixed_challenge_longer_than_twenty_bytes_is_unsupported),
        cmocka_unit_test(a_twenty_byte_challenge_is_legacy_even_with_a_sha256_prefix),
        cmocka_unit_test(the_strict_dialect_refuses_md5_in_both_directions),
        cmocka_unit_test(the_cpython_challenge_response_test_passes),
        cmocka_unit_test(an_empty_key_is_a_real_key),
        cmocka_unit_test(the_welcome_check_is_exact),
        cmocka_unit_test(challenges_are_built_as_documented_and_validated),
        cmocka_unit_test(the_reply_output_cap_is_checked),
        cmocka_unit_test(a_handshake_frame_of_the_maximum_size_is_handled),
        cmocka_unit_test(error_messages_never_contain_the_key),
        cmocka_unit_test(verify_wants_the_challenge_with_its_prefix),
        cmocka_unit_test(the_functions_accept_a_null_error_report),
        cmocka_unit_test(the_random_source_gives_fresh_bytes),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
