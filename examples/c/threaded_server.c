/*
 * threaded_server - an echo server on libmpconn's public API: one accept
 * loop, one thread per client.
 *
 *   threaded_server ADDRESS [--authkey KEY] [--max-clients N] [--backlog N]
 *                   [--accept-timeout SECONDS] [--io-timeout SECONDS]
 *
 * Listens on ADDRESS ("127.0.0.1:0", "/tmp/s.sock", "@name"), prints
 * "listening on <address>" on stderr, and echoes every message of every
 * client back to it until the client closes.  Any CPython
 * multiprocessing.connection Client (with the same authkey) can talk to it.
 *
 * --max-clients N: after N clients were accepted, stop accepting, wait for
 * their threads to finish and exit (0 = serve until SIGINT/SIGTERM).
 * --accept-timeout: give up (exit 1) when no client arrives for that long
 * (default 60 s; 0 = wait forever).  --io-timeout: each receive/send of a
 * client may take that long (default 60 s), so a silent client cannot hold
 * a thread forever.  SIGINT/SIGTERM stop accepting and shut down the same
 * way.
 *
 * On exit it prints one line on stderr:
 *   "served C clients, M messages, B bytes, peak P concurrent, E errors,
 *    H handshake failures"
 * and exits 0 when E is 0.
 */
#include "mpconn.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

struct server {
    pthread_mutex_t lock;
    unsigned long clients, messages, bytes, errors, hs_failures;
    unsigned active, peak;
};

struct client {
    struct server *srv;
    mpc_conn *conn; /* owned by the client thread, which closes it */
    pthread_t thread;
    unsigned long id;
};

