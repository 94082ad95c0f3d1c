/*
 * frame.c - the sans-I/O framing layer: encodes and incrementally decodes
 * the length header that precedes every message on the wire.
 *
 * A header is 4 bytes, a signed big-endian 32-bit length, for payloads of
 * 0..0x7FFFFFFF bytes.  Larger payloads use the extended form: 4 bytes of -1
 * (FF FF FF FF) followed by an 8-byte big-endian unsigned length.  The
 * encoder uses the extended form only when it must; the decoder accepts it
 * for any length, as CPython does (-1, Q=3 is a valid 3-byte message).
 *
 * Deliberate deviation from CPython: a negative 4-byte header other than -1
 * (-2, INT32_MIN, ...) is reported as MPC_PROTO.  CPython reads no payload,
 * returns b"" and then takes the following bytes as the next header, so its
 * stream silently goes out of step; failing loudly is the safer choice.
 *
 * The decoder reports the declared length faithfully, even 2^63 or more; it
 * enforces no maximum.  Limits (maxlength, max_message_size) are the
 * transport's job, checked before anything is allocated.
 *
 * This file does no I/O, never allocates and keeps no global state.
 */
#include "wire.h"

#include <string.h>

size_t mpc_frame_header(uint64_t len, unsigned char out[MPC_FRAME_HEADER_MAX])
{
    if (len <= MPC_FRAME_SMALL_MAX) {
        out[0] = (unsigned char)(len >> 24);
        out[1] = (unsigned char)(len >> 16);
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        return MPC__FRAME_SHORT;
    }
    out[0] = out[1] = out[2] = out[3] = 0xFF;
    for (int i = 0; i < 8; i++)
        out[4 + i] = (unsigned char)(len >> (56 - 8 * i));
    return MPC_FRAME_HEADER_MAX;
}

static void frame_reset(mpc_frame_decoder *d)
{
    memset(d, 0, sizeof *d);
}

/* Feeds bytes into the header decoder.  A zeroed decoder (need == 0) wants
 * the 4-byte short header; after a -1 it wants all 12 bytes.  A decoder
 * whose private fields hold an impossible state is treated as fresh, so a
 * caller that scribbled on it cannot make us read or write out of bounds.
 * Returns MPC_INVAL for a NULL decoder or NULL data with len > 0 (misuse,
 * not peer input). */
mpc_status mpc_frame_feed(mpc_frame_decoder *d, const void *data, size_t len,
                          size_t *consumed, uint64_t *length)
{
    const unsigned char *p = data;
    size_t used = 0;

    if (consumed)
        *consumed = 0;
    if (!d || (!data && len > 0))
        return MPC_INVAL;
    if ((d->need != MPC__FRAME_SHORT && d->need != MPC_FRAME_HEADER_MAX) || d->have > d->need
        || (d->need == MPC_FRAME_HEADER_MAX && d->have < MPC__FRAME_SHORT))
        frame_reset(d);
    if (d->need == 0)
        d->need = MPC__FRAME_SHORT;

    for (;;) {
        size_t want = (size_t)(d->need - d->have);
        size_t take = len - used < want ? len - used : want;
        if (take) {
            memcpy(d->buf + d->have, p + used, take);
            d->have = (unsigned char)(d->have + take);
            used += take;
        }
        if (d->have < d->need) {
            if (consumed)
                *consumed = used;
            return MPC_AGAIN;
        }
        if (d->need == MPC__FRAME_SHORT) {
            uint32_t u = (uint32_t)d->buf[0] << 24 | (uint32_t)d->buf[1] << 16
                         | (uint32_t)d->buf[2] << 8 | (uint32_t)d->buf[3];
            if (u == 0xFFFFFFFFu) {
                d->need = MPC_FRAME_HEADER_MAX; /* the 8-byte length follows */
                continue;
            }
            frame_reset(d);
            if (consumed)
                *consumed = used;
            if (u & 0x80000000u)
                return MPC_PROTO; /* negative, not -1: see the file comment */
            if (length)
                *length = u;
            return MPC_OK;
        }
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | d->buf[MPC__FRAME_SHORT + i];
        frame_reset(d);
        if (consumed)
            *consumed = used;
        if (length)
            *length = v;
        return MPC_OK;
    }
}
