/*
 * test_recv.c - the receive path's read pattern, over socketpairs and TCP
 * loopback: after a large message the next header is read alone (so the
 * next payload goes straight to its destination and is not copied through
 * the read buffer), small messages are still read many per call after one,
 * mixed sizes written in odd pieces arrive byte-exact and in order through
 * every receive call, and a deadline or end of file in the header or the
 * payload that follows a large message still behaves: in step, or broken.
 * Every test but the read-ahead-specific one runs twice: with exact reads
 * (the default) and with read-ahead.  Exact reads leave every byte past the
 * message they return in the kernel (checked with FIONREAD).  Port 0 only; every blocking call has a deadline or a writer.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "transport/transport.h"

/* Large: above half the 64 KiB read buffer, so read straight into the
 * destination; the size sits between the two so that it says nothing
 * about buffer boundaries. */
#define LARGE ((size_t)40000)

/* ---------------------------------------------------------------- helpers */

static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n ? n : 1);
    assert_non_null(p);
    uint32_t x = seed * 2654435761u + 7;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (unsigned char)(x >> 16);
    }
    return p;
}

static void write_fd(int fd, const void *data, size_t n)
{
    const unsigned char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        assert_true(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

/* The 4-byte header, or with ext the -1 + 8-byte form CPython uses above
 * 2 GiB (any length may be sent that way). */
static size_t header(uint64_t len, int ext, unsigned char out[MPC_FRAME_HEADER_MAX])
{
    if (!ext)
        return mpc_frame_header(len, out);
    memset(out, 0xff, 4);
    for (int i = 0; i < 8; i++)
        out[4 + i] = (unsigned char)(len >> (56 - 8 * i));
    return 12;
}

static void write_message(int fd, const void *payload, size_t n, int ext)
{
    unsigned char h[MPC_FRAME_HEADER_MAX];
    write_fd(fd, h, header(n, ext, h));
    write_fd(fd, payload, n);
}

static void expect_message(mpc_conn *c, const void *want, size_t n)
{
    void *out = NULL;
    size_t len = 0;
    mpc_status st = mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len);
    if (st != MPC_OK)
        fail_msg("recv: %s", mpc_conn_errmsg(c));
    assert_int_equal(len, n);
    assert_memory_equal(out, want, n);
    mpc_free(out);
}

/* A connected pair: socketpair (tcp = 0) or TCP loopback (tcp = 1).  The
 * writer side is b; tests write raw frames into its descriptor. */
/* The read mode of the reading side a (set per group run in main()). */
static int g_read_ahead;

static void make_pair_mode(int tcp, const mpc_options *o, mpc_conn **a, mpc_conn **b);

static void make_pair(int tcp, const mpc_options *o, mpc_conn **a, mpc_conn **b)
{
    make_pair_mode(tcp, o, a, b);
    assert_int_equal(mpc_conn_set_read_ahead(*a, g_read_ahead), MPC_OK);
}

static void make_pair_mode(int tcp, const mpc_options *o, mpc_conn **a, mpc_conn **b)
{
    mpc_error e;
    if (!tcp) {
        if (mpc_pipe(1, o, a, b, &e) != MPC_OK)
            fail_msg("mpc_pipe: %s", e.message);
        return;
    }
    mpc_listener *l = NULL;
    if (mpc_listen("127.0.0.1:0", NULL, &l, &e) != MPC_OK)
        fail_msg("listen: %s", e.message);
    /* Without a key the connect completes through the backlog. */
    if (mpc_connect(mpc_listener_address(l), NULL, b, &e) != MPC_OK)
        fail_msg("connect: %s", e.message);
    if (mpc_listener_accept(l, 10000, a, &e) != MPC_OK)
        fail_msg("accept: %s", e.message);
    mpc_listener_close(l);
    if (o)
        mpc_conn_set_timeout(*a, o->io_timeout);
}

/* ---------------------------------------------------------------- tests */

/* The read pattern itself, seen through mpc_conn_buffered(): it would fail
 * if the buffer went back to taking 64 KiB after a large message (the next
 * payload copied twice), or stopped batching small messages. */
static void after_a_large_message_the_next_header_is_read_alone(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    make_pair_mode(0, NULL, &a, &b);
    assert_int_equal(mpc_conn_set_read_ahead(a, 1), MPC_OK);
    int fd = mpc_conn_fileno(b);
    unsigned char *m1 = pattern(LARGE, 1), *m2 = pattern(LARGE, 2), *m3 = pattern(LARGE, 3);
    unsigned char *dst = malloc(LARGE);
    size_t len;
    uint64_t l64;

    /* Nothing received yet: a small message is expected, one read takes
     * the whole first message. */
    write_message(fd, m1, LARGE, 0);
    expect_message(a, m1, LARGE);
    assert_int_equal(mpc_conn_buffered(a), 0);

    /* Two large messages and three small ones, all written already. */
    write_message(fd, m2, LARGE, 0);
    write_message(fd, m3, LARGE, 0);
    write_message(fd, "a", 1, 0);
    write_message(fd, "bc", 2, 0);
    write_message(fd, "def", 3, 0);

    /* The header alone; none of the payload went into the buffer. */
    assert_int_equal(mpc_recv_begin(a, MPC_NO_LIMIT, &l64), MPC_OK);
    assert_int_equal(l64, LARGE);
    assert_int_equal(mpc_conn_buffered(a), 0);
    /* The payload straight in, the next header with it, nothing more. */
    assert_int_equal(mpc_recv_payload(a, dst, LARGE), MPC_OK);
    assert_memory_equal(dst, m2, LARGE);
    assert_int_equal(mpc_conn_buffered(a), 4);

    memset(dst, 0, LARGE);
    assert_int_equal(mpc_recv_bytes_into(a, dst, LARGE, &len), MPC_OK);
    assert_int_equal(len, LARGE);
    assert_memory_equal(dst, m3, LARGE);
    assert_int_equal(mpc_conn_buffered(a), 4); /* the header of "a" */

    /* A small payload refills the whole buffer: the two messages after
     * it come in the same read. */
    expect_message(a, "a", 1);
    assert_int_equal(mpc_conn_buffered(a), (4 + 2) + (4 + 3));
    expect_message(a, "bc", 2);
    expect_message(a, "def", 3);
    assert_int_equal(mpc_conn_buffered(a), 0);

    /* A large payload taken in two large pieces: the first stops inside
     * the message and reads nothing past itself; the second, ending it,
     * brings the next header along. */
    unsigned char *m4 = pattern(2 * LARGE, 4), *d4 = malloc(2 * LARGE);
    write_message(fd, m1, LARGE, 0); /* large again: header reads are short */
    expect_message(a, m1, LARGE);
    write_message(fd, m4, 2 * LARGE, 0);
    write_message(fd, "g", 1, 0);
    assert_int_equal(mpc_recv_begin(a, MPC_NO_LIMIT, &l64), MPC_OK);
    assert_int_equal(l64, 2 * LARGE);
    assert_int_equal(mpc_recv_payload(a, d4, LARGE), MPC_OK);
    assert_int_equal(mpc_conn_buffered(a), 0);
    assert_int_equal(mpc_recv_payload(a, d4 + LARGE, LARGE), MPC_OK);
    assert_int_equal(mpc_conn_buffered(a), 4);
    assert_memory_equal(d4, m4, 2 * LARGE);
    expect_message(a, "g", 1);
    assert_int_equal(mpc_conn_buffered(a), 0);
    free(m4);
    free(d4);

    free(m1);
    free(m2);
    free(m3);
    free(dst);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

/* A writer thread: a fixed script of messages written raw in odd pieces. */
#define SCRIPT_N 64

struct script {
    pthread_t tid;
    int fd;
    size_t n;
    size_t size[SCRIPT_N];
    int ext[SCRIPT_N];
    unsigned char *data[SCRIPT_N];
};

static void *script_main(void *arg)
{
    struct script *s = arg;
    /* Piece sizes that split headers (1, 3) and payloads anywhere. */
    static const size_t pieces[] = {1, 3, 4093, 2, 70001, 5, 16384, 1, 300007, 7};
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        unsigned char h[MPC_FRAME_HEADER_MAX];
        size_t hn = header(s->size[i], s->ext[i], h);
        size_t total = hn + s->size[i], off = 0;
        while (off < total) {
            size_t p = pieces[k++ % (sizeof pieces / sizeof pieces[0])];
            if (p > total - off)
                p = total - off;
            /* A piece may span the header and the payload. */
            unsigned char tmp[16];
            if (off < hn) {
                size_t from_h = hn - off < p ? hn - off : p;
                size_t from_d = p - from_h;
                if (p <= sizeof tmp) {
                    memcpy(tmp, h + off, from_h);
                    memcpy(tmp + from_h, s->data[i], from_d);
                    write_fd(s->fd, tmp, p);
                } else {
                    write_fd(s->fd, h + off, from_h);
                    write_fd(s->fd, s->data[i], from_d);
                }
            } else {
                write_fd(s->fd, s->data[i] + (off - hn), p);
            }
            off += p;
        }
    }
    return NULL;
}

static void mixed_sizes(int tcp)
{
    mpc_options o;
    mpc_options_init(&o);
    o.io_timeout = 30000; /* a safety net: every read polls first too */
    mpc_conn *a, *b;
    make_pair(tcp, &o, &a, &b);
    struct script s;
    memset(&s, 0, sizeof s);
    s.fd = mpc_conn_fileno(b);
    static const size_t sizes[] = {
        0,      1,      32767, 32768, 0,      5,           65535, 65536, 65540, 16,
        40000,  40000,  3,     0,     131072, (1u << 20) + 3, 1,  2,     100000, 32768,
        32767,  2u << 20, 12,  40000, 7,      0,           65536, 11,    4,     40000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        s.size[s.n] = sizes[i];
        /* The 12-byte header after small and after large messages. */
        s.ext[s.n] = i == 4 || i == 5 || i == 12 || i == 17 || i == 27;
        s.data[s.n] = pattern(sizes[i], (unsigned)i + 10);
        s.n++;
    }
    /* Many small ones after a large one. */
    for (size_t i = 0; i < 20; i++) {
        s.size[s.n] = i % 5;
        s.ext[s.n] = 0;
        s.data[s.n] = pattern(i % 5, (unsigned)i + 100);
        s.n++;
    }
    assert_true(s.n <= SCRIPT_N);
    assert_int_equal(pthread_create(&s.tid, NULL, script_main, &s), 0);

    unsigned char *dst = malloc((2u << 20) + 64);
    for (size_t i = 0; i < s.n; i++) {
        size_t n = s.size[i];
        switch (i % 3) {
        case 0:
            expect_message(a, s.data[i], n);
            break;
        case 1: {
            size_t len = 0;
            if (mpc_recv_bytes_into(a, dst, (2u << 20) + 64, &len) != MPC_OK)
                fail_msg("recv_into #%zu: %s", i, mpc_conn_errmsg(a));
            assert_int_equal(len, n);
            assert_memory_equal(dst, s.data[i], n);
            break;
        }
        default: {
            /* Two steps, in pieces that cross the 32 KiB direct-read line. */
            uint64_t len = 0;
            assert_int_equal(mpc_recv_begin(a, MPC_NO_LIMIT, &len), MPC_OK);
            assert_int_equal(len, n);
            size_t off = 0, step = 1;
            while (off < n) {
                size_t k = step < n - off ? step : n - off;
                if (mpc_recv_payload(a, dst + off, k) != MPC_OK)
                    fail_msg("recv_payload #%zu: %s", i, mpc_conn_errmsg(a));
                off += k;
                step = step * 7 + 3;
            }
            if (n == 0)
                assert_int_equal(mpc_recv_payload(a, dst, 0), MPC_OK);
            assert_memory_equal(dst, s.data[i], n);
            break;
        }
        }
    }
    pthread_join(s.tid, NULL);
    assert_int_equal(mpc_conn_buffered(a), 0);
    /* Nothing more: the next receive waits for its header. */
    int ready = 1;
    assert_int_equal(mpc_poll(a, 0, &ready), MPC_OK);
    assert_int_equal(ready, 0);
    for (size_t i = 0; i < s.n; i++)
        free(s.data[i]);
    free(dst);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void mixed_sizes_in_odd_pieces_arrive_byte_exact_over_a_socketpair(void **state)
{
    (void)state;
    mixed_sizes(0);
}

static void mixed_sizes_in_odd_pieces_arrive_byte_exact_over_tcp(void **state)
{
    (void)state;
    mixed_sizes(1);
}

/* Deadlines and end of file right after a large message, where the header
 * read is the short one. */
static void after_a_large_message(int tcp)
{
    mpc_options o;
    mpc_options_init(&o);
    o.io_timeout = 50;
    mpc_conn *a, *b;
    unsigned char *big = pattern(3 * LARGE, 5);
    unsigned char h[MPC_FRAME_HEADER_MAX];
    void *out;
    size_t len;

    make_pair(tcp, &o, &a, &b);
    int fd = mpc_conn_fileno(b);
    write_message(fd, big, LARGE, 0);
    expect_message(a, big, LARGE);

    /* Half a header, a timeout, the rest: in step. */
    write_fd(fd, "\x00\x00", 2);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_TIMEOUT);
    write_fd(fd, "\x00\x02" "hi", 4);
    expect_message(a, "hi", 2);

    /* Large again, then half the 12-byte header: a timeout keeps it too. */
    write_message(fd, big, LARGE, 0);
    expect_message(a, big, LARGE);
    header(LARGE, 1, h);
    write_fd(fd, h, 6);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_TIMEOUT);
    write_fd(fd, h + 6, 6);
    write_fd(fd, big, LARGE);
    expect_message(a, big, LARGE);

    /* A timeout in the middle of a large payload breaks the connection
     * (the part that arrived is gone with the caller's buffer). */
    write_message(fd, big, LARGE, 0);
    expect_message(a, big, LARGE);
    write_fd(fd, h, header(3 * LARGE, 0, h));
    write_fd(fd, big, LARGE + 11);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_TIMEOUT);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_PROTO);
    assert_non_null(strstr(mpc_conn_errmsg(a), "received only in part"));
    mpc_conn_close(a);
    mpc_conn_close(b);

    /* End of file inside a large payload that follows a large message. */
    make_pair(tcp, &o, &a, &b);
    fd = mpc_conn_fileno(b);
    write_message(fd, big, LARGE, 0);
    write_fd(fd, h, header(2 * LARGE, 0, h));
    write_fd(fd, big, LARGE);
    mpc_conn_close(b);
    expect_message(a, big, LARGE);
    unsigned char *dst = malloc(2 * LARGE);
    assert_int_equal(mpc_recv_bytes_into(a, dst, 2 * LARGE, &len), MPC_TRUNCATED);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_TRUNCATED);
    free(dst);
    mpc_conn_close(a);

    /* End of file inside the short header read. */
    make_pair(tcp, &o, &a, &b);
    fd = mpc_conn_fileno(b);
    write_message(fd, big, LARGE, 0);
    write_fd(fd, "\x00\x01", 2);
    mpc_conn_close(b);
    expect_message(a, big, LARGE);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_TRUNCATED);
    mpc_conn_close(a);
    free(big);
}

