/*
 * test_nonblock.c - the non-blocking mode, single-threaded, against real
 * socketpairs, pipes and loopback sockets:
 *   - receives see their frames arrive one byte at a time (every split
 *     point of the header, the long header and the payload): MPC_AGAIN
 *     until the last byte, then the whole message, in both read modes;
 *   - sends the descriptor cannot take are queued whole (the caller's
 *     buffer is reused at once), a send behind a queue takes nothing, and a
 *     reader taking a few bytes at a time gets a well-formed stream;
 *   - both handshake legs run through a relay that passes one byte at a
 *     time between two non-blocking peers; a wrong key fails both;
 *   - connect, accept and the handshake through mpc_flush() over TCP and a
 *     Unix socket; a refused connect; switching back to blocking.
 * No call here may block: every descriptor the test reads or writes raw is
 * non-blocking too, and each loop has a bound.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* A connection on one end of a socketpair (or the read end of a pipe), the
 * raw other end in *raw.  Non-blocking, read mode as asked. */
static mpc_conn *nb_pair(int use_pipe, int read_ahead, int *raw)
{
    int fds[2];
    mpc_options o = MPC_OPTIONS_INIT;
    mpc_conn *c = NULL;
    o.nonblocking = 1;
    o.read_ahead = read_ahead;
    if (use_pipe) {
        assert_int_equal(pipe(fds), 0);
        assert_int_equal(mpc_conn_from_fd(fds[0], 1, 0, &o, &c, NULL), MPC_OK);
        *raw = fds[1];
    } else {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
        assert_int_equal(mpc_conn_from_fd(fds[0], 1, 1, &o, &c, NULL), MPC_OK);
        *raw = fds[1];
    }
    set_nonblock(*raw);
    assert_false(mpc_conn_blocking(c));
    return c;
}

/* The frames of messages of these sizes, back to back; one with the long
 * header form (-1 then 8 bytes) for a short payload, which CPython reads. */
static const size_t sizes[] = {0, 1, 5, 300, 70000, 3};

static unsigned char *frames(size_t *total, unsigned char **payloads)
{
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        cap += 12 + sizes[i];
    unsigned char *w = malloc(cap);
    assert_non_null(w);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        payloads[i] = pattern(sizes[i], (unsigned)i + 1);
        if (i == sizeof sizes / sizeof sizes[0] - 1) {
            memset(w + n, 0xff, 4);
            memset(w + n + 4, 0, 8);
            w[n + 11] = (unsigned char)sizes[i];
            n += 12;
        } else {
            n += mpc_frame_header(sizes[i], w + n);
        }
        memcpy(w + n, payloads[i], sizes[i]);
        n += sizes[i];
    }
    *total = n;
    return w;
}

/* kind: 0 = mpc_recv_bytes, 1 = mpc_recv_bytes_into, 2 = mpc_recv_with
 * (through mpc_recv_bytes' allocator: the same path). */
static void every_split_point(int use_pipe, int read_ahead, int kind)
{
    int raw;
    mpc_conn *c = nb_pair(use_pipe, read_ahead, &raw);
    unsigned char *payloads[sizeof sizes / sizeof sizes[0]];
    size_t total;
    unsigned char *w = frames(&total, payloads);
    unsigned char *into = malloc(80000);
    size_t at = 0, next = 0;
    /* One byte at a time for everything but the middle of the large
     * payload, which goes in pieces of 997 to keep the test quick. */
    while (next < sizeof sizes / sizeof sizes[0]) {
        void *out = NULL;
        size_t len = 0;
        mpc_status st;
        if (kind == 1)
            st = mpc_recv_bytes_into(c, into, 80000, &len);
        else
            st = mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len);
        if (st == MPC_AGAIN) {
            assert_int_equal(mpc_conn_wants(c), MPC_WANT_READ);
            assert_false(mpc_conn_pending(c));
            assert_true(at < total);
            size_t step = (sizes[next] > 10000 && at % 70000 > 100 && at % 70000 < 69000) ? 997 : 1;
            if (step > total - at)
                step = total - at;
            assert_int_equal(write(raw, w + at, step), (ssize_t)step);
            at += step;
            continue;
        }
        assert_int_equal(st, MPC_OK);
        assert_int_equal(len, sizes[next]);
        assert_memory_equal(kind == 1 ? into : out, payloads[next], len);
        mpc_free(out);
        next++;
    }
    assert_int_equal(at, total);
    /* Nothing more: MPC_AGAIN, then end of file. */
    void *out = NULL;
    size_t len = 0;
    assert_int_equal(mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len), MPC_AGAIN);
    close(raw);
    assert_int_equal(mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len), MPC_EOF);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        free(payloads[i]);
    free(w);
    free(into);
    mpc_conn_close(c);
}

