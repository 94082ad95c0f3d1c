/*
 * test_hs_mac.c - the handshake's HMAC (handshake.c): published test
 * vectors for every allowed digest, through the process-wide template
 * cache (one HMAC context per digest, built once, then only copied), and
 * many threads using that cache at once, starting with the very first HMAC
 * of the process so that the once-initialisation itself is raced.
 *
 * This file is its own process (one ctest executable per test file), and
 * the race test is listed first: nothing has built a template before it.
 * Threads never call cmocka's assertions (they longjmp); they count
 * failures, and the main thread asserts the counts are zero.
 *
 * Vectors: MD5 from RFC 2202 (test cases 1, 2 and 6), SHA-256 and SHA-384
 * from RFC 4231 (test cases 1, 2 and 6).  RFC 4231's inputs with SHA3-256
 * and SHA3-384, and the empty key with the empty message for every digest,
 * have no RFC; those MACs were computed once with the RFC 2104
 * construction written out in Python over CPython's built-in hash modules
 * (_md5, _sha256, _sha512, _sha3, which do not use OpenSSL), and they agree
 * with the RFC values wherever both exist.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/opensslv.h>

#include "internal.h"

#define NDIGESTS 5
static const char *const digest_names[NDIGESTS] = {"md5", "sha256", "sha384", "sha3_256",
                                                   "sha3_384"};

typedef struct vec {
    const char *digest;
    unsigned char key_byte; /* the key is key_len copies of key_byte ... */
    size_t key_len;
    const char *key;        /* ... unless this is set */
    const char *data;
    const char *mac_hex;
} vec;

#define HI "Hi There"
#define JEFE_DATA "what do ya want for nothing?"
#define BIG_DATA "Test Using Larger Than Block-Size Key - Hash Key First"

