/*
 * bench_c.c - the C side of the benchmark: two plain C baselines (the same
 * framing written by hand, one writev of header and payload per message)
 * and mpconn C<->C in both read modes, with the same driver so all are
 * measured identically.
 *
 *   bench_c IMPL MODE SIZE COUNT TRANSPORT PIN
 *     IMPL       plain     plain C with CPython's read pattern: a read for
 *                          the header, then the payload (2 reads per message)
 *                plainbuf  the best plain C (SPEC 6): a buffered reader, one
 *                          read of up to 256 KiB serves many small frames,
 *                          large payloads are read straight into their buffer
 *                mpconn    mpconn C, default (exact) reads
 *                mpconn-ra mpconn C, read-ahead on both ends
 *                mpconn-tls mpconn C over TLS (default reads, no authkey, as
 *                          the mpconn rows), TCP only
 *     MODE       pingpong | stream | batch | connect | connect-auth |
 *                connect-tls
 *                (batch: mpconn*; connect*: mpconn only, SIZE ignored;
 *                connect-tls: the TLS handshake and then the authkey one,
 *                TCP only)
 *     TRANSPORT  unix | tcp
 *
 * TLS needs certificates from tests/tls/make_certs.sh: the directory is
 * $MPCONN_BENCH_CERTS (bench/run.py makes one per run); the server uses
 * server.pem/.key, the client verifies it with ca.pem (the default
 * verification of a client, name checked against 127.0.0.1).
 *     PIN        1 = both processes on CPU 0, 0 = free
 *
 * Prints one JSON object: {"impl":..., "ops_per_s":..., "mb_per_s":...,
 * "p50_us":..., "p99_us":...}.  Latency percentiles are for pingpong only.
 * The parent is the client and measures; a forked child is the server.
 */
#include "mpconn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static void pin_cpu0(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        die("sched_setaffinity");
}

/* ---- plain C baseline: hand-written framing, blocking sockets ---- */

static void full_write(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("writev");
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
}

static void full_read(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("read");
        p += r;
        len -= (size_t)r;
    }
}

static void plain_send(int fd, const void *buf, size_t len)
{
    uint32_t hdr = htonl((uint32_t)len);
    struct iovec iov[2] = {{&hdr, 4}, {(void *)buf, len}};
    full_write(fd, iov, len ? 2 : 1);
}

static size_t plain_recv(int fd, void *buf)
{
    uint32_t hdr;
    full_read(fd, &hdr, 4);
    size_t len = ntohl(hdr);
    full_read(fd, buf, len);
    return len;
}

static int plain_listen(const char *transport, char *addr, size_t cap)
{
    int fd;
    if (strcmp(transport, "tcp") == 0) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sa;
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1) != 0)
            die("listen");
        getsockname(fd, (struct sockaddr *)&sa, &sl);
        snprintf(addr, cap, "127.0.0.1:%d", ntohs(sa.sin_port));
    } else {
        struct sockaddr_un su = {.sun_family = AF_UNIX};
        snprintf(su.sun_path, sizeof su.sun_path, "/tmp/mpconn-bench-%d.sock", (int)getpid());
        unlink(su.sun_path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&su, sizeof su) != 0 || listen(fd, 1) != 0)
            die("listen");
        snprintf(addr, cap, "%s", su.sun_path);
    }
    return fd;
}