static void deadlines_and_eof_after_a_large_message_over_a_socketpair(void **state)
{
    (void)state;
    after_a_large_message(0);
}

static void deadlines_and_eof_after_a_large_message_over_tcp(void **state)
{
    (void)state;
    after_a_large_message(1);
}

/* Bytes waiting in the kernel for fd. */
static int kernel_has(int fd)
{
    int n = -1;
    assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
    return n;
}

/* Exact reads (the default) take a message and not one byte more, through
 * every receive call, short and long headers, over a socketpair, a pipe and
 * TCP: what follows stays in the kernel for whoever reads the descriptor
 * next (another process, a select() on it). */
static void exact_reads_leave_the_next_message_in_the_kernel(void **state)
{
    (void)state;
    for (int kind = 0; kind < 3; kind++) {
        mpc_conn *a, *b;
        mpc_error e;
        if (kind == 2) {
            assert_int_equal(mpc_pipe(0, NULL, &a, &b, &e), MPC_OK);
        } else {
            make_pair_mode(kind, NULL, &a, &b);
        }
        assert_int_equal(mpc_conn_read_ahead(a), 0);
        int fd = mpc_conn_fileno(b), rfd = mpc_conn_fileno(a);
        unsigned char *big = pattern(LARGE, 9);
        unsigned char buf[64], *dst = malloc(LARGE);
        size_t len;
        uint64_t l64;
        const void *v;
        write_message(fd, "one", 3, 0);
        write_message(fd, "two!", 4, 1);
        write_message(fd, big, LARGE, 0);
        write_message(fd, "", 0, 0);
        write_message(fd, "tail", 4, 0);
        int left = 4 + 3 + 12 + 4 + 4 + (int)LARGE + 4 + 4 + 4;
        assert_int_equal(kernel_has(rfd), left);
        expect_message(a, "one", 3);
        left -= 4 + 3;
        assert_int_equal(kernel_has(rfd), left);
        assert_int_equal(mpc_conn_buffered(a), 0);
        /* Nothing to peek at: the next message is still in the kernel. */
        assert_int_equal(mpc_recv_peek(a, MPC_NO_LIMIT, &v, &len), MPC_AGAIN);
        assert_int_equal(mpc_recv_bytes_into(a, buf, sizeof buf, &len), MPC_OK);
        assert_int_equal(len, 4);
        assert_memory_equal(buf, "two!", 4);
        left -= 12 + 4;
        assert_int_equal(kernel_has(rfd), left);
        /* Too short: the header is read, the payload stays in the kernel. */
        assert_int_equal(mpc_recv_bytes_into(a, buf, sizeof buf, &len), MPC_TOOSHORT);
        assert_int_equal(len, LARGE);
        left -= 4;
        assert_int_equal(kernel_has(rfd), left);
        assert_int_equal(mpc_recv_begin(a, MPC_NO_LIMIT, &l64), MPC_OK);
        assert_int_equal(mpc_recv_payload(a, dst, 100), MPC_OK);
        assert_int_equal(kernel_has(rfd), left - 100);
        assert_int_equal(mpc_recv_payload(a, dst + 100, LARGE - 100), MPC_OK);
        assert_memory_equal(dst, big, LARGE);
        left -= (int)LARGE;
        assert_int_equal(kernel_has(rfd), left);
        expect_message(a, "", 0);
        assert_int_equal(kernel_has(rfd), 8);
        int ready = 0;
        assert_int_equal(mpc_poll(a, 0, &ready), MPC_OK);
        assert_int_equal(ready, 1);
        assert_int_equal(kernel_has(rfd), 8);
        expect_message(a, "tail", 4);
        assert_int_equal(kernel_has(rfd), 0);
        /* Read-ahead on: one read takes both. */
        assert_int_equal(mpc_conn_set_read_ahead(a, 1), MPC_OK);
        write_message(fd, "x", 1, 0);
        write_message(fd, "y", 1, 0);
        expect_message(a, "x", 1);
        assert_int_equal(kernel_has(rfd), 0);
        assert_int_equal(mpc_conn_buffered(a), 5);
        /* ... and cannot be switched off while it holds bytes. */
        assert_int_equal(mpc_conn_set_read_ahead(a, 0), MPC_INVAL);
        expect_message(a, "y", 1);
        assert_int_equal(mpc_conn_set_read_ahead(a, 0), MPC_OK);
        write_message(fd, "z", 1, 0);
        write_message(fd, "w", 1, 0);
        expect_message(a, "z", 1);
        assert_int_equal(kernel_has(rfd), 5);
        expect_message(a, "w", 1);
        free(big);
        free(dst);
        mpc_conn_close(a);
        mpc_conn_close(b);
    }
}