static void recv_every_split_socket_exact(void **s) { (void)s; every_split_point(0, 0, 0); }
static void recv_every_split_socket_ahead(void **s) { (void)s; every_split_point(0, 1, 0); }
static void recv_every_split_pipe_exact(void **s) { (void)s; every_split_point(1, 0, 0); }
static void recv_every_split_pipe_ahead(void **s) { (void)s; every_split_point(1, 1, 0); }
static void recv_into_every_split_exact(void **s) { (void)s; every_split_point(0, 0, 1); }
static void recv_into_every_split_ahead(void **s) { (void)s; every_split_point(0, 1, 1); }

/* A message that arrived whole in the read buffer makes no descriptor
 * readable: mpc_conn_pending() says so. */
static void pending_reports_buffered_messages(void **state)
{
    (void)state;
    int raw;
    mpc_conn *c = nb_pair(0, 1, &raw);
    unsigned char two[16];
    size_t n = mpc_frame_header(3, two);
    memcpy(two + n, "abc", 3);
    n += 3;
    n += mpc_frame_header(2, two + n);
    memcpy(two + n, "de", 2);
    n += 2;
    assert_int_equal(write(raw, two, n), (ssize_t)n);
    void *out;
    size_t len;
    assert_false(mpc_conn_pending(c)); /* nothing read yet */
    assert_int_equal(mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len), MPC_OK);
    mpc_free(out);
    assert_true(mpc_conn_pending(c));
    assert_int_equal(mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len), MPC_OK);
    assert_memory_equal(out, "de", 2);
    mpc_free(out);
    assert_false(mpc_conn_pending(c));
    close(raw);
    mpc_conn_close(c);
}

/* Exact reads stay exact in non-blocking mode: after a message received
 * in part (so with a block kept for the next one), two small messages
 * written at once are taken one at a time, the second left in the kernel. */
static void exact_reads_leave_the_next_message_in_the_kernel(void **state)
{
    (void)state;
    int raw, left = -1;
    mpc_conn *c = nb_pair(0, 0, &raw);
    unsigned char f[64], h[MPC_FRAME_HEADER_MAX];
    size_t n = mpc_frame_header(40, h);
    assert_int_equal(write(raw, h, n), (ssize_t)n);
    assert_int_equal(write(raw, "0123456789", 10), 10);
    void *out;
    size_t len;
    assert_int_equal(mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len), MPC_AGAIN);
    memset(f, 'z', 30);
    assert_int_equal(write(raw, f, 30), 30);
    n = mpc_frame_header(3, f);
    memcpy(f + n, "abc", 3);
    n += 3;
    n += mpc_frame_header(2, f + n);
    memcpy(f + n, "de", 2);
    n += 2;
    assert_int_equal(write(raw, f, n), (ssize_t)n);
    assert_int_equal(mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len), MPC_OK);
    assert_int_equal(len, 40);
    mpc_free(out);
    assert_int_equal(mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len), MPC_OK);
    assert_memory_equal(out, "abc", 3);
    mpc_free(out);
    assert_int_equal(ioctl(mpc_conn_fileno(c), FIONREAD, &left), 0);
    assert_int_equal(left, 6); /* the second message, untouched */
    assert_false(mpc_conn_pending(c));
    close(raw);
    mpc_conn_close(c);
}

