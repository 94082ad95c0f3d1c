/*
 * wire.h - the framing layer's private inline helpers (never installed):
 * the short-header fast path, so that the transport can take a whole
 * buffered header (or message) without a call into mpc_frame_feed(), while
 * the wire format stays defined here and in frame.c only.
 *
 * A short header is 4 bytes, a big-endian signed 32-bit length; a
 * non-negative one is the whole header of a message of 0..0x7FFFFFFF bytes.
 * Anything else (the -1 of the extended form, a negative length, fewer than
 * 4 bytes) is left to mpc_frame_feed(), which knows every case.
 */
#ifndef MPC_WIRE_H
#define MPC_WIRE_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>

/* The size of a short header. */
#define MPC__FRAME_SHORT 4

/* If the n bytes at h start with a whole non-negative short header, the
 * payload length it declares; else -1 (the decoder must look). */
static inline int64_t mpc__frame_short_len(const unsigned char *h, size_t n)
{
    if (n < MPC__FRAME_SHORT || h[0] >= 0x80)
        return -1;
    return (int64_t)((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8
                     | (uint32_t)h[3]);
}

/* If the n bytes at h hold a whole message with a short header (header and
 * payload), its payload length; else -1. */
static inline int64_t mpc__frame_whole_len(const unsigned char *h, size_t n)
{
    int64_t l = mpc__frame_short_len(h, n);
    return l >= 0 && (uint64_t)l <= n - MPC__FRAME_SHORT ? l : -1;
}

/* Bytes a header still needs once have bytes of it were fed to the
 * decoder: the rest of the short header, or, past its 4 bytes (which were
 * then the -1 of the extended form), the rest of the 12. */
static inline size_t mpc__frame_header_need(size_t have)
{
    return have < MPC__FRAME_SHORT ? MPC__FRAME_SHORT - have : MPC_FRAME_HEADER_MAX - have;
}

#endif
