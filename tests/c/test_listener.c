/*
 * test_listener.c - listeners and clients over every transport (TCP over
 * IPv4 and IPv6, Unix paths, abstract names): binding, the real address,
 * the socket file's life, accept deadlines, the handshake in every dialect
 * pairing, wrong keys, oversize and silent handshake peers, and that the
 * listener keeps serving good clients after each bad one.  Port 0 only;
 * every accept has a deadline.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mpconn.h"

#define ACCEPT_MS 10000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static mpc_listener *listen_ok(const char *addr, const mpc_options *o)
{
    mpc_listener *l = NULL;
    mpc_error e;
    mpc_status st = mpc_listen(addr, o, &l, &e);
    if (st != MPC_OK)
        fail_msg("listen %s: %s", addr, e.message);
    return l;
}

/* A client in a thread: connects (with opts), then sends "hello". */
struct client {
    pthread_t tid;
    char addr[256];
    mpc_options opts;
    mpc_status st;
    mpc_error err;
    mpc_status send_st;
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    mpc_conn *conn = NULL;
    c->st = mpc_connect(c->addr, &c->opts, &conn, &c->err);
    c->send_st = MPC_INVAL;
    if (c->st == MPC_OK) {
        c->send_st = mpc_send_bytes(conn, "hello", 5);
        mpc_conn_close(conn);
    }
    return NULL;
}

static void client_start(struct client *c, const char *addr, const mpc_options *o)
{
    memset(c, 0, sizeof *c);
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    if (o)
        c->opts = *o;
    c->opts.handshake_timeout = c->opts.handshake_timeout ? c->opts.handshake_timeout : 10000;
    c->opts.connect_timeout = 10000;
    assert_int_equal(pthread_create(&c->tid, NULL, client_main, c), 0);
}

static void client_join(struct client *c) { pthread_join(c->tid, NULL); }

/* Accepts one client and expects "hello" from it. */
static void accept_hello(mpc_listener *l)
{
    mpc_conn *c = NULL;
    mpc_error e;
    void *out;
    size_t len;
    mpc_status st = mpc_listener_accept(l, ACCEPT_MS, &c, &e);
    if (st != MPC_OK)
        fail_msg("accept: %s", e.message);
    mpc_conn_set_timeout(c, 10000);
    assert_int_equal(mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len), MPC_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "hello", 5);
    mpc_free(out);
    mpc_conn_close(c);
}

/* One good client through l (with o as the client's options). */
static void good_client(mpc_listener *l, const mpc_options *o)
{
    struct client cl;
    client_start(&cl, mpc_listener_address(l), o);
    accept_hello(l);
    client_join(&cl);
    if (cl.st != MPC_OK)
        fail_msg("client: %s", cl.err.message);
    assert_int_equal(cl.send_st, MPC_OK);
}

static void tcp_over_ipv4_reports_the_real_port_and_round_trips(void **state)
{
    (void)state;
    mpc_listener *l = listen_ok("127.0.0.1:0", NULL);
    const char *addr = mpc_listener_address(l);
    assert_string_equal(mpc_listener_family(l), "AF_INET");
    assert_true(strncmp(addr, "127.0.0.1:", 10) == 0);
    assert_true(atoi(addr + 10) > 0);
    assert_true(mpc_listener_fileno(l) >= 0);

    /* Without a key, connect completes through the backlog. */
    mpc_conn *cl = NULL, *sv = NULL;
    mpc_error e;
    assert_int_equal(mpc_connect(addr, NULL, &cl, &e), MPC_OK);
    assert_string_equal(mpc_conn_peer(cl), addr);
    assert_int_equal(mpc_listener_accept(l, ACCEPT_MS, &sv, &e), MPC_OK);
    assert_true(strncmp(mpc_conn_peer(sv), "127.0.0.1:", 10) == 0);
    assert_int_equal(mpc_send_bytes(cl, "ping", 4), MPC_OK);
    void *out;
    size_t len;
    assert_int_equal(mpc_recv_bytes(sv, MPC_NO_LIMIT, &out, &len), MPC_OK);
    assert_memory_equal(out, "ping", 4);
    mpc_free(out);
    mpc_conn_close(cl);
    mpc_conn_close(sv);
    mpc_listener_close(l);
    mpc_listener_close(NULL);
}

