/*
 * io_posix.c - the only file in the library that makes descriptor system
 * calls: sockets, pipes, reads, writes, poll, close.  It knows deadlines
 * (CLOCK_MONOTONIC milliseconds), EINTR (retried with the remaining time,
 * or aborted when the caller's interrupt hook says so) and errno (captured
 * at the failure site and handed back).  It knows nothing of framing or the
 * handshake; conn.c and listener.c drive it.
 */
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Deadlines
 * ------------------------------------------------------------------------ */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

mpc__deadline mpc__deadline_in(mpc_ms timeout)
{
    if (timeout < 0)
        return MPC__NO_DEADLINE;
    if (timeout > INT64_MAX / 4)
        timeout = INT64_MAX / 4;
    return now_ms() + timeout;
}

mpc__deadline mpc__deadline_min(mpc__deadline a, mpc__deadline b)
{
    if (a == MPC__NO_DEADLINE)
        return b;
    if (b == MPC__NO_DEADLINE)
        return a;
    return a < b ? a : b;
}

/* Milliseconds left for poll(): -1 for none, 0 when passed. */
static int poll_ms(mpc__deadline dl)
{
    if (dl == MPC__NO_DEADLINE)
        return -1;
    if (dl == MPC__NOW)
        return 0;
    int64_t left = dl - now_ms();
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* EINTR policy: 0 = retry, MPC_INTR = abort. */
static mpc_status on_eintr(const mpc__intr *intr)
{
    if (intr && intr->fn && intr->fn(intr->arg))
        return MPC_INTR;
    return MPC_OK;
}

/* poll() one descriptor for events until dl.  *ready = revents != 0. */
static mpc_status wait_fd_or_wake(int fd, short events, int wake_fd, mpc__deadline dl,
                                  const mpc__intr *intr, int *ready, int *woken, int *eno);

static mpc_status wait_fd(int fd, short events, mpc__deadline dl, const mpc__intr *intr,
                          int *ready, int *eno)
{
    int woken = 0;
    return wait_fd_or_wake(fd, events, -1, dl, intr, ready, &woken, eno);
}

/* wait_fd() that also returns (*woken = 1) once wake_fd (if >= 0) is
 * readable. */
static mpc_status wait_fd_or_wake(int fd, short events, int wake_fd, mpc__deadline dl,
                                  const mpc__intr *intr, int *ready, int *woken, int *eno)
{
    *woken = 0;
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = events, .revents = 0},
                              {.fd = wake_fd, .events = POLLIN, .revents = 0}};
        int r = poll(p, wake_fd >= 0 ? 2 : 1, poll_ms(dl));
        if (r >= 0) {
            if (wake_fd >= 0 && p[1].revents) {
                *woken = 1;
                return MPC_OK;
            }
            if (r > 0 && (p[0].revents & POLLNVAL)) {
                *eno = EBADF;
                return MPC_OS;
            }
            *ready = r > 0;
            return MPC_OK;
        }
        if (errno != EINTR) {
            *eno = errno;
            return MPC_OS;
        }
        if (on_eintr(intr) != MPC_OK)
            return MPC_INTR;
    }
}

int mpc__io_wake_fd(int *eno)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        *eno = errno;
    return fd;
}

void mpc__io_wake(int wake_fd)
{
    uint64_t one = 1;
    if (wake_fd >= 0)
        (void)!write(wake_fd, &one, sizeof one);
}

