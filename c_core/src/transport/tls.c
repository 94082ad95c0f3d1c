/*
 * tls.c - TLS for connections, with OpenSSL's libssl (no crypto of our
 * own): contexts for clients and listeners, the TLS handshake, and reads and
 * writes with the contract of io_posix.c (deadlines, the interrupt hook,
 * MPC__NOW for the non-blocking mode).
 *
 * The SSL object talks to the socket through a BIO of our own whose calls
 * never wait (io_posix.c's send/recv with MSG_DONTWAIT, send with
 * MSG_NOSIGNAL so no SIGPIPE), whatever the descriptor's mode; waiting is
 * done here, with poll() and the caller's deadline, for what OpenSSL says it
 * needs (readable or writable).  So the same code serves blocking and
 * non-blocking connections, and a descriptor shared with nobody else keeps
 * its blocking flag.
 *
 * The BIO gathers the records OpenSSL writes (one per 16 KiB) into a
 * buffer sent in one call when a write ends, before any wait, and when it is
 * full: a bulk transfer then costs a few system calls per MiB instead of
 * one per record.  Output still in that buffer counts as queued output of
 * the connection (mpc__tls_unflushed(), finished by mpc__tls_flush()).
 */
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct mpc__tls_ctx {
    SSL_CTX *ctx;
    int server;
    int verify;        /* client: verify the server */
};

/* The BIO's state: the descriptor and the records not yet sent. */
#define TLS_WBUF (256 * 1024)
typedef struct bio_state {
    int fd;
    size_t wpos, wlen;
    unsigned char wbuf[TLS_WBUF];
} bio_state;

struct mpc__tls {
    SSL *ssl;
    int fd;
    bio_state *bio;
    char msg[MPC_ERRMSG_MAX];
};

/* ------------------------------------------------------------------------
 * The BIO: non-waiting send/recv on the descriptor
 * ------------------------------------------------------------------------ */
static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int would_block(void) { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR; }

/* Sends what the buffer holds, without waiting: 1 when it is empty, 0 when
 * the socket is full, -1 on an error (errno). */
static int bio_push(bio_state *st)
{
    while (st->wpos < st->wlen) {
        long n = mpc__io_send_nowait(st->fd, st->wbuf + st->wpos, st->wlen - st->wpos);
        if (n < 0)
            return would_block() ? 0 : -1;
        st->wpos += (size_t)n;
    }
    st->wpos = st->wlen = 0;
    return 1;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    bio_state *st = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if ((size_t)len > TLS_WBUF - st->wlen) {
        int r = bio_push(st);
        if (r < 0)
            return -1;
        if (r == 0 && (size_t)len > TLS_WBUF - st->wlen) {
            BIO_set_retry_write(b);
            return -1;
        }
    }
    memcpy(st->wbuf + st->wlen, buf, (size_t)len);
    st->wlen += (size_t)len;
    return len;
}

static int bio_read(BIO *b, char *buf, int len)
{
    bio_state *st = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    long n = mpc__io_recv_nowait(st->fd, buf, (size_t)len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void bio_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mpconn socket");
    if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
        BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create))
        bio_method = m;
    else
        BIO_meth_free(m);
}

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

/* OpenSSL's reason for the last failure into buf ("" if none queued); the
 * queue is cleared. */
static void ssl_reason(char *buf, size_t cap)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0)
        last = e; /* the last one queued is the most specific here */
    buf[0] = '\0';
    if (last) {
        const char *r = ERR_reason_error_string(last);
        if (r)
            snprintf(buf, cap, "%s", r);
        else
            ERR_error_string_n(last, buf, cap);
    }
}

static mpc_status tls_fail(mpc__tls *t, const char *op)
{
    char why[MPC_ERRMSG_MAX];
    ssl_reason(why, sizeof why);
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK)
        snprintf(t->msg, sizeof t->msg, "%s: certificate verify failed: %s", op,
                 X509_verify_cert_error_string(v));
    else
        snprintf(t->msg, sizeof t->msg, "%s: %.200s", op, why[0] ? why : "TLS failure");
    return MPC_TLS;
}

