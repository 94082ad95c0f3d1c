/*
 * handshake.c - the sans-I/O authkey handshake: builds challenges, computes
 * replies and verifies them, in CPython's two dialects (legacy raw HMAC-MD5
 * with a 20-byte challenge, CPython <= 3.11; "{digest}"-prefixed HMAC with a
 * 40-byte random part, CPython >= 3.12) plus our STRICT variant that refuses
 * MD5 in both directions.
 *
 * Every function here works on message payloads only: framing, sockets,
 * deadlines and the 256-byte read cap belong to the transport.  Randomness
 * is injected by the caller (mpc_random() is the one function that touches
 * OpenSSL's generator), so recorded transcripts replay byte for byte.  No
 * I/O and no clock.  The only global state is a cache of libcrypto objects
 * (one HMAC context template per allowed digest, see hs_template()): each
 * entry is set once, under a once-control, and only read afterwards, and it
 * holds no key and nothing a peer sent.  HMAC comes from libcrypto and MAC
 * comparison is constant-time (CRYPTO_memcmp).  Error messages use CPython's
 * words where CPython has them, quote what the peer sent, and never include
 * the key or a MAC we computed.
 */
#include "internal.h"

#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/opensslv.h>
#include <openssl/rand.h>
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#include <openssl/core_names.h>
#include <openssl/params.h>
#define HS_MAC_CACHE 1
#else
#define HS_MAC_CACHE 0
#endif

#define HS_PREFIX_LEN (sizeof MPC_HS_CHALLENGE - 1)  /* 11 */
#define HS_WELCOME_LEN (sizeof MPC_HS_WELCOME - 1)   /* 9 */
#define HS_NAME_MAX 8                                 /* longest allowed name */
#define HS_BRACE_SPAN (HS_NAME_MAX + 2)               /* '}' within 10 bytes */
#define HS_MD5_LEN 16

/* The allowed digest set, as in CPython >= 3.12: the name on the wire,
 * libcrypto's name for the digest, the MAC length, and the legacy getter
 * the one-shot fallback uses. */
typedef struct hs_digest {
    const char *name;
    const char *ossl_name;
    size_t mac_len;
    const EVP_MD *(*md)(void);
} hs_digest;

static const hs_digest hs_digests[] = {
    {"md5", "MD5", 16, EVP_md5},
    {"sha256", "SHA256", 32, EVP_sha256},
    {"sha384", "SHA384", 48, EVP_sha384},
    {"sha3_256", "SHA3-256", 32, EVP_sha3_256},
    {"sha3_384", "SHA3-384", 48, EVP_sha3_384},
};
#define HS_NDIGESTS (sizeof hs_digests / sizeof hs_digests[0])
#define HS_MD5 (&hs_digests[0])

static const hs_digest *hs_find_digest(const void *name, size_t len)
{
    for (size_t i = 0; i < HS_NDIGESTS; i++)
        if (strlen(hs_digests[i].name) == len && memcmp(hs_digests[i].name, name, len) == 0)
            return &hs_digests[i];
    return NULL;
}

/* Parses a "{name}" prefix the way CPython does: the text must start with
 * '{', the first '}' must sit within the first 10 bytes, and the name must
 * be in the allowed set.  On success returns the digest and sets *skip to
 * the prefix length; NULL otherwise. */
static const hs_digest *hs_parse_prefix(const unsigned char *s, size_t len, size_t *skip)
{
    if (len < 2 || s[0] != '{')
        return NULL;
    size_t end = len < HS_BRACE_SPAN ? len : HS_BRACE_SPAN;
    for (size_t i = 1; i < end; i++) {
        if (s[i] == '}') {
            const hs_digest *dg = hs_find_digest(s + 1, i - 1);
            if (dg)
                *skip = i + 1;
            return dg;
        }
    }
    return NULL;
}

/* One-shot HMAC through the legacy entry point.  On OpenSSL 3 this looks
 * the HMAC and digest implementations up by name on every call: about
 * 20,400 instructions for a handshake-sized HMAC-SHA256, against 15,600
 * through the cache below (of which 8,200 are the four SHA-256 blocks).
 * So it is only the fallback, when the cached path is unavailable. */