size_t mpc__io_peek(int fd, void *buf, size_t cap)
{
    ssize_t n;
    do
        n = recv(fd, buf, cap, MSG_PEEK | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n > 0 ? (size_t)n : 0;
}

mpc_status mpc__io_shutdown(int fd, int *eno)
{
    if (shutdown(fd, SHUT_RDWR) == 0 || errno == ENOTCONN)
        return MPC_OK;
    *eno = errno;
    return MPC_OS;
}

/* ------------------------------------------------------------------------
 * Reading and writing
 * ------------------------------------------------------------------------ */
mpc_status mpc__io_read(int fd, struct iovec *iov, int iovcnt, mpc__deadline dl,
                        const mpc__intr *intr, size_t *got, int *eno)
{
    int wake_fd = intr ? intr->wake_fd : -1;
    *got = 0;
    for (;;) {
        /* Without a deadline the blocking read is the only system call;
         * with one, or a wake-up descriptor, poll first so the read cannot
         * block past either. */
        if (dl != MPC__NOW && (dl != MPC__NO_DEADLINE || wake_fd >= 0)) {
            int ready = 0, woken = 0;
            mpc_status st = wait_fd_or_wake(fd, POLLIN, wake_fd, dl, intr, &ready, &woken, eno);
            if (st != MPC_OK)
                return st;
            if (woken)
                return MPC_CLOSED;
            if (!ready)
                return MPC_TIMEOUT;
        }
        /* read() for one buffer: readv() costs the kernel an iovec import
         * (5-6% of a small message's kernel time, measured with perf). */
        ssize_t n = iovcnt == 1 ? read(fd, iov->iov_base, iov->iov_len) : readv(fd, iov, iovcnt);
        if (n >= 0) {
            *got = (size_t)n;
            return MPC_OK;
        }
        if (errno == EINTR) {
            if (on_eintr(intr) != MPC_OK)
                return MPC_INTR;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (dl == MPC__NOW)
                return MPC_AGAIN;
            /* A caller-supplied non-blocking descriptor: wait, then retry. */
            int ready = 0, woken = 0;
            mpc_status st = wait_fd_or_wake(fd, POLLIN, wake_fd, dl, intr, &ready, &woken, eno);
            if (st != MPC_OK)
                return st;
            if (woken)
                return MPC_CLOSED;
            if (!ready)
                return MPC_TIMEOUT;
        } else {
            *eno = errno;
            return MPC_OS;
        }
    }
}

static void iov_advance(struct iovec **iov, int *iovcnt, size_t n)
{
    while (*iovcnt > 0 && n >= (*iov)->iov_len) {
        n -= (*iov)->iov_len;
        (*iov)++;
        (*iovcnt)--;
    }
    if (*iovcnt > 0 && n) {
        (*iov)->iov_base = (unsigned char *)(*iov)->iov_base + n;
        (*iov)->iov_len -= n;
    }
}

/* 1 when a write to a broken pipe would kill the process (SIGPIPE is
 * neither ignored nor blocked in this thread). */
int mpc__io_sigpipe_kills(void)
{
    struct sigaction sa;
    sigset_t cur;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
        return 0;
    if (pthread_sigmask(SIG_BLOCK, NULL, &cur) == 0 && sigismember(&cur, SIGPIPE))
        return 0;
    return 1;
}

/* writev() on a pipe without SIGPIPE: the signal is blocked around the call
 * and, when the write raised it (EPIPE), taken off the thread's pending set
 * (unless it was already pending before), so the caller gets EPIPE and the
 * process lives.  Sockets need none of this (MSG_NOSIGNAL). */
static ssize_t pipe_writev(int fd, const struct iovec *iov, int cnt)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);
    ssize_t n = writev(fd, iov, cnt);
    if (n < 0 && errno == EPIPE && !was_pending) {
        int eno = errno;
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
        errno = eno;
    }
    int eno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = eno;
    return n;
}

