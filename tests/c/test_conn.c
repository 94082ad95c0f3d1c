/*
 * test_conn.c - the connection object over socketpairs and pipes: round
 * trips at the interesting sizes, batched sends, maxlength and
 * max_message_size (CPython's semantics), buffer-too-short that keeps the
 * message, poll that never consumes, end of file versus truncation, sticky
 * protocol errors, hostile headers written raw into one end, the interrupt
 * hook and the per-call timeout.  No ports; every blocking call has a
 * deadline or a peer that is already written.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "transport/transport.h"

/* ---------------------------------------------------------------- helpers */

static void make_pair(int duplex, mpc_conn **a, mpc_conn **b)
{
    mpc_error e;
    mpc_status st = mpc_pipe(duplex, NULL, a, b, &e);
    if (st != MPC_OK)
        fail_msg("mpc_pipe: %s", e.message);
}

static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n ? n : 1);
    assert_non_null(p);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (unsigned char)(x >> 16);
    }
    return p;
}

static void write_raw(mpc_conn *c, const void *data, size_t n)
{
    const unsigned char *p = data;
    while (n) {
        ssize_t w = write(mpc_conn_fileno(c), p, n);
        assert_true(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct sender {
    pthread_t tid;
    mpc_conn *c;
    const void *buf;
    size_t len;
    mpc_status st;
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    s->st = mpc_send_bytes(s->c, s->buf, s->len);
    return NULL;
}

/* Sends in a thread so messages bigger than the socket buffer work. */
static void send_async(struct sender *s, mpc_conn *c, const void *buf, size_t len)
{
    s->c = c;
    s->buf = buf;
    s->len = len;
    s->st = MPC_INVAL;
    assert_int_equal(pthread_create(&s->tid, NULL, sender_main, s), 0);
}

static void send_join(struct sender *s)
{
    pthread_join(s->tid, NULL);
    assert_int_equal(s->st, MPC_OK);
}

static const size_t sizes[] = {0, 1, 16384, 16385, 1u << 20, 16u << 20};

static void round_trip_sizes(int duplex)
{
    mpc_conn *a, *b;
    make_pair(duplex, &a, &b);
    /* a is the reader of a one-way pipe; for duplex, b->a is tested too. */
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        unsigned char *msg = pattern(n, (unsigned)i);
        struct sender s;
        send_async(&s, b, msg, n);
        void *got = NULL;
        size_t len = 99;
        assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &got, &len), MPC_OK);
        send_join(&s);
        assert_non_null(got);
        assert_int_equal(len, n);
        assert_memory_equal(got, msg, n);
        mpc_free(got);

        /* The same through the caller's buffer. */
        unsigned char *dst = malloc(n + 1);
        send_async(&s, b, msg, n);
        assert_int_equal(mpc_recv_bytes_into(a, dst, n + 1, &len), MPC_OK);
        send_join(&s);
        assert_int_equal(len, n);
        assert_memory_equal(dst, msg, n);
        free(dst);
        free(msg);
    }
    assert_int_equal(mpc_conn_buffered(a), 0);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

/* ---------------------------------------------------------------- tests */

static void messages_of_every_interesting_size_round_trip_over_a_socketpair(void **state)
{
    (void)state;
    round_trip_sizes(1);
}

static void messages_of_every_interesting_size_round_trip_over_a_one_way_pipe(void **state)
{
    (void)state;
    round_trip_sizes(0);
}

static void a_one_way_pipe_refuses_the_wrong_direction(void **state)
{
    (void)state;
    mpc_conn *r, *w;
    int ready;
    void *out;
    size_t len;
    make_pair(0, &r, &w);
    assert_int_equal(mpc_conn_readable(r), 1);
    assert_int_equal(mpc_conn_writable(r), 0);
    assert_int_equal(mpc_conn_readable(w), 0);
    assert_int_equal(mpc_conn_writable(w), 1);
    assert_int_equal(mpc_send_bytes(r, "x", 1), MPC_NOTWRITABLE);
    assert_string_equal(mpc_conn_errmsg(r), "connection is read-only");
    assert_int_equal(mpc_recv_bytes(w, MPC_NO_LIMIT, &out, &len), MPC_NOTREADABLE);
    assert_string_equal(mpc_conn_errmsg(w), "connection is write-only");
    assert_int_equal(mpc_poll(w, 0, &ready), MPC_NOTREADABLE);
    mpc_conn_close(r);
    mpc_conn_close(w);
}

static void many_small_messages_arrive_separately_and_in_order(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    make_pair(1, &a, &b);
    const char *msgs[] = {"a", "b", "cd", "", "efg"};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(mpc_send_bytes(b, msgs[i], strlen(msgs[i])), MPC_OK);
    for (size_t i = 0; i < 5; i++) {
        void *out;
        size_t len;
        assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_OK);
        assert_int_equal(len, strlen(msgs[i]));
        assert_memory_equal(out, msgs[i], len);
        mpc_free(out);
    }
    /* Read once through the buffer: nothing left over. */
    assert_int_equal(mpc_conn_buffered(a), 0);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void read_raw(int fd, unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
}

struct batch {
    mpc_conn *c;
    mpc_buf *bufs;
    size_t n;
    mpc_status st;
};

static void *batch_main(void *arg)
{
    struct batch *b = arg;
    b->st = mpc_send_many(b->c, b->bufs, b->n);
    return NULL;
}

struct raw_reader {
    pthread_t tid;
    int fd;
    unsigned char *buf;
    size_t n;
};

static void *raw_reader_main(void *arg)
{
    struct raw_reader *r = arg;
    size_t got = 0;
    while (got < r->n) {
        ssize_t k = read(r->fd, r->buf + got, r->n - got);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    r->n = got;
    return NULL;
}

/* Reads n raw bytes in a thread (a Unix socket holds only a few hundred
 * small messages, so the sender must not wait for the test to read). */
static void read_raw_async(struct raw_reader *r, int fd, unsigned char *buf, size_t n)
{
    r->fd = fd;
    r->buf = buf;
    r->n = n;
    assert_int_equal(pthread_create(&r->tid, NULL, raw_reader_main, r), 0);
}

static void read_raw_join(struct raw_reader *r, size_t want)
{
    pthread_join(r->tid, NULL);
    assert_int_equal(r->n, want);
}

static void send_many_puts_the_same_bytes_on_the_wire_as_single_sends(void **state)
{
    (void)state;
    enum { N = 1500 }; /* more than one IOV_MAX batch */
    /* Sizes around the copy-into-one-buffer threshold (256) and well over
     * it, empty ones, and enough small ones to fill the 16 KiB staging
     * buffer many times over. */
    static const size_t lens[] = {0, 1, 2, 3, 17, 255, 256, 257, 1, 0, 3, 5000, 2, 1};
    mpc_buf bufs[N];
    unsigned char *data = pattern(2000 + 70000, 7);
    size_t total = 0;
    for (size_t i = 0; i < N; i++) {
        bufs[i].data = data + (i % 2000);
        bufs[i].len = i % 500 == 499 ? 70000 : lens[i % (sizeof lens / sizeof lens[0])];
        total += 4 + bufs[i].len;
    }
    mpc_conn *a, *b;
    make_pair(1, &a, &b);
    unsigned char *one = malloc(total), *many = malloc(total);
    int fd = mpc_conn_fileno(a);

    struct raw_reader r;
    read_raw_async(&r, fd, one, total);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(mpc_send_bytes(b, bufs[i].data, bufs[i].len), MPC_OK);
    read_raw_join(&r, total);
    read_raw_async(&r, fd, many, total);
    assert_int_equal(mpc_send_many(b, bufs, N), MPC_OK);
    read_raw_join(&r, total);
    assert_memory_equal(one, many, total);

    /* And the receiving side sees N separate messages. */
    pthread_t tid;
    struct batch bt = {b, bufs, N, MPC_INVAL};
    assert_int_equal(pthread_create(&tid, NULL, batch_main, &bt), 0);
    for (size_t i = 0; i < N; i++) {
        void *out;
        size_t len;
        assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_OK);
        assert_int_equal(len, bufs[i].len);
        assert_memory_equal(out, bufs[i].data, len);
        mpc_free(out);
    }
    pthread_join(tid, NULL);
    assert_int_equal(bt.st, MPC_OK);
    free(one);
    free(many);
    free(data);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void a_message_longer_than_maxlength_makes_a_duplex_connection_write_only(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    void *out;
    size_t len;
    make_pair(1, &a, &b);
    assert_int_equal(mpc_send_bytes(b, "abcd", 4), MPC_OK);
    assert_int_equal(mpc_send_bytes(b, "abcde", 5), MPC_OK);
    /* Equal to maxlength is accepted. */
    assert_int_equal(mpc_recv_bytes(a, 4, &out, &len), MPC_OK);
    assert_int_equal(len, 4);
    mpc_free(out);
    assert_int_equal(mpc_recv_bytes(a, 4, &out, &len), MPC_TOOLONG);
    assert_string_equal(mpc_conn_errmsg(a), "bad message length");
    assert_int_equal(mpc_conn_readable(a), 0);
    assert_int_equal(mpc_conn_writable(a), 1);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_NOTREADABLE);
    /* It can still send. */
    assert_int_equal(mpc_send_bytes(a, "ok", 2), MPC_OK);
    assert_int_equal(mpc_recv_bytes(b, MPC_NO_LIMIT, &out, &len), MPC_OK);
    assert_memory_equal(out, "ok", 2);
    mpc_free(out);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void a_message_longer_than_maxlength_closes_a_read_only_connection(void **state)
{
    (void)state;
    mpc_conn *r, *w;
    void *out;
    size_t len;
    make_pair(0, &r, &w);
    assert_int_equal(mpc_send_bytes(w, "abcde", 5), MPC_OK);
    assert_int_equal(mpc_recv_bytes(r, 2, &out, &len), MPC_TOOLONG);
    assert_int_equal(mpc_conn_fileno(r), -1);
    assert_int_equal(mpc_recv_bytes(r, MPC_NO_LIMIT, &out, &len), MPC_CLOSED);
    assert_string_equal(mpc_conn_errmsg(r), "handle is closed");
    mpc_conn_close(r);
    mpc_conn_close(w);
}

static void max_message_size_rejects_before_reading_the_payload(void **state)
{
    (void)state;
    mpc_options o;
    mpc_options_init(&o);
    o.max_message_size = 3;
    mpc_conn *a, *b;
    void *out;
    size_t len;
    assert_int_equal(mpc_pipe(1, &o, &a, &b, NULL), MPC_OK);
    assert_int_equal(mpc_send_bytes(b, "abc", 3), MPC_OK);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_OK);
    mpc_free(out);
    /* The header claims 1 GiB; nothing of it is sent. */
    write_raw(a == NULL ? b : b, "\x40\x00\x00\x00", 4);
    assert_int_equal(mpc_recv_begin(a, MPC_NO_LIMIT, &(uint64_t){0}), MPC_TOOLONG);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void a_too_short_buffer_keeps_the_message_pending(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    unsigned char small[3], big[16];
    size_t len = 0;
    void *out;
    make_pair(1, &a, &b);
    assert_int_equal(mpc_send_bytes(b, "hello", 5), MPC_OK);
    assert_int_equal(mpc_send_bytes(b, "next", 4), MPC_OK);
    assert_int_equal(mpc_recv_bytes_into(a, small, sizeof small, &len), MPC_TOOSHORT);
    assert_int_equal(len, 5);
    /* Still pending: poll says so and a second short try says the same. */
    int ready = 0;
    assert_int_equal(mpc_poll(a, 0, &ready), MPC_OK);
    assert_int_equal(ready, 1);
    assert_int_equal(mpc_recv_bytes_into(a, small, sizeof small, &len), MPC_TOOSHORT);
    assert_int_equal(mpc_recv_bytes_into(a, big, sizeof big, &len), MPC_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(big, "hello", 5);
    /* A pending message is also returned by recv_bytes. */
    assert_int_equal(mpc_recv_bytes_into(a, small, sizeof small, &len), MPC_TOOSHORT);
    assert_int_equal(len, 4);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(out, "next", 4);
    mpc_free(out);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

/* mpc_recv_bytes_into takes a message that is already whole in the read
 * buffer by a shorter path; the rules must be the general path's: the
 * connection's max_message_size, the caller's capacity, clearing the
 * previous call's error, and the stream staying in step with the other
 * receive calls and with a large message after small ones. */
static void recv_bytes_into_keeps_the_rules_for_buffered_messages(void **state)
{
    (void)state;
    mpc_options o;
    mpc_conn *a, *b;
    unsigned char buf[16];
    size_t len = 0;
    uint64_t l64 = 0;
    mpc_options_init(&o);
    o.max_message_size = 5;
    assert_int_equal(mpc_pipe(1, &o, &a, &b, NULL), MPC_OK);
    mpc_conn_set_timeout(a, 5000);
    assert_int_equal(mpc_send_bytes(b, "abc", 3), MPC_OK);
    assert_int_equal(mpc_send_bytes(b, "abcdefgh", 8), MPC_OK);
    assert_int_equal(mpc_recv_bytes_into(a, buf, sizeof buf, &len), MPC_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "abc", 3);
    /* Whole in the buffer, but over max_message_size: refused, not taken. */
    assert_int_equal(mpc_recv_bytes_into(a, buf, sizeof buf, &len), MPC_TOOLONG);
    mpc_conn_close(a);
    mpc_conn_close(b);

    make_pair(1, &a, &b);
    mpc_conn_set_timeout(a, 5000);
    size_t big_n = 100000;
    unsigned char *big = malloc(big_n), *got = malloc(big_n);
    assert_non_null(big);
    assert_non_null(got);
    for (size_t i = 0; i < big_n; i++)
        big[i] = (unsigned char)(i * 7 + 1);
    assert_int_equal(mpc_send_bytes(b, "one", 3), MPC_OK);
    assert_int_equal(mpc_send_bytes(b, "two", 3), MPC_OK);
    assert_int_equal(mpc_send_bytes(b, "three", 5), MPC_OK);
    assert_int_equal(mpc_send_bytes(b, "four", 4), MPC_OK);
    assert_int_equal(mpc_recv_bytes_into(a, buf, sizeof buf, &len), MPC_OK);
    assert_memory_equal(buf, "one", 3);
    /* A failed call records its error; the next receive clears it. */
    assert_int_equal(mpc_recv_bytes_into(a, NULL, 5, &len), MPC_INVAL);
    assert_int_not_equal(mpc_conn_errmsg(a)[0], '\0');
    assert_int_equal(mpc_recv_bytes_into(a, buf, sizeof buf, &len), MPC_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "two", 3);
    assert_int_equal(mpc_conn_status(a), MPC_OK);
    assert_string_equal(mpc_conn_errmsg(a), "");
    /* Too short for a buffered message: kept, with its length. */
    assert_int_equal(mpc_recv_bytes_into(a, buf, 4, &len), MPC_TOOSHORT);
    assert_int_equal(len, 5);
    assert_int_equal(mpc_recv_bytes_into(a, buf, sizeof buf, &len), MPC_OK);
    assert_memory_equal(buf, "three", 5);
    /* In step with the two-step receive. */
    assert_int_equal(mpc_recv_begin(a, MPC_NO_LIMIT, &l64), MPC_OK);
    assert_int_equal(l64, 4);
    assert_int_equal(mpc_recv_payload(a, buf, 4), MPC_OK);
    assert_memory_equal(buf, "four", 4);
    /* Small messages, then a large one, then small again. */
    assert_int_equal(mpc_send_bytes(b, "x", 1), MPC_OK);
    assert_int_equal(mpc_send_bytes(b, big, big_n), MPC_OK);
    assert_int_equal(mpc_send_bytes(b, "yz", 2), MPC_OK);
    assert_int_equal(mpc_recv_bytes_into(a, buf, sizeof buf, &len), MPC_OK);
    assert_int_equal(len, 1);
    assert_int_equal(mpc_recv_bytes_into(a, got, big_n, &len), MPC_OK);
    assert_int_equal(len, big_n);
    assert_memory_equal(got, big, big_n);
    assert_int_equal(mpc_recv_bytes_into(a, buf, sizeof buf, &len), MPC_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "yz", 2);
    free(big);
    free(got);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void the_two_step_receive_reads_a_payload_in_pieces(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    make_pair(1, &a, &b);
    size_t n = 300000;
    unsigned char *msg = pattern(n, 3), *dst = malloc(n);
    struct sender s;
    send_async(&s, b, msg, n);
    uint64_t len = 0;
    assert_int_equal(mpc_recv_begin(a, MPC_NO_LIMIT, &len), MPC_OK);
    assert_int_equal(len, n);
    /* Asking again returns the same pending message. */
    assert_int_equal(mpc_recv_begin(a, MPC_NO_LIMIT, &len), MPC_OK);
    assert_int_equal(len, n);
    size_t off = 0, step = 1;
    while (off < n) {
        size_t k = step < n - off ? step : n - off;
        assert_int_equal(mpc_recv_payload(a, dst + off, k), MPC_OK);
        off += k;
        step = step * 3 + 1;
    }
    send_join(&s);
    assert_memory_equal(dst, msg, n);
    assert_int_equal(mpc_recv_payload(a, dst, 1), MPC_INVAL);
    free(msg);
    free(dst);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void poll_never_consumes_and_empty_messages_are_ready(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    int ready = 7;
    void *out;
    size_t len;
    make_pair(1, &a, &b);
    /* Read-ahead: poll must also see what the buffer holds. */
    assert_int_equal(mpc_conn_set_read_ahead(a, 1), MPC_OK);
    assert_int_equal(mpc_poll(a, 0, &ready), MPC_OK);
    assert_int_equal(ready, 0);
    assert_int_equal(mpc_send_bytes(b, "", 0), MPC_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mpc_poll(a, 1000, &ready), MPC_OK);
        assert_int_equal(ready, 1);
    }
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_OK);
    assert_int_equal(len, 0);
    assert_non_null(out);
    mpc_free(out);
    assert_int_equal(mpc_poll(a, 0, &ready), MPC_OK);
    assert_int_equal(ready, 0);

    /* Two messages in one read: after the first, the second is buffered
     * and poll must see it without the kernel. */
    assert_int_equal(mpc_send_many(b, (mpc_buf[]){{"x", 1}, {"yz", 2}}, 2), MPC_OK);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_OK);
    mpc_free(out);
    assert_int_equal(mpc_conn_buffered(a), 6);
    assert_int_equal(mpc_poll(a, 0, &ready), MPC_OK);
    assert_int_equal(ready, 1);
    assert_int_equal(mpc_conn_buffered(a), 6);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_OK);
    assert_memory_equal(out, "yz", 2);
    mpc_free(out);

    /* Peer end of file counts as ready. */
    mpc_conn_close(b);
    assert_int_equal(mpc_poll(a, 1000, &ready), MPC_OK);
    assert_int_equal(ready, 1);
    mpc_conn_close(a);
}

static void poll_waits_about_its_timeout_when_nothing_comes(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    int ready = 1;
    make_pair(1, &a, &b);
    int64_t t0 = now_ms();
    assert_int_equal(mpc_poll(a, 100, &ready), MPC_OK);
    int64_t dt = now_ms() - t0;
    assert_int_equal(ready, 0);
    assert_true(dt >= 95);
    assert_true(dt < 5000);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void wait_reports_ready_connections_including_buffered_ones(void **state)
{
    (void)state;
    mpc_conn *a[3], *b[3];
    int ready[4];
    size_t nready = 99;
    void *out;
    size_t len;
    for (int i = 0; i < 3; i++)
        make_pair(1, &a[i], &b[i]);
    mpc_conn *list[4] = {a[0], a[1], NULL, a[2]};
    assert_int_equal(mpc_wait(list, 4, 0, ready, &nready), MPC_OK);
    assert_int_equal(nready, 0);

    assert_int_equal(mpc_send_bytes(b[1], "m", 1), MPC_OK);
    assert_int_equal(mpc_wait(list, 4, 2000, ready, &nready), MPC_OK);
    assert_int_equal(nready, 1);
    assert_int_equal(ready[0], 0);
    assert_int_equal(ready[1], 1);
    assert_int_equal(ready[2], 0);
    assert_int_equal(ready[3], 0);

    /* Buffered: two messages, one read. */
    assert_int_equal(mpc_send_many(b[2], (mpc_buf[]){{"p", 1}, {"q", 1}}, 2), MPC_OK);
    assert_int_equal(mpc_recv_bytes(a[2], MPC_NO_LIMIT, &out, &len), MPC_OK);
    mpc_free(out);
    assert_int_equal(mpc_wait(list, 4, MPC_FOREVER, ready, &nready), MPC_OK);
    assert_int_equal(nready, 2);
    assert_int_equal(ready[1], 1);
    assert_int_equal(ready[3], 1);

    /* End of file counts. */
    mpc_conn_close(b[0]);
    assert_int_equal(mpc_wait(list, 4, 2000, ready, &nready), MPC_OK);
    assert_int_equal(ready[0], 1);
    assert_int_equal(nready, 3);

    int64_t t0 = now_ms();
    mpc_conn *quiet[1] = {a[2]};
    assert_int_equal(mpc_recv_bytes(a[2], MPC_NO_LIMIT, &out, &len), MPC_OK);
    mpc_free(out);
    assert_int_equal(mpc_wait(quiet, 1, 50, ready, &nready), MPC_OK);
    assert_int_equal(nready, 0);
    assert_true(now_ms() - t0 >= 45);
    for (int i = 0; i < 3; i++) {
        mpc_conn_close(a[i]);
        if (i)
            mpc_conn_close(b[i]);
    }
}

static void end_of_file_before_a_header_is_eof_and_inside_a_message_is_truncated(void **state)
{
    (void)state;
    void *out;
    size_t len;
    mpc_conn *a, *b;

    make_pair(1, &a, &b);
    mpc_conn_close(b);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_EOF);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_EOF);
    mpc_conn_close(a);

    /* Inside the 4-byte header. */
    make_pair(1, &a, &b);
    write_raw(b, "\x00\x00", 2);
    mpc_conn_close(b);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_TRUNCATED);
    assert_string_equal(mpc_conn_errmsg(a), "got end of file during message");
    mpc_conn_close(a);

    /* Inside the 8-byte extended length. */
    make_pair(1, &a, &b);
    write_raw(b, "\xff\xff\xff\xff\x00\x00", 6);
    mpc_conn_close(b);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_TRUNCATED);
    mpc_conn_close(a);

    /* Inside the payload, through the caller's buffer too; sticky. */
    make_pair(1, &a, &b);
    write_raw(b, "\x00\x00\x00\x05" "abc", 7);
    mpc_conn_close(b);
    unsigned char buf[8];
    assert_int_equal(mpc_recv_bytes_into(a, buf, sizeof buf, &len), MPC_TRUNCATED);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_TRUNCATED);
    mpc_conn_close(a);
}

