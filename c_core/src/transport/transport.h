/*
 * transport.h - internal declarations of the transport layer (never
 * installed): address parsing (addr.c), the system-call layer (io_posix.c,
 * the only file that touches descriptors), and the layouts of the opaque
 * mpc_conn and mpc_listener objects shared by conn.c, listener.c and wait.c.
 * Nothing here knows the wire format; framing and the handshake come from
 * the public mpc_frame_* and mpc_hs_* functions.
 */
#ifndef MPC_TRANSPORT_H
#define MPC_TRANSPORT_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* ------------------------------------------------------------------------
 * Addresses (addr.c, pure)
 * ------------------------------------------------------------------------ */
#define MPC__UNIX_PATH_MAX 107 /* sun_path is 108 bytes; one for the NUL */
#define MPC__HOST_MAX 255
#define MPC__ADDR_TEXT_MAX 128 /* longest formatted address, NUL included */

typedef enum mpc__addr_kind {
    MPC__ADDR_TCP = 1,     /* host:port or [v6]:port */
    MPC__ADDR_UNIX = 2,    /* a filesystem path */
    MPC__ADDR_ABSTRACT = 3 /* @name, Linux abstract namespace */
} mpc__addr_kind;

typedef struct mpc__addr {
    mpc__addr_kind kind;
    int bracketed;                  /* TCP: host was written as [v6] */
    char host[MPC__HOST_MAX + 1];   /* TCP: host without brackets; "" = any */
    unsigned port;                  /* TCP: 0..65535 */
    char path[MPC__UNIX_PATH_MAX + 1]; /* UNIX: the path; ABSTRACT: the name without '@' */
    size_t path_len;
} mpc__addr;

/* Parses the address syntax of mpconn.h section 3 into *out.  MPC_OK or
 * MPC_INVAL with a message in err (may be NULL).  No I/O, no resolution. */
mpc_status mpc__addr_parse(const char *text, mpc__addr *out, mpc_error *err);
/* The same for len bytes of text, which may contain NUL bytes in an
 * abstract name ("@a\0b"); anywhere else they are MPC_INVAL. */
mpc_status mpc__addr_parse_n(const char *text, size_t len, mpc__addr *out, mpc_error *err);

/* ------------------------------------------------------------------------
 * Deadlines and the interrupt hook (io_posix.c)
 * ------------------------------------------------------------------------ */
/* An absolute CLOCK_MONOTONIC time in milliseconds, or MPC__NO_DEADLINE. */
typedef int64_t mpc__deadline;
#define MPC__NO_DEADLINE ((mpc__deadline)-1)
/* "Do not wait at all": the non-blocking mode's deadline.  A call that
 * would wait returns MPC_AGAIN (instead of MPC_TIMEOUT); the descriptor is
 * then O_NONBLOCK, so reads and writes are simply tried. */
#define MPC__NOW ((mpc__deadline)-2)

/* timeout < 0: no deadline; otherwise now + timeout. */
mpc__deadline mpc__deadline_in(mpc_ms timeout);
/* The earlier of two deadlines. */
mpc__deadline mpc__deadline_min(mpc__deadline a, mpc__deadline b);

typedef struct mpc__intr {
    int (*fn)(void *arg);
    void *arg;
    /* Reads and polls that wait also watch this descriptor (-1: none) and
     * return MPC_CLOSED once it is readable (mpc_conn_wake()). */
    int wake_fd;
} mpc__intr;

/* ------------------------------------------------------------------------
 * System calls (io_posix.c).  Every function retries EINTR with the
 * remaining deadline unless the hook asks to abort (MPC_INTR), and returns
 * MPC_TIMEOUT when the deadline passes.  *eno receives errno for MPC_OS.
 * ------------------------------------------------------------------------ */

/* One read (readv) into iov once data is there.  *got = bytes read, 0 at
 * end of file.  MPC_OK, MPC_TIMEOUT, MPC_INTR, MPC_OS. */
mpc_status mpc__io_read(int fd, struct iovec *iov, int iovcnt, mpc__deadline dl,
                        const mpc__intr *intr, size_t *got, int *eno);

/* What mpc__io_write() writes to: a socket (sendmsg with MSG_NOSIGNAL), a
 * pipe, or a pipe whose writes block SIGPIPE around the call (when the
 * signal would kill the process: see mpc__io_sigpipe_kills()). */