mpc_status mpc__io_write(int fd, int is_socket, struct iovec *iov, int iovcnt, mpc__deadline dl,
                         const mpc__intr *intr, size_t *put, int *eno)
{
    *put = 0;
    /* Skip leading empty entries so "all written" is simply iovcnt == 0. */
    iov_advance(&iov, &iovcnt, 0);
    while (iovcnt > 0 && iov->iov_len == 0) {
        iov++;
        iovcnt--;
    }
    while (iovcnt > 0) {
        ssize_t n;
        /* A socket write with a deadline is tried first with MSG_DONTWAIT
         * and waits for POLLOUT only on EAGAIN (below): sockets are almost
         * always writable, and the poll would be a system call per write.
         * A pipe has no per-call non-blocking flag, so it polls first. */
        if (dl != MPC__NO_DEADLINE && dl != MPC__NOW && is_socket != MPC__IO_SOCKET) {
            int ready = 0;
            mpc_status st = wait_fd(fd, POLLOUT, dl, intr, &ready, eno);
            if (st != MPC_OK)
                return st;
            if (!ready)
                return MPC_TIMEOUT;
        }
        if (is_socket == MPC__IO_SOCKET) {
            /* With a deadline, never let the kernel block past it. */
            int flags = MSG_NOSIGNAL | (dl != MPC__NO_DEADLINE ? MSG_DONTWAIT : 0);
            if (iovcnt == 1) {
                /* send() for one buffer: no iovec for the kernel to import. */
                n = send(fd, iov->iov_base, iov->iov_len, flags);
            } else {
                struct msghdr m;
                memset(&m, 0, sizeof m);
                m.msg_iov = iov;
                m.msg_iovlen = (size_t)iovcnt;
                n = sendmsg(fd, &m, flags);
            }
        } else {
            /* A blocking pipe write only returns when everything is
             * written; with a deadline write at most PIPE_BUF bytes, which
             * poll's POLLOUT guarantees to fit. */
            int cnt = iovcnt;
            int limited = 0;
            struct iovec saved;
            if (dl != MPC__NO_DEADLINE && dl != MPC__NOW) {
                cnt = 1;
                if (iov->iov_len > PIPE_BUF) {
                    saved = *iov;
                    iov->iov_len = PIPE_BUF;
                    limited = 1;
                }
            }
            n = is_socket == MPC__IO_PIPE_GUARDED ? pipe_writev(fd, iov, cnt)
                                                  : writev(fd, iov, cnt);
            if (limited)
                *iov = saved;
        }
        if (n >= 0) {
            *put += (size_t)n;
            iov_advance(&iov, &iovcnt, (size_t)n);
            while (iovcnt > 0 && iov->iov_len == 0) {
                iov++;
                iovcnt--;
            }
            /* A blocking write stops short only when a signal arrived after
             * some bytes went out (no EINTR then): the hook decides. */
            if (iovcnt > 0 && dl == MPC__NO_DEADLINE && on_eintr(intr) != MPC_OK)
                return MPC_INTR;
            continue;
        }
        if (errno == EINTR) {
            if (on_eintr(intr) != MPC_OK)
                return MPC_INTR;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (dl == MPC__NOW)
                return MPC_AGAIN;
            int ready = 0;
            mpc_status st = wait_fd(fd, POLLOUT, dl, intr, &ready, eno);
            if (st != MPC_OK)
                return st;
            if (!ready)
                return MPC_TIMEOUT;
        } else {
            *eno = errno;
            return MPC_OS;
        }
    }
    return MPC_OK;
}

mpc_status mpc__io_wait_readable(int fd, mpc__deadline dl, const mpc__intr *intr, int *ready,
                                 int *eno)
{
    int woken = 0;
    *ready = 0;
    mpc_status st =
        wait_fd_or_wake(fd, POLLIN, intr ? intr->wake_fd : -1, dl, intr, ready, &woken, eno);
    return st == MPC_OK && woken ? MPC_CLOSED : st;
}

