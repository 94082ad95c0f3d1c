/*
 * test_tls.c - TLS connections (certificates made at run time by
 * tests/tls/make_certs.sh with the openssl command): a client and a listener
 * with TLS and an authkey exchange messages both ways; the server is
 * verified by default (a wrong CA, a wrong name fail with MPC_TLS, and
 * turning verification off is explicit); a listener given a CA requires a
 * client certificate; a plaintext client at a TLS listener and a TLS client
 * at a plaintext listener fail within the handshake deadline; the listener
 * serves the next client after every failure; the non-blocking mode drives
 * the TLS handshake and 4 MiB messages through mpc_flush() in one thread.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mpconn.h"

#ifndef MPC_TEST_SOURCE_DIR
#error "MPC_TEST_SOURCE_DIR must name the repository"
#endif

static char certs[256];

static const char *cert(const char *name)
{
    static char buf[8][320];
    static int i;
    char *b = buf[i++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", certs, name);
    return b;
}

static int make_certs(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(certs, sizeof certs, "/tmp/mpconn-tls-%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "bash %s/tests/tls/make_certs.sh %s", MPC_TEST_SOURCE_DIR, certs);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_certs(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", certs);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ a listener */

typedef struct server {
    mpc_listener *l;
    pthread_t tid;
    int clients;          /* accepts to make */
    mpc_status st[4];     /* their outcomes */
    char msg[4][MPC_ERRMSG_MAX];
} server;

static void *server_main(void *arg)
{
    server *s = arg;
    for (int i = 0; i < s->clients; i++) {
        mpc_conn *c = NULL;
        mpc_error e;
        memset(&e, 0, sizeof e);
        s->st[i] = mpc_listener_accept(s->l, 10000, &c, &e);
        snprintf(s->msg[i], sizeof s->msg[i], "%s", e.message);
        if (s->st[i] != MPC_OK)
            continue;
        void *m = NULL;
        size_t len = 0;
        /* Echo until end of file. */
        while (mpc_recv_bytes(c, MPC_NO_LIMIT, &m, &len) == MPC_OK) {
            mpc_send_bytes(c, m, len);
            mpc_free(m);
        }
        mpc_conn_close(c);
    }
    return NULL;
}

static void serve(server *s, const mpc_tls_options *tls, int clients, mpc_ms hs_timeout)
{
    mpc_options o = MPC_OPTIONS_INIT;
    o.authkey = "secret";
    o.authkey_len = 6;
    o.tls = tls;
    o.handshake_timeout = hs_timeout;
    memset(s, 0, sizeof *s);
    mpc_error e;
    assert_int_equal(mpc_listen("127.0.0.1:0", &o, &s->l, &e), MPC_OK);
    s->clients = clients;
    assert_int_equal(pthread_create(&s->tid, NULL, server_main, s), 0);
}

static void serve_end(server *s)
{
    pthread_join(s->tid, NULL);
    mpc_listener_close(s->l);
}

static mpc_status client(server *s, const mpc_tls_options *tls, mpc_conn **c, mpc_error *e)
{
    mpc_options o = MPC_OPTIONS_INIT;
    o.authkey = "secret";
    o.authkey_len = 6;
    o.tls = tls;
    o.handshake_timeout = 5000;
    memset(e, 0, sizeof *e);
    return mpc_connect(mpc_listener_address(s->l), &o, c, e);
}

static void echo_ok(mpc_conn *c, size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 7 + 3);
    assert_int_equal(mpc_send_bytes(c, p, n), MPC_OK);
    void *m = NULL;
    size_t len = 0;
    assert_int_equal(mpc_recv_bytes(c, MPC_NO_LIMIT, &m, &len), MPC_OK);
    assert_int_equal(len, n);
    assert_memory_equal(m, p, n);
    mpc_free(m);
    free(p);
}

static mpc_tls_options server_tls(void)
{
    mpc_tls_options t = {0};
    t.certificate = cert("server.pem");
    t.key = cert("server.key");
    return t;
}

/* ----------------------------------------------------------------- tests */

static void messages_both_ways_over_tls(void **state)
{
    (void)state;
    server s;
    mpc_tls_options st = server_tls(), ct = {0};
    ct.cafile = cert("ca.pem");
    serve(&s, &st, 1, 5000);
    mpc_conn *c = NULL;
    mpc_error e;
    assert_int_equal(client(&s, &ct, &c, &e), MPC_OK);
    echo_ok(c, 0);
    echo_ok(c, 5);
    echo_ok(c, 100000);
    echo_ok(c, 3u << 20);
    mpc_conn_close(c);
    serve_end(&s);
    assert_int_equal(s.st[0], MPC_OK);
}

