/*
 * wait.c - mpc_wait(): readiness of many connections at once.  A
 * connection with buffered input is ready without asking the kernel (and
 * then nothing blocks); the rest are polled together by io_posix.c.
 * Nothing is consumed.
 */
#include "transport.h"

#include <stdlib.h>

mpc_status mpc_wait(mpc_conn *const *conns, size_t n, mpc_ms timeout, int *ready,
                    size_t *nready)
{
    int small_fds[16];
    unsigned char small_force[16];
    int *fds = small_fds;
    unsigned char *force = small_force;
    const mpc__intr *intr = NULL;
    int eno = 0;

    if (!nready || (n > 0 && (!conns || !ready)))
        return MPC_INVAL;
    *nready = 0;
    if (n > sizeof small_fds / sizeof small_fds[0]) {
        fds = malloc(n * sizeof *fds);
        force = malloc(n);
        if (!fds || !force) {
            free(fds);
            free(force);
            return MPC_NOMEM;
        }
    }
    mpc_status st = MPC_OK;
    for (size_t i = 0; i < n; i++) {
        const mpc_conn *c = conns[i];
        ready[i] = 0;
        fds[i] = -1;
        force[i] = 0;
        if (!c)
            continue;
        if (c->fd < 0 || !c->readable) {
            st = MPC_INVAL; /* closed or write-only: nothing to wait for */
            break;
        }
        fds[i] = c->fd;
        force[i] = (unsigned char)mpc__conn_has_input(c);
        if (!intr && c->intr.fn)
            intr = &c->intr;
    }
    if (st == MPC_OK)
        st = mpc__io_wait_many(fds, force, n, mpc__deadline_in(timeout), intr, ready, nready,
                               &eno);
    if (fds != small_fds) {
        free(fds);
        free(force);
    }
    return st;
}