static void a_negative_header_breaks_the_connection_for_good(void **state)
{
    (void)state;
    void *out;
    size_t len;
    int ready;
    mpc_conn *a, *b;
    make_pair(1, &a, &b);
    write_raw(b, "\xff\xff\xff\xfe", 4);
    assert_int_equal(mpc_send_bytes(b, "fine", 4), MPC_OK);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_PROTO);
    assert_non_null(strstr(mpc_conn_errmsg(a), "bad message length"));
    /* Sticky: the valid message after it is never taken as a header. */
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_PROTO);
    assert_int_equal(mpc_conn_status(a), MPC_PROTO);
    assert_int_equal(mpc_poll(a, 0, &ready), MPC_PROTO);
    assert_int_equal(mpc_send_bytes(a, "x", 1), MPC_PROTO);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static long max_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void a_hostile_two_gib_claim_then_close_allocates_only_a_bounded_step(void **state)
{
    (void)state;
    /* The policy itself: never the claimed size up front. */
    assert_true(mpc_recv_alloc_step(0x7FFFFFFF, 0) <= ((size_t)64 << 20));
    assert_true(mpc_recv_alloc_step((uint64_t)1 << 63, 0) <= ((size_t)64 << 20));
    assert_int_equal(mpc_recv_alloc_step(1000, 0), 1000);
    /* Growth follows what arrived: at most double. */
    size_t step = mpc_recv_alloc_step(0x7FFFFFFF, (size_t)100 << 20);
    assert_true(step <= ((size_t)200 << 20));
    assert_true(step > ((size_t)100 << 20));
    assert_int_equal(mpc_recv_alloc_step(0x7FFFFFFF, 0x7FFFFFFF), 0x7FFFFFFF);

    long before = max_rss_kib();
    void *out = NULL;
    size_t len;
    mpc_conn *a, *b;
    make_pair(1, &a, &b);
    write_raw(b, "\x7f\xff\xff\xff" "some", 8);
    mpc_conn_close(b);
    int64_t t0 = now_ms();
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_TRUNCATED);
    assert_null(out);
    assert_true(now_ms() - t0 < 2000);
    assert_true(max_rss_kib() - before < 200 * 1024);
    mpc_conn_close(a);

    /* -1 then 2^63: TOOLONG against a limit, and without one too (no
     * buffer can be that large), at once, before any payload arrives. */
    make_pair(1, &a, &b);
    write_raw(b, "\xff\xff\xff\xff\x80\x00\x00\x00\x00\x00\x00\x00", 12);
    assert_int_equal(mpc_recv_bytes(a, 1 << 20, &out, &len), MPC_TOOLONG);
    mpc_conn_close(a);
    mpc_conn_close(b);

    make_pair(1, &a, &b);
    write_raw(b, "\xff\xff\xff\xff\x80\x00\x00\x00\x00\x00\x00\x00xyz", 15);
    t0 = now_ms();
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_TOOLONG);
    assert_true(now_ms() - t0 < 2000);
    assert_string_equal(mpc_conn_errmsg(a), "bad message length");
    mpc_conn_close(b);
    assert_true(max_rss_kib() - before < 200 * 1024);
    mpc_conn_close(a);
}