static void a_name_resolves_and_binds_like_its_address(void **state)
{
    (void)state;
    mpc_listener *l = listen_ok("localhost:0", NULL);
    assert_true(strncmp(mpc_listener_address(l), "127.0.0.1:", 10) == 0);
    good_client(l, NULL);
    mpc_listener_close(l);
}

static void tcp_over_ipv6_works_when_the_machine_has_it(void **state)
{
    (void)state;
    mpc_listener *l = NULL;
    mpc_error e;
    mpc_status st = mpc_listen("[::1]:0", NULL, &l, &e);
    if (st != MPC_OK) {
        print_message("skipped: no IPv6 loopback here (%s)\n", e.message);
        skip();
    }
    assert_string_equal(mpc_listener_family(l), "AF_INET6");
    assert_true(strncmp(mpc_listener_address(l), "[::1]:", 6) == 0);
    good_client(l, NULL);
    mpc_listener_close(l);
}

static void make_tmpdir(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/mpconn-test-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void a_unix_socket_file_exists_until_close_and_cannot_be_bound_twice(void **state)
{
    (void)state;
    char dir[64], path[128];
    struct stat sb;
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/s.sock", dir);
    mpc_options o;
    mpc_options_init(&o);
    o.unix_mode = 0600;
    mpc_listener *l = listen_ok(path, &o);
    assert_string_equal(mpc_listener_family(l), "AF_UNIX");
    assert_string_equal(mpc_listener_address(l), path);
    assert_int_equal(stat(path, &sb), 0);
    assert_true(S_ISSOCK(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0600);

    mpc_listener *l2 = NULL;
    mpc_error e;
    assert_int_equal(mpc_listen(path, NULL, &l2, &e), MPC_OS);
    assert_null(l2);
    assert_int_equal(e.sys_errno, EADDRINUSE);
    /* The failed bind must not remove the first listener's file. */
    assert_int_equal(stat(path, &sb), 0);

    good_client(l, NULL);
    mpc_conn *c = NULL;
    assert_int_equal(mpc_connect(path, NULL, &c, &e), MPC_OK);
    assert_string_equal(mpc_conn_peer(c), "");
    mpc_conn_close(c);

    mpc_listener_close(l);
    assert_int_equal(stat(path, &sb), -1);
    assert_int_equal(errno, ENOENT);
    rmdir(dir);
}

static void an_abstract_name_round_trips_and_leaves_no_file(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof name, "@mpconn-test-%d", (int)getpid());
    mpc_listener *l = listen_ok(name, NULL);
    assert_string_equal(mpc_listener_address(l), name);
    assert_string_equal(mpc_listener_family(l), "AF_UNIX");
    mpc_listener *l2 = NULL;
    mpc_error e;
    assert_int_equal(mpc_listen(name, NULL, &l2, &e), MPC_OS);
    assert_int_equal(e.sys_errno, EADDRINUSE);
    good_client(l, NULL);
    mpc_listener_close(l);
    /* The name is free again once closed. */
    l = listen_ok(name, NULL);
    mpc_listener_close(l);
}

static void a_too_long_unix_path_is_an_invalid_argument(void **state)
{
    (void)state;
    char path[200];
    memset(path, 'x', sizeof path);
    path[0] = '/';
    path[150] = '\0';
    mpc_listener *l = NULL;
    mpc_error e;
    assert_int_equal(mpc_listen(path, NULL, &l, &e), MPC_INVAL);
    assert_non_null(strstr(e.message, "too long"));
    mpc_conn *c = NULL;
    assert_int_equal(mpc_connect(path, NULL, &c, &e), MPC_INVAL);
}

static void accept_gives_up_at_its_timeout(void **state)
{
    (void)state;
    mpc_listener *l = listen_ok("127.0.0.1:0", NULL);
    mpc_conn *c = (mpc_conn *)1;
    mpc_error e;
    int64_t t0 = now_ms();
    assert_int_equal(mpc_listener_accept(l, 80, &c, &e), MPC_TIMEOUT);
    assert_true(now_ms() - t0 >= 75);
    assert_null(c);
    assert_int_equal(mpc_listener_accept(l, 0, &c, &e), MPC_TIMEOUT);
    assert_non_null(strstr(mpc_listener_errmsg(l), "timed out"));
    mpc_listener_close(l);
}

static void connect_refused_is_an_os_error_with_its_text(void **state)
{
    (void)state;
    mpc_listener *l = listen_ok("127.0.0.1:0", NULL);
    char addr[64], want[128];
    snprintf(addr, sizeof addr, "%s", mpc_listener_address(l));
    mpc_listener_close(l);
    mpc_conn *c = (mpc_conn *)1;
    mpc_error e;
    assert_int_equal(mpc_connect(addr, NULL, &c, &e), MPC_OS);
    assert_null(c);
    assert_int_equal(e.sys_errno, ECONNREFUSED);
    snprintf(want, sizeof want, "connect to %s: Connection refused", addr);
    assert_string_equal(e.message, want);

    assert_int_equal(mpc_connect("/nonexistent/mpconn.sock", NULL, &c, &e), MPC_OS);
    assert_int_equal(e.sys_errno, ENOENT);
    assert_int_equal(mpc_connect("no-such-host.invalid:80", NULL, &c, &e), MPC_RESOLVE);
}

static mpc_options keyed(const char *key, mpc_dialect d)
{
    mpc_options o;
    mpc_options_init(&o);
    o.authkey = key;
    o.authkey_len = strlen(key);
    o.dialect = d;
    o.handshake_timeout = 10000;
    return o;
}

static void the_handshake_succeeds_in_every_compatible_dialect_pairing(void **state)
{
    (void)state;
    static const mpc_dialect pairs[][2] = {
        {MPC_DIALECT_MODERN, MPC_DIALECT_MODERN}, {MPC_DIALECT_MODERN, MPC_DIALECT_LEGACY},
        {MPC_DIALECT_LEGACY, MPC_DIALECT_MODERN}, {MPC_DIALECT_LEGACY, MPC_DIALECT_LEGACY},
        {MPC_DIALECT_STRICT, MPC_DIALECT_STRICT}, {MPC_DIALECT_STRICT, MPC_DIALECT_MODERN},
        {MPC_DIALECT_MODERN, MPC_DIALECT_STRICT},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        mpc_options so = keyed("secret", pairs[i][0]), co = keyed("secret", pairs[i][1]);
        mpc_listener *l = listen_ok("127.0.0.1:0", &so);
        good_client(l, &co);
        mpc_listener_close(l);
    }
    /* An empty key is a real key (CPython 3.13). */
    mpc_options eo = keyed("", MPC_DIALECT_MODERN);
    mpc_listener *l = listen_ok("127.0.0.1:0", &eo);
    good_client(l, &eo);
    mpc_listener_close(l);
}

static void a_strict_server_refuses_a_legacy_client(void **state)
{
    (void)state;
    mpc_options so = keyed("secret", MPC_DIALECT_STRICT), co = keyed("secret", MPC_DIALECT_LEGACY);
    mpc_listener *l = listen_ok("127.0.0.1:0", &so);
    struct client cl;
    mpc_conn *c = NULL;
    mpc_error e;
    client_start(&cl, mpc_listener_address(l), &co);
    assert_int_equal(mpc_listener_accept(l, ACCEPT_MS, &c, &e), MPC_AUTH);
    client_join(&cl);
    /* The server refuses to answer the 20-byte challenge and hangs up, as
     * CPython's answer_challenge does: the client sees end of file. */
    assert_int_equal(cl.st, MPC_EOF);
    mpc_listener_close(l);
}

static void a_wrong_key_fails_on_both_sides_and_the_listener_serves_the_next_client(void **state)
{
    (void)state;
    mpc_options so = keyed("secret", MPC_DIALECT_MODERN), co = keyed("wrong", MPC_DIALECT_MODERN);
    mpc_listener *l = listen_ok("127.0.0.1:0", &so);
    struct client cl;
    mpc_conn *c = (mpc_conn *)1;
    mpc_error e;
    client_start(&cl, mpc_listener_address(l), &co);
    assert_int_equal(mpc_listener_accept(l, ACCEPT_MS, &c, &e), MPC_AUTH);
    assert_null(c);
    assert_string_equal(e.message, "digest received was wrong");
    assert_string_equal(mpc_listener_errmsg(l), "digest received was wrong");
    client_join(&cl);
    assert_int_equal(cl.st, MPC_AUTH);
    assert_string_equal(cl.err.message, "digest sent was rejected");

    mpc_options good = keyed("secret", MPC_DIALECT_LEGACY);
    good_client(l, &good);
    mpc_listener_close(l);
}

/* A raw peer: no key, so it can write handshake frames by hand. */
static void a_300_byte_handshake_frame_is_too_long_for_either_side(void **state)
{
    (void)state;
    mpc_options so = keyed("secret", MPC_DIALECT_MODERN);
    mpc_listener *l = listen_ok("127.0.0.1:0", &so);
    unsigned char big[300];
    memset(big, 'A', sizeof big);
    mpc_conn *raw = NULL, *c = NULL;
    mpc_error e;
    void *out;
    size_t len;

    /* Client side sends a 300-byte reply to the server's challenge. */
    assert_int_equal(mpc_connect(mpc_listener_address(l), NULL, &raw, &e), MPC_OK);
    assert_int_equal(mpc_send_bytes(raw, big, sizeof big), MPC_OK);
    assert_int_equal(mpc_listener_accept(l, ACCEPT_MS, &c, &e), MPC_TOOLONG);
    assert_string_equal(e.message, "bad message length");
    mpc_conn_close(raw);
    good_client(l, &so);

    /* Server side: a raw listener sends a 300-byte challenge. */
    mpc_listener *rl = listen_ok("127.0.0.1:0", NULL);
    struct client cl;
    client_start(&cl, mpc_listener_address(rl), &so);
    assert_int_equal(mpc_listener_accept(rl, ACCEPT_MS, &c, &e), MPC_OK);
    assert_int_equal(mpc_send_bytes(c, big, sizeof big), MPC_OK);
    client_join(&cl);
    assert_int_equal(cl.st, MPC_TOOLONG);
    /* The client closed its end: the raw server sees end of file, or a
     * reset, as the client (like CPython) left the payload it refused
     * unread in its socket, and TCP resets a connection closed so. */
    mpc_conn_set_timeout(c, 10000);
    mpc_status st = mpc_recv_bytes(c, MPC_NO_LIMIT, &out, &len);
    if (st != MPC_EOF) {
        assert_int_equal(st, MPC_OS);
        assert_int_equal(mpc_conn_errno(c), ECONNRESET);
    }
    mpc_conn_close(c);
    mpc_listener_close(rl);
    mpc_listener_close(l);
}

static void a_silent_client_hits_the_handshake_deadline(void **state)
{
    (void)state;
    mpc_options so = keyed("secret", MPC_DIALECT_MODERN);
    so.handshake_timeout = 150;
    mpc_listener *l = listen_ok("127.0.0.1:0", &so);
    mpc_conn *raw = NULL, *c = NULL;
    mpc_error e;
    assert_int_equal(mpc_connect(mpc_listener_address(l), NULL, &raw, &e), MPC_OK);
    int64_t t0 = now_ms();
    assert_int_equal(mpc_listener_accept(l, ACCEPT_MS, &c, &e), MPC_TIMEOUT);
    int64_t dt = now_ms() - t0;
    assert_true(dt >= 140);
    assert_true(dt < 5000);
    assert_string_equal(e.message, "handshake timed out");
    mpc_conn_close(raw);

    /* A client that says something unexpected gets an error too. */
    assert_int_equal(mpc_connect(mpc_listener_address(l), NULL, &raw, &e), MPC_OK);
    assert_int_equal(mpc_send_bytes(raw, "nonsense", 8), MPC_OK);
    assert_int_equal(mpc_listener_accept(l, ACCEPT_MS, &c, &e), MPC_AUTH);
    mpc_conn_close(raw);

    /* And one that hangs up at once. */
    assert_int_equal(mpc_connect(mpc_listener_address(l), NULL, &raw, &e), MPC_OK);
    mpc_conn_close(raw);
    mpc_status st = mpc_listener_accept(l, ACCEPT_MS, &c, &e);
    assert_true(st == MPC_EOF || st == MPC_OS);

    so.handshake_timeout = 10000;
    good_client(l, &so);
    mpc_listener_close(l);
}


/* An accept in a thread, for tests that play the client by hand. */
struct accepter {
    pthread_t tid;
    mpc_listener *l;
    mpc_conn *c;
    mpc_status st;
};

static void *accepter_main(void *arg)
{
    struct accepter *a = arg;
    mpc_error e;
    a->st = mpc_listener_accept(a->l, ACCEPT_MS, &a->c, &e);
    if (a->c)
        mpc_conn_set_timeout(a->c, 10000);
    return NULL;
}

static void accepter_start(struct accepter *a, mpc_listener *l)
{
    memset(a, 0, sizeof *a);
    a->l = l;
    assert_int_equal(pthread_create(&a->tid, NULL, accepter_main, a), 0);
}

static void accepter_join(struct accepter *a) { pthread_join(a->tid, NULL); }

/* The client pipelines: its reply and its own challenge leave together,
 * before it has the verdict (the bytes and their order on the wire are
 * CPython's; only the waiting differs).  A raw server sees both frames
 * without having sent "#WELCOME#" -- a client that waited for the verdict
 * first would leave the second receive to time out.  Then the raw server
 * answers like CPython, one frame per write, and the client completes. */
static void the_client_sends_its_reply_and_challenge_in_one_trip(void **state)
{
    (void)state;
    mpc_options co = keyed("secret", MPC_DIALECT_MODERN);
    mpc_listener *rl = listen_ok("127.0.0.1:0", NULL);
    struct client cl;
    mpc_conn *c = NULL;
    mpc_error e;
    unsigned char rnd[MPC_HS_MODERN_RANDOM], chal[MPC_HS_FRAME_MAX], reply[MPC_HS_FRAME_MAX];
    size_t clen = 0, rlen = 0, len = 0;
    void *got = NULL, *theirs = NULL;
    memset(rnd, 0x5a, sizeof rnd);

    client_start(&cl, mpc_listener_address(rl), &co);
    assert_int_equal(mpc_listener_accept(rl, ACCEPT_MS, &c, &e), MPC_OK);
    mpc_conn_set_timeout(c, 10000);
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_MODERN, "sha256", rnd, sizeof rnd, chal,
                                      sizeof chal, &clen, &e),
                     MPC_OK);
    assert_int_equal(mpc_send_bytes(c, chal, clen), MPC_OK);
    assert_int_equal(mpc_recv_bytes(c, MPC_HS_FRAME_MAX, &got, &len), MPC_OK);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, "secret", 6, chal, clen, got, len, &e),
                     MPC_OK);
    mpc_free(got);
    /* No verdict sent yet, and the client's challenge is already here. */
    mpc_conn_set_timeout(c, 3000);
    assert_int_equal(mpc_recv_bytes(c, MPC_HS_FRAME_MAX, &theirs, &len), MPC_OK);
    mpc_conn_set_timeout(c, 10000);
    assert_true(len > 11 && memcmp(theirs, MPC_HS_CHALLENGE, 11) == 0);
    assert_int_equal(mpc_send_bytes(c, MPC_HS_WELCOME, 9), MPC_OK);
    assert_int_equal(mpc_hs_respond(MPC_DIALECT_MODERN, "secret", 6, theirs, len, reply,
                                    sizeof reply, &rlen, &e),
                     MPC_OK);
    mpc_free(theirs);
    assert_int_equal(mpc_send_bytes(c, reply, rlen), MPC_OK);
    assert_int_equal(mpc_recv_bytes(c, MPC_HS_FRAME_MAX, &got, &len), MPC_OK);
    assert_int_equal(len, 9);
    assert_memory_equal(got, MPC_HS_WELCOME, 9);
    mpc_free(got);
    assert_int_equal(mpc_recv_bytes(c, MPC_NO_LIMIT, &got, &len), MPC_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(got, "hello", 5);
    mpc_free(got);
    client_join(&cl);
    assert_int_equal(cl.st, MPC_OK);
    mpc_conn_close(c);
    mpc_listener_close(rl);
}