const char *mpc__tls_errmsg(const mpc__tls *t) { return t ? t->msg : ""; }

/* ------------------------------------------------------------------------
 * Contexts
 * ------------------------------------------------------------------------ */
static mpc_status ctx_fail(SSL_CTX *ctx, mpc_error *err, const char *what, const char *file)
{
    char why[MPC_ERRMSG_MAX];
    ssl_reason(why, sizeof why);
    SSL_CTX_free(ctx);
    return mpc__error(err, MPC_TLS, 0, "TLS: %s%s%.100s: %.100s", what, file ? " " : "",
                      file ? file : "", why[0] ? why : "failed");
}

mpc_status mpc__tls_ctx_new(const mpc_tls_options *o, int server, mpc__tls_ctx **out,
                            mpc_error *err)
{
    *out = NULL;
    pthread_once(&bio_once, bio_make);
    if (!bio_method)
        return mpc__error(err, MPC_TLS, 0, "TLS: cannot make the socket BIO");
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx)
        return ctx_fail(NULL, err, "cannot make a context", NULL);
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
        return ctx_fail(ctx, err, "cannot require TLS 1.2", NULL);
    /* Partial writes (so a non-blocking send can queue the rest) from a
     * buffer that may move (the output queue); a peer that closes without
     * close_notify is an end of file, as a plaintext peer's close. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* AES-128-GCM first: as strong as this use needs, and the fastest
     * with AES-NI (bulk transfers are bound by the cipher). */
    (void)SSL_CTX_set_ciphersuites(
        ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
    /* Read what the socket has (up to the buffer), not a record header
     * and then its body: half the receives on a bulk transfer. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
    if (o->certificate) {
        if (SSL_CTX_use_certificate_chain_file(ctx, o->certificate) != 1)
            return ctx_fail(ctx, err, "cannot load the certificate", o->certificate);
        const char *key = o->key ? o->key : o->certificate;
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
            return ctx_fail(ctx, err, "cannot load the private key", key);
        if (SSL_CTX_check_private_key(ctx) != 1)
            return ctx_fail(ctx, err, "the private key does not match the certificate", key);
    } else if (server) {
        SSL_CTX_free(ctx);
        return mpc__error(err, MPC_TLS, 0, "TLS: a listener needs a certificate and its key");
    }
    int verify = server ? (o->cafile || o->capath) : !o->no_verify;
    if (o->cafile || o->capath) {
        if (SSL_CTX_load_verify_locations(ctx, o->cafile, o->capath) != 1)
            return ctx_fail(ctx, err, "cannot load the CA certificates",
                            o->cafile ? o->cafile : o->capath);
    } else if (verify && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return ctx_fail(ctx, err, "cannot load the system's CA certificates", NULL);
    }
    if (verify)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                           NULL);
    else
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    mpc__tls_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        SSL_CTX_free(ctx);
        return mpc__error(err, MPC_NOMEM, 0, "out of memory");
    }
    c->ctx = ctx;
    c->server = server;
    c->verify = verify;
    *out = c;
    return MPC_OK;
}

void mpc__tls_ctx_free(mpc__tls_ctx *c)
{
    if (c) {
        SSL_CTX_free(c->ctx);
        free(c);
    }
}

/* ------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------ */
mpc_status mpc__tls_new(mpc__tls_ctx *ctx, int fd, const char *server_name, mpc__tls **out,
                        mpc_error *err)
{
    *out = NULL;
    ERR_clear_error();
    mpc__tls *t = calloc(1, sizeof *t);
    SSL *ssl = SSL_new(ctx->ctx);
    BIO *bio = BIO_new(bio_method);
    if (!t || !ssl || !bio) {
        free(t);
        SSL_free(ssl);
        BIO_free(bio);
        return mpc__error(err, MPC_NOMEM, 0, "TLS: out of memory");
    }
    t->bio = malloc(sizeof *t->bio);
    if (!t->bio) {
        free(t);
        SSL_free(ssl);
        BIO_free(bio);
        return mpc__error(err, MPC_NOMEM, 0, "TLS: out of memory");
    }
    t->bio->fd = fd;
    t->bio->wpos = t->bio->wlen = 0;
    BIO_set_data(bio, t->bio);
    SSL_set_bio(ssl, bio, bio); /* the SSL owns the BIO now */
    t->ssl = ssl;
    t->fd = fd;
    if (!ctx->server) {
        SSL_set_connect_state(ssl);
        if (server_name && server_name[0]) {
            unsigned char ip[16];
            int is_ip = inet_pton(AF_INET, server_name, ip) == 1 ||
                        inet_pton(AF_INET6, server_name, ip) == 1;
            int ok = 1;
            if (ctx->verify)
                ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name)
                           : SSL_set1_host(ssl, server_name);
            if (ok && !is_ip)
                ok = SSL_set_tlsext_host_name(ssl, server_name);
            if (!ok) {
                mpc__tls_free(t);
                return mpc__error(err, MPC_TLS, 0, "TLS: bad server name '%s'", server_name);
            }
        }
    } else {
        SSL_set_accept_state(ssl);
    }
    *out = t;
    return MPC_OK;
}

