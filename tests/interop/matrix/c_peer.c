/*
 * c_peer.c - one side of an interop-matrix cell, written directly against
 * the C library (mpconn.h), so the matrix covers libmpconn itself and not
 * only the programs built on it.  Same command line and output as
 * py_peer.py and lua_peer.lua:
 *
 *   c_peer server ADDRESS --sizes A,B,... --seed S [--mode each|all]
 *   c_peer client ADDRESS --sizes A,B,... --seed S
 *
 * The authkey is the text of $MATRIX_AUTHKEY (unset = no handshake).
 * Message i is pattern(seed, i, size) (see pattern.py).  Every received
 * message is compared with the pattern and reported as
 *   RECV <index> <length> <sha256 hex> ok|BAD
 * Exit status: 0 success, 3 authentication error ("AUTHERROR <text>"),
 * 4 any other error ("ERROR <status>: <text>"), 5 a message was not
 * byte-exact.
 */
#include "mpconn.h"

#include <openssl/evp.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_LEN 65521u
#define OFFSET_STEP 7919u
#define MAX_SIZES 64
#define DEADLINE_MS 120000

enum { RC_OK = 0, RC_AUTH = 3, RC_ERROR = 4, RC_MISMATCH = 5 };

static unsigned char block[BLOCK_LEN];
static size_t sizes[MAX_SIZES];
static size_t nsizes;
static int mismatches;

static void make_block(long seed)
{
    uint64_t x = ((uint64_t)seed * 2654435761u + 12345u) & 0x7FFFFFFFu;
    for (size_t i = 0; i < BLOCK_LEN; i++) {
        x = (x * 1103515245u + 12345u) & 0x7FFFFFFFu;
        block[i] = (unsigned char)((x >> 16) & 0xFF);
    }
}

/* Message `index`: `size` bytes of the block, cyclically, from a per-index
 * offset.  Caller owns the result (free()); NULL when out of memory. */
static unsigned char *make_message(size_t index, size_t size)
{
    unsigned char *p = malloc(size ? size : 1);
    if (!p)
        return NULL;
    size_t off = (index * OFFSET_STEP) % BLOCK_LEN, done = 0;
    while (done < size) {
        size_t n = BLOCK_LEN - off;
        if (n > size - done)
            n = size - done;
        memcpy(p + done, block + off, n);
        done += n;
        off = 0;
    }
    return p;
}

/* Checks a received message against the pattern and prints its RECV line. */
static void check(size_t index, const unsigned char *data, size_t len)
{
    int ok = len == sizes[index];
    for (size_t off = (index * OFFSET_STEP) % BLOCK_LEN, done = 0; ok && done < len; off = 0) {
        size_t n = BLOCK_LEN - off;
        if (n > len - done)
            n = len - done;
        ok = memcmp(data + done, block + off, n) == 0;
        done += n;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL))
        mdlen = 0;
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[2 * mdlen] = 0;
    if (!ok)
        mismatches++;
    printf("RECV %zu %zu %s %s\n", index, len, mdlen ? hex : "-", ok ? "ok" : "BAD");
    fflush(stdout);
}

static int fail(mpc_status st, const char *msg)
{
    if (st == MPC_AUTH)
        printf("AUTHERROR %s\n", msg && *msg ? msg : mpc_strerror(st));
    else
        printf("ERROR %s: %s\n", mpc_status_name(st), msg && *msg ? msg : mpc_strerror(st));
    fflush(stdout);
    return st == MPC_AUTH ? RC_AUTH : RC_ERROR;
}

static int conn_fail(mpc_conn *c, mpc_status st)
{
    return fail(st, mpc_conn_errmsg(c));
}

static int send_one(mpc_conn *c, size_t i, const void *data, size_t len)
{
    mpc_status st = mpc_send_bytes(c, data, len);
    if (st != MPC_OK)
        return conn_fail(c, st);
    printf("SENT %zu %zu\n", i, len);
    fflush(stdout);
    return RC_OK;
}

