/*
 * conn_value.c - values over a connection: mpc_send_value() pickles a value
 * tree and sends it as one message, mpc_recv_value() receives one message
 * and decodes it with the safe pickle subset.  This is the glue between the
 * transport (conn.c) and the pure codec (pickle_encode.c, pickle_decode.c);
 * it adds no wire format of its own and touches no descriptor itself.
 *
 * Error reporting follows the other connection calls: the status is
 * returned and the message is kept in the connection (mpc_conn_errmsg()).
 * A codec failure never marks the connection broken: an encoding failure
 * happens before anything is sent, and a decoding failure after the whole
 * message was consumed, so the stream stays in step either way.
 */
#include "transport/transport.h"

#include <stdio.h>
#include <string.h>

/* Records a codec failure in the connection as the transport's own calls
 * record theirs (status, no errno, the codec's message). */
static mpc_status codec_error(mpc_conn *c, const mpc_error *e)
{
    c->last = e->status;
    c->last_errno = 0;
    memcpy(c->msg, e->message, sizeof c->msg);
    c->msg[sizeof c->msg - 1] = '\0';
    return e->status;
}

mpc_status mpc_send_value(mpc_conn *c, const mpc_value *v, int protocol)
{
    if (!c)
        return MPC_INVAL;
    void *pickle = NULL;
    size_t len = 0;
    mpc_error e;
    memset(&e, 0, sizeof e);
    mpc_status st = mpc_value_encode(v, protocol, &pickle, &len, &e);
    if (st != MPC_OK) {
        if (!e.message[0])
            snprintf(e.message, sizeof e.message, "cannot pickle the value: %s",
                     mpc_strerror(st));
        e.status = st;
        return codec_error(c, &e);
    }
    st = mpc_send_bytes(c, pickle, len);
    mpc_free(pickle);
    return st;
}

mpc_status mpc_recv_value(mpc_conn *c, const mpc_decode_options *opts, mpc_value **out)
{
    if (out)
        *out = NULL;
    if (!c)
        return MPC_INVAL;
    if (!out) {
        mpc_error e;
        mpc__error(&e, MPC_INVAL, 0, "out must not be NULL");
        return codec_error(c, &e);
    }
    void *msg = NULL;
    size_t len = 0;
    mpc_status st = mpc_recv_bytes(c, MPC_NO_LIMIT, &msg, &len);
    if (st != MPC_OK)
        return st;
    mpc_error e;
    memset(&e, 0, sizeof e);
    st = mpc_value_decode(msg, len, opts, out, &e);
    mpc_free(msg);
    if (st != MPC_OK) {
        if (!e.message[0])
            snprintf(e.message, sizeof e.message, "cannot unpickle the message: %s",
                     mpc_strerror(st));
        e.status = st;
        return codec_error(c, &e);
    }
    return MPC_OK;
}
