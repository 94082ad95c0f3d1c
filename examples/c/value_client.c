/*
 * value_client.c - the client of the player-data example, in C: it connects
 * to a multiprocessing.connection Listener (stock CPython, or any mpconn
 * listener), sends a dict of player data as CPython's conn.send(obj) would
 * (a pickle), and prints the reply the listener sends back with
 * conn.send(...), in Python's repr syntax.  Built on the public header only.
 *
 * Usage: value_client ADDRESS AUTHKEY
 *   ADDRESS  "host:port", "/unix/path" or "@abstract"
 *
 * The value is built with the mpc_value constructors; mpc_value_parse() on
 * "{'name': 'Ada', ...}" would give the same tree.
 */
#include "mpconn.h"

#include <stdio.h>
#include <string.h>

/* The most text printed for the reply: the listener is a peer, and a
 * small pickle can have an astronomically long repr. */
#define REPLY_TEXT_MAX ((size_t)1 << 20)

static mpc_value *str(const char *s) { return mpc_value_new_str(s, strlen(s)); }

/* d[key] = val; on failure both are released.  Returns 0 or -1. */
static int put(mpc_value *d, const char *key, mpc_value *val)
{
    mpc_value *k = str(key);
    if (!k || !val || mpc_value_dict_set(d, k, val) != MPC_OK) {
        mpc_value_free(k);
        mpc_value_free(val);
        return -1;
    }
    return 0;
}

static int add(mpc_value *seq, mpc_value *item)
{
    if (!item || mpc_value_append(seq, item) != MPC_OK) {
        mpc_value_free(item);
        return -1;
    }
    return 0;
}

/* {'name': 'Ada', 'level': 42, 'score': 1337.5,
 *  'inventory': ['sword', 'shield', 'potion'], 'position': (10, -3),
 *  'online': True} */
static mpc_value *player_data(void)
{
    mpc_value *d = mpc_value_new_dict();
    mpc_value *inv = mpc_value_new_list();
    mpc_value *pos = mpc_value_new_tuple();
    int bad = !d || !inv || !pos;
    bad |= !bad && (add(inv, str("sword")) || add(inv, str("shield")) || add(inv, str("potion")));
    bad |= !bad && (add(pos, mpc_value_new_int(10)) || add(pos, mpc_value_new_int(-3)));
    if (bad) {
        mpc_value_free(d);
        mpc_value_free(inv);
        mpc_value_free(pos);
        return NULL;
    }
    /* Children are complete before they go into the dict. */
    if (put(d, "name", str("Ada")) || put(d, "level", mpc_value_new_int(42)) ||
        put(d, "score", mpc_value_new_float(1337.5)) || put(d, "inventory", inv) ||
        put(d, "position", pos) || put(d, "online", mpc_value_new_bool(1))) {
        mpc_value_free(d);
        return NULL;
    }
    return d;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s ADDRESS AUTHKEY\n", argv[0]);
        return 2;
    }
    mpc_options o;
    mpc_options_init(&o);
    o.authkey = argv[2];
    o.authkey_len = strlen(argv[2]);
    o.io_timeout = 10000;
    mpc_error e;
    mpc_conn *conn = NULL;
    if (mpc_connect(argv[1], &o, &conn, &e) != MPC_OK) {
        fprintf(stderr, "value_client: %s\n", e.message);
        return 1;
    }
    int rc = 1;
    mpc_value *player = player_data();
    mpc_value *reply = NULL;
    char *text = NULL;
    mpc_error err;
    if (!player) {
        fprintf(stderr, "value_client: out of memory\n");
    } else if (mpc_send_value(conn, player, 0) != MPC_OK ||
               mpc_recv_value(conn, NULL, &reply) != MPC_OK) {
        /* A reply that is not a plain value (say, a pickle that would call
         * os.system) ends up here too, as MPC_VALUE with the reason. */
        fprintf(stderr, "value_client: %s\n", mpc_conn_errmsg(conn));
    } else if (mpc_value_repr_limit(reply, REPLY_TEXT_MAX, &text, NULL, &err) != MPC_OK) {
        /* A reply whose text would be too long to print (a small pickle
         * can share one sub-object a billion times) ends up here too. */
        fprintf(stderr, "value_client: reply not printed: %s\n", err.message);
    } else {
        char *sent = NULL;
        if (mpc_value_repr(player, &sent, NULL, NULL) == MPC_OK)
            printf("Sent player data %s, listener replied: %s\n", sent, text);
        mpc_free(sent);
        rc = 0;
    }
    mpc_free(text);
    mpc_value_free(reply);
    mpc_value_free(player);
    mpc_conn_close(conn);
    return rc;
}