/* End of file right after a header is end of file (CPython raises EOFError
 * there), and says so again; inside the payload it is a truncation. */
static void eof_right_after_a_header_is_end_of_file(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    void *out;
    size_t len;
    make_pair(0, NULL, &a, &b);
    write_fd(mpc_conn_fileno(b), "\x00\x00\x00\x05", 4);
    mpc_conn_close(b);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_EOF);
    assert_string_equal(mpc_conn_errmsg(a), "end of file after a message header");
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_EOF);
    mpc_conn_close(a);
    make_pair(0, NULL, &a, &b);
    write_fd(mpc_conn_fileno(b), "\x00\x00\x00\x05" "ab", 6);
    mpc_conn_close(b);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_TRUNCATED);
    mpc_conn_close(a);
}

/* mpc_recv_with(): the caller's allocator makes the message's memory (for
 * an empty message too); one that fails leaves the message pending, so a
 * later call still gets it; everything allocated is handed over or freed. */
typedef struct {
    int live;  /* blocks made and not freed */
    int fail;  /* fail the next allocation */
    size_t last;
} test_alloc_state;

static void *test_alloc(void *arg, void *old, size_t old_size, size_t new_size)
{
    test_alloc_state *t = arg;
    (void)old_size;
    if (old && new_size == 0) {
        free(old);
        t->live--;
        return NULL;
    }
    if (t->fail) {
        t->fail = 0;
        return NULL;
    }
    void *p = realloc(old, new_size ? new_size : 1);
    if (p && !old)
        t->live++;
    t->last = new_size;
    return p;
}