mpc_status mpc__io_wait_many(const int *fds, const unsigned char *force_ready, size_t n,
                             mpc__deadline dl, const mpc__intr *intr, int *ready, size_t *nready,
                             int *eno)
{
    struct pollfd small[16];
    struct pollfd *p = small;
    size_t forced = 0;
    *nready = 0;
    if (n > sizeof small / sizeof small[0]) {
        p = calloc(n, sizeof *p);
        if (!p)
            return MPC_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        p[i].fd = fds[i];
        p[i].events = POLLIN;
        p[i].revents = 0;
        if (force_ready && force_ready[i])
            forced++;
    }
    mpc_status st = MPC_OK;
    for (;;) {
        int r = poll(p, (nfds_t)n, forced ? 0 : poll_ms(dl));
        if (r >= 0)
            break;
        if (errno != EINTR) {
            *eno = errno;
            st = MPC_OS;
            break;
        }
        if (on_eintr(intr) != MPC_OK) {
            st = MPC_INTR;
            break;
        }
    }
    if (st == MPC_OK) {
        for (size_t i = 0; i < n; i++) {
            int r = (force_ready && force_ready[i]) || (fds[i] >= 0 && p[i].revents != 0);
            ready[i] = r;
            *nready += (size_t)r;
        }
    }
    if (p != small)
        free(p);
    return st;
}

/* ------------------------------------------------------------------------
 * Addresses of sockets
 * ------------------------------------------------------------------------ */
static void format_sockaddr(const struct sockaddr *sa, socklen_t len, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN];
    out[0] = '\0';
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, cap, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, cap, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        size_t plen = len > offsetof(struct sockaddr_un, sun_path)
                          ? (size_t)len - offsetof(struct sockaddr_un, sun_path)
                          : 0;
        if (plen > 0 && un->sun_path[0] == '\0')
            snprintf(out, cap, "@%.*s", (int)(plen - 1), un->sun_path + 1);
        else
            snprintf(out, cap, "%.*s", (int)strnlen(un->sun_path, plen), un->sun_path);
    }
}

void mpc__io_peer_name(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ss.ss_family = AF_UNSPEC; /* a family is looked at only if one was written */
    out[0] = '\0';
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0 &&
        (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
        format_sockaddr((struct sockaddr *)&ss, len, out, cap);
}

static socklen_t unix_sockaddr(const mpc__addr *a, struct sockaddr_un *un)
{
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    if (a->kind == MPC__ADDR_ABSTRACT) {
        memcpy(un->sun_path + 1, a->path, a->path_len);
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + a->path_len);
    }
    memcpy(un->sun_path, a->path, a->path_len);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + a->path_len + 1);
}

/* Resolves a TCP address.  Names give IPv4 results first, then IPv6. */
static mpc_status resolve(const mpc__addr *a, const char *text, int passive,
                          struct addrinfo **res, mpc_error *err)
{
    struct addrinfo hints;
    char port[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    hints.ai_family = a->bracketed ? AF_INET6 : AF_UNSPEC;
    if (a->bracketed)
        hints.ai_flags |= AI_NUMERICHOST;
    snprintf(port, sizeof port, "%u", a->port);
    const char *host = a->host;
    if (host[0] == '\0') {
        host = passive ? NULL : "127.0.0.1";
        hints.ai_family = AF_INET;
    }
    int r = getaddrinfo(host, port, &hints, res);
    if (r != 0) {
        int eno = r == EAI_SYSTEM ? errno : 0;
        return mpc__error(err, MPC_RESOLVE, eno, "cannot resolve '%s': %s", text,
                          r == EAI_SYSTEM ? strerror(eno) : gai_strerror(r));
    }
    return MPC_OK;
}

/* Orders getaddrinfo results IPv4 first, keeping their order otherwise. */
static size_t ordered(struct addrinfo *res, struct addrinfo **out, size_t cap)
{
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++)
        for (struct addrinfo *ai = res; ai && n < cap; ai = ai->ai_next)
            if ((ai->ai_family == AF_INET) == (pass == 0))
                out[n++] = ai;
    return n;
}

static void set_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int set_blocking(int fd, int blocking)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -1;
    int nfl = blocking ? (fl & ~O_NONBLOCK) : (fl | O_NONBLOCK);
    return nfl == fl ? 0 : fcntl(fd, F_SETFL, nfl);
}

