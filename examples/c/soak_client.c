/*
 * soak_client - pushes many small messages through one connection to an
 * echo server (threaded_server, or any multiprocessing.connection peer that
 * echoes) and verifies every echo.
 *
 *   soak_client ADDRESS [--authkey KEY] [--count N] [--min-size A]
 *               [--max-size B] [--window W] [--timeout SECONDS]
 *
 * Messages are sent in windows of W (mpc_send_many: one writev per window),
 * then the W echoes are received and compared byte for byte.  Message i is
 * A..B bytes (default 16..64): its sequence number (8 bytes, big-endian)
 * followed by a pattern derived from i, so a lost, duplicated, reordered or
 * corrupted echo is detected at once.  Every send/recv has a deadline
 * (--timeout, default 30 s).
 *
 * Prints "soak: N messages echoed and verified in T s (R msg/s)" on stdout
 * and exits 0, or prints the first problem on stderr and exits 1.
 */
#include "mpconn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SIZE 4096

static size_t msg_size(uint64_t i, size_t lo, size_t hi)
{
    uint64_t x = i * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    return lo + (size_t)(x % (uint64_t)(hi - lo + 1));
}

static void fill(unsigned char *p, uint64_t i, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (k < 8)
            p[k] = (unsigned char)(i >> (8 * (7 - k)));
        else
            p[k] = (unsigned char)(i * 31u + k * 7u);
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *address = NULL, *authkey = NULL;
    unsigned long long count = 1000000;
    size_t lo = 16, hi = 64, window = 256;
    double timeout = 30.0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-' && !address) {
            address = a;
            continue;
        }
        if (!v)
            goto usage;
        if (strcmp(a, "--authkey") == 0)
            authkey = v;
        else if (strcmp(a, "--count") == 0)
            count = strtoull(v, NULL, 10);
        else if (strcmp(a, "--min-size") == 0)
            lo = strtoul(v, NULL, 10);
        else if (strcmp(a, "--max-size") == 0)
            hi = strtoul(v, NULL, 10);
        else if (strcmp(a, "--window") == 0)
            window = strtoul(v, NULL, 10);
        else if (strcmp(a, "--timeout") == 0)
            timeout = atof(v);
        else
            goto usage;
        i++;
    }
    if (!address || lo < 8 || hi < lo || hi > MAX_SIZE || window == 0)
        goto usage;

    mpc_options opts;
    mpc_options_init(&opts);
    if (authkey) {
        opts.authkey = authkey;
        opts.authkey_len = strlen(authkey);
    }
    opts.io_timeout = (mpc_ms)(timeout * 1000);
    opts.connect_timeout = opts.io_timeout;

    mpc_error err;
    mpc_conn *c = NULL;
    if (mpc_connect(address, &opts, &c, &err) != MPC_OK) {
        fprintf(stderr, "soak_client: connect %s: %s\n", address, err.message);
        return 1;
    }

    unsigned char *store = malloc(window * MAX_SIZE);
    mpc_buf *bufs = malloc(window * sizeof *bufs);
    unsigned char expect[MAX_SIZE], got[MAX_SIZE];
    int rc = 0;
    if (!store || !bufs) {
        fprintf(stderr, "soak_client: out of memory\n");
        rc = 1;
        goto out;
    }

    double t0 = now();
    unsigned long long done = 0;
    while (done < count) {
        size_t n = (size_t)(count - done < window ? count - done : window);
        for (size_t k = 0; k < n; k++) {
            uint64_t i = done + k;
            size_t len = msg_size(i, lo, hi);
            fill(store + k * MAX_SIZE, i, len);
            bufs[k].data = store + k * MAX_SIZE;
            bufs[k].len = len;
        }
        if (mpc_send_many(c, bufs, n) != MPC_OK) {
            fprintf(stderr, "soak_client: send after %llu messages: %s\n", done, mpc_conn_errmsg(c));
            rc = 1;
            goto out;
        }
        for (size_t k = 0; k < n; k++) {
            uint64_t i = done + k;
            size_t len = 0, want = msg_size(i, lo, hi);
            if (mpc_recv_bytes_into(c, got, sizeof got, &len) != MPC_OK) {
                fprintf(stderr, "soak_client: recv of echo %llu: %s\n", (unsigned long long)i,
                        mpc_conn_errmsg(c));
                rc = 1;
                goto out;
            }
            fill(expect, i, want);
            if (len != want || memcmp(got, expect, want) != 0) {
                fprintf(stderr, "soak_client: echo %llu is wrong (%zu bytes, expected %zu)\n",
                        (unsigned long long)i, len, want);
                rc = 1;
                goto out;
            }
        }
        done += n;
    }
    double secs = now() - t0;
    printf("soak: %llu messages echoed and verified in %.2f s (%.0f msg/s)\n", done, secs,
           secs > 0 ? (double)done / secs : 0.0);

out:
    free(store);
    free(bufs);
    mpc_conn_close(c);
    return rc;

usage:
    fprintf(stderr, "usage: soak_client ADDRESS [--authkey KEY] [--count N] [--min-size A>=8]\n"
                    "                   [--max-size B<=4096] [--window W] [--timeout SECONDS]\n");
    return 2;
}