/* Writes as much of w[*at..n) as raw takes now. */
static void feed(int raw, const unsigned char *w, size_t n, size_t *at)
{
    while (*at < n) {
        ssize_t k = write(raw, w + *at, n - *at);
        if (k < 0) {
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
            return;
        }
        *at += (size_t)k;
    }
}

/* A large message's block is kept for the next one while messages keep
 * coming, given back at once when it is very large, and given back as soon
 * as a receive finds no next header (the stream paused); every message
 * arrives whole whatever block it lands in. */
static void large_blocks_are_kept_only_while_messages_keep_coming(void **state)
{
    (void)state;
    static const size_t big[] = {300000, 1 << 20, 200000, (5 << 20) + 7, 100000, 70000};
    const size_t nbig = sizeof big / sizeof big[0];
    unsigned char *payloads[sizeof big / sizeof big[0]];
    size_t total = 0, at = 0;
    for (size_t i = 0; i < nbig; i++)
        total += MPC_FRAME_HEADER_MAX + big[i];
    unsigned char *w = malloc(total);
    assert_non_null(w);
    total = 0;
    for (size_t i = 0; i < nbig; i++) {
        payloads[i] = pattern(big[i], 100 + (unsigned)i);
        total += mpc_frame_header(big[i], w + total);
        memcpy(w + total, payloads[i], big[i]);
        total += big[i];
    }
    int raw;
    mpc_conn *c = nb_pair(0, 0, &raw);
    for (size_t i = 0; i < nbig; i++) {
        void *out = NULL;
        size_t len = 0;
        mpc_status st;
        while ((st = mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len)) == MPC_AGAIN)
            feed(raw, w, total, &at);
        assert_int_equal(st, MPC_OK);
        assert_int_equal(len, big[i]);
        assert_memory_equal(out, payloads[i], len);
        mpc_free(out);
        if (big[i] > (4 << 20))
            assert_int_equal(c->nb_cap, 0); /* too large to keep */
        else if (big[i] > MPC__RBUF_CAP)
            assert_true(c->nb_cap >= big[i]); /* kept for the next message */
        free(payloads[i]);
    }
    assert_int_equal(at, total);
    void *out;
    size_t len;
    assert_int_equal(mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len), MPC_AGAIN);
    assert_true(c->nb_cap <= MPC__RBUF_CAP); /* idle: given back */
    free(w);
    close(raw);
    mpc_conn_close(c);
}

/* TOOSHORT keeps the message; TOOLONG is as in blocking mode. */
static void too_short_keeps_the_message(void **state)
{
    (void)state;
    int raw;
    mpc_conn *c = nb_pair(0, 0, &raw);
    unsigned char f[32];
    size_t n = mpc_frame_header(10, f);
    memcpy(f + n, "0123456789", 10);
    n += 10;
    assert_int_equal(write(raw, f, n), (ssize_t)n);
    unsigned char small[4], big[16];
    size_t len = 0;
    assert_int_equal(mpc_recv_bytes_into(c, small, sizeof small, &len), MPC_TOOSHORT);
    assert_int_equal(len, 10);
    assert_true(mpc_conn_pending(c));
    assert_int_equal(mpc_recv_bytes_into(c, big, sizeof big, &len), MPC_OK);
    assert_memory_equal(big, "0123456789", 10);
    assert_int_equal(write(raw, f, n), (ssize_t)n);
    void *out;
    assert_int_equal(mpc_recv_bytes(c, 5, &out, &len), MPC_TOOLONG);
    close(raw);
    mpc_conn_close(c);
}

/* Reads everything available from raw (a few bytes per read when few is
 * set) into buf at *at. */
