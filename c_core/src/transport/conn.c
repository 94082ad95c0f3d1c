/*
 * conn.c - the connection object: buffered, framed receives; vectored
 * sends; poll; the handshake driver; creation from a connect, a pipe or a
 * descriptor.  It drives the sans-I/O framing (mpc_frame_*) and handshake
 * (mpc_hs_*) over io_posix.c and never makes a system call itself.
 *
 * Reading has two modes (mpc_options.read_ahead):
 *   - exact (the default): the header, then exactly the payload, straight
 *     into its destination; not a byte past the message is read, so all
 *     unread data stays in the kernel, as with CPython.
 *   - read-ahead: small messages come through a 64 KiB read buffer, so one
 *     read brings many of them; a large payload is copied out of the buffer
 *     and the rest is read straight into its destination, with the read
 *     buffer as a second iovec so the next header usually arrives in the same
 *     call.  After a large message, reads into the buffer take only a header,
 *     so the next (probably large) payload is not copied through the buffer.
 * Limits are checked against the declared length before anything is
 * allocated, and mpc_recv_alloc_step() bounds what a hostile header can
 * make us reserve.
 *
 * Failure model: a status and message per call (c->last, c->msg); framing
 * errors, end of file inside a message, and failures after part of a
 * message was moved mark the connection broken (sticky, c->broken).
 */
#include "transport.h"
#include "wire/wire.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MPC__ALLOC_STEP ((size_t)64 * 1024 * 1024)
/* Bytes one non-blocking call moves at most before it gives the event loop
 * its turn (MPC_AGAIN, the descriptor still ready). */
#define MPC__NB_SLICE ((size_t)1024 * 1024)
/* The largest nb_buf kept from one message to the next while messages keep
 * coming (given back as soon as a receive finds no next header): a fresh
 * block each time costs page faults and regrowth, four times the copying. */
#define MPC__NB_KEEP ((size_t)4 * 1024 * 1024)
#define MPC__RBUF_PAGE_OFFSET 2112 /* away from page offsets 0 and 16: SPEC 6 */

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */
static mpc_status set_err(mpc_conn *c, mpc_status st, int eno, const char *fmt, ...)
    MPC__PRINTF(4, 5);

static mpc_status set_err(mpc_conn *c, mpc_status st, int eno, const char *fmt, ...)
{
    va_list ap;
    mpc_error e;
    va_start(ap, fmt);
    mpc__verror(&e, st, eno, fmt, ap);
    va_end(ap);
    c->last = st;
    c->last_errno = eno;
    memcpy(c->msg, e.message, sizeof c->msg);
    return st;
}

/* Marks the connection broken: every later call fails with later_st and the
 * current message. */
static void mark_broken(mpc_conn *c, mpc_status later_st)
{
    if (c->broken != MPC_OK)
        return;
    c->broken = later_st;
    memcpy(c->broken_msg, c->msg, sizeof c->broken_msg);
}

static void clear_err(mpc_conn *c)
{
    c->want = 0;
    c->last = MPC_OK;
    c->last_errno = 0;
    c->msg[0] = '\0';
}

static mpc_status io_err(mpc_conn *c, mpc_status st, int eno, const char *op)
{
    switch (st) {
    case MPC_TIMEOUT: return set_err(c, st, 0, "%s: timed out", op);
    case MPC_INTR: return set_err(c, st, 0, "%s: interrupted", op);
    case MPC_NOMEM: return set_err(c, st, 0, "%s: out of memory", op);
    case MPC_CLOSED: return set_err(c, st, 0, "%s: woken: the connection is being closed", op);
    case MPC_AGAIN: return set_err(c, st, 0, "%s: would block", op);
    case MPC_TLS: return set_err(c, st, 0, "%s", mpc__tls_errmsg(c->tls));
    case MPC_OS: return set_err(c, st, eno, "%s: %s", op, strerror(eno));
    default: return set_err(c, st, eno, "%s: %s", op, mpc_strerror(st));
    }
}

void mpc__conn_error_to(const mpc_conn *c, mpc_error *err)
{
    if (err)
        mpc__error(err, c->last, c->last_errno, "%s", c->msg);
}

static mpc_status check_common(mpc_conn *c)
{
    if (c->fd < 0)
        return set_err(c, MPC_CLOSED, 0, "handle is closed");
    if (c->broken != MPC_OK) {
        set_err(c, c->broken, 0, "%s", c->broken_msg);
        return c->broken;
    }
    return MPC_OK;
}

static mpc_status nb_progress(mpc_conn *c, int for_send);

/* Whether a non-blocking connection has a connect, a handshake or output in
 * progress, which every call first moves on (nb_progress()). */
static inline int nb_busy(const mpc_conn *c)
{
    return c->nonblocking && (c->connecting || c->tls_handshaking || c->hs || c->olen > c->opos ||
                              mpc__tls_unflushed(c->tls));
}

static mpc_status check_read(mpc_conn *c)
{
    if (!c)
        return MPC_INVAL;
    clear_err(c);
    mpc_status st = check_common(c);
    if (st != MPC_OK)
        return st;
    if (!c->readable)
        return set_err(c, MPC_NOTREADABLE, 0, "connection is write-only");
    if (nb_busy(c))
        return nb_progress(c, 0);
    return MPC_OK;
}

static mpc_status check_write(mpc_conn *c)
{
    if (!c)
        return MPC_INVAL;
    clear_err(c);
    mpc_status st = check_common(c);
    if (st != MPC_OK)
        return st;
    if (!c->writable)
        return set_err(c, MPC_NOTWRITABLE, 0, "connection is read-only");
    if (nb_busy(c))
        return nb_progress(c, 1);
    return MPC_OK;
}

/* The deadline of one call: none, io_timeout from now, or (non-blocking
 * mode) "do not wait". */
static mpc__deadline io_deadline(const mpc_conn *c)
{
    if (c->nonblocking)
        return MPC__NOW;
    return c->io_timeout > 0 ? mpc__deadline_in(c->io_timeout) : MPC__NO_DEADLINE;
}

/* One read or write on the connection: through TLS when it has it, else
 * the descriptor (io_posix.c), with the same contract.  A TLS MPC_AGAIN
 * records in c->tls_want what it waits for. */
static mpc_status conn_read(mpc_conn *c, struct iovec *iov, int cnt, mpc__deadline dl,
                            size_t *got, int *eno)
{
    if (c->tls) /* one entry: the second is only a read-ahead optimisation */
        return mpc__tls_read(c->tls, iov[0].iov_base, iov[0].iov_len, dl, &c->intr, got,
                             &c->tls_want, eno);
    return mpc__io_read(c->fd, iov, cnt, dl, &c->intr, got, eno);
}

static int io_kind(const mpc_conn *c);

static mpc_status conn_write(mpc_conn *c, struct iovec *iov, int cnt, mpc__deadline dl,
                             size_t *put, int *eno)
{
    if (c->tls)
        return mpc__tls_write(c->tls, iov, cnt, dl, &c->intr, put, &c->tls_want, eno);
    return mpc__io_write(c->fd, io_kind(c), iov, cnt, dl, &c->intr, put, eno);
}

/* What an MPC_AGAIN of a read (MPC_WANT_READ) or write waits for: that, or
 * under TLS what TLS said. */
static int again_want(const mpc_conn *c, int plain)
{
    return c->tls ? c->tls_want : plain;
}

/* ------------------------------------------------------------------------
 * Creation and destruction
 * ------------------------------------------------------------------------ */
mpc_status mpc__conn_new(int fd, int readable, int writable, int is_socket, const char *peer,
                         const mpc_options *opts, mpc_conn **out, mpc_error *err)
{
    mpc_conn *c = calloc(1, sizeof *c);
    *out = NULL;
    if (!c) {
        mpc__error(err, MPC_NOMEM, 0, "out of memory");
        return MPC_NOMEM; /* (spelled out: callers use *out unless it fails) */
    }
    c->fd = fd;
    c->readable = readable != 0;
    c->writable = writable != 0;
    c->is_socket = is_socket != 0;
    c->wake_fd = -1;
    c->intr.wake_fd = -1;
    /* Whether SIGPIPE would kill the process is looked at once, here: the
     * guard costs three system calls per pipe write.  A host that restores
     * the default disposition later should make new connections. */
    c->pipe_guard = !c->is_socket && c->writable && mpc__io_sigpipe_kills();
    snprintf(c->peer, sizeof c->peer, "%s", peer ? peer : "");
    if (opts) {
        c->io_timeout = opts->io_timeout;
        c->max_message_size = opts->max_message_size;
        c->intr.fn = opts->interrupt;
        c->intr.arg = opts->interrupt_arg;
        c->read_ahead = opts->read_ahead != 0;
        if (opts->nonblocking) {
            int eno = 0;
            if (mpc__io_set_blocking(fd, 0, &eno) != MPC_OK) {
                free(c);
                *out = NULL;
                mpc__error(err, MPC_OS, eno, "fcntl: %s", strerror(eno));
                return MPC_OS; /* (spelled out, as above) */
            }
            c->nonblocking = 1;
        }
    }
    *out = c;
    return MPC_OK;
}

static void hs_free(mpc_conn *c);

void mpc__conn_free(mpc_conn *c)
{
    if (!c)
        return;
    if (c->wake_fd >= 0)
        mpc__io_close(c->wake_fd);
    hs_free(c);
    mpc__tls_free(c->tls);
    free(c->out);
    free(c->nb_buf);
    free(c->rbuf_block);
    free(c);
}