static void the_extended_header_is_accepted_for_small_lengths(void **state)
{
    (void)state;
    void *out;
    size_t len;
    mpc_conn *a, *b;
    make_pair(1, &a, &b);
    write_raw(b, "\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x03" "abc", 15);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(out, "abc", 3);
    mpc_free(out);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

/* --- interrupt hook --- */

struct intr_state {
    volatile int calls;
    int abort_after;
};

static int intr_hook(void *arg)
{
    struct intr_state *s = arg;
    s->calls++;
    return s->calls >= s->abort_after;
}

struct kicker {
    pthread_t target;
    volatile int stop;
};

static void *kicker_main(void *arg)
{
    struct kicker *k = arg;
    while (!k->stop) {
        pthread_kill(k->target, SIGUSR1);
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void on_usr1(int sig) { (void)sig; }

static void the_interrupt_hook_can_abort_a_blocked_receive(void **state)
{
    (void)state;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART: EINTR reaches the library */
    sigaction(SIGUSR1, &sa, NULL);

    mpc_conn *a, *b;
    void *out;
    size_t len;
    make_pair(1, &a, &b);
    struct intr_state is = {0, 3};
    mpc_conn_set_interrupt(a, intr_hook, &is);
    mpc_conn_set_timeout(a, 20000); /* a safety net, never reached */

    struct kicker k = {pthread_self(), 0};
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, kicker_main, &k), 0);
    mpc_status st = mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len);
    k.stop = 1;
    pthread_join(tid, NULL);
    assert_int_equal(st, MPC_INTR);
    assert_int_equal(is.calls, 3); /* retried twice, aborted on the third */

    /* Aborted before any byte: the stream is still in step. */
    assert_int_equal(mpc_send_bytes(b, "after", 5), MPC_OK);
    mpc_conn_set_interrupt(a, NULL, NULL);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_OK);
    assert_memory_equal(out, "after", 5);
    mpc_free(out);
    signal(SIGUSR1, SIG_DFL);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void io_timeout_bounds_a_receive_and_keeps_the_stream_in_step(void **state)
{
    (void)state;
    mpc_options o;
    mpc_options_init(&o);
    o.io_timeout = 60;
    mpc_conn *a, *b;
    void *out;
    size_t len;
    assert_int_equal(mpc_pipe(1, &o, &a, &b, NULL), MPC_OK);
    int64_t t0 = now_ms();
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_TIMEOUT);
    int64_t dt = now_ms() - t0;
    assert_true(dt >= 55);
    assert_true(dt < 5000);
    assert_int_equal(mpc_conn_status(a), MPC_TIMEOUT);

    /* Half a header, then a timeout: the rest completes it later. */
    write_raw(b, "\x00\x00", 2);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_TIMEOUT);
    write_raw(b, "\x00\x02" "hi", 4);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(out, "hi", 2);
    mpc_free(out);

    /* A timeout in the middle of a payload breaks the connection. */
    write_raw(b, "\x00\x00\x00\x05" "ab", 6);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_TIMEOUT);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_PROTO);

    /* Sends time out too when the peer does not read. */
    mpc_conn_set_timeout(b, 50);
    unsigned char *big = pattern(8u << 20, 1);
    assert_int_equal(mpc_send_bytes(b, big, 8u << 20), MPC_TIMEOUT);
    free(big);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void sending_to_a_closed_peer_is_an_os_error_not_a_signal(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    make_pair(1, &a, &b);
    mpc_conn_close(a);
    assert_int_equal(mpc_send_bytes(b, "x", 1), MPC_OS);
    assert_int_equal(mpc_conn_errno(b), EPIPE);
    assert_non_null(strstr(mpc_conn_errmsg(b), "send: "));
    mpc_conn_close(b);
}