mpc_status mpc__io_wait(int fd, int want, mpc__deadline dl, const mpc__intr *intr, int *ready,
                        int *eno)
{
    short ev = (short)((want & MPC_WANT_READ ? POLLIN : 0) | (want & MPC_WANT_WRITE ? POLLOUT : 0));
    *ready = 0;
    return wait_fd(fd, ev, dl, intr, ready, eno);
}

long mpc__io_send_nowait(int fd, const void *buf, size_t len)
{
    return (long)send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

long mpc__io_recv_nowait(int fd, void *buf, size_t len)
{
    return (long)recv(fd, buf, len, MSG_DONTWAIT);
}

mpc_status mpc__io_set_blocking(int fd, int blocking, int *eno)
{
    if (set_blocking(fd, blocking) == 0)
        return MPC_OK;
    *eno = errno;
    return MPC_OS;
}

/* ------------------------------------------------------------------------
 * Listening and accepting
 * ------------------------------------------------------------------------ */
mpc_status mpc__io_listen(const mpc__addr *a, const char *text, int backlog, unsigned unix_mode,
                          int *fd_out, char *bound, const char **family, mpc_error *err)
{
    struct sockaddr_storage ss;
    socklen_t slen = 0;
    int fd = -1;
    int eno;
    const char *what;
    struct addrinfo *res = NULL;

    *fd_out = -1;
    if (a->kind == MPC__ADDR_TCP) {
        struct addrinfo *list[32];
        mpc_status st = resolve(a, text, 1, &res, err);
        if (st != MPC_OK)
            return st;
        size_t n = ordered(res, list, 32);
        if (n == 0) {
            freeaddrinfo(res);
            return mpc__error(err, MPC_RESOLVE, 0, "cannot resolve '%s': no TCP address",
                              text);
        }
        memcpy(&ss, list[0]->ai_addr, list[0]->ai_addrlen);
        slen = list[0]->ai_addrlen;
        freeaddrinfo(res);
    } else {
        slen = unix_sockaddr(a, (struct sockaddr_un *)&ss);
    }

    what = "socket";
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        goto fail;
    if (ss.ss_family != AF_UNIX) {
        int one = 1;
        what = "setsockopt";
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
            goto fail;
    }
    what = "bind";
    if (bind(fd, (struct sockaddr *)&ss, slen) < 0)
        goto fail;
    if (a->kind == MPC__ADDR_UNIX && unix_mode != 0) {
        what = "chmod";
        if (fchmodat(AT_FDCWD, a->path, (mode_t)unix_mode, 0) < 0) {
            eno = errno;
            unlink(a->path);
            errno = eno;
            goto fail;
        }
    }
    what = "listen";
    if (listen(fd, backlog) < 0) {
        eno = errno;
        if (a->kind == MPC__ADDR_UNIX)
            unlink(a->path);
        errno = eno;
        goto fail;
    }
    slen = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &slen) < 0) {
        what = "getsockname";
        eno = errno;
        if (a->kind == MPC__ADDR_UNIX)
            unlink(a->path);
        errno = eno;
        goto fail;
    }
    format_sockaddr((struct sockaddr *)&ss, slen, bound, MPC__ADDR_TEXT_MAX);
    if (a->kind == MPC__ADDR_UNIX)
        snprintf(bound, MPC__ADDR_TEXT_MAX, "%s", a->path);
    *family = ss.ss_family == AF_INET ? "AF_INET" : ss.ss_family == AF_INET6 ? "AF_INET6"
                                                                             : "AF_UNIX";
    *fd_out = fd;
    return MPC_OK;

fail:
    eno = errno;
    if (fd >= 0)
        close(fd);
    return mpc__error(err, MPC_OS, eno, "%s %s: %s", what, text, strerror(eno));
}