static int hs_hmac_oneshot(const hs_digest *dg, const unsigned char *key, size_t key_len,
                           const unsigned char *data, size_t data_len,
                           unsigned char out[EVP_MAX_MD_SIZE])
{
    unsigned int n = 0;
    const EVP_MD *md = dg->md();
    if (!md)
        return 0;
    if (!HMAC(md, key, (int)key_len, data, data_len, out, &n))
        return 0;
    return n == dg->mac_len;
}

#if HS_MAC_CACHE
/* HMAC through a copy of a template context that already has its digest
 * set: no lookups by name per call, only the copy, the keying and the
 * hashing.  The template itself is never modified (EVP_MAC_CTX_dup reads
 * it), so any number of threads may use it at once. */
static int hs_hmac_from(const EVP_MAC_CTX *tmpl, const hs_digest *dg, const unsigned char *key,
                        size_t key_len, const unsigned char *data, size_t data_len,
                        unsigned char out[EVP_MAX_MD_SIZE])
{
    size_t n = 0;
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(tmpl);
    int ok = c && EVP_MAC_init(c, key, key_len, NULL) && EVP_MAC_update(c, data, data_len)
             && EVP_MAC_final(c, out, &n, EVP_MAX_MD_SIZE);
    EVP_MAC_CTX_free(c); /* also wipes its copy of the key */
    return ok && n == dg->mac_len;
}

/* The process-wide cache: one template per allowed digest, built on the
 * first HMAC with that digest under its own once-control, then only read.
 * NULL when it could not be built; hs_hmac() then takes the one-shot path,
 * so the cache can make an HMAC faster but never make one fail.  The
 * templates live until the process exits (they are reachable from here,
 * so leak checkers do not report them); they bind the implementations the
 * default library context offered at first use. */
#define HS_NCACHE 5
static EVP_MAC_CTX *hs_tmpl[HS_NCACHE];
static CRYPTO_ONCE hs_tmpl_once[HS_NCACHE] = {CRYPTO_ONCE_STATIC_INIT, CRYPTO_ONCE_STATIC_INIT,
                                              CRYPTO_ONCE_STATIC_INIT, CRYPTO_ONCE_STATIC_INIT,
                                              CRYPTO_ONCE_STATIC_INIT};

/* Builds hs_tmpl[i] and checks it once against the one-shot path on a
 * fixed message; a template that fails or disagrees is dropped.  Errors
 * this pushes on libcrypto's error queue are popped again, so a caller's
 * pending OpenSSL errors are neither lost nor joined by ours. */
static void hs_tmpl_build(size_t i)
{
    static const unsigned char probe_key[] = "mpconn", probe_msg[] = "hs_tmpl_build probe";
    const hs_digest *dg = &hs_digests[i];
    unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)dg->ossl_name, 0);
    params[1] = OSSL_PARAM_construct_end();

    ERR_set_mark();
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *t = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context holds its own reference */
    if (t
        && !(EVP_MAC_CTX_set_params(t, params)
             && hs_hmac_from(t, dg, probe_key, sizeof probe_key - 1, probe_msg,
                             sizeof probe_msg - 1, a)
             && hs_hmac_oneshot(dg, probe_key, sizeof probe_key - 1, probe_msg,
                                sizeof probe_msg - 1, b)
             && memcmp(a, b, dg->mac_len) == 0)) {
        EVP_MAC_CTX_free(t);
        t = NULL;
    }
    ERR_pop_to_mark();
    hs_tmpl[i] = t;
}

/* CRYPTO_THREAD_run_once takes a function without arguments: one per
 * slot. */
static void hs_tmpl_init0(void) { hs_tmpl_build(0); }
static void hs_tmpl_init1(void) { hs_tmpl_build(1); }
static void hs_tmpl_init2(void) { hs_tmpl_build(2); }
static void hs_tmpl_init3(void) { hs_tmpl_build(3); }
static void hs_tmpl_init4(void) { hs_tmpl_build(4); }
static void (*const hs_tmpl_init[HS_NCACHE])(void) = {hs_tmpl_init0, hs_tmpl_init1,
                                                      hs_tmpl_init2, hs_tmpl_init3,
                                                      hs_tmpl_init4};
_Static_assert(HS_NDIGESTS == HS_NCACHE,
               "one cache slot (and one initialiser) per allowed digest");