/* A pipe has no MSG_NOSIGNAL: the core blocks SIGPIPE around the write
 * (SIGPIPE is at its default, killing disposition in this program). */
static void writing_to_a_pipe_whose_reader_is_gone_is_an_os_error_not_a_signal(void **state)
{
    (void)state;
    mpc_conn *r, *w;
    mpc_error e;
    assert_int_equal(mpc_pipe(0, NULL, &r, &w, &e), MPC_OK);
    mpc_conn_close(r);
    assert_int_equal(mpc_send_bytes(w, "x", 1), MPC_OS);
    assert_int_equal(mpc_conn_errno(w), EPIPE);
    mpc_buf m[2] = {{"a", 1}, {"b", 1}};
    assert_int_equal(mpc_send_many(w, m, 2), MPC_OS);
    assert_int_equal(mpc_conn_errno(w), EPIPE);
    /* Nothing left pending for the thread either. */
    sigset_t pending;
    sigpending(&pending);
    assert_false(sigismember(&pending, SIGPIPE));
    mpc_conn_close(w);
}

struct blocked_recv {
    pthread_t tid;
    mpc_conn *c;
    mpc_status st;
    int ready;
    int poll;
};

static void *blocked_recv_main(void *arg)
{
    struct blocked_recv *b = arg;
    void *out = NULL;
    size_t len;
    if (b->poll)
        b->st = mpc_poll(b->c, -1, &b->ready);
    else
        b->st = mpc_recv_bytes(b->c, MPC_NO_LIMIT, &out, &len);
    mpc_free(out);
    return NULL;
}