/* The server takes a pipelined reply + challenge from one write, and its
 * verdict and reply then reach the client with nothing sent in between. */
static void the_server_answers_a_pipelined_client(void **state)
{
    (void)state;
    mpc_options so = keyed("secret", MPC_DIALECT_MODERN);
    mpc_listener *l = listen_ok("127.0.0.1:0", &so);
    mpc_conn *raw = NULL;
    mpc_error e;
    unsigned char rnd[MPC_HS_MODERN_RANDOM], chal[MPC_HS_FRAME_MAX], reply[MPC_HS_FRAME_MAX];
    size_t clen = 0, rlen = 0, len = 0;
    void *got = NULL;
    memset(rnd, 0xa5, sizeof rnd);

    assert_int_equal(mpc_connect(mpc_listener_address(l), NULL, &raw, &e), MPC_OK);
    mpc_conn_set_timeout(raw, 10000);
    struct accepter a;
    accepter_start(&a, l);
    assert_int_equal(mpc_recv_bytes(raw, MPC_HS_FRAME_MAX, &got, &len), MPC_OK);
    assert_int_equal(mpc_hs_respond(MPC_DIALECT_MODERN, "secret", 6, got, len, reply,
                                    sizeof reply, &rlen, &e),
                     MPC_OK);
    mpc_free(got);
    assert_int_equal(mpc_hs_challenge(MPC_DIALECT_MODERN, "sha256", rnd, sizeof rnd, chal,
                                      sizeof chal, &clen, &e),
                     MPC_OK);
    mpc_buf two[2] = {{reply, rlen}, {chal, clen}};
    assert_int_equal(mpc_send_many(raw, two, 2), MPC_OK);
    assert_int_equal(mpc_recv_bytes(raw, MPC_HS_FRAME_MAX, &got, &len), MPC_OK);
    assert_int_equal(len, 9);
    assert_memory_equal(got, MPC_HS_WELCOME, 9);
    mpc_free(got);
    assert_int_equal(mpc_recv_bytes(raw, MPC_HS_FRAME_MAX, &got, &len), MPC_OK);
    assert_int_equal(mpc_hs_verify(MPC_DIALECT_MODERN, "secret", 6, chal, clen, got, len, &e),
                     MPC_OK);
    mpc_free(got);
    assert_int_equal(mpc_send_bytes(raw, MPC_HS_WELCOME, 9), MPC_OK);
    accepter_join(&a);
    assert_int_equal(a.st, MPC_OK);
    assert_int_equal(mpc_send_bytes(raw, "hello", 5), MPC_OK);
    assert_int_equal(mpc_recv_bytes(a.c, MPC_NO_LIMIT, &got, &len), MPC_OK);
    assert_int_equal(len, 5);
    mpc_free(got);
    mpc_conn_close(a.c);
    mpc_conn_close(raw);
    mpc_listener_close(l);
}