static void recv_with_uses_the_callers_allocator(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    make_pair(0, NULL, &a, &b);
    static const size_t sizes[] = {0, 16, LARGE, 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *m = pattern(sizes[i], (unsigned)i);
        assert_int_equal(mpc_send_bytes(b, m, sizes[i]), MPC_OK);
        assert_int_equal(mpc_send_bytes(b, m, sizes[i]), MPC_OK);
        test_alloc_state t = {0, 1, 0};
        void *out = (void *)1;
        size_t len = 99;
        assert_int_equal(mpc_recv_with(a, MPC_NO_LIMIT, test_alloc, &t, &out, &len), MPC_NOMEM);
        assert_null(out);
        assert_int_equal(len, 0);
        assert_int_equal(t.live, 0);
        for (int k = 0; k < 2; k++) { /* the pending message, then its copy */
            assert_int_equal(mpc_recv_with(a, MPC_NO_LIMIT, test_alloc, &t, &out, &len), MPC_OK);
            assert_int_equal(len, sizes[i]);
            assert_int_equal(t.last, sizes[i]);
            assert_non_null(out);
            assert_memory_equal(out, m, sizes[i]);
            free(out);
            t.live--;
            assert_int_equal(t.live, 0);
        }
        free(m);
    }
    assert_int_equal(mpc_send_bytes(b, "xy", 2), MPC_OK);
    void *out = NULL;
    size_t len = 0;
    assert_int_equal(mpc_recv_with(a, 1, test_alloc, &(test_alloc_state){0, 0, 0}, &out, &len),
                     MPC_TOOLONG);
    assert_null(out);
    mpc_conn_close(b);
    mpc_conn_close(a);
}