/* mpc_conn_wake() makes a wakeable receive (and poll) that waits in another
 * thread return MPC_CLOSED, without touching the socket: the peer sees no
 * end of file, and a message sent afterwards is still there. */
static void wake_ends_a_wakeable_wait_in_another_thread_and_leaves_the_socket(void **state)
{
    (void)state;
    for (int poll = 0; poll < 2; poll++) {
        mpc_conn *a, *b;
        make_pair(1, &a, &b);
        assert_int_equal(mpc_conn_set_wakeable(a, 1), MPC_OK);
        struct blocked_recv br = {.c = a, .poll = poll};
        assert_int_equal(pthread_create(&br.tid, NULL, blocked_recv_main, &br), 0);
        usleep(100 * 1000);
        mpc_conn_wake(a);
        pthread_join(br.tid, NULL);
        assert_int_equal(br.st, MPC_CLOSED);
        int ready = 1;
        assert_int_equal(mpc_poll(b, 0, &ready), MPC_OK);
        assert_int_equal(ready, 0); /* no shutdown: no end of file */
        /* Not wakeable any more: the message is received as usual. */
        assert_int_equal(mpc_conn_set_wakeable(a, 0), MPC_OK);
        assert_int_equal(mpc_send_bytes(b, "kept", 4), MPC_OK);
        void *out;
        size_t len;
        assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_OK);
        assert_memory_equal(out, "kept", 4);
        mpc_free(out);
        mpc_conn_close(a);
        mpc_conn_close(b);
    }
}