static int run_server(const char *address, const mpc_options *o, int echo_all)
{
    mpc_listener *l = NULL;
    mpc_conn *c = NULL;
    mpc_error e;
    mpc_status st = mpc_listen(address, o, &l, &e);
    if (st != MPC_OK)
        return fail(st, e.message);
    printf("ADDRESS %s\n", mpc_listener_address(l));
    fflush(stdout);
    st = mpc_listener_accept(l, DEADLINE_MS, &c, &e);
    if (st != MPC_OK) {
        mpc_listener_close(l);
        return fail(st, e.message);
    }
    printf("ACCEPTED\n");
    fflush(stdout);
    int rc = RC_OK;
    void *got[MAX_SIZES] = {0};
    size_t lens[MAX_SIZES] = {0};
    for (size_t i = 0; i < nsizes && rc == RC_OK; i++) {
        st = mpc_recv_bytes(c, MPC_NO_LIMIT, &got[i], &lens[i]);
        if (st != MPC_OK) {
            rc = conn_fail(c, st);
            break;
        }
        check(i, got[i], lens[i]);
        if (!echo_all) {
            rc = send_one(c, i, got[i], lens[i]);
            mpc_free(got[i]);
            got[i] = NULL;
        }
    }
    for (size_t i = 0; echo_all && i < nsizes && rc == RC_OK; i++)
        rc = send_one(c, i, got[i], lens[i]);
    for (size_t i = 0; i < nsizes; i++)
        mpc_free(got[i]);
    if (rc == RC_OK) {
        /* Wait for the client to hang up, so our close cuts nothing off. */
        void *extra = NULL;
        size_t n = 0;
        st = mpc_recv_bytes(c, MPC_NO_LIMIT, &extra, &n);
        if (st == MPC_OK) {
            mpc_free(extra);
            printf("ERROR PROTO: unexpected extra message\n");
            rc = RC_ERROR;
        } else if (st != MPC_EOF) {
            rc = conn_fail(c, st);
        }
    }
    mpc_conn_close(c);
    mpc_listener_close(l);
    return rc;
}

static int run_client(const char *address, const mpc_options *o)
{
    mpc_conn *c = NULL;
    mpc_error e;
    mpc_status st = mpc_connect(address, o, &c, &e);
    if (st != MPC_OK)
        return fail(st, e.message);
    printf("CONNECTED\n");
    fflush(stdout);
    int rc = RC_OK;
    for (size_t i = 0; i < nsizes && rc == RC_OK; i++) {
        unsigned char *msg = make_message(i, sizes[i]);
        if (!msg) {
            rc = fail(MPC_NOMEM, "building a message");
            break;
        }
        rc = send_one(c, i, msg, sizes[i]);
        free(msg);
        if (rc != RC_OK)
            break;
        void *back = NULL;
        size_t n = 0;
        st = mpc_recv_bytes(c, MPC_NO_LIMIT, &back, &n);
        if (st != MPC_OK) {
            rc = conn_fail(c, st);
            break;
        }
        check(i, back, n);
        mpc_free(back);
    }
    mpc_conn_close(c);
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: c_peer server|client ADDRESS --sizes A,B,... --seed S "
                    "[--mode each|all]\n");
    return 2;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 3)
        return usage();
    const char *role = argv[1], *address = argv[2];
    long seed = 1;
    int echo_all = 0, have_sizes = 0;
    for (int i = 3; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        if (strcmp(argv[i], "--sizes") == 0) {
            char *s = (char *)v, *end;
            nsizes = 0;
            while (*s) {
                if (nsizes == MAX_SIZES)
                    return usage();
                sizes[nsizes++] = (size_t)strtoull(s, &end, 10);
                if (end == s || (*end && *end != ','))
                    return usage();
                s = *end ? end + 1 : end;
            }
            have_sizes = 1;
        } else if (strcmp(argv[i], "--seed") == 0) {
            seed = strtol(v, NULL, 10);
        } else if (strcmp(argv[i], "--mode") == 0) {
            if (strcmp(v, "all") == 0)
                echo_all = 1;
            else if (strcmp(v, "each") != 0)
                return usage();
        } else {
            return usage();
        }
    }
    if (!have_sizes)
        return usage();
    make_block(seed);
    mpc_options o;
    mpc_options_init(&o);
    const char *key = getenv("MATRIX_AUTHKEY");
    if (key) {
        o.authkey = key;
        o.authkey_len = strlen(key);
    }
    o.connect_timeout = DEADLINE_MS;
    o.handshake_timeout = DEADLINE_MS;
    o.io_timeout = DEADLINE_MS;
    int rc;
    if (strcmp(role, "server") == 0)
        rc = run_server(address, &o, echo_all);
    else if (strcmp(role, "client") == 0)
        rc = run_client(address, &o);
    else
        return usage();
    if (rc == RC_OK && mismatches)
        rc = RC_MISMATCH;
    if (rc == RC_OK) {
        printf("DONE\n");
        fflush(stdout);
    }
    return rc;
}