static int ensure_rbuf(mpc_conn *c)
{
    if (c->rbuf)
        return 0;
    if (!c->read_ahead) {
        c->rbuf = c->hbuf;
        c->rpos = c->rend = 0;
        return 0;
    }
    unsigned char *block = c->rbuf_block;
    if (!block)
        block = malloc(MPC__RBUF_CAP + 4096 + MPC__RBUF_PAGE_OFFSET);
    if (!block)
        return -1;
    uintptr_t p = ((uintptr_t)block + 4095) & ~(uintptr_t)4095;
    c->rbuf_block = block;
    c->rbuf = (unsigned char *)p + MPC__RBUF_PAGE_OFFSET;
    c->rpos = c->rend = 0;
    return 0;
}

mpc_status mpc_conn_from_fd(int fd, int readable, int writable, const mpc_options *opts,
                            mpc_conn **out, mpc_error *err)
{
    char peer[MPC__ADDR_TEXT_MAX];
    mpc_options o;
    int eno = 0;
    opts = mpc__options_read(opts, &o);
    if (!out)
        return mpc__error(err, MPC_INVAL, 0, "out is NULL");
    *out = NULL;
    if (fd < 0)
        return mpc__error(err, MPC_INVAL, 0, "invalid handle");
    if (!readable && !writable)
        return mpc__error(err, MPC_INVAL, 0,
                          "at least one of `readable` and `writable` must be True");
    int sock = mpc__io_is_socket(fd, &eno);
    if (sock < 0 && eno != EBADF)
        return mpc__error(err, MPC_OS, eno, "descriptor %d: %s", fd, strerror(eno));
    /* A number that is not an open descriptor is taken, as CPython's
     * Connection takes it: every call on it then fails with EBADF. */
    sock = sock > 0;
    peer[0] = '\0';
    if (sock)
        mpc__io_peer_name(fd, peer, sizeof peer);
    return mpc__conn_new(fd, readable, writable, sock, peer, opts, out, err);
}

mpc_status mpc_pipe(int duplex, const mpc_options *opts, mpc_conn **a, mpc_conn **b,
                    mpc_error *err)
{
    int fds[2];
    mpc_options o;
    if (!a || !b)
        return mpc__error(err, MPC_INVAL, 0, "a and b must not be NULL");
    opts = mpc__options_read(opts, &o);
    *a = *b = NULL;
    mpc_status st = mpc__io_pipe(duplex, fds, err);
    if (st != MPC_OK)
        return st;
    st = mpc__conn_new(fds[0], 1, duplex, duplex, "", opts, a, err);
    if (st == MPC_OK)
        st = mpc__conn_new(fds[1], duplex, 1, duplex, "", opts, b, err);
    if (st != MPC_OK) {
        mpc__conn_free(*a);
        *a = NULL;
        mpc__io_close(fds[0]);
        mpc__io_close(fds[1]);
    }
    return st;
}

mpc_status mpc_connect(const char *address, const mpc_options *opts, mpc_conn **out,
                       mpc_error *err)
{
    if (!address)
        return mpc__error(err, MPC_INVAL, 0, "address is NULL");
    return mpc_connect_n(address, strlen(address), opts, out, err);
}

mpc_status mpc_connect_n(const char *address, size_t address_len, const mpc_options *opts,
                         mpc_conn **out, mpc_error *err)
{
    mpc__addr a;
    mpc_options o;
    char peer[MPC__ADDR_TEXT_MAX];
    int fd;
    if (!out)
        return mpc__error(err, MPC_INVAL, 0, "out is NULL");
    *out = NULL;
    opts = mpc__options_read(opts, &o);
    mpc_status st = mpc__addr_parse_n(address, address_len, &a, err);
    if (st != MPC_OK)
        return st;
    mpc__deadline dl = opts->nonblocking          ? MPC__NOW
                       : opts->connect_timeout > 0 ? mpc__deadline_in(opts->connect_timeout)
                                                   : MPC__NO_DEADLINE;
    mpc__intr intr = {opts->interrupt, opts->interrupt_arg, -1};
    st = mpc__io_connect(&a, address, dl, &intr, &fd, peer, err);
    int connecting = st == MPC_AGAIN;
    if (st != MPC_OK && !connecting)
        return st;
    mpc_conn *c;
    st = mpc__conn_new(fd, 1, 1, 1, peer, opts, &c, err);
    if (st != MPC_OK) {
        mpc__io_close(fd);
        return st;
    }
    c->connecting = (unsigned char)connecting;
    if (opts->tls) {
        mpc__tls_ctx *ctx = NULL;
        const char *name = opts->tls->server_name;
        if (!name && a.kind == MPC__ADDR_TCP)
            name = a.host[0] ? a.host : "127.0.0.1";
        st = mpc__tls_ctx_new(opts->tls, 0, &ctx, err);
        if (st == MPC_OK) {
            st = mpc__conn_start_tls(c, ctx, name, opts);
            if (st != MPC_OK)
                mpc__conn_error_to(c, err);
        }
        mpc__tls_ctx_free(ctx); /* the connection's SSL holds its own reference */
        if (st != MPC_OK) {
            mpc_conn_close(c);
            return st;
        }
    }
    if (opts->authkey) {
        st = mpc__conn_handshake(c, 0, opts);
        if (st == MPC_AGAIN)
            st = MPC_OK; /* non-blocking: mpc_flush() goes on */
        if (st != MPC_OK) {
            mpc__conn_error_to(c, err);
            mpc_conn_close(c);
            return st;
        }
    }
    *out = c;
    return MPC_OK;
}

int mpc_conn_detach(mpc_conn *c)
{
    if (!c)
        return -1;
    int fd = c->fd;
    mpc__conn_free(c);
    return fd;
}

void mpc_conn_close(mpc_conn *c)
{
    if (!c)
        return;
    mpc__io_close(c->fd);
    mpc__conn_free(c);
}

/* ------------------------------------------------------------------------
 * Properties
 * ------------------------------------------------------------------------ */
int mpc_conn_fileno(const mpc_conn *c) { return c ? c->fd : -1; }
int mpc_conn_readable(const mpc_conn *c) { return c && c->readable; }
int mpc_conn_writable(const mpc_conn *c) { return c && c->writable; }
const char *mpc_conn_peer(const mpc_conn *c) { return c ? c->peer : ""; }
mpc_status mpc_conn_status(const mpc_conn *c) { return c ? c->last : MPC_INVAL; }
const char *mpc_conn_errmsg(const mpc_conn *c) { return c ? c->msg : "connection is NULL"; }
int mpc_conn_errno(const mpc_conn *c) { return c ? c->last_errno : 0; }

size_t mpc_conn_buffered(const mpc_conn *c)
{
    if (!c)
        return 0;
    /* (TLS: at least one byte when it holds some; how many it cannot say
     * before decrypting them.) */
    return (c->rend - c->rpos) + c->hdr_have + (size_t)mpc__tls_pending(c->tls);
}

int mpc__conn_has_input(const mpc_conn *c)
{
    return c->rpos < c->rend || c->hdr_have > 0 || c->pending || mpc__tls_pending(c->tls);
}

void mpc_conn_set_timeout(mpc_conn *c, mpc_ms timeout)
{
    if (c)
        c->io_timeout = timeout > 0 ? timeout : 0;
}

mpc_status mpc_conn_set_read_ahead(mpc_conn *c, int on)
{
    if (!c)
        return MPC_INVAL;
    on = on != 0;
    if (on == c->read_ahead)
        return MPC_OK;
    if (!on && c->rpos != c->rend)
        return set_err(c, MPC_INVAL, 0,
                       "cannot stop reading ahead: %zu bytes are buffered", c->rend - c->rpos);
    /* The unread part of a header moves with the decoder, not the buffer;
     * the next read picks the buffer of the new mode. */
    c->read_ahead = (unsigned char)on;
    c->rbuf = NULL;
    c->rpos = c->rend = 0;
    return MPC_OK;
}

int mpc_conn_read_ahead(const mpc_conn *c) { return c && c->read_ahead; }

mpc_status mpc_conn_set_wakeable(mpc_conn *c, int on)
{
    if (!c)
        return MPC_INVAL;
    if (on && c->wake_fd < 0) {
        int eno = 0;
        c->wake_fd = mpc__io_wake_fd(&eno);
        if (c->wake_fd < 0)
            return set_err(c, MPC_OS, eno, "eventfd: %s", strerror(eno));
    }
    c->intr.wake_fd = on ? c->wake_fd : -1;
    return MPC_OK;
}

void mpc_conn_wake(mpc_conn *c)
{
    if (c)
        mpc__io_wake(c->wake_fd);
}

mpc_status mpc_conn_shutdown(mpc_conn *c)
{
    int eno = 0;
    if (!c || c->fd < 0 || !c->is_socket)
        return MPC_INVAL;
    return mpc__io_shutdown(c->fd, &eno) == MPC_OK ? MPC_OK : MPC_OS;
}

void mpc_conn_set_interrupt(mpc_conn *c, int (*fn)(void *), void *arg)
{
    if (c) {
        c->intr.fn = fn;
        c->intr.arg = arg;
    }
}

/* ------------------------------------------------------------------------
 * Receiving
 * ------------------------------------------------------------------------ */

