/*
 * listener.c - the listening object: bind and listen (through io_posix.c),
 * accept with a deadline, and the server side of the handshake (deliver,
 * then answer) under one handshake deadline.  A client that fails the
 * handshake is closed here and its error returned; the listener stays
 * usable.  The options given to mpc_listen() are copied (authkey and
 * digest included) and apply to every accepted connection.
 */
#include "transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static mpc_status lerr(mpc_listener *l, mpc_error *err, mpc_status st, int eno, const char *msg)
{
    snprintf(l->msg, sizeof l->msg, "%s", msg);
    return mpc__error(err, st, eno, "%s", msg);
}

mpc_status mpc_listen(const char *address, const mpc_options *opts, mpc_listener **out,
                      mpc_error *err)
{
    if (!address)
        return mpc__error(err, MPC_INVAL, 0, "address is NULL");
    return mpc_listen_n(address, strlen(address), opts, out, err);
}

mpc_status mpc_listen_n(const char *address, size_t address_len, const mpc_options *opts,
                        mpc_listener **out, mpc_error *err)
{
    mpc__addr a;
    mpc_options o;
    if (!out)
        return mpc__error(err, MPC_INVAL, 0, "out is NULL");
    *out = NULL;
    opts = mpc__options_read(opts, &o);
    mpc_status st = mpc__addr_parse_n(address, address_len, &a, err);
    if (st != MPC_OK)
        return st;
    if (opts->digest && strlen(opts->digest) >= sizeof ((mpc_listener *)0)->digest)
        return mpc__error(err, MPC_INVAL, 0, "unknown digest '%s'", opts->digest);

    mpc_listener *l = calloc(1, sizeof *l);
    if (!l)
        return mpc__error(err, MPC_NOMEM, 0, "out of memory");
    l->fd = -1;
    l->wake_fd = -1;
    l->opts = *opts;
    if (opts->authkey) {
        l->key = malloc(opts->authkey_len ? opts->authkey_len : 1);
        if (!l->key) {
            free(l);
            return mpc__error(err, MPC_NOMEM, 0, "out of memory");
        }
        memcpy(l->key, opts->authkey, opts->authkey_len);
        l->opts.authkey = l->key;
    }
    if (opts->digest) {
        snprintf(l->digest, sizeof l->digest, "%s", opts->digest);
        l->opts.digest = l->digest;
    }
    l->intr.fn = opts->interrupt;
    l->intr.arg = opts->interrupt_arg;
    l->intr.wake_fd = -1;
    l->opts.tls = NULL; /* borrowed: the context below is what is kept */
    if (opts->tls) {
        st = mpc__tls_ctx_new(opts->tls, 1, &l->tls, err);
        if (st != MPC_OK) {
            free(l->key);
            free(l);
            return st;
        }
    }

    int backlog = opts->backlog > 0 ? opts->backlog : 1;
    st = mpc__io_listen(&a, address, backlog, opts->unix_mode, &l->fd, l->address, &l->family,
                        err);
    if (st != MPC_OK) {
        mpc__tls_ctx_free(l->tls);
        free(l->key);
        free(l);
        return st;
    }
    if (a.kind == MPC__ADDR_UNIX) {
        l->unlink_on_close = 1;
        l->owner = getpid();
        memcpy(l->path, a.path, a.path_len + 1);
    }
    int eno = 0;
    l->wake_fd = mpc__io_wake_fd(&eno);
    if (l->wake_fd < 0) {
        mpc_listener_close(l);
        return mpc__error(err, MPC_OS, eno, "eventfd: %s", strerror(eno));
    }
    *out = l;
    return MPC_OK;
}

mpc_status mpc_listener_accept(mpc_listener *l, mpc_ms timeout, mpc_conn **out, mpc_error *err)
{
    mpc_error e;
    char peer[MPC__ADDR_TEXT_MAX];
    int fd = -1;
    if (!out || !l)
        return mpc__error(err, MPC_INVAL, 0, "listener and out must not be NULL");
    *out = NULL;
    l->msg[0] = '\0';
    if (l->fd < 0)
        return lerr(l, err, MPC_CLOSED, 0, "listener is closed");
    mpc__deadline dl = l->opts.nonblocking ? MPC__NOW : mpc__deadline_in(timeout);
    mpc_status st = mpc__io_accept(l->fd, l->wake_fd, dl, &l->intr, &fd, peer, &e);
    if (st != MPC_OK)
        return lerr(l, err, st, e.sys_errno, e.message);
    /* Known before the handshake, so a caller can say who failed it. */
    snprintf(l->last_peer, sizeof l->last_peer, "%s", peer);
    mpc_conn *c;
    st = mpc__conn_new(fd, 1, 1, 1, peer, &l->opts, &c, &e);
    if (st != MPC_OK) {
        mpc__io_close(fd);
        return lerr(l, err, st, e.sys_errno, e.message);
    }
    if (l->tls) {
        st = mpc__conn_start_tls(c, l->tls, NULL, &l->opts);
        if (st != MPC_OK) {
            mpc__conn_error_to(c, &e);
            mpc_conn_close(c);
            return lerr(l, err, st, e.sys_errno, e.message);
        }
    }
    if (l->opts.authkey) {
        st = mpc__conn_handshake(c, 1, &l->opts);
        if (st == MPC_AGAIN)
            st = MPC_OK; /* non-blocking: mpc_flush(c) goes on */
        if (st != MPC_OK) {
            mpc__conn_error_to(c, &e);
            mpc_conn_close(c);
            return lerr(l, err, st, e.sys_errno, e.message);
        }
    }
    *out = c;
    return MPC_OK;
}

const char *mpc_listener_address(const mpc_listener *l) { return l ? l->address : ""; }
const char *mpc_listener_last_peer(const mpc_listener *l) { return l ? l->last_peer : ""; }
const char *mpc_listener_family(const mpc_listener *l) { return l ? l->family : ""; }
int mpc_listener_fileno(const mpc_listener *l) { return l ? l->fd : -1; }
const char *mpc_listener_errmsg(const mpc_listener *l) { return l ? l->msg : "listener is NULL"; }

void mpc_listener_set_interrupt(mpc_listener *l, int (*fn)(void *), void *arg)
{
    if (!l)
        return;
    l->intr.fn = fn;
    l->intr.arg = arg;
    /* Connections accepted from now on inherit the new hook. */
    l->opts.interrupt = fn;
    l->opts.interrupt_arg = arg;
}

mpc_status mpc_listener_set_blocking(mpc_listener *l, int blocking)
{
    if (!l)
        return MPC_INVAL;
    /* The listening socket is always O_NONBLOCK (accept polls first), so
     * this only changes how accept() behaves and what it returns. */
    l->opts.nonblocking = !blocking;
    return MPC_OK;
}

void mpc_listener_wake(mpc_listener *l)
{
    if (l)
        mpc__io_wake(l->wake_fd);
}

void mpc_listener_close(mpc_listener *l)
{
    if (!l)
        return;
    if (l->wake_fd >= 0)
        mpc__io_close(l->wake_fd);
    mpc__io_close(l->fd);
    /* Only the creator removes the file: a forked child closing its copy
     * leaves the parent's socket reachable (as CPython's Finalize). */
    if (l->unlink_on_close && l->owner == getpid())
        mpc__io_unlink(l->path);
    mpc__tls_ctx_free(l->tls);
    free(l->key);
    free(l);
}