#define MPC__IO_PIPE 0
#define MPC__IO_SOCKET 1
#define MPC__IO_PIPE_GUARDED 2

/* 1 when SIGPIPE is neither ignored nor blocked in the calling thread. */
int mpc__io_sigpipe_kills(void);

/* Writes all of iov (iov is modified as it is consumed); sockets use
 * sendmsg with MSG_NOSIGNAL; is_socket is one of MPC__IO_*.  *put = bytes written, also on failure.
 * MPC_OK, MPC_TIMEOUT, MPC_INTR, MPC_OS. */
mpc_status mpc__io_write(int fd, int is_socket, struct iovec *iov, int iovcnt, mpc__deadline dl,
                         const mpc__intr *intr, size_t *put, int *eno);

/* Waits until fd is readable (or at end of file / in error) up to dl.
 * *ready = 1 or 0.  MPC_OK, MPC_INTR, MPC_OS, MPC_CLOSED (woken). */
mpc_status mpc__io_wait_readable(int fd, mpc__deadline dl, const mpc__intr *intr, int *ready,
                                 int *eno);

/* Waits until at least one of n descriptors (negative ones are ignored) is
 * readable, then sets ready[i].  force_ready entries (may be NULL) count as
 * ready without waiting, and make the call not block.  *nready = count.
 * MPC_OK, MPC_NOMEM, MPC_INTR, MPC_OS. */
mpc_status mpc__io_wait_many(const int *fds, const unsigned char *force_ready, size_t n,
                             mpc__deadline dl, const mpc__intr *intr, int *ready, size_t *nready,
                             int *eno);

/* Waits until fd is readable (want & MPC_WANT_READ) or writable
 * (MPC_WANT_WRITE) up to dl.  *ready = 1 or 0.  MPC_OK, MPC_INTR, MPC_OS. */
mpc_status mpc__io_wait(int fd, int want, mpc__deadline dl, const mpc__intr *intr, int *ready,
                        int *eno);

/* One send (MSG_NOSIGNAL) / recv that never waits, whatever the
 * descriptor's mode: the byte count, 0 at end of file (recv), or -1 with
 * errno (EAGAIN when it would wait).  For the TLS layer's BIO. */
long mpc__io_send_nowait(int fd, const void *buf, size_t len);
long mpc__io_recv_nowait(int fd, void *buf, size_t len);

/* Sets (blocking = 0) or clears O_NONBLOCK on fd.  MPC_OK or MPC_OS. */
mpc_status mpc__io_set_blocking(int fd, int blocking, int *eno);

/* Whether a connect started with dl = MPC__NOW (mpc__io_connect() returned
 * MPC_AGAIN) has finished: MPC_OK (connected), MPC_AGAIN (not yet: wait for
 * writability), MPC_OS (*eno = the connect's error, e.g. ECONNREFUSED). */
mpc_status mpc__io_connect_done(int fd, int *eno);

/* Creates a listening socket for a.  On success *fd (non-blocking,
 * close-on-exec), bound (the real address, MPC__ADDR_TEXT_MAX bytes) and
 * *family ("AF_INET", "AF_INET6", "AF_UNIX").  MPC_RESOLVE, MPC_OS. */
mpc_status mpc__io_listen(const mpc__addr *a, const char *text, int backlog, unsigned unix_mode,
                          int *fd, char *bound, const char **family, mpc_error *err);

/* Accepts one client within dl (MPC__NOW: MPC_AGAIN when none is waiting,
 * and *fd is non-blocking).  *fd is otherwise blocking, close-on-exec, TCP_NODELAY
 * for TCP; peer (MPC__ADDR_TEXT_MAX bytes) is "host:port" or "".  wake_fd
 * (may be -1) is watched too: once it is readable the call returns
 * MPC_CLOSED.  MPC_TIMEOUT, MPC_INTR, MPC_OS, MPC_CLOSED. */
mpc_status mpc__io_accept(int lfd, int wake_fd, mpc__deadline dl, const mpc__intr *intr, int *fd,
                          char *peer, mpc_error *err);

/* An eventfd for waking a waiting call (close-on-exec, non-blocking), or -1
 * with *eno; mpc__io_wake() makes it readable for good. */
int mpc__io_wake_fd(int *eno);
void mpc__io_wake(int wake_fd);

/* Copies up to cap bytes that are waiting on socket fd without consuming
 * them and without waiting; the count, 0 if none or on any error. */