static void *serve_client(void *arg)
{
    struct client *cl = arg;
    struct server *srv = cl->srv;
    unsigned long messages = 0, bytes = 0;
    int failed = 0;

    for (;;) {
        void *buf = NULL;
        size_t len = 0;
        mpc_status st = mpc_recv_bytes(cl->conn, MPC_NO_LIMIT, &buf, &len);
        if (st == MPC_EOF)
            break; /* the client closed between messages: the normal end */
        if (st != MPC_OK) {
            fprintf(stderr, "client %lu: recv: %s\n", cl->id, mpc_conn_errmsg(cl->conn));
            failed = 1;
            break;
        }
        st = mpc_send_bytes(cl->conn, buf, len);
        mpc_free(buf);
        if (st != MPC_OK) {
            fprintf(stderr, "client %lu: send: %s\n", cl->id, mpc_conn_errmsg(cl->conn));
            failed = 1;
            break;
        }
        messages++;
        bytes += len;
    }
    mpc_conn_close(cl->conn);
    cl->conn = NULL;

    pthread_mutex_lock(&srv->lock);
    srv->messages += messages;
    srv->bytes += bytes;
    srv->errors += (unsigned long)failed;
    srv->active--;
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

static int usage(void)
{
    fprintf(stderr, "usage: threaded_server ADDRESS [--authkey KEY] [--max-clients N] [--backlog N]\n"
                    "                       [--accept-timeout SECONDS] [--io-timeout SECONDS]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *address = NULL, *authkey = NULL;
    unsigned long max_clients = 0;
    int backlog = 256;
    double accept_timeout = 60.0, io_timeout = 60.0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-' && !address) {
            address = a;
            continue;
        }
        if (!v)
            return usage();
        if (strcmp(a, "--authkey") == 0)
            authkey = v;
        else if (strcmp(a, "--max-clients") == 0)
            max_clients = strtoul(v, NULL, 10);
        else if (strcmp(a, "--backlog") == 0)
            backlog = atoi(v);
        else if (strcmp(a, "--accept-timeout") == 0)
            accept_timeout = atof(v);
        else if (strcmp(a, "--io-timeout") == 0)
            io_timeout = atof(v);
        else
            return usage();
        i++;
    }
    if (!address)
        return usage();

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    mpc_options opts;
    mpc_options_init(&opts);
    if (authkey) {
        opts.authkey = authkey;
        opts.authkey_len = strlen(authkey);
    }
    opts.backlog = backlog;
    opts.io_timeout = io_timeout > 0 ? (mpc_ms)(io_timeout * 1000) : 0;

    mpc_error err;
    mpc_listener *l = NULL;
    if (mpc_listen(address, &opts, &l, &err) != MPC_OK) {
        fprintf(stderr, "threaded_server: %s\n", err.message);
        return 1;
    }
    fprintf(stderr, "listening on %s\n", mpc_listener_address(l));
    fflush(stderr);

    struct server srv;
    memset(&srv, 0, sizeof srv);
    pthread_mutex_init(&srv.lock, NULL);

    struct client **clients = NULL;
    size_t nclients = 0, cap = 0;
    int rc = 0;
    const mpc_ms slice = 250;
    mpc_ms waited = 0;

    while (!stop_requested && (max_clients == 0 || srv.clients < max_clients)) {
        /* Wait for a pending connection in slices, so a signal is noticed
         * promptly; then accept it (the handshake runs under the listener's
         * handshake deadline, so MPC_TIMEOUT from here is a slow client). */
        struct pollfd pfd = {.fd = mpc_listener_fileno(l), .events = POLLIN};
        int pr = poll(&pfd, 1, (int)slice);
        if (pr < 0 && errno != EINTR) {
            fprintf(stderr, "threaded_server: poll: %s\n", strerror(errno));
            rc = 1;
            break;
        }
        if (pr <= 0) {
            waited += slice;
            if (accept_timeout > 0 && waited >= (mpc_ms)(accept_timeout * 1000)) {
                fprintf(stderr, "threaded_server: no client for %.0f s, giving up\n", accept_timeout);
                rc = 1;
                break;
            }
            continue;
        }
        mpc_conn *c = NULL;
        mpc_status st = mpc_listener_accept(l, 1000, &c, &err);
        if (st == MPC_INTR)
            continue;
        if (st == MPC_AUTH || st == MPC_PROTO || st == MPC_TOOLONG || st == MPC_EOF ||
            st == MPC_TIMEOUT || st == MPC_TRUNCATED) {
            /* A failed handshake closes that connection; keep serving. */
            pthread_mutex_lock(&srv.lock);
            srv.hs_failures++;
            pthread_mutex_unlock(&srv.lock);
            fprintf(stderr, "threaded_server: handshake failed: %s\n", err.message);
            waited = 0;
            continue;
        }
        if (st != MPC_OK) {
            fprintf(stderr, "threaded_server: accept: %s\n", err.message);
            if (st == MPC_OS && err.sys_errno != EBADF && err.sys_errno != EINVAL &&
                err.sys_errno != ENOTSOCK) {
                /* A client reset during its handshake, or descriptors ran
                 * out for a moment: that client is lost, the server goes on. */
                pthread_mutex_lock(&srv.lock);
                srv.hs_failures++;
                pthread_mutex_unlock(&srv.lock);
                continue;
            }
            rc = 1;
            break;
        }
        waited = 0;
        if (nclients == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct client **n = realloc(clients, ncap * sizeof *n);
            if (!n) {
                fprintf(stderr, "threaded_server: out of memory\n");
                mpc_conn_close(c);
                rc = 1;
                break;
            }
            clients = n;
            cap = ncap;
        }
        struct client *cl = calloc(1, sizeof *cl);
        if (!cl) {
            fprintf(stderr, "threaded_server: out of memory\n");
            mpc_conn_close(c);
            rc = 1;
            break;
        }
        cl->srv = &srv;
        cl->conn = c;
        pthread_mutex_lock(&srv.lock);
        cl->id = ++srv.clients;
        srv.active++;
        if (srv.active > srv.peak)
            srv.peak = srv.active;
        pthread_mutex_unlock(&srv.lock);
        int e = pthread_create(&cl->thread, NULL, serve_client, cl);
        if (e != 0) {
            fprintf(stderr, "threaded_server: pthread_create: %s\n", strerror(e));
            mpc_conn_close(c);
            free(cl);
            pthread_mutex_lock(&srv.lock);
            srv.active--;
            srv.errors++;
            pthread_mutex_unlock(&srv.lock);
            continue;
        }
        clients[nclients++] = cl;
    }

    /* Clean shutdown: no new clients; the ones we have finish. */
    mpc_listener_close(l);
    for (size_t i = 0; i < nclients; i++) {
        pthread_join(clients[i]->thread, NULL);
        free(clients[i]);
    }
    free(clients);
    fprintf(stderr,
            "served %lu clients, %lu messages, %lu bytes, peak %u concurrent, %lu errors, "
            "%lu handshake failures\n",
            srv.clients, srv.messages, srv.bytes, srv.peak, srv.errors, srv.hs_failures);
    pthread_mutex_destroy(&srv.lock);
    if (srv.errors)
        rc = 1;
    return rc;
}