/* Whether the message being received, or the last one received, is large
 * enough for its payload to be read straight into the destination.  Sizes
 * repeat, so the next message is then expected to be large too, and the read
 * buffer is refilled by at most a header: a full 64 KiB refill would pull the
 * start of the next payload through the buffer and copy it a second time
 * (for a 64 KiB message that is the whole payload).  After a small message,
 * refills take the whole buffer, so one read brings many small messages.
 * pend_len keeps the length of the last message after it completes, and is 0
 * before the first. */
static int expect_large(const mpc_conn *c)
{
    return c->pend_len >= MPC__RBUF_CAP / 2;
}

/* Bytes a refill for a header takes when a large message is expected: the
 * usual 4-byte header (the 12-byte form of a message over 2 GiB then takes a
 * few more reads, nothing next to its payload). */
#define MPC__HDR_READ MPC__FRAME_SHORT

/* Bytes the header being decoded still needs (wire.h).  Exact reads take
 * no more than that. */
static size_t header_need(const mpc_conn *c)
{
    return mpc__frame_header_need(c->hdr_have);
}

/* Asks the interrupt hook whether to stop, between the pieces of a transfer
 * that a signal may have cut short: MPC_INTR (recorded) or MPC_OK. */
static mpc_status check_intr(mpc_conn *c, const char *op)
{
    if (c->intr.fn && c->intr.fn(c->intr.arg))
        return io_err(c, MPC_INTR, 0, op);
    return MPC_OK;
}

/* Refills the (drained) read buffer with one read of at most cap bytes.
 * MPC_EOF at end of file; other failures are recorded with the "recv"
 * prefix. */
static mpc_status fill(mpc_conn *c, size_t cap, mpc__deadline dl)
{
    size_t got = 0;
    int eno = 0;
    if (ensure_rbuf(c) < 0)
        return set_err(c, MPC_NOMEM, 0, "recv: out of memory");
    struct iovec iov = {c->rbuf, cap};
    c->rpos = c->rend = 0;
    mpc_status st = conn_read(c, &iov, 1, dl, &got, &eno);
    if (st != MPC_OK)
        return io_err(c, st, eno, "recv");
    if (got == 0)
        return MPC_EOF;
    c->rend = got;
    return MPC_OK;
}

static mpc_status truncated(mpc_conn *c)
{
    set_err(c, MPC_TRUNCATED, 0, "got end of file during message");
    mark_broken(c, MPC_TRUNCATED);
    return MPC_TRUNCATED;
}

/* Reads the next header.  A timeout or interrupt leaves the partial header
 * in the decoder, so the stream stays in step. */
static mpc_status read_header(mpc_conn *c, mpc__deadline dl, uint64_t *len)
{
    for (;;) {
        /* Fast path: a whole non-negative short header already buffered
         * and no header in progress (the decoder is idle).  The -1 form
         * and the errors go through the decoder below. */
        if (c->hdr_have == 0 && c->rend - c->rpos >= MPC__FRAME_SHORT) {
            int64_t l = mpc__frame_short_len(c->rbuf + c->rpos, c->rend - c->rpos);
            if (l >= 0) {
                *len = (uint64_t)l;
                c->rpos += MPC__FRAME_SHORT;
                return MPC_OK;
            }
        }
        if (c->rpos < c->rend) {
            size_t used = 0;
            uint64_t l = 0;
            mpc_status st =
                mpc_frame_feed(&c->dec, c->rbuf + c->rpos, c->rend - c->rpos, &used, &l);
            c->rpos += used;
            c->hdr_have += used;
            if (st == MPC_OK) {
                c->hdr_have = 0;
                *len = l;
                return MPC_OK;
            }
            if (st == MPC_PROTO) {
                c->hdr_have = 0;
                set_err(c, MPC_PROTO, 0, "bad message length: negative length header");
                mark_broken(c, MPC_PROTO);
                return MPC_PROTO;
            }
            if (st != MPC_AGAIN)
                return set_err(c, st, 0, "frame decoder: %s", mpc_strerror(st));
        }
        size_t cap = !c->read_ahead ? header_need(c)
                     : expect_large(c) ? MPC__HDR_READ
                                       : MPC__RBUF_CAP;
        mpc_status st = fill(c, cap, dl);
        if (st == MPC_EOF) {
            if (c->hdr_have > 0)
                return truncated(c);
            return set_err(c, MPC_EOF, 0, "end of file");
        }
        if (st != MPC_OK) {
            return st;
        }
    }
}

static mpc_status too_long(mpc_conn *c, uint64_t len)
{
    /* CPython: the payload stays unread, the connection stops being
     * readable, and a read-only one is closed. */
    c->pending = 0;
    c->readable = 0;
    if (!c->writable) {
        mpc__io_close(c->fd);
        c->fd = -1;
    }
    return set_err(c, MPC_TOOLONG, 0, "bad message length");
}

/* Makes the next message pending (or keeps the pending one) and checks its
 * length against maxlength and max_message_size. */
static mpc_status begin(mpc_conn *c, size_t maxlength, mpc__deadline dl, uint64_t *len)
{
    if (!c->pending) {
        uint64_t l = 0;
        mpc_status st = read_header(c, dl, &l);
        if (st != MPC_OK)
            return st;
        c->pending = 1;
        c->pend_len = c->pend_left = l;
    } else if (c->pend_left != c->pend_len) {
        return set_err(c, MPC_INVAL, 0,
                       "a message is partly received; finish it with mpc_recv_payload()");
    }
    /* No object can be larger than PTRDIFF_MAX bytes, so a longer claim
     * (-1 followed by 2^63, say) is refused at once even without a limit,
     * instead of holding the connection while waiting for the impossible. */
    if (c->pend_len > (uint64_t)maxlength ||
        (c->max_message_size && c->pend_len > c->max_message_size) ||
        c->pend_len > (uint64_t)PTRDIFF_MAX)
        return too_long(c, c->pend_len);
    *len = c->pend_len;
    if (c->pend_len == 0)
        c->pending = 0; /* an empty message is complete once begun */
    return MPC_OK;
}

/* After a failed payload read inside a whole-message receive, whatever was
 * consumed is lost with the caller's buffer. */
static void lost_message(mpc_conn *c)
{
    if (c->pending && c->pend_left != c->pend_len && c->broken == MPC_OK) {
        char why[MPC_ERRMSG_MAX];
        mpc_status cur = c->last;
        int eno = c->last_errno;
        memcpy(why, c->msg, sizeof why);
        set_err(c, MPC_PROTO, 0, "connection broken: a message was received only in part (%s)",
                why);
        mark_broken(c, MPC_PROTO);
        set_err(c, cur, eno, "%s", why);
    }
}

/* Delivers the next n bytes of the pending payload into dst.  A failure
 * after some bytes were delivered marks the connection broken. */
static mpc_status read_payload(mpc_conn *c, unsigned char *dst, size_t n, mpc__deadline dl)
{
    size_t done = 0;
    size_t avail = c->rend - c->rpos;
    size_t take = avail < n ? avail : n;
    mpc_status st = MPC_OK;
    if (take) {
        memcpy(dst, c->rbuf + c->rpos, take);
        c->rpos += take;
        done = take;
    }
    while (done < n) {
        size_t want = n - done;
        if (done > 0 && (st = check_intr(c, "recv")) != MPC_OK)
            break;
        if (want >= MPC__RBUF_CAP / 2 || !c->read_ahead) {
            /* Large rest: read straight into the destination.  When it
             * ends the message, the read buffer, empty now, catches the
             * next header if it has arrived, so a stream of large messages
             * takes one read each; it takes no more than the header, as
             * the next message is probably large too (see expect_large).
             * A piece that stops inside the message reads nothing more, so
             * the next piece also goes straight to its destination.
             * Exact reads take this path for every payload, and never
             * the second iovec. */
            size_t got = 0;
            int eno = 0;
            if (ensure_rbuf(c) < 0) {
                st = set_err(c, MPC_NOMEM, 0, "recv: out of memory");
                break;
            }
            struct iovec iov[2] = {{dst + done, want}, {c->rbuf, MPC__HDR_READ}};
            int ends_message = c->read_ahead && (uint64_t)n == c->pend_left;
            c->rpos = c->rend = 0;
            st = conn_read(c, iov, ends_message ? 2 : 1, dl, &got, &eno);
            if (st != MPC_OK) {
                io_err(c, st, eno, "recv");
                break;
            }
            if (got == 0) {
                st = MPC_EOF;
                break;
            }
            if (got <= want) {
                done += got;
            } else {
                done = n;
                c->rend = got - want;
            }
        } else {
            st = fill(c, MPC__RBUF_CAP, dl);
            if (st != MPC_OK)
                break;
            avail = c->rend - c->rpos;
            take = avail < want ? avail : want;
            memcpy(dst + done, c->rbuf + c->rpos, take);
            c->rpos += take;
            done += take;
        }
    }
    c->pend_left -= done;
    if (c->pend_left == 0)
        c->pending = 0;
    if (st == MPC_EOF && c->pend_left == c->pend_len)
        /* Nothing of the payload arrived: as CPython, end of file (the
         * message stays pending, so the next call says the same). */
        return set_err(c, MPC_EOF, 0, "end of file after a message header");
    if (st == MPC_EOF)
        return truncated(c);
    if (st != MPC_OK && done > 0)
        lost_message(c); /* the caller cannot learn how much arrived */
    return st;
}