mpc_status mpc__io_accept(int lfd, int wake_fd, mpc__deadline dl, const mpc__intr *intr,
                          int *fd_out, char *peer, mpc_error *err)
{
    *fd_out = -1;
    peer[0] = '\0';
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t slen = sizeof ss;
        ss.ss_family = AF_UNSPEC; /* a family is looked at only if one was written */
        int fd = accept4(lfd, (struct sockaddr *)&ss, &slen,
                         SOCK_CLOEXEC | (dl == MPC__NOW ? SOCK_NONBLOCK : 0));
        if (fd >= 0) {
            if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
                set_nodelay(fd);
                format_sockaddr((struct sockaddr *)&ss, slen, peer, MPC__ADDR_TEXT_MAX);
            }
            *fd_out = fd;
            return MPC_OK;
        }
        int eno = errno;
        if (eno == EAGAIN || eno == EWOULDBLOCK || eno == ECONNABORTED) {
            int ready = 0, woken = 0;
            if (dl == MPC__NOW)
                return mpc__error(err, MPC_AGAIN, eno, "accept: no client is waiting");
            mpc_status st = wait_fd_or_wake(lfd, POLLIN, wake_fd, dl, intr, &ready, &woken, &eno);
            if (st == MPC_OK && woken)
                return mpc__error(err, MPC_CLOSED, 0, "listener is closed");
            if (st == MPC_INTR)
                return mpc__error(err, MPC_INTR, EINTR, "accept: interrupted");
            if (st != MPC_OK)
                return mpc__error(err, st, eno, "accept: %s", strerror(eno));
            if (!ready)
                return mpc__error(err, MPC_TIMEOUT, 0, "accept: timed out");
        } else if (eno == EINTR) {
            if (on_eintr(intr) != MPC_OK)
                return mpc__error(err, MPC_INTR, EINTR, "accept: interrupted");
        } else {
            return mpc__error(err, MPC_OS, eno, "accept: %s", strerror(eno));
        }
    }
}

/* ------------------------------------------------------------------------
 * Connecting
 * ------------------------------------------------------------------------ */

/* One connect attempt to sa.  Returns MPC_OK with *fd_out set, or a status
 * with *eno. */
static mpc_status connect_one(const struct sockaddr *sa, socklen_t slen, mpc__deadline dl,
                              const mpc__intr *intr, int *fd_out, int *eno)
{
    int is_unix = sa->sa_family == AF_UNIX;
    /* TCP connects non-blocking so the deadline holds; a Unix connect
     * without a deadline stays blocking, since a non-blocking one fails
     * with EAGAIN instead of waiting when the backlog is full. */
    int nonblock = !is_unix || dl != MPC__NO_DEADLINE;
    int now = dl == MPC__NOW;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    mpc_status st = MPC_OK;
    if (fd < 0) {
        *eno = errno;
        return MPC_OS;
    }
    for (;;) {
        if (connect(fd, sa, slen) == 0)
            break;
        int e = errno;
        if (e == EINTR && is_unix && !nonblock) {
            if (on_eintr(intr) != MPC_OK) {
                st = MPC_INTR;
                break;
            }
            continue;
        }
        if (is_unix && e == EAGAIN) {
            /* Backlog full: try again shortly, within the deadline.  A
             * non-blocking connect cannot (no descriptor event says when):
             * the caller gets EAGAIN. */
            int ready = 0;
            if (now) {
                *eno = e;
                st = MPC_OS;
                break;
            }
            if (poll_ms(dl) == 0) {
                st = MPC_TIMEOUT;
                break;
            }
            st = wait_fd(-1, 0, mpc__deadline_min(dl, mpc__deadline_in(10)), intr, &ready, eno);
            if (st != MPC_OK)
                break;
            continue;
        }
        if ((e == EINPROGRESS || e == EINTR) && now) {
            st = MPC_AGAIN;
            break;
        }
        if (e == EINPROGRESS || e == EINTR) {
            int ready = 0;
            st = wait_fd(fd, POLLOUT, dl, intr, &ready, eno);
            if (st != MPC_OK)
                break;
            if (!ready) {
                st = MPC_TIMEOUT;
                break;
            }
            int soerr = 0;
            socklen_t l = sizeof soerr;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0)
                soerr = errno;
            if (soerr == 0)
                break;
            *eno = soerr;
            st = MPC_OS;
            break;
        }
        *eno = e;
        st = MPC_OS;
        break;
    }
    if (st == MPC_OK && nonblock && !now && set_blocking(fd, 1) < 0) {
        *eno = errno;
        st = MPC_OS;
    }
    if (st != MPC_OK && st != MPC_AGAIN) {
        close(fd);
        return st;
    }
    if (!is_unix)
        set_nodelay(fd);
    *fd_out = fd;
    return st;
}