static void drain_raw(int raw, unsigned char *buf, size_t cap, size_t *at, int few)
{
    for (;;) {
        size_t want = few ? 1 + (*at % 7) : cap - *at;
        if (want > cap - *at)
            want = cap - *at;
        if (want == 0)
            return;
        ssize_t r = read(raw, buf + *at, want);
        if (r <= 0)
            return;
        *at += (size_t)r;
        if (few)
            return;
    }
}

static void sends_are_queued_whole(int use_pipe)
{
    int fds[2], raw;
    mpc_options o = MPC_OPTIONS_INIT;
    mpc_conn *c = NULL;
    o.nonblocking = 1;
    if (use_pipe) {
        assert_int_equal(pipe(fds), 0);
        assert_int_equal(mpc_conn_from_fd(fds[1], 0, 1, &o, &c, NULL), MPC_OK);
        raw = fds[0];
    } else {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
        assert_int_equal(mpc_conn_from_fd(fds[0], 1, 1, &o, &c, NULL), MPC_OK);
        raw = fds[1];
    }
    set_nonblock(raw);
    size_t big = 3u << 20;
    unsigned char *msg = pattern(big, 9);
    unsigned char *copy = malloc(big);
    memcpy(copy, msg, big);
    /* Accepted whole although the descriptor takes far less. */
    assert_int_equal(mpc_send_bytes(c, msg, big), MPC_OK);
    memset(msg, 0, big); /* the caller's buffer is free at once */
    assert_true(mpc_conn_wants(c) & MPC_WANT_WRITE);
    /* Behind the queue a send takes nothing. */
    assert_int_equal(mpc_send_bytes(c, "x", 1), MPC_AGAIN);
    assert_int_equal(mpc_conn_wants(c), MPC_WANT_WRITE);
    /* A batch, once the queue is gone, is accepted whole. */
    size_t cap = big + 4 + 64, at = 0;
    unsigned char *got = malloc(cap + 1000);
    int rounds = 0;
    mpc_status st;
    /* The reader takes a few bytes at a time for a while, then the rest. */
    while ((st = mpc_flush(c)) == MPC_AGAIN) {
        drain_raw(raw, got, cap + 1000, &at, rounds++ < 3000);
        assert_true(rounds < 10000000);
    }
    assert_int_equal(st, MPC_OK);
    assert_int_equal(mpc_conn_wants(c), 0);
    mpc_buf batch[3] = {{"ab", 2}, {"", 0}, {"cde", 3}};
    assert_int_equal(mpc_send_many(c, batch, 3), MPC_OK);
    for (int i = 0; i < 1000 && at < big + 4 + 6 + 4 + 7; i++)
        drain_raw(raw, got, cap + 1000, &at, 0);
    assert_int_equal(at, big + 4 + 6 + 4 + 7);
    unsigned char h[MPC_FRAME_HEADER_MAX];
    mpc_frame_header(big, h);
    assert_memory_equal(got, h, 4);
    assert_memory_equal(got + 4, copy, big);
    assert_memory_equal(got + 4 + big, "\0\0\0\2ab\0\0\0\0\0\0\0\3cde", 17);
    close(raw);
    free(msg);
    free(copy);
    free(got);
    mpc_conn_close(c);
}

static void sends_are_queued_whole_socket(void **s) { (void)s; sends_are_queued_whole(0); }
static void sends_are_queued_whole_pipe(void **s) { (void)s; sends_are_queued_whole(1); }

/* Two non-blocking peers, each on a socketpair whose other end the relay
 * holds; the relay passes one byte at a time each way. */
typedef struct relay {
    int a_raw, b_raw;
} relay;

static int relay_step(relay *r)
{
    unsigned char b;
    int moved = 0;
    if (read(r->a_raw, &b, 1) == 1) {
        assert_int_equal(write(r->b_raw, &b, 1), 1);
        moved = 1;
    }
    if (read(r->b_raw, &b, 1) == 1) {
        assert_int_equal(write(r->a_raw, &b, 1), 1);
        moved = 1;
    }
    return moved;
}