mpc_status mpc_recv_begin(mpc_conn *c, size_t maxlength, uint64_t *len)
{
    mpc_status st = check_read(c);
    if (st != MPC_OK)
        return st;
    if (!len)
        return set_err(c, MPC_INVAL, 0, "len is NULL");
    if (c->nonblocking)
        return set_err(c, MPC_INVAL, 0, "mpc_recv_begin() is for blocking mode only");
    return begin(c, maxlength, io_deadline(c), len);
}

void mpc_recv_abandon(mpc_conn *c)
{
    if (c)
        lost_message(c);
}

mpc_status mpc_recv_payload(mpc_conn *c, void *dst, size_t n)
{
    mpc_status st = check_read(c);
    if (st != MPC_OK)
        return st;
    if (n == 0)
        return MPC_OK;
    if (!c->pending || c->nonblocking)
        return set_err(c, MPC_INVAL, 0, "no message is pending; call mpc_recv_begin() first");
    if ((uint64_t)n > c->pend_left)
        return set_err(c, MPC_INVAL, 0, "%zu bytes asked, only %llu left in the message", n,
                       (unsigned long long)c->pend_left);
    if (n > 0 && !dst)
        return set_err(c, MPC_INVAL, 0, "dst is NULL");
    return read_payload(c, dst, n, io_deadline(c));
}

size_t mpc_recv_alloc_step(uint64_t declared, size_t received)
{
    if (declared <= (uint64_t)MPC__ALLOC_STEP)
        return (size_t)declared;
    if ((uint64_t)received >= declared)
        return declared > SIZE_MAX ? SIZE_MAX : (size_t)declared;
    /* Grow geometrically, but only from what actually arrived. */
    uint64_t want = received < MPC__ALLOC_STEP ? MPC__ALLOC_STEP : (uint64_t)received * 2;
    if (want > declared)
        want = declared;
    return want > SIZE_MAX ? SIZE_MAX : (size_t)want;
}

/* The payload length of the next message if it is wholly buffered, with a
 * short header, and the connection is healthy, readable and between
 * messages; else -1. */
static inline int64_t whole_buffered(const mpc_conn *c)
{
    if (c->fd < 0 || !c->readable || c->broken != MPC_OK || c->pending || c->hdr_have ||
        c->rend - c->rpos < MPC__FRAME_SHORT) /* (also: no buffer yet) */
        return -1;
    return mpc__frame_whole_len(c->rbuf + c->rpos, c->rend - c->rpos);
}

/* whole_buffered(), and only for a message of at most limit bytes that the
 * connection's max_message_size admits; else -1 (the general receive path
 * then reports what is wrong). */
static inline int64_t whole_buffered_within(const mpc_conn *c, size_t limit)
{
    if (c->hs) /* what is buffered belongs to the handshake in progress */
        return -1;
    int64_t l = whole_buffered(c);
    if (l < 0 || (uint64_t)l > limit ||
        (c->max_message_size && (uint64_t)l > c->max_message_size))
        return -1;
    return l;
}

/* Takes the wholly buffered message of l bytes (whole_buffered() said so)
 * off the stream, leaving the state a completed receive leaves. */
static inline void take_buffered(mpc_conn *c, size_t l)
{
    c->rpos += MPC__FRAME_SHORT + l;
    c->pend_len = (uint64_t)l;
    c->pend_left = 0;
}

/* ------------------------------------------------------------------------
 * Non-blocking receives.  The next message is made whole in memory (in the
 * read buffer, or else in nb_buf, which grows with mpc_recv_alloc_step() as
 * bytes arrive) before any of it is handed over, so an MPC_AGAIN loses
 * nothing and the caller's buffer may differ from call to call.  The
 * message stays pending (pend_left counts what has not arrived) until
 * nb_done().
 * ------------------------------------------------------------------------ */
/* Gives back a large nb_buf (one of at most MPC__RBUF_CAP stays). */
static void nb_release(mpc_conn *c)
{
    if (c->nb_cap > MPC__RBUF_CAP) {
        free(c->nb_buf);
        c->nb_buf = NULL;
        c->nb_cap = 0;
    }
}

/* Makes the next message whole: MPC_OK with *data and *len (valid until
 * the next call on c; take it with nb_done()), MPC_AGAIN, or the failure of
 * a blocking receive (MPC_TOOLONG for a message over maxlength or
 * max_message_size, which then stays unread). */
static mpc_status nb_fetch(mpc_conn *c, size_t maxlength, const unsigned char **data,
                           size_t *len)
{
    static const unsigned char empty[1];
    mpc_status st;
    if (!c->pending) {
        uint64_t l = 0;
        st = read_header(c, MPC__NOW, &l);
        if (st == MPC_AGAIN) {
            c->want = again_want(c, MPC_WANT_READ);
            nb_release(c); /* between messages, nothing coming: idle */
        }
        if (st != MPC_OK)
            return st;
        c->pending = 1;
        c->pend_len = c->pend_left = l;
    }
    if (c->pend_len > (uint64_t)maxlength ||
        (c->max_message_size && c->pend_len > c->max_message_size) ||
        c->pend_len > (uint64_t)PTRDIFF_MAX)
        return too_long(c, c->pend_len);
    size_t total = (size_t)c->pend_len;
    size_t have = total - (size_t)c->pend_left;
    size_t budget = MPC__NB_SLICE; /* bytes this call may move */
    if (have == 0 && c->rend - c->rpos >= total) {
        /* Wholly in the read buffer: no copy. */
        c->nb_inbuf = 1;
        *data = total ? c->rbuf + c->rpos : empty;
        *len = total;
        return MPC_OK;
    }
    while (have < total) {
        if (budget == 0) {
            /* A fast peer could keep one call busy for a whole large
             * message: an event loop gets its turn (the descriptor is
             * still readable, so it comes straight back). */
            c->want = MPC_WANT_READ;
            return set_err(c, MPC_AGAIN, 0, "recv: would block (a large message, in slices)");
        }
        if (have == c->nb_cap) {
            size_t ncap = mpc_recv_alloc_step(c->pend_len, have);
            unsigned char *nb = realloc(c->nb_buf, ncap);
            if (!nb) {
                set_err(c, MPC_NOMEM, 0, "out of memory for a %zu-byte message", total);
                if (have > 0)
                    lost_message(c);
                return MPC_NOMEM;
            }
            c->nb_buf = nb;
            c->nb_cap = ncap;
        }
        size_t room = c->nb_cap - have; /* nb_cap may exceed total (a kept block) */
        if (room > total - have)
            room = total - have;
        size_t avail = c->rend - c->rpos;
        size_t got = 0;
        if (avail > 0) {
            got = avail < room ? avail : room;
            memcpy(c->nb_buf + have, c->rbuf + c->rpos, got);
            c->rpos += got;
        } else if (c->read_ahead && room < MPC__RBUF_CAP / 2) {
            st = fill(c, MPC__RBUF_CAP, MPC__NOW);
            if (st == MPC_OK)
                continue;
        } else {
            int eno = 0;
            struct iovec iov = {c->nb_buf + have, room};
            st = conn_read(c, &iov, 1, MPC__NOW, &got, &eno);
            if (st == MPC_OK && got == 0)
                st = MPC_EOF;
            else if (st != MPC_OK)
                io_err(c, st, eno, "recv");
        }
        if (got == 0) {
            if (st == MPC_AGAIN) {
                c->want = again_want(c, MPC_WANT_READ);
                return MPC_AGAIN;
            }
            if (st == MPC_EOF && have == 0)
                /* As a blocking receive: the message stays pending. */
                return set_err(c, MPC_EOF, 0, "end of file after a message header");
            if (st == MPC_EOF)
                return truncated(c);
            if (have > 0)
                lost_message(c);
            return st;
        }
        have += got;
        c->pend_left -= got;
        budget = got < budget ? budget - got : 0;
    }
    c->nb_inbuf = 0;
    *data = c->nb_buf;
    *len = total;
    return MPC_OK;
}

/* Takes the message nb_fetch() made whole off the stream. */
static void nb_done(mpc_conn *c)
{
    if (c->nb_inbuf)
        c->rpos += (size_t)c->pend_len;
    c->nb_inbuf = 0;
    c->pending = 0;
    c->pend_left = 0;
    /* Keep the block for the next message (nb_fetch() gives a large one
     * back once the stream pauses); give a very large one back now. */
    if (c->nb_cap > MPC__NB_KEEP)
        nb_release(c);
}

/* mpc_recv_bytes_into() for every case its fast path does not take. */
static mpc_status recv_into_general(mpc_conn *c, void *buf, size_t cap, size_t *len)
{
    mpc_status st = check_read(c);
    if (st != MPC_OK)
        return st;
    if (!len || (!buf && cap > 0))
        return set_err(c, MPC_INVAL, 0, "buf and len must not be NULL");
    if (c->nonblocking) {
        const unsigned char *data;
        size_t n = 0;
        st = nb_fetch(c, MPC_NO_LIMIT, &data, &n);
        if (st != MPC_OK)
            return st;
        *len = n;
        if (n > cap)
            return set_err(c, MPC_TOOSHORT, 0,
                           "buffer too short: the message is %zu bytes, the buffer %zu", n, cap);
        if (n)
            memcpy(buf, data, n);
        nb_done(c);
        return MPC_OK;
    }
    uint64_t l = 0;
    mpc__deadline dl = io_deadline(c);
    st = begin(c, MPC_NO_LIMIT, dl, &l);
    if (st != MPC_OK)
        return st;
    *len = (size_t)l;
    if (l > (uint64_t)cap)
        return set_err(c, MPC_TOOSHORT, 0,
                       "buffer too short: the message is %llu bytes, the buffer %zu",
                       (unsigned long long)l, cap);
    st = read_payload(c, buf, (size_t)l, dl);
    if (st != MPC_OK)
        lost_message(c);
    return st;
}