void mpc__tls_free(mpc__tls *t)
{
    if (t) {
        SSL_free(t->ssl);
        free(t->bio);
        free(t);
    }
}

int mpc__tls_unflushed(const mpc__tls *t) { return t && t->bio->wlen > t->bio->wpos; }

mpc_status mpc__tls_flush(mpc__tls *t, mpc__deadline dl, const mpc__intr *intr, int *eno)
{
    for (;;) {
        int r = bio_push(t->bio);
        if (r > 0)
            return MPC_OK;
        if (r < 0) {
            *eno = errno;
            return MPC_OS;
        }
        if (dl == MPC__NOW)
            return MPC_AGAIN;
        int ready = 0;
        mpc_status st = mpc__io_wait(t->fd, MPC_WANT_WRITE, dl, intr, &ready, eno);
        if (st != MPC_OK)
            return st;
        if (!ready)
            return MPC_TIMEOUT;
    }
}

int mpc__tls_pending(const mpc__tls *t) { return t && SSL_has_pending(t->ssl); }

/* What to do after an SSL call returned r <= 0: wait (MPC_OK: retry), or a
 * status to return (MPC_AGAIN with *want, MPC_TIMEOUT, MPC_EOF, MPC_TLS,
 * MPC_OS ...). */
static mpc_status after(mpc__tls *t, int r, const char *op, mpc__deadline dl,
                        const mpc__intr *intr, int *want, int *eno)
{
    int e = SSL_get_error(t->ssl, r);
    int w;
    switch (e) {
    case SSL_ERROR_WANT_READ: w = MPC_WANT_READ; break;
    case SSL_ERROR_WANT_WRITE: w = MPC_WANT_WRITE; break;
    case SSL_ERROR_ZERO_RETURN: return MPC_EOF;
    case SSL_ERROR_SYSCALL:
        if (errno == 0 || errno == EPIPE || errno == ECONNRESET) {
            if (errno == 0) /* end of file in the middle of TLS */
                return MPC_EOF;
        }
        *eno = errno;
        ERR_clear_error();
        return MPC_OS;
    default: {
        /* The alert OpenSSL wrote about it is still in our buffer: let the
         * peer learn why (best effort, no waiting). */
        mpc_status st = tls_fail(t, op);
        (void)bio_push(t->bio);
        return st;
    }
    }
    *want = w;
    /* Never wait for input with records still in our buffer. */
    mpc_status st = mpc__tls_flush(t, dl, intr, eno);
    if (st == MPC_AGAIN) {
        *want = MPC_WANT_WRITE;
        return MPC_AGAIN;
    }
    if (st != MPC_OK)
        return st;
    if (dl == MPC__NOW)
        return MPC_AGAIN;
    int ready = 0;
    st = mpc__io_wait(t->fd, w, dl, intr, &ready, eno);
    if (st != MPC_OK)
        return st;
    return ready ? MPC_OK : MPC_TIMEOUT;
}