static mpc_conn *relay_end(int *raw)
{
    int fds[2];
    mpc_options o = MPC_OPTIONS_INIT;
    mpc_conn *c = NULL;
    o.nonblocking = 1;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    assert_int_equal(mpc_conn_from_fd(fds[0], 1, 1, &o, &c, NULL), MPC_OK);
    *raw = fds[1];
    set_nonblock(*raw);
    return c;
}

/* Server: deliver then answer; client: answer then deliver, each leg
 * called again until it is no longer MPC_AGAIN. */
static void handshake_through_relay(mpc_dialect dialect, const char *ckey, mpc_status want_s,
                                    mpc_status want_c)
{
    relay r;
    mpc_conn *s = relay_end(&r.a_raw), *c = relay_end(&r.b_raw);
    mpc_options o = MPC_OPTIONS_INIT;
    o.dialect = dialect;
    int s_leg = 0, c_leg = 0;
    mpc_status ss = MPC_AGAIN, cs = MPC_AGAIN;
    for (int i = 0; i < 100000 && (ss == MPC_AGAIN || cs == MPC_AGAIN); i++) {
        int legs_done = 0;
        if (ss == MPC_AGAIN) {
            ss = s_leg == 0 ? mpc_conn_deliver_challenge(s, "key", 3, &o)
                            : mpc_conn_answer_challenge(s, "key", 3, &o);
            if (ss == MPC_OK && s_leg++ == 0) {
                ss = MPC_AGAIN;
                legs_done = 1;
            }
        }
        if (cs == MPC_AGAIN) {
            cs = c_leg == 0 ? mpc_conn_answer_challenge(c, ckey, strlen(ckey), &o)
                            : mpc_conn_deliver_challenge(c, ckey, strlen(ckey), &o);
            if (cs == MPC_OK && c_leg++ == 0) {
                cs = MPC_AGAIN;
                legs_done = 1;
            }
        }
        if (!relay_step(&r) && !legs_done && ss == MPC_AGAIN && cs == MPC_AGAIN) {
            /* Neither side can move without the other writing: both
             * wait for reading, with nothing queued. */
            assert_int_equal(mpc_conn_wants(s) & MPC_WANT_WRITE, 0);
            assert_int_equal(mpc_conn_wants(c) & MPC_WANT_WRITE, 0);
            fail_msg("handshake stalled: server %s, client %s", mpc_conn_errmsg(s),
                     mpc_conn_errmsg(c));
        }
    }
    assert_int_equal(ss, want_s);
    assert_int_equal(cs, want_c);
    if (ss == MPC_OK && cs == MPC_OK) {
        /* In step afterwards: a message each way through the relay. */
        assert_int_equal(mpc_send_bytes(c, "hello", 5), MPC_OK);
        void *out = NULL;
        size_t len = 0;
        mpc_status st;
        while ((st = mpc_recv_bytes(s, MPC_NO_LIMIT, &out, &len)) == MPC_AGAIN)
            assert_true(relay_step(&r));
        assert_int_equal(st, MPC_OK);
        assert_memory_equal(out, "hello", 5);
        mpc_free(out);
    }
    close(r.a_raw);
    close(r.b_raw);
    mpc_conn_close(s);
    mpc_conn_close(c);
}

static void handshake_one_byte_at_a_time_modern(void **st)
{
    (void)st;
    handshake_through_relay(MPC_DIALECT_MODERN, "key", MPC_OK, MPC_OK);
}
static void handshake_one_byte_at_a_time_legacy(void **st)
{
    (void)st;
    handshake_through_relay(MPC_DIALECT_LEGACY, "key", MPC_OK, MPC_OK);
}
static void handshake_wrong_key_fails_both(void **st)
{
    (void)st;
    handshake_through_relay(MPC_DIALECT_MODERN, "nope", MPC_AUTH, MPC_AUTH);
}