mpc_status mpc_recv_bytes_into(mpc_conn *c, void *buf, size_t cap, size_t *len)
{
    /* Fast path: the message is already whole in the read buffer (most
     * messages of a stream of small ones): one check, one copy.  Everything
     * else, errors included, takes the general path. */
    if (c && len && buf) {
        int64_t l = whole_buffered_within(c, cap);
        if (l >= 0) {
            clear_err(c);
            memcpy(buf, c->rbuf + c->rpos + MPC__FRAME_SHORT, (size_t)l);
            take_buffered(c, (size_t)l);
            *len = (size_t)l;
            return MPC_OK;
        }
    }
    return recv_into_general(c, buf, cap, len);
}

mpc_status mpc_recv_peek(mpc_conn *c, size_t maxlength, const void **data, size_t *len)
{
    if (!c || !data || !len)
        return MPC_INVAL;
    int64_t l = whole_buffered_within(c, maxlength);
    if (l < 0)
        return MPC_AGAIN;
    *data = c->rbuf + c->rpos + MPC__FRAME_SHORT;
    *len = (size_t)l;
    return MPC_OK;
}

mpc_status mpc_recv_consume(mpc_conn *c)
{
    if (!c)
        return MPC_INVAL;
    int64_t l = whole_buffered(c);
    if (l < 0)
        return MPC_AGAIN;
    clear_err(c);
    take_buffered(c, (size_t)l);
    return MPC_OK;
}

/* The one "grow the buffer only as bytes arrive" receive loop: the header
 * (begin()), then the payload in pieces of mpc_recv_alloc_step(), each
 * piece into memory from the caller's alloc (see mpc_recv_with()). */
static mpc_status recv_alloc(mpc_conn *c, size_t maxlength, mpc_alloc_fn alloc, void *arg,
                             void **out, size_t *len)
{
    mpc__deadline dl = io_deadline(c);
    uint64_t l = 0;
    mpc_status st = begin(c, maxlength, dl, &l);
    if (st != MPC_OK)
        return st;
    size_t total = (size_t)l;
    size_t cap = mpc_recv_alloc_step(l, 0);
    size_t got = 0;
    unsigned char *buf = alloc(arg, NULL, 0, cap);
    if (!buf) {
        /* Nothing of the payload taken: the message stays pending (an
         * empty one too, which begin() counted as complete). */
        c->pending = 1;
        return set_err(c, MPC_NOMEM, 0, "out of memory for a %zu-byte message", total);
    }
    while (got < total) {
        if (got == cap) {
            size_t ncap = mpc_recv_alloc_step(l, got);
            unsigned char *nb = alloc(arg, buf, cap, ncap);
            if (!nb) {
                (void)alloc(arg, buf, cap, 0);
                set_err(c, MPC_NOMEM, 0, "out of memory for a %zu-byte message", total);
                lost_message(c);
                return MPC_NOMEM;
            }
            buf = nb;
            cap = ncap;
        }
        st = read_payload(c, buf + got, cap - got, dl);
        if (st != MPC_OK) {
            (void)alloc(arg, buf, cap, 0);
            lost_message(c);
            return st;
        }
        got = cap;
    }
    *out = buf;
    *len = total;
    return MPC_OK;
}

mpc_status mpc_recv_with(mpc_conn *c, size_t maxlength, mpc_alloc_fn alloc, void *arg,
                         void **out, size_t *len)
{
    if (out)
        *out = NULL;
    if (len)
        *len = 0;
    /* Fast path: the message is already whole in the read buffer (most
     * messages of a stream of small ones): one allocation, one copy.  A
     * failed allocation leaves it on the stream. */
    if (c && alloc && out && len) {
        int64_t l = whole_buffered_within(c, maxlength);
        if (l >= 0) {
            void *p = alloc(arg, NULL, 0, (size_t)l);
            if (!p)
                return set_err(c, MPC_NOMEM, 0, "out of memory for a %zu-byte message", (size_t)l);
            memcpy(p, c->rbuf + c->rpos + MPC__FRAME_SHORT, (size_t)l);
            clear_err(c);
            take_buffered(c, (size_t)l);
            *out = p;
            *len = (size_t)l;
            return MPC_OK;
        }
    }
    mpc_status st = check_read(c);
    if (st != MPC_OK)
        return st;
    if (!alloc || !out || !len)
        return set_err(c, MPC_INVAL, 0, "alloc, out and len must not be NULL");
    if (c->nonblocking) {
        const unsigned char *data;
        size_t n = 0;
        st = nb_fetch(c, maxlength, &data, &n);
        if (st != MPC_OK)
            return st;
        void *p = alloc(arg, NULL, 0, n);
        if (!p) /* the message stays whole in the connection */
            return set_err(c, MPC_NOMEM, 0, "out of memory for a %zu-byte message", n);
        if (n)
            memcpy(p, data, n);
        nb_done(c);
        *out = p;
        *len = n;
        return MPC_OK;
    }
    return recv_alloc(c, maxlength, alloc, arg, out, len);
}

/* mpc_recv_with()'s allocator for mpc_recv_bytes(): memory mpc_free()
 * releases. */
static void *recv_bytes_alloc(void *arg, void *old, size_t old_size, size_t new_size)
{
    (void)arg;
    (void)old_size;
    if (old && new_size == 0) {
        mpc_free(old);
        return NULL;
    }
    return mpc__realloc_out(old, new_size);
}

mpc_status mpc_recv_bytes(mpc_conn *c, size_t maxlength, void **out, size_t *len)
{
    if (!out || !len) {
        mpc_status st = check_read(c);
        return st != MPC_OK ? st : set_err(c, MPC_INVAL, 0, "out and len must not be NULL");
    }
    return mpc_recv_with(c, maxlength, recv_bytes_alloc, NULL, out, len);
}

mpc_status mpc_poll(mpc_conn *c, mpc_ms timeout, int *ready)
{
    mpc_status st = check_read(c);
    if (st != MPC_OK)
        return st;
    if (!ready)
        return set_err(c, MPC_INVAL, 0, "ready is NULL");
    *ready = 0;
    if (mpc__conn_has_input(c)) {
        *ready = 1;
        return MPC_OK;
    }
    int eno = 0;
    mpc__deadline dl = c->nonblocking ? MPC__NOW : mpc__deadline_in(timeout);
    st = mpc__io_wait_readable(c->fd, dl, &c->intr, ready, &eno);
    if (st != MPC_OK)
        return io_err(c, st, eno, "poll");
    return MPC_OK;
}

/* ------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------ */
static int io_kind(const mpc_conn *c);
static mpc_status nb_send_iov(mpc_conn *c, struct iovec *iov, int cnt, size_t total,
                              int accepted);

static mpc_status send_iov(mpc_conn *c, struct iovec *iov, int cnt, size_t total,
                           mpc__deadline dl)
{
    size_t put = 0;
    int eno = 0;
    if (dl == MPC__NOW)
        return nb_send_iov(c, iov, cnt, total, 0);
    mpc_status st = conn_write(c, iov, cnt, dl, &put, &eno);
    if (st == MPC_OK)
        return MPC_OK;
    io_err(c, st, eno, "send");
    if (put > 0 && put < total) {
        char why[MPC_ERRMSG_MAX];
        memcpy(why, c->msg, sizeof why);
        set_err(c, MPC_PROTO, 0, "connection broken: a message was sent only in part (%s)", why);
        mark_broken(c, MPC_PROTO);
        set_err(c, st, eno, "%s", why);
    }
    return st;
}

/* ------------------------------------------------------------------------
 * Non-blocking sends: what the descriptor does not take at once is copied
 * into the connection's output queue, out[opos, olen), and written by
 * out_write() at the next chance (mpc_flush(), or any later call).
 * ------------------------------------------------------------------------ */
static int io_kind(const mpc_conn *c)
{
    return c->is_socket ? MPC__IO_SOCKET : c->pipe_guard ? MPC__IO_PIPE_GUARDED : MPC__IO_PIPE;
}

/* A failure while part of the queue is written: the message in the queue
 * was sent only in part, and the connection is broken. */
static mpc_status out_failed(mpc_conn *c, mpc_status st, int eno)
{
    char why[MPC_ERRMSG_MAX];
    io_err(c, st, eno, "send");
    memcpy(why, c->msg, sizeof why);
    set_err(c, MPC_PROTO, 0, "connection broken: a message was sent only in part (%s)", why);
    mark_broken(c, MPC_PROTO);
    return set_err(c, st, eno, "%s", why);
}

/* Writes queued output: MPC_OK once the queue is empty, MPC_AGAIN (want
 * MPC_WANT_WRITE) while some is left, or a failure (connection broken). */