static int plain_connect(const char *addr)
{
    int fd;
    if (addr[0] == '/') {
        struct sockaddr_un su = {.sun_family = AF_UNIX};
        snprintf(su.sun_path, sizeof su.sun_path, "%s", addr);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&su, sizeof su) != 0)
            die("connect");
    } else {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        sa.sin_port = htons((uint16_t)atoi(strchr(addr, ':') + 1));
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
            die("connect");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

/* ---- the best plain C: the same framing through a buffered reader ---- */

#define BUF_CAP ((size_t)256 * 1024)
/* A payload part at least this long is read straight into its buffer. */
#define BUF_DIRECT (BUF_CAP / 4)

typedef struct buf_reader {
    int fd;
    char *buf; /* BUF_CAP bytes */
    size_t pos, end;
} buf_reader;

/* Reads once (up to the free space), after moving what is left to the front. */
static void buf_fill(buf_reader *r)
{
    if (r->pos == r->end) {
        r->pos = r->end = 0;
    } else if (r->pos > 0 && BUF_CAP - r->end < 64 * 1024) {
        memmove(r->buf, r->buf + r->pos, r->end - r->pos);
        r->end -= r->pos;
        r->pos = 0;
    }
    for (;;) {
        ssize_t n = read(r->fd, r->buf + r->end, BUF_CAP - r->end);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("read");
        r->end += (size_t)n;
        return;
    }
}

static size_t plainbuf_recv(buf_reader *r, void *dst)
{
    while (r->end - r->pos < 4)
        buf_fill(r);
    uint32_t hdr;
    memcpy(&hdr, r->buf + r->pos, 4);
    r->pos += 4;
    size_t len = ntohl(hdr), have = r->end - r->pos;
    if (have >= len) { /* the whole frame is buffered: the small-message path */
        memcpy(dst, r->buf + r->pos, len);
        r->pos += len;
        return len;
    }
    memcpy(dst, r->buf + r->pos, have);
    r->pos = r->end = 0;
    char *p = (char *)dst + have;
    size_t left = len - have;
    while (left > 0) {
        if (left >= BUF_DIRECT) {
            full_read(r->fd, p, left);
            break;
        }
        buf_fill(r);
        size_t k = r->end - r->pos < left ? r->end - r->pos : left;
        memcpy(p, r->buf + r->pos, k);
        r->pos += k;
        p += k;
        left -= k;
    }
    return len;
}

static buf_reader *plainbuf_new(int fd)
{
    buf_reader *r = calloc(1, sizeof *r);
    /* 64 bytes into the allocation, away from page offset 0 (SPEC 6). */
    r->buf = (char *)malloc(BUF_CAP + 128) + 64;
    r->fd = fd;
    return r;
}

/* ---- the generic driver over a small ops table ---- */

typedef struct bench_io {
    void (*send)(void *h, const void *buf, size_t len);
    void (*send_many)(void *h, const void *buf, size_t len, size_t n);
    size_t (*recv)(void *h, void *buf);
} bench_io;

static void plain_send_op(void *h, const void *b, size_t n) { plain_send(*(int *)h, b, n); }
static size_t plain_recv_op(void *h, void *b) { return plain_recv(*(int *)h, b); }
static void plainbuf_send_op(void *h, const void *b, size_t n)
{
    plain_send(((buf_reader *)h)->fd, b, n);
}
static size_t plainbuf_recv_op(void *h, void *b) { return plainbuf_recv(h, b); }

static void mpc_check(mpc_status st, mpc_conn *c, const char *what)
{
    if (st != MPC_OK) {
        fprintf(stderr, "%s: %s\n", what, c ? mpc_conn_errmsg(c) : mpc_strerror(st));
        exit(2);
    }
}
static void mpc_send_op(void *h, const void *b, size_t n) { mpc_check(mpc_send_bytes(h, b, n), h, "send"); }
static void mpc_send_many_op(void *h, const void *b, size_t n, size_t count)
{
    mpc_buf bufs[256];
    while (count > 0) {
        size_t k = count < 256 ? count : 256;
        for (size_t i = 0; i < k; i++)
            bufs[i] = (mpc_buf){b, n};
        mpc_check(mpc_send_many(h, bufs, k), h, "send_many");
        count -= k;
    }
}
/* Capacity of the receive buffers (set once in main). */
static size_t g_cap;

static size_t mpc_recv_op(void *h, void *b)
{
    size_t len;
    mpc_check(mpc_recv_bytes_into(h, b, g_cap, &len), h, "recv_into");
    return len;
}

static const bench_io PLAIN = {plain_send_op, NULL, plain_recv_op};
static const bench_io PLAINBUF = {plainbuf_send_op, NULL, plainbuf_recv_op};
static const bench_io MPC = {mpc_send_op, mpc_send_many_op, mpc_recv_op};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void server(const bench_io *io, void *h, const char *mode, size_t size, long count,
                   char *buf)
{
    if (strcmp(mode, "pingpong") == 0) {
        for (long i = 0; i < count; i++) {
            size_t n = io->recv(h, buf);
            io->send(h, buf, n);
        }
    } else {
        for (long i = 0; i < count; i++)
            io->recv(h, buf);
        io->send(h, "k", 1);
    }
    (void)size;
}

/* TLS options from $MPCONN_BENCH_CERTS: the listener's (certificate and
 * key) and the client's (the CA that signed it). */
static char g_cert[512], g_key[512], g_ca[512];
static mpc_tls_options g_tls_server, g_tls_client;

static int tls_setup(const char *transport)
{
    const char *dir = getenv("MPCONN_BENCH_CERTS");
    if (strcmp(transport, "tcp") != 0) {
        fprintf(stderr, "TLS rows run over TCP only\n");
        return -1;
    }
    if (!dir || !*dir) {
        fprintf(stderr, "TLS rows need MPCONN_BENCH_CERTS: a directory made by "
                        "`bash tests/tls/make_certs.sh DIR`\n");
        return -1;
    }
    snprintf(g_cert, sizeof g_cert, "%s/server.pem", dir);
    snprintf(g_key, sizeof g_key, "%s/server.key", dir);
    snprintf(g_ca, sizeof g_ca, "%s/ca.pem", dir);
    g_tls_server.certificate = g_cert;
    g_tls_server.key = g_key;
    g_tls_client.cafile = g_ca;
    return 0;
}

/* Connections per second through mpc_connect + mpc_listener_accept + one
 * 1-byte message, with or without the authkey handshake (mode "connect" /
 * "connect-auth"), or with TLS and then the authkey handshake
 * ("connect-tls"): the differences are what the handshakes cost, compared
 * with the connect itself. */
static int connect_bench(const char *transport, long count, int auth, int tls)
{
    char spec[128];
    if (strcmp(transport, "tcp") == 0)
        snprintf(spec, sizeof spec, "127.0.0.1:0");
    else
        snprintf(spec, sizeof spec, "/tmp/mpconn-bench-%d.sock", (int)getpid());
    unlink(spec);
    mpc_options o, co;
    mpc_options_init(&o);
    o.backlog = 64;
    if (auth) {
        o.authkey = "bench-key";
        o.authkey_len = 9;
    }
    co = o; /* the client's: the same but for TLS */
    if (tls) {
        o.tls = &g_tls_server;
        co.tls = &g_tls_client;
    }
    mpc_error err;
    mpc_listener *l;
    if (mpc_listen(spec, &o, &l, &err) != MPC_OK) {
        fprintf(stderr, "listen: %s\n", err.message);
        return 2;
    }
    char addr[256];
    snprintf(addr, sizeof addr, "%s", mpc_listener_address(l));
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        for (long i = 0; i < count; i++) {
            mpc_conn *c;
            if (mpc_listener_accept(l, MPC_FOREVER, &c, &err) != MPC_OK) {
                fprintf(stderr, "accept: %s\n", err.message);
                _exit(2);
            }
            /* One message so the client cannot run ahead of accept (it
             * would overflow the backlog and measure SYN retries). */
            if (mpc_send_bytes(c, "k", 1) != MPC_OK)
                _exit(2);
            mpc_conn_close(c);
        }
        _exit(0);
    }
    double t0 = now_s();
    for (long i = 0; i < count; i++) {
        mpc_conn *c;
        if (mpc_connect(addr, &co, &c, &err) != MPC_OK) {
            fprintf(stderr, "connect: %s\n", err.message);
            return 2;
        }
        char k;
        size_t n;
        if (mpc_recv_bytes_into(c, &k, 1, &n) != MPC_OK) {
            fprintf(stderr, "recv: %s\n", mpc_conn_errmsg(c));
            return 2;
        }
        mpc_conn_close(c);
    }
    int status;
    waitpid(child, &status, 0);
    double secs = now_s() - t0;
    mpc_listener_close(l);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return 2;
    printf("{\"impl\": \"c-mpconn\", \"mode\": \"%s\", \"size\": 0, \"count\": %ld, "
           "\"seconds\": %.6f, \"ops_per_s\": %.1f, \"mb_per_s\": 0, \"p50_us\": %.2f, "
           "\"p99_us\": 0}\n",
           tls ? "connect-tls" : auth ? "connect-auth" : "connect", count, secs,
           (double)count / secs,
           secs / (double)count * 1e6);
    return 0;
}