/* Drives a non-blocking client and listener in one thread with poll(). */
static void connect_accept_flush(const char *address, const char *ckey)
{
    mpc_options lo = MPC_OPTIONS_INIT, co = MPC_OPTIONS_INIT;
    mpc_listener *l = NULL;
    mpc_conn *c = NULL, *s = NULL;
    lo.authkey = "secret";
    lo.authkey_len = 6;
    lo.nonblocking = 1;
    assert_int_equal(mpc_listen(address, &lo, &l, NULL), MPC_OK);
    assert_int_equal(mpc_listener_accept(l, MPC_FOREVER, &s, NULL), MPC_AGAIN);
    co.authkey = ckey;
    co.authkey_len = strlen(ckey);
    co.nonblocking = 1;
    assert_int_equal(mpc_connect(mpc_listener_address(l), &co, &c, NULL), MPC_OK);
    mpc_status cs = MPC_AGAIN, ss = MPC_AGAIN;
    for (int i = 0; i < 2000 && (cs == MPC_AGAIN || ss == MPC_AGAIN); i++) {
        struct pollfd p[3];
        int n = 0;
        if (cs == MPC_AGAIN && (cs = mpc_flush(c)) == MPC_AGAIN) {
            int w = mpc_conn_wants(c);
            assert_true(w != 0);
            p[n++] = (struct pollfd){mpc_conn_fileno(c),
                                     (short)((w & MPC_WANT_READ ? POLLIN : 0) |
                                             (w & MPC_WANT_WRITE ? POLLOUT : 0)), 0};
        }
        if (!s) {
            mpc_status a = mpc_listener_accept(l, 0, &s, NULL);
            assert_true(a == MPC_OK || a == MPC_AGAIN);
            if (!s)
                p[n++] = (struct pollfd){mpc_listener_fileno(l), POLLIN, 0};
        }
        if (s && ss == MPC_AGAIN && (ss = mpc_flush(s)) == MPC_AGAIN) {
            int w = mpc_conn_wants(s);
            p[n++] = (struct pollfd){mpc_conn_fileno(s),
                                     (short)((w & MPC_WANT_READ ? POLLIN : 0) |
                                             (w & MPC_WANT_WRITE ? POLLOUT : 0)), 0};
        }
        if (n && poll(p, (nfds_t)n, 5000) <= 0)
            fail_msg("stalled: client %d %s (wants %d), server %s", (int)cs, mpc_conn_errmsg(c),
                     mpc_conn_wants(c), s ? mpc_conn_errmsg(s) : "not accepted");
    }
    if (strcmp(ckey, "secret") == 0) {
        assert_int_equal(cs, MPC_OK);
        assert_int_equal(ss, MPC_OK);
        assert_int_equal(mpc_send_bytes(s, "ok", 2), MPC_OK);
        void *out = NULL;
        size_t len = 0;
        mpc_status st;
        for (int i = 0; (st = mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len)) == MPC_AGAIN; i++) {
            struct pollfd p = {mpc_conn_fileno(c), POLLIN, 0};
            assert_true(i < 100 && poll(&p, 1, 5000) == 1);
        }
        assert_int_equal(st, MPC_OK);
        assert_memory_equal(out, "ok", 2);
        mpc_free(out);
    } else {
        assert_int_equal(cs, MPC_AUTH);
        assert_int_equal(ss, MPC_AUTH);
        /* The failure sticks. */
        assert_int_equal(mpc_send_bytes(c, "x", 1), MPC_AUTH);
    }
    mpc_conn_close(c);
    mpc_conn_close(s);
    mpc_listener_close(l);
}

static void connect_and_accept_tcp(void **st)
{
    (void)st;
    connect_accept_flush("127.0.0.1:0", "secret");
}
static void connect_and_accept_unix(void **st)
{
    (void)st;
    char path[64];
    snprintf(path, sizeof path, "/tmp/mpc-nb-%d.sock", (int)getpid());
    connect_accept_flush(path, "secret");
}
static void connect_and_accept_wrong_key(void **st)
{
    (void)st;
    connect_accept_flush("127.0.0.1:0", "wrong");
}