static mpc_status out_write(mpc_conn *c)
{
    size_t budget = MPC__NB_SLICE;
    while (c->opos < c->olen) {
        if (budget == 0) { /* the loop's turn, as for receives */
            c->want |= MPC_WANT_WRITE;
            return MPC_AGAIN;
        }
        struct iovec iov = {c->out + c->opos, c->olen - c->opos};
        size_t put = 0;
        int eno = 0;
        if (iov.iov_len > budget)
            iov.iov_len = budget;
        mpc_status st = conn_write(c, &iov, 1, MPC__NOW, &put, &eno);
        c->opos += put;
        budget -= put;
        if (st == MPC_AGAIN) {
            c->want |= again_want(c, MPC_WANT_WRITE);
            return MPC_AGAIN;
        }
        if (st != MPC_OK)
            return out_failed(c, st, eno);
    }
    c->opos = c->olen = 0;
    if (c->ocap > MPC__RBUF_CAP) {
        free(c->out);
        c->out = NULL;
        c->ocap = 0;
    }
    return MPC_OK;
}

/* Appends the last n bytes of iov[0..cnt) to the queue. */
static mpc_status out_append(mpc_conn *c, const struct iovec *iov, int cnt, size_t n)
{
    if (c->opos > 0 && c->opos == c->olen)
        c->opos = c->olen = 0;
    if (n > c->ocap - c->olen) {
        size_t need = c->olen - c->opos + n;
        size_t ncap = c->ocap ? c->ocap : 4096;
        while (ncap < need)
            ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
        if (c->opos > 0) {
            memmove(c->out, c->out + c->opos, c->olen - c->opos);
            c->olen -= c->opos;
            c->opos = 0;
        }
        if (ncap > c->ocap) {
            unsigned char *o = realloc(c->out, ncap);
            if (!o)
                return set_err(c, MPC_NOMEM, 0, "send: out of memory for %zu queued bytes", need);
            c->out = o;
            c->ocap = ncap;
        }
    }
    /* The last n bytes: walk back from the end (after a partial write the
     * entries still describe exactly what is left, see mpc__io_write()). */
    int k = cnt;
    size_t tail = 0;
    while (k > 0 && tail < n)
        tail += iov[--k].iov_len;
    size_t skip = tail - n;
    for (; k < cnt; k++) {
        size_t l = iov[k].iov_len - skip;
        memcpy(c->out + c->olen, (const unsigned char *)iov[k].iov_base + skip, l);
        c->olen += l;
        skip = 0;
    }
    return MPC_OK;
}

/* send_iov() of non-blocking mode.  accepted != 0: an earlier part of the
 * same call was accepted, so this part must be too (queued whole if need
 * be), or a batch would be cut in two. */
static mpc_status nb_send_iov(mpc_conn *c, struct iovec *iov, int cnt, size_t total,
                              int accepted)
{
    if (c->olen > c->opos) {
        mpc_status st = out_write(c);
        if (st == MPC_AGAIN && accepted) {
            c->want = 0;
            return out_append(c, iov, cnt, total);
        }
        if (st == MPC_AGAIN)
            return set_err(c, MPC_AGAIN, 0, "send: would block (output of an earlier send is queued)");
        if (st != MPC_OK)
            return st;
    }
    size_t put = 0;
    int eno = 0;
    mpc_status st = conn_write(c, iov, cnt, MPC__NOW, &put, &eno);
    if (st == MPC_OK)
        return MPC_OK;
    if (st == MPC_AGAIN) {
        st = out_append(c, iov, cnt, total - put);
        if (st != MPC_OK && put > 0)
            mark_broken(c, MPC_PROTO);
        return st;
    }
    if (put > 0)
        return out_failed(c, st, eno);
    return io_err(c, st, eno, "send");
}

/* Payloads up to this size are copied behind their header and written as
 * one buffer (cheaper for the kernel than a two-entry iovec). */
#define MPC__SEND_COPY_MAX 512

static mpc_status send_one(mpc_conn *c, const void *buf, size_t len, mpc__deadline dl)
{
    unsigned char hdr[MPC_FRAME_HEADER_MAX + MPC__SEND_COPY_MAX];
    size_t hl = mpc_frame_header(len, hdr);
    if (len <= MPC__SEND_COPY_MAX) {
        if (len)
            memcpy(hdr + hl, buf, len);
        struct iovec one = {hdr, hl + len};
        return send_iov(c, &one, 1, hl + len, dl);
    }
    struct iovec iov[2] = {{hdr, hl}, {(void *)buf, len}};
    return send_iov(c, iov, len ? 2 : 1, hl + len, dl);
}

mpc_status mpc_send_bytes(mpc_conn *c, const void *buf, size_t len)
{
    mpc_status st = check_write(c);
    if (st != MPC_OK)
        return st;
    if (!buf && len > 0)
        return set_err(c, MPC_INVAL, 0, "buf is NULL");
    return send_one(c, buf, len, io_deadline(c));
}

/* A batch is written with as few system calls as possible.  Small
 * messages are copied, header and payload, into one contiguous staging
 * buffer: the kernel's cost per iovec entry (about 15 ns here) is more than
 * copying 20 bytes, so a run of small messages becomes one entry.  Larger
 * payloads keep their own entry (no copy); their headers still go into the
 * staging buffer. */
#define MPC__COALESCE_MAX 256      /* payloads up to this many bytes are copied */
#define MPC__STAGE_BYTES 16384     /* staging buffer per system call */
#define MPC__IOV_MAX 1024          /* entries per system call (Linux IOV_MAX) */

mpc_status mpc_send_many(mpc_conn *c, const mpc_buf *bufs, size_t n)
{
    mpc_status st = check_write(c);
    if (st != MPC_OK)
        return st;
    if (!bufs && n > 0)
        return set_err(c, MPC_INVAL, 0, "bufs is NULL");
    for (size_t i = 0; i < n; i++)
        if (!bufs[i].data && bufs[i].len > 0)
            return set_err(c, MPC_INVAL, 0, "bufs[%zu].data is NULL", i);
    unsigned char stage[MPC__STAGE_BYTES];
    struct iovec iov[MPC__IOV_MAX];
    mpc__deadline dl = io_deadline(c);
    size_t used = 0, total = 0;
    int cnt = 0, accepted = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = bufs[i].len;
        int small = len <= MPC__COALESCE_MAX;
        size_t need = MPC_FRAME_HEADER_MAX + (small ? len : 0);
        /* Room for this message's staged bytes and up to two entries. */
        if (used + need > sizeof stage || cnt + 2 > MPC__IOV_MAX) {
            st = dl == MPC__NOW ? nb_send_iov(c, iov, cnt, total, accepted)
                                : send_iov(c, iov, cnt, total, dl);
            if (st != MPC_OK)
                return st; /* earlier calls' messages are on the wire */
            accepted = 1;
            used = total = 0;
            cnt = 0;
        }
        unsigned char *at = stage + used;
        size_t put = mpc_frame_header(len, at);
        if (small && len) {
            memcpy(at + put, bufs[i].data, len);
            put += len;
        }
        used += put;
        total += put;
        /* Staged bytes extend the last entry when it ends where they begin. */
        if (cnt > 0 && (unsigned char *)iov[cnt - 1].iov_base + iov[cnt - 1].iov_len == at)
            iov[cnt - 1].iov_len += put;
        else {
            iov[cnt].iov_base = at;
            iov[cnt++].iov_len = put;
        }
        if (!small) {
            iov[cnt].iov_base = (void *)bufs[i].data;
            iov[cnt++].iov_len = len;
            total += len;
        }
    }
    if (cnt > 0)
        return dl == MPC__NOW ? nb_send_iov(c, iov, cnt, total, accepted)
                              : send_iov(c, iov, cnt, total, dl);
    return MPC_OK;
}

/* ------------------------------------------------------------------------
 * Handshake driver
 *
 * The two legs are CPython's (PROTOCOL.md 2): deliver = send a challenge,
 * receive the reply, send the verdict; answer = receive a challenge, send
 * the reply, receive the verdict.  The bytes each side writes are exactly
 * CPython's, in CPython's order; what differs is only when they are
 * written.  Frames are queued in an hs_io and written together when the
 * driver is about to wait for input, or at the end:
 *   - the client queues its reply, then its own challenge, and only then
 *     waits for the verdict, so reply and challenge travel in one write
 *     (a CPython server reads the reply, sends its verdict, and then reads
 *     the challenge, which is already there);
 *   - the server, after queueing "#WELCOME#", finds such a pipelined
 *     challenge already buffered, so its verdict and its reply also travel
 *     in one write.  Against a CPython client nothing is buffered, so the
 *     verdict is written before the server waits.
 * The handshake then takes four one-way trips instead of six (each trip a
 * context switch when both peers share a CPU).  The rule that keeps it
 * deadlock-free: never wait for input with output still queued.
 * ------------------------------------------------------------------------ */
#define HS_OUT_FRAMES 2

/* The steps of the legs: DC = queue our challenge; DV = receive the reply,
 * verify it, queue the verdict; AR = receive the peer's challenge, queue
 * our reply; AV = receive the verdict on our reply.  A step either
 * completes or stops at its receive (MPC_AGAIN, non-blocking mode) having
 * changed nothing, so it is simply run again: steps are resumable. */
enum { HS_DC = 1, HS_DV, HS_AR, HS_AV };
static const unsigned char hs_server[] = {HS_DC, HS_DV, HS_AR, HS_AV, 0};
static const unsigned char hs_client[] = {HS_AR, HS_DC, HS_AV, HS_DV, 0};
static const unsigned char hs_deliver[] = {HS_DC, HS_DV, 0};
static const unsigned char hs_answer[] = {HS_AR, HS_AV, 0};