static const vec vecs[] = {
    /* RFC 2202, HMAC-MD5 test cases 1, 2, 6. */
    {"md5", 0x0b, 16, NULL, HI, "9294727a3638bb1c13f48ef8158bfc9d"},
    {"md5", 0, 4, "Jefe", JEFE_DATA, "750c783e6ab0b503eaa86e310a5db738"},
    {"md5", 0xaa, 80, NULL, BIG_DATA, "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"},
    /* RFC 4231, test cases 1, 2, 6. */
    {"sha256", 0x0b, 20, NULL, HI,
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
    {"sha256", 0, 4, "Jefe", JEFE_DATA,
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
    {"sha256", 0xaa, 131, NULL, BIG_DATA,
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
    {"sha384", 0x0b, 20, NULL, HI,
     "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6"},
    {"sha384", 0, 4, "Jefe", JEFE_DATA,
     "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"},
    {"sha384", 0xaa, 131, NULL, BIG_DATA,
     "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952"},
    /* RFC 4231's inputs with SHA-3 (computed, see the header). */
    {"sha3_256", 0x0b, 20, NULL, HI,
     "ba85192310dffa96e2a3a40e69774351140bb7185e1202cdcc917589f95e16bb"},
    {"sha3_256", 0, 4, "Jefe", JEFE_DATA,
     "c7d4072e788877ae3596bbb0da73b887c9171f93095b294ae857fbe2645e1ba5"},
    {"sha3_256", 0xaa, 131, NULL, BIG_DATA,
     "ed73a374b96c005235f948032f09674a58c0ce555cfc1f223b02356560312c3b"},
    {"sha3_384", 0x0b, 20, NULL, HI,
     "68d2dcf7fd4ddd0a2240c8a437305f61fb7334cfb5d0226e1bc27dc10a2e723a20d370b47743130e26ac7e3d532886bd"},
    {"sha3_384", 0, 4, "Jefe", JEFE_DATA,
     "f1101f8cbf9766fd6764d2ed61903f21ca9b18f57cf3e1a23ca13508a93243ce48c045dc007f26a21b3f5e0e9df4c20a"},
    {"sha3_384", 0xaa, 131, NULL, BIG_DATA,
     "0fc19513bf6bd878037016706a0e57bc528139836b9a42c3d419e498e0e1fb9616fd669138d33a1105e07c72b6953bcc"},
    /* The empty key with the empty message (computed). */
    {"md5", 0, 0, "", "", "74e6f7298a9c2d168935f58c001bad88"},
    {"sha256", 0, 0, "", "", "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"},
    {"sha384", 0, 0, "", "",
     "6c1f2ee938fad2e24bd91298474382ca218c75db3d83e114b3d4367776d14d3551289e75e8209cd4b792302840234adc"},
    {"sha3_256", 0, 0, "", "",
     "e841c164e5b4f10c9f3985587962af72fd607a951196fc92fb3a5251941784ea"},
    {"sha3_384", 0, 0, "", "",
     "adca89f07bbfbeaf58880c1572379ea2416568fd3b66542bd42599c57c4567e6ae086299ea216c6f3e7aef90b6191d24"},
};
#define NVECS (sizeof vecs / sizeof vecs[0])

static size_t unhex(const char *hex, unsigned char *out)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (unsigned char)v;
    }
    return n;
}

/* Computes vector v through mpc__hs_hmac; 1 if the MAC is the published
 * one (and has its length). */
static int vec_ok(const vec *v)
{
    unsigned char key[256], want[MPC__HS_MAC_MAX], got[MPC__HS_MAC_MAX];
    const void *k = v->key;
    if (!k) {
        memset(key, v->key_byte, v->key_len);
        k = key;
    }
    size_t want_len = unhex(v->mac_hex, want), got_len = 0;
    memset(got, 0, sizeof got);
    if (!mpc__hs_hmac(v->digest, k, v->key_len, v->data, strlen(v->data), got, &got_len))
        return 0;
    return got_len == want_len && memcmp(got, want, want_len) == 0;
}

/* One sans-I/O exchange in the modern dialect with digest d: challenge,
 * respond, verify with the right key (accepted) and with a wrong one
 * (refused).  Returns the number of things that went wrong. */
static int exchange_failures(const char *d, const unsigned char *key, size_t key_len,
                             unsigned seed)
{
    unsigned char rnd[MPC_HS_MODERN_RANDOM], chal[MPC_HS_FRAME_MAX], reply[MPC_HS_FRAME_MAX];
    unsigned char wrong[64];
    size_t clen = 0, rlen = 0;
    int bad = 0;
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (unsigned char)(seed * 31u + i);
    memset(wrong, 0, sizeof wrong);
    memcpy(wrong, key, key_len);
    wrong[key_len ? key_len - 1 : 0] ^= 1; /* the empty key becomes "\x01" */
    bad += mpc_hs_challenge(MPC_DIALECT_MODERN, d, rnd, sizeof rnd, chal, sizeof chal, &clen,
                            NULL) != MPC_OK;
    bad += mpc_hs_respond(MPC_DIALECT_MODERN, key, key_len, chal, clen, reply, sizeof reply, &rlen,
                          NULL) != MPC_OK;
    bad += mpc_hs_verify(MPC_DIALECT_MODERN, key, key_len, chal, clen, reply, rlen, NULL) != MPC_OK;
    bad += mpc_hs_verify(MPC_DIALECT_MODERN, wrong, key_len ? key_len : 1, chal, clen, reply, rlen,
                         NULL) != MPC_AUTH;
    /* The reply is "{d}" + HMAC-d(key, challenge body): check it against
     * a direct computation too. */
    unsigned char mac[MPC__HS_MAC_MAX];
    size_t mlen = 0, plen = strlen(d) + 2, body = sizeof MPC_HS_CHALLENGE - 1;
    bad += !mpc__hs_hmac(d, key, key_len, chal + body, clen - body, mac, &mlen);
    bad += rlen != plen + mlen || memcmp(reply + plen, mac, mlen) != 0;
    return bad;
}

/* ------------------------------------------------------- the thread race */

#define NTHREADS 8
#define ROUNDS 40

typedef struct worker {
    pthread_barrier_t *start;
    int id;
    int failures;
    long macs;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    unsigned char key[24];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (unsigned char)(w->id * 7 + i);
    pthread_barrier_wait(w->start);
    for (int r = 0; r < ROUNDS; r++) {
        /* Each thread starts at a different vector (so different digests'
         * templates are built at the same moment, and several threads race
         * for each one), then walks all of them. */
        for (size_t j = 0; j < NVECS; j++) {
            const vec *v = &vecs[(j + (size_t)w->id * 3) % NVECS];
            w->failures += !vec_ok(v);
            w->macs++;
        }
        const char *d = digest_names[(r + w->id) % NDIGESTS];
        w->failures += exchange_failures(d, key, (size_t)(r % (int)sizeof key), (unsigned)r);
        w->macs += 4;
    }
    return NULL;
}

static void threads_racing_from_the_first_hmac_all_get_the_published_macs(void **state)
{
    (void)state;
    pthread_barrier_t start;
    worker ws[NTHREADS];
    pthread_t tids[NTHREADS];
    assert_int_equal(pthread_barrier_init(&start, NULL, NTHREADS), 0);
    for (int i = 0; i < NTHREADS; i++) {
        ws[i] = (worker){&start, i, 0, 0};
        assert_int_equal(pthread_create(&tids[i], NULL, worker_main, &ws[i]), 0);
    }
    int failures = 0;
    long macs = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(tids[i], NULL);
        failures += ws[i].failures;
        macs += ws[i].macs;
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(failures, 0);
    assert_true(macs == (long)NTHREADS * ROUNDS * (long)(NVECS + 4));
}

/* ------------------------------------------------------- single-threaded */

static void every_allowed_digest_goes_through_the_cache(void **state)
{
    (void)state;
    for (int i = 0; i < NDIGESTS; i++) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
        /* OpenSSL 3: a template per digest (the one-shot HMAC() would look
         * the implementations up by name on every call). */
        assert_int_equal(mpc__hs_hmac_cached(digest_names[i]), 1);
#else
        /* Older libcrypto has no EVP_MAC: always the one-shot path. */
        assert_int_equal(mpc__hs_hmac_cached(digest_names[i]), 0);
#endif
    }
    assert_int_equal(mpc__hs_hmac_cached("sha512"), 0);
    assert_int_equal(mpc__hs_hmac_cached(NULL), 0);
}