/* The template for dg, building it on first use; NULL if unavailable.
 * CRYPTO_THREAD_run_once (pthread_once on POSIX) makes the slot's write
 * visible to every thread that returns from it. */
static const EVP_MAC_CTX *hs_template(const hs_digest *dg)
{
    size_t i = (size_t)(dg - hs_digests);
    if (!CRYPTO_THREAD_run_once(&hs_tmpl_once[i], hs_tmpl_init[i]))
        return NULL;
    return hs_tmpl[i];
}
#endif

/* HMAC-dg(key, data) into out; 1 on success.  A zero-length key or
 * message is passed as a non-NULL pointer: OpenSSL treats a NULL key as
 * "no key" (or "keep the old key") in some code paths. */
static int hs_hmac(const hs_digest *dg, const void *key, size_t key_len, const void *data,
                   size_t data_len, unsigned char out[EVP_MAX_MD_SIZE])
{
    static const unsigned char empty[1] = {0};
    const unsigned char *k = key_len ? key : empty, *d = data_len ? data : empty;
    if (key_len > INT_MAX)
        return 0;
#if HS_MAC_CACHE
    const EVP_MAC_CTX *t = hs_template(dg);
    if (t && hs_hmac_from(t, dg, k, key_len, d, data_len, out))
        return 1;
#endif
    return hs_hmac_oneshot(dg, k, key_len, d, data_len, out);
}

_Static_assert(EVP_MAX_MD_SIZE <= MPC__HS_MAC_MAX, "MPC__HS_MAC_MAX holds every MAC");

int mpc__hs_hmac(const char *digest, const void *key, size_t key_len, const void *data,
                 size_t data_len, unsigned char *out, size_t *out_len)
{
    const hs_digest *dg = digest ? hs_find_digest(digest, strlen(digest)) : NULL;
    if (!dg || (!key && key_len) || (!data && data_len) || !out || !out_len
        || !hs_hmac(dg, key, key_len, data, data_len, out))
        return 0;
    *out_len = dg->mac_len;
    return 1;
}

int mpc__hs_hmac_cached(const char *digest)
{
    const hs_digest *dg = digest ? hs_find_digest(digest, strlen(digest)) : NULL;
#if HS_MAC_CACHE
    return dg && hs_template(dg) != NULL;
#else
    (void)dg;
    return 0;
#endif
}

static int hs_dialect_ok(mpc_dialect dialect)
{
    return dialect == MPC_DIALECT_MODERN || dialect == MPC_DIALECT_LEGACY
           || dialect == MPC_DIALECT_STRICT;
}

static int hs_key_ok(const void *key, size_t key_len)
{
    return (key || key_len == 0) && key_len <= INT_MAX;
}

static mpc_status hs_unsupported(mpc_error *err, const void *msg, size_t len)
{
    char q[160];
    mpc__repr_bytes(msg, len, q, sizeof q);
    return mpc__error(err, MPC_AUTH, 0,
                      "unsupported message length, missing digest prefix, or unsupported "
                      "digest: message=b'%s'",
                      q);
}

mpc_status mpc_random(void *buf, size_t len)
{
    unsigned char *p = buf;
    if (!buf && len)
        return MPC_INVAL;
    while (len) {
        int n = len > INT_MAX ? INT_MAX : (int)len;
        if (RAND_bytes(p, n) != 1)
            return MPC_OS;
        p += n;
        len -= (size_t)n;
    }
    return MPC_OK;
}