struct leg {
    pthread_t tid;
    mpc_conn *c;
    const char *key;
    mpc_status st;
};

static void *deliver_main(void *arg)
{
    struct leg *g = arg;
    g->st = mpc_conn_deliver_challenge(g->c, g->key, strlen(g->key), NULL);
    return NULL;
}

static void the_handshake_legs_run_on_any_duplex_connection(void **state)
{
    (void)state;
    mpc_conn *a, *b;
    assert_int_equal(mpc_pipe(1, NULL, &a, &b, NULL), MPC_OK);
    assert_int_equal(mpc_conn_deliver_challenge(a, NULL, 0, NULL), MPC_INVAL);

    struct leg g = {0, a, "k", MPC_INVAL};
    assert_int_equal(pthread_create(&g.tid, NULL, deliver_main, &g), 0);
    assert_int_equal(mpc_conn_answer_challenge(b, "k", 1, NULL), MPC_OK);
    pthread_join(g.tid, NULL);
    assert_int_equal(g.st, MPC_OK);

    g.key = "other";
    assert_int_equal(pthread_create(&g.tid, NULL, deliver_main, &g), 0);
    assert_int_equal(mpc_conn_answer_challenge(b, "k", 1, NULL), MPC_AUTH);
    assert_string_equal(mpc_conn_errmsg(b), "digest sent was rejected");
    pthread_join(g.tid, NULL);
    assert_int_equal(g.st, MPC_AUTH);
    assert_string_equal(mpc_conn_errmsg(a), "digest received was wrong");

    /* A one-way pipe cannot carry a handshake. */
    mpc_conn *r, *w;
    assert_int_equal(mpc_pipe(0, NULL, &r, &w, NULL), MPC_OK);
    assert_int_equal(mpc_conn_answer_challenge(r, "k", 1, NULL), MPC_INVAL);
    mpc_conn_close(r);
    mpc_conn_close(w);
    mpc_conn_close(a);
    mpc_conn_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tcp_over_ipv4_reports_the_real_port_and_round_trips),
        cmocka_unit_test(a_name_resolves_and_binds_like_its_address),
        cmocka_unit_test(tcp_over_ipv6_works_when_the_machine_has_it),
        cmocka_unit_test(a_unix_socket_file_exists_until_close_and_cannot_be_bound_twice),
        cmocka_unit_test(an_abstract_name_round_trips_and_leaves_no_file),
        cmocka_unit_test(a_too_long_unix_path_is_an_invalid_argument),
        cmocka_unit_test(accept_gives_up_at_its_timeout),
        cmocka_unit_test(connect_refused_is_an_os_error_with_its_text),
        cmocka_unit_test(the_handshake_succeeds_in_every_compatible_dialect_pairing),
        cmocka_unit_test(a_strict_server_refuses_a_legacy_client),
        cmocka_unit_test(a_wrong_key_fails_on_both_sides_and_the_listener_serves_the_next_client),
        cmocka_unit_test(a_300_byte_handshake_frame_is_too_long_for_either_side),
        cmocka_unit_test(a_silent_client_hits_the_handshake_deadline),
        cmocka_unit_test(the_handshake_legs_run_on_any_duplex_connection),
        cmocka_unit_test(the_client_sends_its_reply_and_challenge_in_one_trip),
        cmocka_unit_test(the_server_answers_a_pipelined_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