struct mpc__hs {
    const unsigned char *steps;
    mpc__deadline dl;          /* MPC__NOW in non-blocking mode */
    mpc_dialect dialect;
    const char *digest;        /* NULL or digest_buf */
    const void *key;           /* the caller's (blocking) or key_buf */
    size_t key_len;
    unsigned char *key_buf;    /* a copy owned by a non-blocking handshake */
    char digest_buf[16];
    unsigned char chal[MPC_HS_FRAME_MAX]; /* the challenge we sent */
    size_t clen;
    size_t qlen;               /* frames queued in q, not yet written */
    unsigned char q[HS_OUT_FRAMES * (MPC__FRAME_SHORT + MPC_HS_FRAME_MAX)];
};

static mpc_status hs_fail(mpc_conn *c, mpc_status st)
{
    if (st == MPC_TIMEOUT)
        return set_err(c, st, 0, "handshake timed out");
    if (st == MPC_EOF)
        return set_err(c, st, 0, "end of file during handshake");
    return st;
}

/* Writes the queued frames, if any (non-blocking: what the descriptor does
 * not take goes to the output queue). */
static mpc_status hs_flush(mpc_conn *c, struct mpc__hs *hs)
{
    if (hs->qlen == 0)
        return MPC_OK;
    struct iovec iov = {hs->q, hs->qlen};
    size_t total = hs->qlen;
    hs->qlen = 0;
    if (hs->dl == MPC__NOW) /* queued whole if need be: the frames are gone from q */
        return nb_send_iov(c, &iov, 1, total, 1);
    return hs_fail(c, send_iov(c, &iov, 1, total, hs->dl));
}

/* Queues one handshake frame (len <= MPC_HS_FRAME_MAX); flushes first if
 * the queue is full. */
static mpc_status hs_put(mpc_conn *c, struct mpc__hs *hs, const void *buf, size_t len)
{
    if (hs->qlen + MPC__FRAME_SHORT + len > sizeof hs->q) {
        mpc_status st = hs_flush(c, hs);
        if (st != MPC_OK)
            return st;
    }
    hs->qlen += mpc_frame_header(len, hs->q + hs->qlen);
    memcpy(hs->q + hs->qlen, buf, len);
    hs->qlen += len;
    return MPC_OK;
}

/* Whether the next frame (a handshake frame, short) has wholly arrived:
 * in the read buffer when reading ahead; else in the socket, looked at
 * without consuming it (exact reads take nothing early). */
static int hs_frame_arrived(mpc_conn *c)
{
    if (whole_buffered(c) >= 0)
        return 1;
    if (c->read_ahead || !c->is_socket || c->tls || c->pending || c->hdr_have ||
        c->rpos != c->rend)
        return 0;
    unsigned char b[MPC__FRAME_SHORT + MPC_HS_FRAME_MAX];
    size_t n = mpc__io_peek(c->fd, b, sizeof b);
    return mpc__frame_whole_len(b, n) >= 0;
}

/* Receives one handshake frame (at most MPC_HS_FRAME_MAX bytes), writing
 * the queued frames first unless the frame is already buffered: never wait
 * for input with output still queued. */
static mpc_status hs_get(mpc_conn *c, struct mpc__hs *hs, unsigned char *buf, size_t *len)
{
    uint64_t l = 0;
    mpc_status st = MPC_OK;
    *len = 0;
    if (hs->qlen > 0 && !hs_frame_arrived(c)) /* not already here: we are about to wait */
        st = hs_flush(c, hs);
    if (st != MPC_OK)
        return st;
    if (hs->dl == MPC__NOW) {
        const unsigned char *data;
        size_t n = 0;
        if (c->olen > c->opos && (st = out_write(c)) != MPC_OK)
            return st; /* MPC_AGAIN: writable first */
        st = nb_fetch(c, MPC_HS_FRAME_MAX, &data, &n);
        if (st == MPC_OK) {
            memcpy(buf, data, n);
            nb_done(c);
            *len = n;
        }
        return hs_fail(c, st);
    }
    st = begin(c, MPC_HS_FRAME_MAX, hs->dl, &l);
    if (st == MPC_OK) {
        st = read_payload(c, buf, (size_t)l, hs->dl);
        if (st != MPC_OK)
            lost_message(c);
    }
    *len = (size_t)l;
    return hs_fail(c, st);
}

/* Runs one step (see hs_server[]). */
static mpc_status hs_step(mpc_conn *c, struct mpc__hs *hs, int step)
{
    unsigned char in[MPC_HS_FRAME_MAX], out[MPC_HS_FRAME_MAX];
    size_t ilen = 0, olen = 0;
    mpc_error e;
    mpc_status st;
    switch (step) {
    case HS_DC: {
        unsigned char rnd[MPC_HS_MODERN_RANDOM];
        st = mpc_random(rnd, sizeof rnd);
        if (st != MPC_OK)
            return set_err(c, st, 0, "cannot get random bytes for the challenge");
        st = mpc_hs_challenge(hs->dialect, hs->digest, rnd, sizeof rnd, hs->chal,
                              MPC_HS_FRAME_MAX, &hs->clen, &e);
        if (st != MPC_OK)
            return set_err(c, st, 0, "%s", e.message);
        return hs_put(c, hs, hs->chal, hs->clen);
    }
    case HS_DV:
        /* The verdict; a refusal is written at once, whatever it costs. */
        if ((st = hs_get(c, hs, in, &ilen)) != MPC_OK)
            return st;
        st = mpc_hs_verify(hs->dialect, hs->key, hs->key_len, hs->chal, hs->clen, in, ilen, &e);
        if (st == MPC_OK)
            return hs_put(c, hs, MPC_HS_WELCOME, sizeof MPC_HS_WELCOME - 1);
        if (hs_put(c, hs, MPC_HS_FAILURE, sizeof MPC_HS_FAILURE - 1) == MPC_OK)
            (void)hs_flush(c, hs);
        return set_err(c, st, 0, "%s", e.message);
    case HS_AR:
        if ((st = hs_get(c, hs, in, &ilen)) != MPC_OK)
            return st;
        st = mpc_hs_respond(hs->dialect, hs->key, hs->key_len, in, ilen, out, sizeof out, &olen,
                            &e);
        if (st != MPC_OK)
            return set_err(c, st, 0, "%s", e.message);
        return hs_put(c, hs, out, olen);
    default: /* HS_AV */
        if ((st = hs_get(c, hs, in, &ilen)) != MPC_OK)
            return st;
        st = mpc_hs_check_welcome(in, ilen, &e);
        if (st != MPC_OK)
            return set_err(c, st, 0, "%s", e.message);
        return MPC_OK;
    }
}

/* Writes what is still queued (after a failure: a "#WELCOME#" queued
 * before the answer leg failed, as CPython would have sent it).  A failure
 * that came first wins, with its message. */
static mpc_status hs_finish(mpc_conn *c, struct mpc__hs *hs, mpc_status st)
{
    if (st == MPC_OK || hs->qlen == 0)
        return st == MPC_OK ? hs_flush(c, hs) : st;
    int eno = c->last_errno;
    char why[MPC_ERRMSG_MAX];
    memcpy(why, c->msg, sizeof why);
    (void)hs_flush(c, hs);
    return set_err(c, st, eno, "%s", why);
}

/* Runs the steps left: MPC_OK when all are done, MPC_AGAIN (non-blocking:
 * c->want says on what) or the failure. */
static mpc_status hs_run(mpc_conn *c, struct mpc__hs *hs)
{
    mpc_status st = MPC_OK;
    while (*hs->steps) {
        st = hs_step(c, hs, *hs->steps);
        if (st == MPC_AGAIN)
            return st;
        if (st != MPC_OK)
            break;
        hs->steps++;
    }
    return hs_finish(c, hs, st);
}

static void hs_free(mpc_conn *c)
{
    if (c->hs) {
        free(c->hs->key_buf);
        free(c->hs);
        c->hs = NULL;
    }
}

static mpc__deadline hs_deadline(const mpc_options *o)
{
    mpc_ms t = o->handshake_timeout;
    if (t == 0)
        t = MPC_HANDSHAKE_DEFAULT_MS;
    return mpc__deadline_in(t);
}

/* Runs the handshake steps on c: at once to the end in blocking mode; in
 * non-blocking mode as far as the descriptor allows, the rest kept in c->hs
 * (with copies of key and digest) for nb_progress(). */
static mpc_status hs_start(mpc_conn *c, const unsigned char *steps, const void *key,
                           size_t key_len, const mpc_options *o)
{
    if (!c->nonblocking) {
        struct mpc__hs hs;
        hs.steps = steps;
        hs.dl = hs_deadline(o);
        hs.dialect = o->dialect;
        hs.digest = o->digest;
        hs.key = key;
        hs.key_len = key_len;
        hs.key_buf = NULL;
        hs.clen = hs.qlen = 0;
        return hs_run(c, &hs);
    }
    struct mpc__hs *hs = calloc(1, sizeof *hs);
    if (hs)
        hs->key_buf = malloc(key_len ? key_len : 1);
    if (!hs || !hs->key_buf) {
        free(hs);
        return set_err(c, MPC_NOMEM, 0, "handshake: out of memory");
    }
    if (o->digest && strlen(o->digest) >= sizeof hs->digest_buf) {
        free(hs->key_buf);
        free(hs);
        return set_err(c, MPC_INVAL, 0, "unknown digest '%s'", o->digest);
    }
    memcpy(hs->key_buf, key, key_len);
    if (o->digest) {
        memcpy(hs->digest_buf, o->digest, strlen(o->digest) + 1);
        hs->digest = hs->digest_buf;
    }
    hs->steps = steps;
    hs->dl = MPC__NOW;
    hs->dialect = o->dialect;
    hs->key = hs->key_buf;
    hs->key_len = key_len;
    c->hs = hs;
    return c->connecting || c->tls_handshaking ? MPC_AGAIN : nb_progress(c, 0);
}