static void every_vector_gives_the_published_mac_again_and_again(void **state)
{
    (void)state;
    /* Repeated: each call copies the template afresh, so a template that a
     * call modified (or freed) would show up on the second pass. */
    for (int pass = 0; pass < 3; pass++)
        for (size_t i = 0; i < NVECS; i++) {
            if (!vec_ok(&vecs[i]))
                fail_msg("pass %d: %s vector %zu (key %zu bytes, data \"%s\") is wrong", pass,
                         vecs[i].digest, i, vecs[i].key_len, vecs[i].data);
        }
}

static void a_wrong_key_or_message_gives_another_mac(void **state)
{
    (void)state;
    /* The cached path must really key and hash per call: a template that
     * kept an earlier key or message would give equal MACs here. */
    for (int i = 0; i < NDIGESTS; i++) {
        unsigned char a[MPC__HS_MAC_MAX], b[MPC__HS_MAC_MAX], c[MPC__HS_MAC_MAX];
        size_t al = 0, bl = 0, cl = 0;
        assert_true(mpc__hs_hmac(digest_names[i], "key-a", 5, "message", 7, a, &al));
        assert_true(mpc__hs_hmac(digest_names[i], "key-b", 5, "message", 7, b, &bl));
        assert_true(mpc__hs_hmac(digest_names[i], "key-a", 5, "messagf", 7, c, &cl));
        assert_int_equal(al, bl);
        assert_int_equal(al, cl);
        assert_memory_not_equal(a, b, al);
        assert_memory_not_equal(a, c, al);
        assert_true(mpc__hs_hmac(digest_names[i], "key-a", 5, "message", 7, b, &bl));
        assert_memory_equal(a, b, al);
    }
}