/* Sets the read mode explicitly on an end (the options already asked for it)
 * and checks that it took. */
static void set_mode(mpc_conn *c, int ra)
{
    mpc_check(mpc_conn_set_read_ahead(c, ra), c, "set_read_ahead");
    if (mpc_conn_read_ahead(c) != ra) {
        fprintf(stderr, "read mode not set\n");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: bench_c plain|plainbuf|mpconn|mpconn-ra|mpconn-tls "
                        "pingpong|stream|batch|connect|connect-auth|connect-tls SIZE COUNT "
                        "unix|tcp PIN\n");
        return 2;
    }
    const char *impl = argv[1], *mode = argv[2], *transport = argv[5];
    size_t size = strtoull(argv[3], NULL, 10);
    long count = atol(argv[4]);
    int pin = atoi(argv[6]);
    int is_ra = strcmp(impl, "mpconn-ra") == 0;
    int is_tls = strcmp(impl, "mpconn-tls") == 0;
    int is_mpc = is_ra || is_tls || strcmp(impl, "mpconn") == 0;
    int is_buf = strcmp(impl, "plainbuf") == 0;
    if (!is_mpc && !is_buf && strcmp(impl, "plain") != 0) {
        fprintf(stderr, "unknown implementation %s\n", impl);
        return 2;
    }
    const char *label = is_ra ? "c-mpconn-ra" : is_tls ? "c-mpconn-tls" : is_mpc ? "c-mpconn"
                                                         : is_buf ? "c-plainbuf" : "c-plain";
    const bench_io *io = is_mpc ? &MPC : is_buf ? &PLAINBUF : &PLAIN;
    if (strncmp(mode, "connect", 7) == 0) {
        int tls = strcmp(mode, "connect-tls") == 0;
        if (!is_mpc || is_ra || is_tls) {
            fprintf(stderr, "connect modes need mpconn (connect-tls is the TLS one)\n");
            return 2;
        }
        if (tls && tls_setup(transport) < 0)
            return 2;
        signal(SIGPIPE, SIG_IGN);
        if (pin)
            pin_cpu0();
        return connect_bench(transport, count, tls || strcmp(mode, "connect-auth") == 0, tls);
    }
    if (strcmp(mode, "batch") == 0 && (!is_mpc || is_tls)) {
        fprintf(stderr, "batch needs mpconn (without TLS)\n");
        return 2;
    }
    if (is_tls && tls_setup(transport) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    if (pin)
        pin_cpu0();

    /* Buffers start 64 bytes into their allocation (4K-aliasing, SPEC 6). */
    char *sbuf = (char *)malloc(size + 128) + 64, *rbuf = (char *)malloc(size + 128) + 64;
    memset(sbuf, 'x', size);
    g_cap = size + 64;

    char addr[256];
    mpc_listener *l = NULL;
    int lfd = -1;
    mpc_options opts, copts;
    mpc_options_init(&opts);
    opts.read_ahead = is_ra;
    copts = opts;
    if (is_tls) {
        opts.tls = &g_tls_server;
        copts.tls = &g_tls_client;
    }
    if (is_mpc) {
        char spec[128];
        if (strcmp(transport, "tcp") == 0)
            snprintf(spec, sizeof spec, "127.0.0.1:0");
        else
            snprintf(spec, sizeof spec, "/tmp/mpconn-bench-%d.sock", (int)getpid());
        unlink(spec);
        mpc_error err;
        if (mpc_listen(spec, &opts, &l, &err) != MPC_OK) {
            fprintf(stderr, "listen: %s\n", err.message);
            return 2;
        }
        snprintf(addr, sizeof addr, "%s", mpc_listener_address(l));
    } else {
        lfd = plain_listen(transport, addr, sizeof addr);
    }

    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        void *h;
        int fd;
        mpc_conn *c = NULL;
        if (is_mpc) {
            mpc_error err;
            if (mpc_listener_accept(l, MPC_FOREVER, &c, &err) != MPC_OK) {
                fprintf(stderr, "accept: %s\n", err.message);
                _exit(2);
            }
            set_mode(c, is_ra);
            h = c;
        } else {
            fd = accept(lfd, NULL, NULL);
            if (fd < 0)
                die("accept");
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            h = is_buf ? (void *)plainbuf_new(fd) : (void *)&fd;
        }
        server(io, h, mode, size, count, rbuf);
        mpc_conn_close(c);
        _exit(0);
    }

    void *h;
    int fd;
    mpc_conn *c = NULL;
    if (is_mpc) {
        mpc_error err;
        if (mpc_connect(addr, &copts, &c, &err) != MPC_OK) {
            fprintf(stderr, "connect: %s\n", err.message);
            return 2;
        }
        set_mode(c, is_ra);
        h = c;
    } else {
        fd = plain_connect(addr);
        h = is_buf ? (void *)plainbuf_new(fd) : (void *)&fd;
    }

    double *lat = NULL;
    double t0 = now_s(), t1;
    if (strcmp(mode, "pingpong") == 0) {
        lat = malloc(sizeof(double) * (size_t)count);
        for (long i = 0; i < count; i++) {
            double a = now_s();
            io->send(h, sbuf, size);
            io->recv(h, rbuf);
            lat[i] = now_s() - a;
        }
    } else if (strcmp(mode, "batch") == 0) {
        io->send_many(h, sbuf, size, (size_t)count);
        io->recv(h, rbuf);
    } else {
        for (long i = 0; i < count; i++)
            io->send(h, sbuf, size);
        io->recv(h, rbuf);
    }
    t1 = now_s();
    int status;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "server failed\n");
        return 2;
    }

    double secs = t1 - t0, p50 = 0, p99 = 0;
    if (lat) {
        qsort(lat, (size_t)count, sizeof *lat, cmp_double);
        p50 = lat[count / 2] * 1e6;
        p99 = lat[(long)((double)count * 0.99)] * 1e6;
    }
    printf("{\"impl\": \"%s\", \"mode\": \"%s\", \"size\": %zu, \"count\": %ld, "
           "\"seconds\": %.6f, \"ops_per_s\": %.1f, \"mb_per_s\": %.1f, \"p50_us\": %.2f, "
           "\"p99_us\": %.2f}\n",
           label, mode, size, count, secs, (double)count / secs,
           (double)count * (double)size / secs / 1e6, p50, p99);
    if (is_mpc) {
        mpc_conn_close(c);
        mpc_listener_close(l);
    } else if (transport[0] == 'u') {
        unlink(addr);
    }
    return 0;
}