static int g_hook_calls;
static int abort_hook(void *arg)
{
    (void)arg;
    g_hook_calls++;
    return 1;
}

static void handle_alarm(int sig) { (void)sig; }

/* A signal that arrives after a blocking write has sent part of a message
 * ends the write early without EINTR: the hook is asked then, and aborting
 * breaks the connection (half a message cannot be taken back). */
static void the_hook_is_asked_when_a_signal_cuts_a_write_short(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    make_pair(1, &a, &b);
    mpc_conn_set_interrupt(b, abort_hook, NULL);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handle_alarm; /* no SA_RESTART */
    sigaction(SIGALRM, &sa, &old);
    size_t n = (size_t)16 << 20;
    unsigned char *big = calloc(1, n);
    assert_non_null(big);
    g_hook_calls = 0;
    alarm(1);
    assert_int_equal(mpc_send_bytes(b, big, n), MPC_INTR);
    alarm(0);
    sigaction(SIGALRM, &old, NULL);
    assert_true(g_hook_calls >= 1);
    assert_int_equal(mpc_send_bytes(b, "x", 1), MPC_PROTO);
    assert_non_null(strstr(mpc_conn_errmsg(b), "sent only in part"));
    free(big);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

static void a_descriptor_can_be_wrapped_and_detached(void **state)
{
    (void)state;
    int sv[2];
    mpc_conn *a = NULL, *b = NULL;
    mpc_error e;
    void *out;
    size_t len;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(mpc_conn_from_fd(-1, 1, 1, NULL, &a, &e), MPC_INVAL);
    assert_null(a);
    assert_int_equal(mpc_conn_from_fd(sv[0], 0, 0, NULL, &a, &e), MPC_INVAL);
    assert_int_equal(mpc_conn_from_fd(sv[0], 1, 1, NULL, &a, &e), MPC_OK);
    assert_int_equal(mpc_conn_from_fd(sv[1], 1, 1, NULL, &b, &e), MPC_OK);
    assert_int_equal(mpc_conn_fileno(a), sv[0]);
    assert_string_equal(mpc_conn_peer(a), "");
    assert_int_equal(mpc_send_bytes(b, "wrapped", 7), MPC_OK);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_OK);
    assert_memory_equal(out, "wrapped", 7);
    mpc_free(out);
    assert_int_equal(mpc_conn_detach(a), sv[0]);
    /* The descriptor is still open and usable after detach. */
    assert_int_equal(mpc_send_bytes(b, "z", 1), MPC_OK);
    unsigned char raw[5];
    read_raw(sv[0], raw, 5);
    assert_memory_equal(raw, "\x00\x00\x00\x01z", 5);
    close(sv[0]);
    mpc_conn_close(b);
    mpc_conn_close(NULL);
    assert_int_equal(mpc_conn_detach(NULL), -1);

    /* A number that is no open descriptor is taken, as CPython's
     * Connection(44977608) is; its calls fail with EBADF. */
    int closed_fd = sv[0], ready = 0;
    assert_int_equal(mpc_conn_from_fd(closed_fd, 1, 1, NULL, &a, &e), MPC_OK);
    assert_int_equal(mpc_poll(a, 0, &ready), MPC_OS);
    assert_int_equal(mpc_conn_errno(a), EBADF);
    assert_int_equal(mpc_send_bytes(a, "x", 1), MPC_OS);
    assert_int_equal(mpc_conn_errno(a), EBADF);
    assert_int_equal(mpc_conn_detach(a), closed_fd);
}