static int exact_mode(void **state)
{
    (void)state;
    g_read_ahead = 0;
    return 0;
}

static int read_ahead_mode(void **state)
{
    (void)state;
    g_read_ahead = 1;
    return 0;
}

int main(void)
{
    const struct CMUnitTest once[] = {
        cmocka_unit_test(after_a_large_message_the_next_header_is_read_alone),
        cmocka_unit_test(exact_reads_leave_the_next_message_in_the_kernel),
    };
    const struct CMUnitTest both[] = {
        cmocka_unit_test(mixed_sizes_in_odd_pieces_arrive_byte_exact_over_a_socketpair),
        cmocka_unit_test(mixed_sizes_in_odd_pieces_arrive_byte_exact_over_tcp),
        cmocka_unit_test(deadlines_and_eof_after_a_large_message_over_a_socketpair),
        cmocka_unit_test(deadlines_and_eof_after_a_large_message_over_tcp),
        cmocka_unit_test(eof_right_after_a_header_is_end_of_file),
        cmocka_unit_test(recv_with_uses_the_callers_allocator),
    };
    int failed = cmocka_run_group_tests_name("read modes", once, NULL, NULL);
    failed += cmocka_run_group_tests_name("exact reads", both, exact_mode, NULL);
    failed += cmocka_run_group_tests_name("read-ahead", both, read_ahead_mode, NULL);
    return failed;
}
