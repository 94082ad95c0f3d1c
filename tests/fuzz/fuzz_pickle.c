/*
 * fuzz_pickle.c - libFuzzer target for the pickle decoder (and, on what it
 * accepts, the encoder, the repr printer and the literal parser).
 * Invariants checked on every accepted input:
 *   - encoding the value at protocols 2 and 4 succeeds and decodes back
 *     (for modest acyclic values: to an equal value, NaN aside: compared
 *     through repr);
 *   - the repr text parses back to a value with the same repr.
 * Any violation aborts, which the fuzzer reports as a crash.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpconn.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

static int same_repr(const mpc_value *a, const mpc_value *b)
{
    char *ra = NULL, *rb = NULL;
    size_t na = 0, nb = 0;
    check(mpc_value_repr(a, &ra, &na, NULL) == MPC_OK);
    check(mpc_value_repr(b, &rb, &nb, NULL) == MPC_OK);
    int same = na == nb && memcmp(ra, rb, na) == 0;
    mpc_free(ra);
    mpc_free(rb);
    return same;
}

/* Number of nodes of the tree with shared sub-trees counted each time they
 * appear (what repr and equality walk), stopping once above cap.  A path
 * deeper than MPC_VALUE_DEPTH_MAX can only go round a cycle (the decoder
 * bounds the depth of what it builds otherwise): it sets *cyclic and counts
 * as above cap. */
static size_t expanded(const mpc_value *v, size_t cap, int depth, int *cyclic)
{
    if (depth > MPC_VALUE_DEPTH_MAX) {
        *cyclic = 1;
        return cap + 1;
    }
    size_t n = 1;
    mpc_vkind k = mpc_value_kind(v);
    size_t len = mpc_value_len(v);
    if (k == MPC_V_DICT) {
        for (size_t i = 0; i < len && n <= cap; i++)
            n += expanded(mpc_value_dict_key(v, i), cap, depth + 1, cyclic) +
                 expanded(mpc_value_dict_val(v, i), cap, depth + 1, cyclic);
    } else if (k == MPC_V_LIST || k == MPC_V_TUPLE || k == MPC_V_SET || k == MPC_V_FROZENSET) {
        for (size_t i = 0; i < len && n <= cap; i++)
            n += expanded(mpc_value_item(v, i), cap, depth + 1, cyclic);
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mpc_value *v = NULL;
    mpc_error err;
    mpc_decode_options opts;
    memset(&opts, 0, sizeof opts);
    /* The first byte picks the Python 2 str mode, so all three are fuzzed. */
    if (size > 0) {
        opts.py2_str = (mpc_py2str)(data[0] % 3);
        data++;
        size--;
    }
    if (mpc_value_decode(data, size, &opts, &v, &err) != MPC_OK) {
        check(v == NULL);
        return 0;
    }
    /* A memo can share sub-trees exponentially (as in Python, printing such
     * a value is exponential): check the invariants on modest trees only,
     * but always encode. */
    /* Cyclic values (whose repr holds [...], which reads back as another
     * value) get the encode/decode round trip only. */
    int cyclic = 0;
    int modest = expanded(v, 200000, 0, &cyclic) <= 200000 && !cyclic;
    static const int protos[] = {2, 4};
    for (size_t i = 0; i < 2; i++) {
        void *out = NULL;
        size_t n = 0;
        mpc_value *back = NULL;
        check(mpc_value_encode(v, protos[i], &out, &n, &err) == MPC_OK);
        mpc_decode_options o2;
        memset(&o2, 0, sizeof o2);
        o2.max_depth = MPC_VALUE_DEPTH_MAX;
        check(mpc_value_decode(out, n, &o2, &back, &err) == MPC_OK);
        if (modest)
            check(mpc_value_equal(v, back) || same_repr(v, back));
        mpc_value_free(back);
        mpc_free(out);
    }
    if (!modest) {
        mpc_value_free(v);
        return 0;
    }
    char *text = NULL;
    size_t tn = 0;
    check(mpc_value_repr(v, &text, &tn, NULL) == MPC_OK);
    mpc_value *parsed = NULL;
    /* Only trees within the parser's default nesting can be read back. */
    if (tn < (1u << 20) && mpc_value_parse(text, tn, &parsed, &err) == MPC_OK) {
        check(same_repr(v, parsed));
        mpc_value_free(parsed);
    } else {
        check(strstr(err.message, "nesting deeper") != NULL || tn >= (1u << 20));
    }
    mpc_free(text);
    mpc_value_free(v);
    return 0;
}
