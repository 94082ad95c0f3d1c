/*
 * fuzz_frame.c - libFuzzer target for the framing layer.
 *
 * The input is a byte stream of headers.  The first byte picks how the
 * stream is chunked; the rest is fed to the incremental decoder in those
 * chunks and compared with a one-shot reference parse of the same bytes.
 * Invariants checked (any violation aborts, which libFuzzer reports):
 *   - the decoder never consumes more than it is given, consumes everything
 *     on MPC_AGAIN, and always makes progress on non-empty input;
 *   - chunking never changes the sequence of results (lengths, errors);
 *   - every decoded header re-encodes to the bytes it came from when that
 *     form is the canonical one.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpconn.h"

#define MAX_EVENTS 4096

typedef struct event {
    mpc_status st;
    uint64_t len;
    size_t start; /* offset of the header's first byte */
    size_t size;  /* header bytes */
} event;

/* A straightforward whole-buffer parse of the same grammar. */
static size_t reference(const uint8_t *p, size_t n, event *ev)
{
    size_t pos = 0, k = 0;
    while (pos < n && k < MAX_EVENTS) {
        if (n - pos < 4)
            break;
        int32_t v = (int32_t)((uint32_t)p[pos] << 24 | (uint32_t)p[pos + 1] << 16
                              | (uint32_t)p[pos + 2] << 8 | p[pos + 3]);
        if (v >= 0) {
            ev[k++] = (event){MPC_OK, (uint64_t)v, pos, 4};
            pos += 4;
        } else if (v == -1) {
            if (n - pos < 12)
                break;
            uint64_t q = 0;
            for (int i = 0; i < 8; i++)
                q = q << 8 | p[pos + 4 + i];
            ev[k++] = (event){MPC_OK, q, pos, 12};
            pos += 12;
        } else {
            ev[k++] = (event){MPC_PROTO, 0, pos, 4};
            pos += 4;
        }
    }
    return k;
}

static event ref_ev[MAX_EVENTS];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)(data[0] % 13) + 1; /* 1..13 bytes per feed */
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    size_t nref = reference(p, n, ref_ev);

    mpc_frame_decoder d;
    memset(&d, 0, sizeof d);
    size_t off = 0, k = 0, hdr_start = 0;
    int pending = 0;
    while (off < n && k < MAX_EVENTS) {
        size_t avail = n - off < chunk ? n - off : chunk;
        size_t consumed = (size_t)-1;
        uint64_t len = 0;
        if (!pending)
            hdr_start = off;
        mpc_status st = mpc_frame_feed(&d, p + off, avail, &consumed, &len);
        if (consumed > avail || consumed == 0)
            abort();
        off += consumed;
        if (st == MPC_AGAIN) {
            if (consumed != avail)
                abort();
            pending = 1;
            continue;
        }
        pending = 0;
        if (st != MPC_OK && st != MPC_PROTO)
            abort();
        if (k >= nref)
            abort(); /* the decoder finished a header the reference did not */
        const event *e = &ref_ev[k++];
        if (e->st != st || e->start != hdr_start || off - hdr_start != e->size)
            abort();
        if (st == MPC_OK) {
            if (e->len != len)
                abort();
            unsigned char h[MPC_FRAME_HEADER_MAX];
            size_t hn = mpc_frame_header(len, h);
            if (hn != 4 && hn != 12)
                abort();
            if ((len <= MPC_FRAME_SMALL_MAX) != (hn == 4))
                abort();
            /* Canonical forms re-encode to the same bytes. */
            if (hn == e->size && memcmp(h, p + e->start, hn) != 0)
                abort();
            /* And the encoding decodes back to the length. */
            mpc_frame_decoder d2;
            size_t c2;
            uint64_t l2 = 0;
            memset(&d2, 0, sizeof d2);
            if (mpc_frame_feed(&d2, h, hn, &c2, &l2) != MPC_OK || c2 != hn || l2 != len)
                abort();
        }
    }
    if (k == MAX_EVENTS)
        return 0;
    if (k != nref)
        abort(); /* the reference finished a header the decoder did not */
    return 0;
}