size_t mpc__io_peek(int fd, void *buf, size_t cap);

/* shutdown(fd, SHUT_RDWR): MPC_OK or MPC_OS with *eno. */
mpc_status mpc__io_shutdown(int fd, int *eno);

/* Connects to a within dl.  *fd is blocking, close-on-exec, TCP_NODELAY for
 * TCP; peer as for accept.  Messages start "connect to <text>: ".
 * MPC_RESOLVE, MPC_TIMEOUT, MPC_INTR, MPC_OS.  With dl = MPC__NOW the
 * socket is non-blocking and only its first address is tried; MPC_AGAIN
 * (with *fd and peer set) when the connect is in progress: see
 * mpc__io_connect_done(). */
mpc_status mpc__io_connect(const mpc__addr *a, const char *text, mpc__deadline dl,
                           const mpc__intr *intr, int *fd, char *peer, mpc_error *err);

/* socketpair (duplex) or pipe2 (fds[0] reader, fds[1] writer), CLOEXEC. */
mpc_status mpc__io_pipe(int duplex, int fds[2], mpc_error *err);

/* 1 if fd is a socket, 0 if not, -1 (errno in *eno) if fd is not open. */
int mpc__io_is_socket(int fd, int *eno);
/* The TCP peer of a connected socket as "host:port"/"[v6]:port", else "". */
void mpc__io_peer_name(int fd, char *out, size_t cap);
void mpc__io_close(int fd);
void mpc__io_unlink(const char *path);

/* ------------------------------------------------------------------------
 * TLS (tls.c, the only file that knows libssl).  Reads and writes have the
 * contract of mpc__io_read()/mpc__io_write() (deadlines, EINTR through the
 * hook, MPC__NOW = MPC_AGAIN instead of waiting) plus MPC_TLS, whose text
 * mpc__tls_errmsg() holds, and *want: what an MPC_AGAIN waits for (a TLS
 * read may need the descriptor writable, and the reverse).
 * ------------------------------------------------------------------------ */
typedef struct mpc__tls_ctx mpc__tls_ctx;
typedef struct mpc__tls mpc__tls;

/* A context for clients (server = 0) or a listener from *o.  MPC_TLS (a
 * file that cannot be loaded ...) with err filled. */
mpc_status mpc__tls_ctx_new(const mpc_tls_options *o, int server, mpc__tls_ctx **out,
                            mpc_error *err);
void mpc__tls_ctx_free(mpc__tls_ctx *ctx);

/* TLS on connected socket fd (not owned); a client verifies the server's
 * certificate against server_name (a DNS name or IP address; NULL = the
 * context's) unless the context says not to. */
mpc_status mpc__tls_new(mpc__tls_ctx *ctx, int fd, const char *server_name, mpc__tls **out,
                        mpc_error *err);
void mpc__tls_free(mpc__tls *t);

mpc_status mpc__tls_handshake(mpc__tls *t, mpc__deadline dl, const mpc__intr *intr, int *want,
                              int *eno);
mpc_status mpc__tls_read(mpc__tls *t, void *buf, size_t len, mpc__deadline dl,
                         const mpc__intr *intr, size_t *got, int *want, int *eno);
mpc_status mpc__tls_write(mpc__tls *t, struct iovec *iov, int iovcnt, mpc__deadline dl,
                          const mpc__intr *intr, size_t *put, int *want, int *eno);
/* 1 while records TLS wrote are still in its send buffer (non-blocking
 * mode leaves them there when the socket is full); mpc__tls_flush() sends
 * them (MPC_OK when none is left, MPC_AGAIN with MPC__NOW). */
int mpc__tls_unflushed(const mpc__tls *t);
mpc_status mpc__tls_flush(mpc__tls *t, mpc__deadline dl, const mpc__intr *intr, int *eno);
/* Decrypted or received bytes TLS holds that no read has taken yet. */
int mpc__tls_pending(const mpc__tls *t);
/* The text of the last MPC_TLS (library-owned, in t). */
const char *mpc__tls_errmsg(const mpc__tls *t);

/* ------------------------------------------------------------------------
 * Objects (conn.c, listener.c, wait.c)
 * ------------------------------------------------------------------------ */
#define MPC__RBUF_CAP ((size_t)64 * 1024)