static void the_server_is_verified_by_default(void **state)
{
    (void)state;
    server s;
    mpc_tls_options st = server_tls();
    serve(&s, &st, 4, 5000);
    mpc_conn *c = NULL;
    mpc_error e;
    /* The system store does not know the test CA. */
    mpc_tls_options none = {0};
    assert_int_equal(client(&s, &none, &c, &e), MPC_TLS);
    assert_non_null(strstr(e.message, "certificate verify failed"));
    /* A CA that signed something else. */
    mpc_tls_options wrong = {0};
    wrong.cafile = cert("other-ca.pem");
    assert_int_equal(client(&s, &wrong, &c, &e), MPC_TLS);
    assert_non_null(strstr(e.message, "certificate verify failed"));
    /* The right CA, a name the certificate does not carry. */
    mpc_tls_options name = {0};
    name.cafile = cert("ca.pem");
    name.server_name = "example.com";
    assert_int_equal(client(&s, &name, &c, &e), MPC_TLS);
    assert_non_null(strstr(e.message, "certificate verify failed"));
    /* Verification off, explicitly: it connects, and the listener served
     * every one of them in turn. */
    mpc_tls_options off = {0};
    off.no_verify = 1;
    assert_int_equal(client(&s, &off, &c, &e), MPC_OK);
    echo_ok(c, 10);
    mpc_conn_close(c);
    serve_end(&s);
    for (int i = 0; i < 3; i++)
        assert_int_not_equal(s.st[i], MPC_OK);
    assert_int_equal(s.st[3], MPC_OK);
}

static void a_listener_with_a_ca_requires_client_certificates(void **state)
{
    (void)state;
    server s;
    mpc_tls_options st = server_tls();
    st.cafile = cert("ca.pem");
    serve(&s, &st, 2, 5000);
    mpc_conn *c = NULL;
    mpc_error e;
    mpc_tls_options anon = {0};
    anon.cafile = cert("ca.pem");
    /* TLS 1.3: the refusal may come after the client's side of the TLS
     * handshake, during the authkey handshake; either way MPC_TLS. */
    assert_int_equal(client(&s, &anon, &c, &e), MPC_TLS);
    mpc_tls_options mine = anon;
    mine.certificate = cert("client.pem");
    mine.key = cert("client.key");
    assert_int_equal(client(&s, &mine, &c, &e), MPC_OK);
    echo_ok(c, 1000);
    mpc_conn_close(c);
    serve_end(&s);
    assert_int_equal(s.st[0], MPC_TLS);
    assert_int_equal(s.st[1], MPC_OK);
}

static void plaintext_and_tls_do_not_mix(void **state)
{
    (void)state;
    server s;
    mpc_tls_options st = server_tls(), ct = {0};
    ct.cafile = cert("ca.pem");
    /* A plaintext client at a TLS listener: both wait for the other to
     * speak; the listener's handshake deadline ends it, then it serves a
     * TLS client. */
    serve(&s, &st, 2, 300);
    mpc_conn *c = NULL;
    mpc_error e;
    mpc_options po = MPC_OPTIONS_INIT;
    po.authkey = "secret";
    po.authkey_len = 6;
    po.handshake_timeout = 3000;
    assert_int_not_equal(mpc_connect(mpc_listener_address(s.l), &po, &c, &e), MPC_OK);
    assert_int_equal(client(&s, &ct, &c, &e), MPC_OK);
    echo_ok(c, 3);
    mpc_conn_close(c);
    serve_end(&s);
    assert_true(s.st[0] == MPC_TLS || s.st[0] == MPC_TIMEOUT);
    assert_int_equal(s.st[1], MPC_OK);

    /* A TLS client at a plaintext listener (which sends its challenge
     * first): MPC_TLS at once. */
    serve(&s, NULL, 1, 3000);
    assert_int_equal(client(&s, &ct, &c, &e), MPC_TLS);
    serve_end(&s);
}

/* Non-blocking: connect, accept, both handshakes and 4 MiB each way, one
 * thread, poll() on what each side wants. */
static void pollfd_for(mpc_conn *c, struct pollfd *p)
{
    int w = mpc_conn_wants(c);
    p->fd = mpc_conn_fileno(c);
    p->events = (short)((w & MPC_WANT_READ ? POLLIN : 0) | (w & MPC_WANT_WRITE ? POLLOUT : 0));
    p->revents = 0;
}