static void a_refused_connect_fails_in_flush(void **state)
{
    (void)state;
    mpc_listener *l = NULL;
    mpc_conn *c = NULL;
    /* A port nobody listens on: bind one, note it, close it. */
    assert_int_equal(mpc_listen("127.0.0.1:0", NULL, &l, NULL), MPC_OK);
    char addr[64];
    snprintf(addr, sizeof addr, "%s", mpc_listener_address(l));
    mpc_listener_close(l);
    mpc_options o = MPC_OPTIONS_INIT;
    o.nonblocking = 1;
    mpc_status st = mpc_connect(addr, &o, &c, NULL);
    if (st == MPC_OK) {
        for (int i = 0; i < 100 && (st = mpc_flush(c)) == MPC_AGAIN; i++) {
            struct pollfd p = {mpc_conn_fileno(c), POLLOUT, 0};
            poll(&p, 1, 1000);
        }
        assert_int_equal(st, MPC_OS);
        assert_int_equal(mpc_conn_errno(c), ECONNREFUSED);
        mpc_conn_close(c);
    } else {
        assert_int_equal(st, MPC_OS); /* refused at once */
    }
}

static void back_to_blocking_only_when_idle(void **state)
{
    (void)state;
    int raw;
    mpc_conn *c = nb_pair(0, 0, &raw);
    unsigned char h[MPC_FRAME_HEADER_MAX];
    mpc_frame_header(10, h);
    assert_int_equal(write(raw, h, 4), 4);
    assert_int_equal(write(raw, "01234", 5), 5);
    void *out;
    size_t len;
    assert_int_equal(mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len), MPC_AGAIN);
    assert_int_equal(mpc_conn_set_blocking(c, 1), MPC_INVAL);
    assert_int_equal(write(raw, "56789", 5), 5);
    assert_int_equal(mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len), MPC_OK);
    assert_memory_equal(out, "0123456789", 10);
    mpc_free(out);
    assert_int_equal(mpc_conn_set_blocking(c, 1), MPC_OK);
    assert_true(mpc_conn_blocking(c));
    assert_int_equal(fcntl(mpc_conn_fileno(c), F_GETFL) & O_NONBLOCK, 0);
    /* Blocking again: a receive with a deadline times out, not AGAIN. */
    mpc_conn_set_timeout(c, 20);
    assert_int_equal(mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len), MPC_TIMEOUT);
    close(raw);
    mpc_conn_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(recv_every_split_socket_exact),
        cmocka_unit_test(recv_every_split_socket_ahead),
        cmocka_unit_test(recv_every_split_pipe_exact),
        cmocka_unit_test(recv_every_split_pipe_ahead),
        cmocka_unit_test(recv_into_every_split_exact),
        cmocka_unit_test(recv_into_every_split_ahead),
        cmocka_unit_test(pending_reports_buffered_messages),
        cmocka_unit_test(exact_reads_leave_the_next_message_in_the_kernel),
        cmocka_unit_test(large_blocks_are_kept_only_while_messages_keep_coming),
        cmocka_unit_test(too_short_keeps_the_message),
        cmocka_unit_test(sends_are_queued_whole_socket),
        cmocka_unit_test(sends_are_queued_whole_pipe),
        cmocka_unit_test(handshake_one_byte_at_a_time_modern),
        cmocka_unit_test(handshake_one_byte_at_a_time_legacy),
        cmocka_unit_test(handshake_wrong_key_fails_both),
        cmocka_unit_test(connect_and_accept_tcp),
        cmocka_unit_test(connect_and_accept_unix),
        cmocka_unit_test(connect_and_accept_wrong_key),
        cmocka_unit_test(a_refused_connect_fails_in_flush),
        cmocka_unit_test(back_to_blocking_only_when_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
