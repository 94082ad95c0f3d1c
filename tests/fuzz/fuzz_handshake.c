/*
 * fuzz_handshake.c - libFuzzer target for the sans-I/O handshake.
 *
 * Input layout: [dialect byte] [key length] [key] [split] [A (split bytes)]
 * [B (the rest)].  Every run exercises all entry points with peer-chosen
 * bytes and checks invariants (a violation aborts):
 *   - error messages are always NUL-terminated inside their buffer;
 *   - statuses stay within what the header documents;
 *   - whatever our responder answers to a challenge "#CHALLENGE#"+A, our
 *     challenger accepts (MODERN always, STRICT when the responder was
 *     STRICT, LEGACY exactly for raw 16-byte replies), and a reply with
 *     its last byte flipped is refused;
 *   - every challenge we build from (digest = A, random = B) is answered by
 *     our responder and the answer verifies;
 *   - the welcome check accepts exactly "#WELCOME#".
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpconn.h"

static void check_err(const mpc_error *err)
{
    if (!memchr(err->message, '\0', sizeof err->message))
        abort();
}

static int is_auth_or_inval(mpc_status st)
{
    return st == MPC_AUTH || st == MPC_INVAL;
}

static void respond_then_verify(mpc_dialect dialect, const uint8_t *key, size_t klen,
                                const unsigned char *ch, size_t ch_len, int must_answer)
{
    unsigned char out[MPC_HS_FRAME_MAX];
    size_t out_len = 0;
    mpc_error err;
    memset(&err, 0xCC, sizeof err);
    mpc_status st = mpc_hs_respond(dialect, key, klen, ch, ch_len, out, sizeof out, &out_len, &err);
    if (st != MPC_OK) {
        check_err(&err);
        if (!is_auth_or_inval(st) || must_answer)
            abort();
        return;
    }
    if (out_len > sizeof out || out_len < 16)
        abort();
    if (mpc_hs_verify(MPC_DIALECT_MODERN, key, klen, ch, ch_len, out, out_len, &err) != MPC_OK)
        abort();
    if (dialect == MPC_DIALECT_STRICT
        && mpc_hs_verify(MPC_DIALECT_STRICT, key, klen, ch, ch_len, out, out_len, &err) != MPC_OK)
        abort();
    st = mpc_hs_verify(MPC_DIALECT_LEGACY, key, klen, ch, ch_len, out, out_len, &err);
    if ((st == MPC_OK) != (out_len == 16))
        abort();
    out[out_len - 1] ^= 0x01;
    if (mpc_hs_verify(MPC_DIALECT_MODERN, key, klen, ch, ch_len, out, out_len, &err) == MPC_OK)
        abort();
    check_err(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    mpc_dialect dialect = (mpc_dialect)(data[0] % 4); /* 3 = invalid */
    size_t pos = 1;
    size_t klen = data[pos++];
    if (klen > size - pos)
        klen = size - pos;
    const uint8_t *key = data + pos;
    pos += klen;
    size_t alen = pos < size ? data[pos++] : 0;
    if (alen > size - pos)
        alen = size - pos;
    const uint8_t *a = data + pos;
    pos += alen;
    const uint8_t *b = data + pos;
    size_t blen = size - pos;

    unsigned char out[MPC_HS_FRAME_MAX];
    size_t out_len;
    mpc_error err;
    mpc_status st;

    /* 1. B as a raw challenge payload, as received from a peer. */
    respond_then_verify(dialect, key, klen, b, blen, 0);

    /* 2. "#CHALLENGE#" + A: whatever we answer must verify. */
    unsigned char ch[11 + 256];
    memcpy(ch, MPC_HS_CHALLENGE, 11);
    memcpy(ch + 11, a, alen);
    respond_then_verify(dialect, key, klen, ch, 11 + alen, 0);

    /* 3. B as a peer's reply to that challenge. */
    memset(&err, 0, sizeof err);
    st = mpc_hs_verify(dialect, key, klen, ch, 11 + alen, b, blen, &err);
    if (st != MPC_OK) {
        check_err(&err);
        if (!is_auth_or_inval(st))
            abort();
    }

    /* 4. The welcome check. */
    st = mpc_hs_check_welcome(b, blen, &err);
    int is_welcome = blen == 9 && memcmp(b, MPC_HS_WELCOME, 9) == 0;
    if ((st == MPC_OK) != is_welcome || (st != MPC_OK && st != MPC_AUTH))
        abort();

    /* 5. A challenge built from digest name A and random bytes B. */
    char digest[16];
    size_t dlen = alen < sizeof digest - 1 ? alen : sizeof digest - 1;
    memcpy(digest, a, dlen);
    digest[dlen] = '\0';
    st = mpc_hs_challenge(dialect, alen ? digest : NULL, b, blen, out, sizeof out, &out_len, &err);
    if (st == MPC_OK) {
        if (out_len > sizeof out || memcmp(out, MPC_HS_CHALLENGE, 11) != 0)
            abort();
        size_t want = dialect == MPC_DIALECT_LEGACY ? 11 + 20 : 11 + 40;
        if (out_len < want)
            abort();
        /* Our own challenges are always answerable by a responder of the
         * same dialect (STRICT builds no MD5 challenge). */
        respond_then_verify(dialect == MPC_DIALECT_STRICT ? MPC_DIALECT_STRICT
                                                          : MPC_DIALECT_MODERN,
                            key, klen, out, out_len, 1);
    } else {
        check_err(&err);
        if (st != MPC_INVAL)
            abort();
    }
    return 0;
}