static void unknown_digests_and_bad_arguments_are_refused(void **state)
{
    (void)state;
    unsigned char out[MPC__HS_MAC_MAX];
    size_t n = 0;
    assert_false(mpc__hs_hmac("sha512", "k", 1, "m", 1, out, &n));
    assert_false(mpc__hs_hmac("SHA256", "k", 1, "m", 1, out, &n)); /* CPython's names only */
    assert_false(mpc__hs_hmac(NULL, "k", 1, "m", 1, out, &n));
    assert_false(mpc__hs_hmac("sha256", NULL, 1, "m", 1, out, &n));
    assert_false(mpc__hs_hmac("sha256", "k", 1, NULL, 1, out, &n));
    assert_false(mpc__hs_hmac("sha256", "k", 1, "m", 1, NULL, &n));
    assert_true(mpc__hs_hmac("sha256", NULL, 0, NULL, 0, out, &n)); /* empty is fine */
    assert_int_equal(n, 32);
}

/* ----------------------------------------- handshakes over real sockets */

typedef struct answerer {
    mpc_conn *c;
    const mpc_options *o;
    mpc_status st;
} answerer;

static void *answer_main(void *arg)
{
    answerer *a = arg;
    a->st = mpc_conn_answer_challenge(a->c, a->o->authkey, a->o->authkey_len, a->o);
    return NULL;
}

typedef struct hs_pair_worker {
    int id;
    int failures;
} hs_pair_worker;

/* One thread delivers, a helper thread answers, over a socketpair; every
 * allowed digest in turn. */
static void *hs_pair_main(void *arg)
{
    hs_pair_worker *w = arg;
    for (int r = 0; r < 10; r++) {
        mpc_options o;
        mpc_options_init(&o);
        o.authkey = "a shared secret";
        o.authkey_len = 15;
        o.digest = digest_names[(r + w->id) % NDIGESTS];
        mpc_conn *a = NULL, *b = NULL;
        if (mpc_pipe(1, NULL, &a, &b, NULL) != MPC_OK) {
            w->failures++;
            continue;
        }
        answerer an = {b, &o, MPC_OK};
        pthread_t tid;
        if (pthread_create(&tid, NULL, answer_main, &an) != 0) {
            w->failures++;
        } else {
            w->failures += mpc_conn_deliver_challenge(a, o.authkey, o.authkey_len, &o) != MPC_OK;
            pthread_join(tid, NULL);
            w->failures += an.st != MPC_OK;
        }
        mpc_conn_close(a);
        mpc_conn_close(b);
    }
    return NULL;
}

static void concurrent_handshakes_over_socketpairs_succeed_with_every_digest(void **state)
{
    (void)state;
    hs_pair_worker ws[4];
    pthread_t tids[4];
    for (int i = 0; i < 4; i++) {
        ws[i] = (hs_pair_worker){i, 0};
        assert_int_equal(pthread_create(&tids[i], NULL, hs_pair_main, &ws[i]), 0);
    }
    int failures = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(tids[i], NULL);
        failures += ws[i].failures;
    }
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* First: the process's first HMACs happen in these threads. */
        cmocka_unit_test(threads_racing_from_the_first_hmac_all_get_the_published_macs),
        cmocka_unit_test(every_allowed_digest_goes_through_the_cache),
        cmocka_unit_test(every_vector_gives_the_published_mac_again_and_again),
        cmocka_unit_test(a_wrong_key_or_message_gives_another_mac),
        cmocka_unit_test(unknown_digests_and_bad_arguments_are_refused),
        cmocka_unit_test(concurrent_handshakes_over_socketpairs_succeed_with_every_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