struct mpc_conn {
    int fd;                      /* -1 once closed (read-only conn after TOOLONG) */
    unsigned char readable;
    unsigned char writable;
    unsigned char is_socket;
    unsigned char pipe_guard;    /* pipe writes block SIGPIPE (MPC__IO_PIPE_GUARDED) */
    int wake_fd;                 /* eventfd of mpc_conn_set_wakeable(), or -1 */
    mpc_status broken;           /* sticky failure, MPC_OK while healthy */
    char broken_msg[MPC_ERRMSG_MAX];

    mpc_ms io_timeout;           /* <= 0: none */
    uint64_t max_message_size;   /* 0: no limit */
    mpc__intr intr;

    /* Read buffer: rbuf[rpos, rend) holds bytes read and not yet used.
     * Exact reads (the default) use hbuf, which only ever holds the header
     * being read; read-ahead uses the 64 KiB block. */
    unsigned char read_ahead;    /* mpc_options.read_ahead */
    unsigned char *rbuf_block;   /* what malloc returned (read-ahead) */
    unsigned char *rbuf;         /* where the buffer starts (page offset 2112) */
    size_t rpos, rend;
    unsigned char hbuf[MPC_FRAME_HEADER_MAX];

    /* Incoming message state. */
    mpc_frame_decoder dec;
    size_t hdr_have;             /* header bytes fed into dec so far */
    int pending;                 /* a header is parsed, its payload is pending */
    uint64_t pend_len;           /* declared payload length */
    uint64_t pend_left;          /* payload bytes not yet delivered */

    /* Non-blocking mode (mpc_conn_set_blocking()). */
    unsigned char nonblocking;
    unsigned char connecting;    /* a non-blocking connect is in progress */
    unsigned char nb_inbuf;      /* the fetched message lies in rbuf, not nb_buf */
    int want;                    /* MPC_WANT_* of the last MPC_AGAIN */
    unsigned char *out;          /* queued output: out[opos, olen) */
    size_t opos, olen, ocap;
    unsigned char *nb_buf;       /* the payload of a message received in part */
    size_t nb_cap;
    struct mpc__hs *hs;          /* a handshake in progress (non-blocking) */

    /* TLS (mpc_options.tls), NULL = plaintext. */
    mpc__tls *tls;
    unsigned char tls_handshaking; /* non-blocking: its handshake is in progress */
    int tls_want;                /* what the last TLS MPC_AGAIN waits for */

    char peer[MPC__ADDR_TEXT_MAX];
    mpc_status last;
    int last_errno;
    char msg[MPC_ERRMSG_MAX];
};

struct mpc_listener {
    int fd;
    int wake_fd;                 /* eventfd that mpc_listener_wake() signals */
    char address[MPC__ADDR_TEXT_MAX];
    const char *family;
    int unlink_on_close;
    pid_t owner;                 /* the process that created the socket file */
    char path[MPC__UNIX_PATH_MAX + 1];

    mpc_options opts;            /* authkey and digest point into the fields below */
    mpc__tls_ctx *tls;           /* TLS for every accepted client, or NULL */
    unsigned char *key;          /* owned copy of the authkey (NULL = none) */
    char digest[16];
    mpc__intr intr;

    char last_peer[MPC__ADDR_TEXT_MAX]; /* of the last client accepted */
    char msg[MPC_ERRMSG_MAX];
};

/* Makes a connection object around fd (takes ownership only on success). */
mpc_status mpc__conn_new(int fd, int readable, int writable, int is_socket, const char *peer,
                         const mpc_options *opts, mpc_conn **out, mpc_error *err);

/* Runs both handshake legs (deliver first when server != 0) under one
 * deadline.  On failure the conn's message says why. */
mpc_status mpc__conn_handshake(mpc_conn *c, int server, const mpc_options *opts);

/* Starts TLS on c (ctx's side; a client checks server_name): blocking, the
 * whole TLS handshake under opts' handshake deadline; non-blocking, it is
 * left to mpc_flush().  On failure the conn's message says why. */
mpc_status mpc__conn_start_tls(mpc_conn *c, mpc__tls_ctx *ctx, const char *server_name,
                               const mpc_options *opts);

/* Copies the conn's last failure into err (may be NULL). */
void mpc__conn_error_to(const mpc_conn *c, mpc_error *err);

/* Frees the object without touching the descriptor. */
void mpc__conn_free(mpc_conn *c);

/* 1 when data (a partial or whole message) is already buffered. */
int mpc__conn_has_input(const mpc_conn *c);

#endif