mpc_status mpc__tls_handshake(mpc__tls *t, mpc__deadline dl, const mpc__intr *intr, int *want,
                              int *eno)
{
    for (;;) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (r == 1) {
            /* Our last flight may sit in the buffer: out before done
             * (non-blocking: mpc__tls_unflushed() keeps it asked for). */
            mpc_status st = mpc__tls_flush(t, dl, intr, eno);
            if (st == MPC_AGAIN)
                *want = MPC_WANT_WRITE;
            return st == MPC_AGAIN ? MPC_OK : st;
        }
        mpc_status st = after(t, r, "TLS handshake", dl, intr, want, eno);
        if (st == MPC_EOF) {
            snprintf(t->msg, sizeof t->msg,
                     "TLS handshake: the peer closed the connection (does it speak TLS?)");
            return MPC_TLS;
        }
        if (st != MPC_OK)
            return st;
    }
}

mpc_status mpc__tls_read(mpc__tls *t, void *buf, size_t len, mpc__deadline dl,
                         const mpc__intr *intr, size_t *got, int *want, int *eno)
{
    *got = 0;
    for (;;) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(t->ssl, buf, len, &n);
        if (r == 1) {
            *got = n;
            return MPC_OK;
        }
        mpc_status st = after(t, r, "recv", dl, intr, want, eno);
        if (st == MPC_EOF)
            return MPC_OK; /* *got == 0: end of file */
        if (st != MPC_OK)
            return st;
    }
}

/* Small writes are gathered into one record; larger ones go entry by entry
 * (a record holds at most 16 KiB anyway). */
#define TLS_GATHER 16384

mpc_status mpc__tls_write(mpc__tls *t, struct iovec *iov, int iovcnt, mpc__deadline dl,
                          const mpc__intr *intr, size_t *put, int *want, int *eno)
{
    unsigned char gather[TLS_GATHER];
    size_t total = 0;
    *put = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (iovcnt > 1 && total <= sizeof gather) {
        size_t at = 0;
        for (int i = 0; i < iovcnt; i++) {
            memcpy(gather + at, iov[i].iov_base, iov[i].iov_len);
            at += iov[i].iov_len;
        }
        struct iovec one = {gather, total};
        mpc_status st = mpc__tls_write(t, &one, 1, dl, intr, put, want, eno);
        /* Keep the caller's entries describing what is left (as
         * mpc__io_write() does). */
        size_t done = *put;
        for (int i = 0; i < iovcnt && done; i++) {
            size_t d = done < iov[i].iov_len ? done : iov[i].iov_len;
            iov[i].iov_base = (unsigned char *)iov[i].iov_base + d;
            iov[i].iov_len -= d;
            done -= d;
        }
        return st;
    }
    for (int i = 0; i < iovcnt;) {
        if (iov[i].iov_len == 0) {
            i++;
            continue;
        }
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_write_ex(t->ssl, iov[i].iov_base, iov[i].iov_len, &n);
        if (r == 1) {
            *put += n;
            iov[i].iov_base = (unsigned char *)iov[i].iov_base + n;
            iov[i].iov_len -= n;
            continue;
        }
        mpc_status st = after(t, r, "send", dl, intr, want, eno);
        if (st == MPC_EOF) {
            *eno = EPIPE;
            return MPC_OS;
        }
        if (st != MPC_OK)
            return st;
    }
    /* Everything is with TLS: send the gathered records.  Non-blocking,
     * what the socket does not take stays in the buffer, reported by
     * mpc__tls_unflushed() and finished by mpc__tls_flush(). */
    mpc_status st = mpc__tls_flush(t, dl, intr, eno);
    return st == MPC_AGAIN ? MPC_OK : st;
}