mpc_status mpc_hs_challenge(mpc_dialect dialect, const char *digest, const void *random,
                            size_t rand_len, unsigned char *out, size_t cap, size_t *out_len,
                            mpc_error *err)
{
    const hs_digest *dg;
    size_t nrand, plen = 0;

    if (!hs_dialect_ok(dialect))
        return mpc__error(err, MPC_INVAL, 0, "unknown handshake dialect %d", (int)dialect);
    if (!out || !out_len)
        return mpc__error(err, MPC_INVAL, 0, "challenge: NULL output");
    if (!digest)
        digest = "sha256";
    dg = hs_find_digest(digest, strlen(digest));
    if (!dg)
        return mpc__error(err, MPC_INVAL, 0,
                          "unsupported digest '%.16s' (allowed: md5, sha256, sha384, sha3_256, "
                          "sha3_384)",
                          digest);
    if (dialect == MPC_DIALECT_STRICT && dg == HS_MD5)
        return mpc__error(err, MPC_INVAL, 0, "digest 'md5' is refused in the strict dialect");

    if (dialect == MPC_DIALECT_LEGACY) {
        nrand = MPC_HS_LEGACY_RANDOM;
    } else {
        nrand = MPC_HS_MODERN_RANDOM;
        plen = strlen(dg->name) + 2;
    }
    if (!random || rand_len < nrand)
        return mpc__error(err, MPC_INVAL, 0, "challenge needs %zu random bytes, got %zu", nrand,
                          random ? rand_len : 0);
    size_t need = HS_PREFIX_LEN + plen + nrand;
    if (cap < need)
        return mpc__error(err, MPC_INVAL, 0, "challenge needs %zu bytes of output, cap is %zu",
                          need, cap);

    size_t o = 0;
    memcpy(out, MPC_HS_CHALLENGE, HS_PREFIX_LEN);
    o += HS_PREFIX_LEN;
    if (plen) {
        out[o++] = '{';
        memcpy(out + o, dg->name, plen - 2);
        o += plen - 2;
        out[o++] = '}';
    }
    memcpy(out + o, random, nrand);
    o += nrand;
    *out_len = o;
    return MPC_OK;
}

mpc_status mpc_hs_respond(mpc_dialect dialect, const void *key, size_t key_len,
                          const void *challenge, size_t challenge_len, unsigned char *out,
                          size_t cap, size_t *out_len, mpc_error *err)
{
    const unsigned char *c = challenge;
    unsigned char mac[EVP_MAX_MD_SIZE];
    const hs_digest *dg;
    size_t skip = 0;

    if (!hs_dialect_ok(dialect))
        return mpc__error(err, MPC_INVAL, 0, "unknown handshake dialect %d", (int)dialect);
    if (!hs_key_ok(key, key_len) || (!challenge && challenge_len) || !out || !out_len)
        return mpc__error(err, MPC_INVAL, 0, "respond: invalid argument");

    if (challenge_len < HS_PREFIX_LEN || memcmp(c, MPC_HS_CHALLENGE, HS_PREFIX_LEN) != 0) {
        char q[160];
        mpc__repr_bytes(challenge, challenge_len, q, sizeof q);
        return mpc__error(err, MPC_AUTH, 0, "Protocol error, expected challenge: message=b'%s'",
                          q);
    }
    const unsigned char *m = c + HS_PREFIX_LEN;
    size_t mlen = challenge_len - HS_PREFIX_LEN;
    if (mlen < MPC_HS_LEGACY_RANDOM)
        return mpc__error(err, MPC_AUTH, 0, "challenge too short: %zu bytes", mlen);

    if (mlen == MPC_HS_LEGACY_RANDOM) {
        /* Legacy: 20 bytes are a legacy challenge whatever they contain. */
        if (dialect == MPC_DIALECT_STRICT)
            return mpc__error(err, MPC_AUTH, 0,
                              "MD5 refused (strict dialect): the peer sent a legacy 20-byte "
                              "challenge");
        if (hs_hmac(HS_MD5, key, key_len, m, mlen, mac)) {
            if (cap < HS_MD5_LEN)
                return mpc__error(err, MPC_INVAL, 0, "reply needs %d bytes of output, cap is %zu",
                                  HS_MD5_LEN, cap);
            memcpy(out, mac, HS_MD5_LEN);
            *out_len = HS_MD5_LEN;
            OPENSSL_cleanse(mac, sizeof mac);
            return MPC_OK;
        }
        /* MD5 unavailable (FIPS): answer in the modern form, as CPython
         * does; a legacy challenger will refuse it. */
        dg = hs_find_digest("sha256", 6);
    } else {
        dg = hs_parse_prefix(m, mlen, &skip);
        if (!dg)
            return hs_unsupported(err, m, mlen);
        if (dialect == MPC_DIALECT_STRICT && dg == HS_MD5)
            return mpc__error(err, MPC_AUTH, 0,
                              "MD5 refused (strict dialect): the peer sent a {md5} challenge");
    }

    size_t nlen = strlen(dg->name);
    size_t need = nlen + 2 + dg->mac_len;
    if (cap < need)
        return mpc__error(err, MPC_INVAL, 0, "reply needs %zu bytes of output, cap is %zu", need,
                          cap);
    if (!hs_hmac(dg, key, key_len, m, mlen, mac))
        return mpc__error(err, MPC_AUTH, 0, "digest '%s' unsupported", dg->name);
    out[0] = '{';
    memcpy(out + 1, dg->name, nlen);
    out[1 + nlen] = '}';
    memcpy(out + 2 + nlen, mac, dg->mac_len);
    *out_len = need;
    OPENSSL_cleanse(mac, sizeof mac);
    return MPC_OK;
}