mpc_status mpc__conn_start_tls(mpc_conn *c, mpc__tls_ctx *ctx, const char *server_name,
                               const mpc_options *opts)
{
    mpc_error e;
    int eno = 0, want = 0;
    mpc_status st = mpc__tls_new(ctx, c->fd, server_name, &c->tls, &e);
    if (st != MPC_OK)
        return set_err(c, st, e.sys_errno, "%s", e.message);
    if (c->nonblocking) {
        c->tls_handshaking = 1;
        return MPC_OK; /* nb_progress() runs it */
    }
    st = mpc__tls_handshake(c->tls, hs_deadline(opts), &c->intr, &want, &eno);
    if (st == MPC_TIMEOUT)
        return set_err(c, st, 0, "TLS handshake timed out");
    if (st != MPC_OK)
        return io_err(c, st, eno, "TLS handshake");
    return MPC_OK;
}

/* The checks of the handshake calls; *o becomes the caller's options read
 * into *copy. */
static mpc_status hs_check(mpc_conn *c, const void *key, const mpc_options **o,
                           mpc_options *copy)
{
    if (!c)
        return MPC_INVAL;
    clear_err(c);
    mpc_status st = check_common(c);
    if (st != MPC_OK)
        return st;
    if (!c->readable || !c->writable)
        return set_err(c, MPC_INVAL, 0, "the handshake needs a duplex connection");
    if (!key)
        return set_err(c, MPC_INVAL, 0, "authkey is NULL");
    *o = mpc__options_read(*o, copy);
    return MPC_OK;
}

static mpc_status hs_leg(mpc_conn *c, const unsigned char *steps, const void *key,
                         size_t key_len, const mpc_options *opts)
{
    mpc_options d;
    if (c && c->hs) /* a non-blocking handshake goes on */
        return mpc_flush(c);
    mpc_status st = hs_check(c, key, &opts, &d);
    if (st != MPC_OK)
        return st;
    return hs_start(c, steps, key, key_len, opts);
}

mpc_status mpc_conn_deliver_challenge(mpc_conn *c, const void *key, size_t key_len,
                                      const mpc_options *opts)
{
    return hs_leg(c, hs_deliver, key, key_len, opts);
}

mpc_status mpc_conn_answer_challenge(mpc_conn *c, const void *key, size_t key_len,
                                     const mpc_options *opts)
{
    return hs_leg(c, hs_answer, key, key_len, opts);
}

mpc_status mpc__conn_handshake(mpc_conn *c, int server, const mpc_options *opts)
{
    /* Server: deliver, then answer; the verdict waits in the queue and
     * leaves with the reply if the client pipelined its challenge.
     * Client: answer and deliver interleaved: the reply and our challenge
     * leave together, before we wait for the verdict. */
    return hs_leg(c, server ? hs_server : hs_client, opts ? opts->authkey : NULL,
                  opts ? opts->authkey_len : 0, opts);
}

/* ------------------------------------------------------------------------
 * Non-blocking mode: switching, progress, flush
 * ------------------------------------------------------------------------ */

/* Moves on a connect, a handshake and queued output, in that order.
 * MPC_OK when none is left in the way (for_send 1, a send: queued output
 * neither; 2, mpc_flush(): nor TLS's unsent records), MPC_AGAIN with
 * c->want, or the failure (a failed connect or handshake breaks the
 * connection). */
static mpc_status nb_progress(mpc_conn *c, int for_send)
{
    mpc_status st;
    if (c->connecting) {
        int eno = 0;
        st = mpc__io_connect_done(c->fd, &eno);
        if (st == MPC_AGAIN) {
            c->want = MPC_WANT_WRITE;
            return set_err(c, MPC_AGAIN, 0, "connect: in progress");
        }
        if (st != MPC_OK) {
            set_err(c, st, eno, "connect to %s: %s", c->peer[0] ? c->peer : "the address",
                    strerror(eno));
            mark_broken(c, st);
            return st;
        }
        c->connecting = 0;
        mpc__io_peer_name(c->fd, c->peer, sizeof c->peer);
    }
    if (c->tls_handshaking) {
        int eno = 0;
        st = mpc__tls_handshake(c->tls, MPC__NOW, &c->intr, &c->tls_want, &eno);
        if (st == MPC_AGAIN) {
            c->want = c->tls_want;
            return set_err(c, MPC_AGAIN, 0, "TLS handshake in progress");
        }
        if (st != MPC_OK) {
            io_err(c, st, eno, "TLS handshake");
            mark_broken(c, st);
            return st;
        }
        c->tls_handshaking = 0;
    }
    if (c->hs) {
        st = hs_run(c, c->hs);
        if (st == MPC_AGAIN) {
            if (c->last != MPC_AGAIN)
                set_err(c, MPC_AGAIN, 0, "handshake in progress");
            return st;
        }
        hs_free(c);
        if (st != MPC_OK) {
            mark_broken(c, st);
            return st;
        }
    }
    if (c->olen > c->opos) {
        st = out_write(c);
        if (st == MPC_AGAIN) {
            if (!for_send) {
                c->want = 0; /* a receive goes on; the queue waits */
                return MPC_OK;
            }
            return set_err(c, MPC_AGAIN, 0, "send: would block (output is queued)");
        }
        if (st != MPC_OK)
            return st;
    }
    if (mpc__tls_unflushed(c->tls)) {
        /* Records TLS made and the socket has not taken yet: a receive or
         * a send goes on (TLS takes more until its buffer is full); only
         * mpc_flush() waits for them. */
        int eno = 0;
        st = mpc__tls_flush(c->tls, MPC__NOW, &c->intr, &eno);
        if (st == MPC_AGAIN && for_send == 2) {
            c->want |= MPC_WANT_WRITE;
            return set_err(c, MPC_AGAIN, 0, "send: would block (TLS output is queued)");
        }
        if (st != MPC_OK && st != MPC_AGAIN)
            return out_failed(c, st, eno);
    }
    return MPC_OK;
}

mpc_status mpc_flush(mpc_conn *c)
{
    if (!c)
        return MPC_INVAL;
    clear_err(c);
    mpc_status st = check_common(c);
    if (st != MPC_OK || !c->nonblocking)
        return st;
    return nb_progress(c, 2);
}

mpc_status mpc_conn_set_blocking(mpc_conn *c, int blocking)
{
    int eno = 0;
    if (!c)
        return MPC_INVAL;
    clear_err(c);
    blocking = blocking != 0;
    if (blocking == !c->nonblocking)
        return MPC_OK;
    if (blocking && (c->connecting || c->tls_handshaking || c->hs || c->olen > c->opos ||
                     mpc__tls_unflushed(c->tls) ||
                     (c->pending && c->pend_left != c->pend_len)))
        return set_err(c, MPC_INVAL, 0,
                       "cannot switch to blocking mode: a connect, a handshake, queued output "
                       "or a message received in part is in progress; finish it first");
    if (c->fd >= 0 && mpc__io_set_blocking(c->fd, blocking, &eno) != MPC_OK)
        return set_err(c, MPC_OS, eno, "fcntl: %s", strerror(eno));
    c->nonblocking = (unsigned char)!blocking;
    if (blocking)
        nb_release(c); /* (no payload of a message is in it: checked above) */
    return MPC_OK;
}

int mpc_conn_blocking(const mpc_conn *c) { return c && !c->nonblocking; }

int mpc_conn_wants(const mpc_conn *c)
{
    if (!c || c->fd < 0)
        return 0;
    int w = c->want;
    if (c->connecting)
        w |= MPC_WANT_WRITE;
    if (c->olen > c->opos || mpc__tls_unflushed(c->tls))
        w |= MPC_WANT_WRITE;
    return w;
}

int mpc_conn_pending(const mpc_conn *c)
{
    if (!c || c->fd < 0 || !c->readable || c->hs || c->connecting || c->tls_handshaking)
        return 0;
    if (c->broken != MPC_OK || mpc__tls_pending(c->tls))
        return 1; /* a receive fails at once / TLS holds bytes no poll sees */
    if (c->pending) /* the rest of a message begun is buffered */
        return c->pend_left <= (uint64_t)(c->rend - c->rpos);
    if (whole_buffered(c) >= 0)
        return 1;
    /* A header that is an error at once (negative, not the -1 of the long
     * form): the decoder needs nothing more to say so. */
    if (c->hdr_have == 0 && c->rend - c->rpos >= MPC__FRAME_SHORT && c->rbuf[c->rpos] >= 0x80) {
        const unsigned char *h = c->rbuf + c->rpos;
        return !(h[0] == 0xff && h[1] == 0xff && h[2] == 0xff && h[3] == 0xff);
    }
    return 0;
}