static void the_read_buffer_avoids_page_offsets_0_and_16(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    void *out;
    size_t len;
    make_pair(1, &a, &b);
    assert_int_equal(mpc_send_bytes(b, "x", 1), MPC_OK);
    assert_int_equal(mpc_recv_bytes(a, MPC_NO_LIMIT, &out, &len), MPC_OK);
    mpc_free(out);
    uintptr_t off = (uintptr_t)a->rbuf & 4095;
    assert_true(off != 0 && off != 16);
    mpc_conn_close(a);
    mpc_conn_close(b);
}


/* Zero-copy receive: peek shows a wholly buffered message without taking
 * it, consume takes it, and the stream stays in step with the copying
 * calls around it.  AGAIN (nothing consumed, nothing recorded) when the
 * message is not whole in the buffer, is over maxlength or
 * max_message_size, a message is half received, or nothing is there. */
static void peek_and_consume_take_buffered_messages_without_copying(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    const void *v = NULL;
    size_t n = 0;
    void *out;
    unsigned char small[64];
    make_pair(1, &a, &b);
    mpc_conn_set_timeout(b, 5000);
    assert_int_equal(mpc_conn_set_read_ahead(b, 1), MPC_OK); /* only read-ahead buffers */
    assert_int_equal(mpc_recv_peek(NULL, 10, &v, &n), MPC_INVAL);
    assert_int_equal(mpc_recv_peek(b, 10, NULL, &n), MPC_INVAL);
    assert_int_equal(mpc_recv_consume(NULL), MPC_INVAL);
    /* Nothing read yet: nothing buffered. */
    assert_int_equal(mpc_recv_peek(b, MPC_NO_LIMIT, &v, &n), MPC_AGAIN);
    assert_int_equal(mpc_recv_consume(b), MPC_AGAIN);

    mpc_buf m[5] = {{"first", 5}, {"", 0}, {"third!", 6}, {"0123456789", 10}, {"last", 4}};
    assert_int_equal(mpc_send_many(a, m, 5), MPC_OK);
    /* A copying receive fills the buffer with all five. */
    assert_int_equal(mpc_recv_bytes_into(b, small, sizeof small, &n), MPC_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(small, "first", 5);
    /* Peek twice: the same view, nothing consumed. */
    assert_int_equal(mpc_recv_peek(b, MPC_NO_LIMIT, &v, &n), MPC_OK);
    assert_int_equal(n, 0);
    const void *v2 = NULL;
    assert_int_equal(mpc_recv_peek(b, MPC_NO_LIMIT, &v2, &n), MPC_OK);
    assert_ptr_equal(v, v2);
    assert_int_equal(mpc_recv_consume(b), MPC_OK);
    assert_int_equal(mpc_recv_peek(b, 6, &v, &n), MPC_OK);
    assert_int_equal(n, 6);
    assert_memory_equal(v, "third!", 6);
    assert_int_equal(mpc_recv_consume(b), MPC_OK);
    /* Over maxlength: AGAIN, and the copying call then reports it as
     * usual (CPython: the connection stops being readable). */
    assert_int_equal(mpc_recv_peek(b, 9, &v, &n), MPC_AGAIN);
    assert_int_equal(mpc_conn_status(b), MPC_OK);
    assert_int_equal(mpc_recv_peek(b, 10, &v, &n), MPC_OK);
    assert_memory_equal(v, "0123456789", 10);
    assert_int_equal(mpc_recv_consume(b), MPC_OK);
    /* The last one through a copying call: in step. */
    assert_int_equal(mpc_recv_bytes(b, MPC_NO_LIMIT, &out, &n), MPC_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "last", 4);
    mpc_free(out);
    assert_int_equal(mpc_recv_peek(b, MPC_NO_LIMIT, &v, &n), MPC_AGAIN);

    /* A message only partly buffered, or half received, is not offered. */
    unsigned char *big = pattern(100000, 7);
    struct sender s;
    send_async(&s, a, big, 100000);
    uint64_t len = 0;
    assert_int_equal(mpc_recv_begin(b, MPC_NO_LIMIT, &len), MPC_OK);
    assert_int_equal(mpc_recv_peek(b, MPC_NO_LIMIT, &v, &n), MPC_AGAIN);
    assert_int_equal(mpc_recv_consume(b), MPC_AGAIN);
    unsigned char *got = malloc(100000);
    assert_int_equal(mpc_recv_payload(b, got, 100000), MPC_OK);
    send_join(&s);
    assert_memory_equal(got, big, 100000);
    free(got);
    free(big);

    /* max_message_size applies too; the copying call reports it. */
    mpc_conn_close(a);
    mpc_conn_close(b);
    mpc_options o;
    mpc_options_init(&o);
    o.max_message_size = 3;
    mpc_error e;
    assert_int_equal(mpc_pipe(1, &o, &a, &b, &e), MPC_OK);
    mpc_conn_set_timeout(b, 5000);
    mpc_buf two[2] = {{"ab", 2}, {"abcd", 4}};
    assert_int_equal(mpc_send_many(a, two, 2), MPC_OK);
    assert_int_equal(mpc_recv_bytes_into(b, small, sizeof small, &n), MPC_OK);
    assert_int_equal(mpc_recv_peek(b, MPC_NO_LIMIT, &v, &n), MPC_AGAIN);
    assert_int_equal(mpc_recv_bytes_into(b, small, sizeof small, &n), MPC_TOOLONG);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

int main(void)
{
    signal(SIGPIPE, SIG_DFL); /* MSG_NOSIGNAL must make this safe */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(messages_of_every_interesting_size_round_trip_over_a_socketpair),
        cmocka_unit_test(messages_of_every_interesting_size_round_trip_over_a_one_way_pipe),
        cmocka_unit_test(a_one_way_pipe_refuses_the_wrong_direction),
        cmocka_unit_test(many_small_messages_arrive_separately_and_in_order),
        cmocka_unit_test(send_many_puts_the_same_bytes_on_the_wire_as_single_sends),
        cmocka_unit_test(a_message_longer_than_maxlength_makes_a_duplex_connection_write_only),
        cmocka_unit_test(a_message_longer_than_maxlength_closes_a_read_only_connection),
        cmocka_unit_test(max_message_size_rejects_before_reading_the_payload),
        cmocka_unit_test(a_too_short_buffer_keeps_the_message_pending),
        cmocka_unit_test(recv_bytes_into_keeps_the_rules_for_buffered_messages),
        cmocka_unit_test(the_two_step_receive_reads_a_payload_in_pieces),
        cmocka_unit_test(poll_never_consumes_and_empty_messages_are_ready),
        cmocka_unit_test(poll_waits_about_its_timeout_when_nothing_comes),
        cmocka_unit_test(wait_reports_ready_connections_including_buffered_ones),
        cmocka_unit_test(end_of_file_before_a_header_is_eof_and_inside_a_message_is_truncated),
        cmocka_unit_test(a_negative_header_breaks_the_connection_for_good),
        cmocka_unit_test(a_hostile_two_gib_claim_then_close_allocates_only_a_bounded_step),
        cmocka_unit_test(the_extended_header_is_accepted_for_small_lengths),
        cmocka_unit_test(the_interrupt_hook_can_abort_a_blocked_receive),
        cmocka_unit_test(io_timeout_bounds_a_receive_and_keeps_the_stream_in_step),
        cmocka_unit_test(sending_to_a_closed_peer_is_an_os_error_not_a_signal),
        cmocka_unit_test(writing_to_a_pipe_whose_reader_is_gone_is_an_os_error_not_a_signal),
        cmocka_unit_test(wake_ends_a_wakeable_wait_in_another_thread_and_leaves_the_socket),
        cmocka_unit_test(the_hook_is_asked_when_a_signal_cuts_a_write_short),
        cmocka_unit_test(a_descriptor_can_be_wrapped_and_detached),
        cmocka_unit_test(the_read_buffer_avoids_page_offsets_0_and_16),
        cmocka_unit_test(peek_and_consume_take_buffered_messages_without_copying),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