mpc_status mpc__io_connect_done(int fd, int *eno)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT, .revents = 0};
    int r;
    do
        r = poll(&p, 1, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        *eno = errno;
        return MPC_OS;
    }
    if (r == 0)
        return MPC_AGAIN;
    int soerr = 0;
    socklen_t l = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0)
        soerr = errno;
    if (soerr == 0)
        return MPC_OK;
    *eno = soerr;
    return MPC_OS;
}

mpc_status mpc__io_connect(const mpc__addr *a, const char *text, mpc__deadline dl,
                           const mpc__intr *intr, int *fd_out, char *peer, mpc_error *err)
{
    int eno = 0;
    mpc_status st;
    *fd_out = -1;
    peer[0] = '\0';
    if (a->kind != MPC__ADDR_TCP) {
        struct sockaddr_un un;
        socklen_t slen = unix_sockaddr(a, &un);
        st = connect_one((struct sockaddr *)&un, slen, dl, intr, fd_out, &eno);
    } else {
        struct addrinfo *res = NULL, *list[32];
        st = resolve(a, text, 0, &res, err);
        if (st != MPC_OK)
            return st;
        size_t n = ordered(res, list, 32);
        st = MPC_RESOLVE;
        for (size_t i = 0; i < n; i++) {
            st = connect_one(list[i]->ai_addr, list[i]->ai_addrlen, dl, intr, fd_out, &eno);
            if (st == MPC_OK || st == MPC_AGAIN) {
                format_sockaddr(list[i]->ai_addr, list[i]->ai_addrlen, peer,
                                MPC__ADDR_TEXT_MAX);
                break;
            }
            if (st == MPC_TIMEOUT || st == MPC_INTR || dl == MPC__NOW)
                break;
        }
        freeaddrinfo(res);
    }
    switch (st) {
    case MPC_OK: return MPC_OK;
    case MPC_AGAIN: return MPC_AGAIN;
    case MPC_TIMEOUT: return mpc__error(err, st, ETIMEDOUT, "connect to %s: timed out", text);
    case MPC_INTR: return mpc__error(err, st, EINTR, "connect to %s: interrupted", text);
    case MPC_RESOLVE:
        return mpc__error(err, st, 0, "connect to %s: no usable address", text);
    default: return mpc__error(err, st, eno, "connect to %s: %s", text, strerror(eno));
    }
}

/* ------------------------------------------------------------------------
 * Pipes and descriptors
 * ------------------------------------------------------------------------ */
mpc_status mpc__io_pipe(int duplex, int fds[2], mpc_error *err)
{
    int r = duplex ? socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds)
                   : pipe2(fds, O_CLOEXEC);
    if (r < 0) {
        int eno = errno;
        return mpc__error(err, MPC_OS, eno, "%s: %s", duplex ? "socketpair" : "pipe",
                          strerror(eno));
    }
    return MPC_OK;
}

int mpc__io_is_socket(int fd, int *eno)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        *eno = errno;
        return -1;
    }
    return S_ISSOCK(st.st_mode) ? 1 : 0;
}

void mpc__io_close(int fd)
{
    /* On Linux the descriptor is released even when close() reports EINTR,
     * so it must not be retried. */
    if (fd >= 0)
        (void)close(fd);
}

void mpc__io_unlink(const char *path) { (void)unlink(path); }