static void non_blocking_tls(void **state)
{
    (void)state;
    mpc_tls_options st = server_tls(), ct = {0};
    ct.cafile = cert("ca.pem");
    mpc_options lo = MPC_OPTIONS_INIT, co = MPC_OPTIONS_INIT;
    lo.authkey = co.authkey = "secret";
    lo.authkey_len = co.authkey_len = 6;
    lo.nonblocking = co.nonblocking = 1;
    lo.tls = &st;
    co.tls = &ct;
    mpc_listener *l = NULL;
    mpc_conn *c = NULL, *s = NULL;
    assert_int_equal(mpc_listen("127.0.0.1:0", &lo, &l, NULL), MPC_OK);
    assert_int_equal(mpc_connect(mpc_listener_address(l), &co, &c, NULL), MPC_OK);
    mpc_status cs = MPC_AGAIN, ss = MPC_AGAIN;
    for (int i = 0; i < 5000 && (cs == MPC_AGAIN || ss == MPC_AGAIN); i++) {
        struct pollfd p[2];
        int n = 0;
        if (cs == MPC_AGAIN && (cs = mpc_flush(c)) == MPC_AGAIN)
            pollfd_for(c, &p[n++]);
        if (!s && mpc_listener_accept(l, 0, &s, NULL) != MPC_OK)
            p[n++] = (struct pollfd){mpc_listener_fileno(l), POLLIN, 0};
        if (s && ss == MPC_AGAIN && (ss = mpc_flush(s)) == MPC_AGAIN)
            pollfd_for(s, &p[n++]);
        if (n && poll(p, (nfds_t)n, 5000) <= 0)
            fail_msg("stalled: %s / %s", mpc_conn_errmsg(c), s ? mpc_conn_errmsg(s) : "-");
    }
    assert_int_equal(cs, MPC_OK);
    assert_int_equal(ss, MPC_OK);
    size_t big = 4u << 20;
    unsigned char *a = malloc(big), *b = malloc(big);
    for (size_t i = 0; i < big; i++) {
        a[i] = (unsigned char)(i * 13);
        b[i] = (unsigned char)(i * 17 + 1);
    }
    assert_int_equal(mpc_send_bytes(c, a, big), MPC_OK);
    assert_int_equal(mpc_send_bytes(s, b, big), MPC_OK);
    void *ga = NULL, *gb = NULL;
    size_t la = 0, lb = 0;
    for (int i = 0; i < 100000 && (!ga || !gb); i++) {
        struct pollfd p[2];
        int n = 0;
        mpc_status r;
        if (!ga && (r = mpc_recv_bytes(s, MPC_NO_LIMIT, &ga, &la)) != MPC_OK) {
            assert_int_equal(r, MPC_AGAIN);
            pollfd_for(s, &p[n++]);
        }
        if (!gb && (r = mpc_recv_bytes(c, MPC_NO_LIMIT, &gb, &lb)) != MPC_OK) {
            assert_int_equal(r, MPC_AGAIN);
            pollfd_for(c, &p[n++]);
        }
        if (n && !mpc_conn_pending(c) && !mpc_conn_pending(s) && poll(p, (nfds_t)n, 5000) <= 0)
            fail_msg("stalled receiving");
    }
    assert_int_equal(la, big);
    assert_int_equal(lb, big);
    assert_memory_equal(ga, a, big);
    assert_memory_equal(gb, b, big);
    mpc_free(ga);
    mpc_free(gb);
    free(a);
    free(b);
    mpc_conn_close(c);
    mpc_conn_close(s);
    mpc_listener_close(l);
}

static void a_listener_needs_a_certificate(void **state)
{
    (void)state;
    mpc_tls_options none = {0};
    mpc_options o = MPC_OPTIONS_INIT;
    mpc_listener *l = NULL;
    mpc_error e;
    o.tls = &none;
    assert_int_equal(mpc_listen("127.0.0.1:0", &o, &l, &e), MPC_TLS);
    assert_null(l);
    mpc_tls_options missing = {0};
    missing.certificate = "/nonexistent.pem";
    o.tls = &missing;
    assert_int_equal(mpc_listen("127.0.0.1:0", &o, &l, &e), MPC_TLS);
    assert_non_null(strstr(e.message, "/nonexistent.pem"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(messages_both_ways_over_tls),
        cmocka_unit_test(the_server_is_verified_by_default),
        cmocka_unit_test(a_listener_with_a_ca_requires_client_certificates),
        cmocka_unit_test(plaintext_and_tls_do_not_mix),
        cmocka_unit_test(non_blocking_tls),
        cmocka_unit_test(a_listener_needs_a_certificate),
    };
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