/* Checks mac_len bytes of reply MAC against HMAC-dg(key, m). */
static mpc_status hs_check_mac(const hs_digest *dg, const void *key, size_t key_len,
                               const unsigned char *m, size_t mlen, const unsigned char *got,
                               size_t got_len, mpc_error *err)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    if (!hs_hmac(dg, key, key_len, m, mlen, mac))
        return mpc__error(err, MPC_AUTH, 0, "response_digest='%s' unsupported", dg->name);
    if (got_len != dg->mac_len) {
        OPENSSL_cleanse(mac, sizeof mac);
        return mpc__error(err, MPC_AUTH, 0, "expected '%s' of length %zu got %zu", dg->name,
                          dg->mac_len, got_len);
    }
    int diff = CRYPTO_memcmp(mac, got, dg->mac_len);
    OPENSSL_cleanse(mac, sizeof mac);
    if (diff)
        return mpc__error(err, MPC_AUTH, 0, "digest received was wrong");
    return MPC_OK;
}

mpc_status mpc_hs_verify(mpc_dialect dialect, const void *key, size_t key_len,
                         const void *challenge, size_t challenge_len, const void *reply,
                         size_t reply_len, mpc_error *err)
{
    const unsigned char *r = reply;
    size_t skip = 0;

    if (!hs_dialect_ok(dialect))
        return mpc__error(err, MPC_INVAL, 0, "unknown handshake dialect %d", (int)dialect);
    if (!hs_key_ok(key, key_len) || (!reply && reply_len) || !challenge)
        return mpc__error(err, MPC_INVAL, 0, "verify: invalid argument");
    if (challenge_len < HS_PREFIX_LEN || memcmp(challenge, MPC_HS_CHALLENGE, HS_PREFIX_LEN) != 0)
        return mpc__error(err, MPC_INVAL, 0, "verify: the challenge lacks its #CHALLENGE# prefix");
    const unsigned char *m = (const unsigned char *)challenge + HS_PREFIX_LEN;
    size_t mlen = challenge_len - HS_PREFIX_LEN;

    if (dialect == MPC_DIALECT_LEGACY) {
        /* CPython <= 3.11: the reply must be exactly the raw MAC. */
        if (reply_len != HS_MD5_LEN)
            return mpc__error(err, MPC_AUTH, 0, "digest received was wrong");
        return hs_check_mac(HS_MD5, key, key_len, m, mlen, r, reply_len, err);
    }

    if (reply_len == HS_MD5_LEN || reply_len == MPC_HS_LEGACY_RANDOM) {
        /* An unprefixed reply from a legacy peer: raw HMAC-MD5 over the
         * whole M, including our own "{digest}" prefix. */
        if (dialect == MPC_DIALECT_STRICT)
            return mpc__error(err, MPC_AUTH, 0,
                              "MD5 refused (strict dialect): the peer replied with raw HMAC-MD5");
        return hs_check_mac(HS_MD5, key, key_len, m, mlen, r, reply_len, err);
    }
    const hs_digest *dg = hs_parse_prefix(r, reply_len, &skip);
    if (!dg)
        return hs_unsupported(err, reply, reply_len);
    if (dialect == MPC_DIALECT_STRICT && dg == HS_MD5)
        return mpc__error(err, MPC_AUTH, 0,
                          "MD5 refused (strict dialect): the peer replied with {md5}");
    return hs_check_mac(dg, key, key_len, m, mlen, r + skip, reply_len - skip, err);
}

mpc_status mpc_hs_check_welcome(const void *msg, size_t len, mpc_error *err)
{
    if (msg && len == HS_WELCOME_LEN && memcmp(msg, MPC_HS_WELCOME, HS_WELCOME_LEN) == 0)
        return MPC_OK;
    return mpc__error(err, MPC_AUTH, 0, "digest sent was rejected");
}
