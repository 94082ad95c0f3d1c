"""Put mpconn's names into CPython's ``multiprocessing.connection``.

This is what a user of the drop-in does: ``multiprocessing`` itself
(Pool, SimpleQueue, Queue, managers, resource_sharer, popen_*) looks its
connection primitives up in ``multiprocessing.connection``; after
``install()`` it finds mpconn's.

Some stdlib modules bind a name at *their* import time
(``multiprocessing.pool`` and ``test._test_multiprocessing`` do
``from multiprocessing.connection import wait``; ``multiprocessing.managers``
builds ``listener_client`` from ``connection.Listener/Client``), so
``install()`` must run before those are imported.  It refuses to run
afterwards rather than leave a half-swapped process that would test stock
CPython while claiming to test mpconn.

Child processes: fork children inherit the swap.  spawn and forkserver
children start a fresh interpreter; they get the swap because the program
that uses this module calls ``install()`` at its module top level, which
``multiprocessing`` re-runs in every spawn child (as ``__mp_main__``) and in
the forkserver (``__main__`` is preloaded there).  ``check()`` lets a child
prove it is running with mpconn.
"""

import sys

import multiprocessing
import multiprocessing.connection as _mpc

import mpconn

# The four names of the drop-in claim (issue 13's acceptance list).
BASIC = ("Listener", "Client", "Pipe", "wait")
# What CPython's own connection tests also reach through the module:
# TestInvalidHandle builds multiprocessing.connection.Connection directly,
# OtherTest calls deliver_challenge/answer_challenge on a fake connection.
EXTENDED = BASIC + ("Connection", "deliver_challenge", "answer_challenge")

_BOUND_AT_IMPORT = ("multiprocessing.pool", "multiprocessing.managers",
                    "test._test_multiprocessing")


def install(names=BASIC):
    early = [m for m in _BOUND_AT_IMPORT if m in sys.modules]
    if early and not is_installed(names):
        raise RuntimeError("mpconn_swap.install() must run before importing %s"
                           % ", ".join(early))
    for name in names:
        setattr(_mpc, name, getattr(mpconn, name))
    return names


def is_installed(names=BASIC):
    return all(getattr(_mpc, n) is getattr(mpconn, n) for n in names)


def check(names=BASIC):
    """Raise unless this process's multiprocessing uses mpconn (call in a child)."""
    if not is_installed(names):
        raise AssertionError("multiprocessing.connection is not mpconn's in pid %d (%s)"
                             % (__import__("os").getpid(), multiprocessing.current_process().name))
    if "multiprocessing.pool" in sys.modules:
        import multiprocessing.pool as pool
        assert pool.wait is mpconn.wait, "multiprocessing.pool.wait is stock"
    if "multiprocessing.managers" in sys.modules:
        import multiprocessing.managers as managers
        assert managers.listener_client["pickle"] == (mpconn.Listener, mpconn.Client), \
            "multiprocessing.managers.listener_client is stock"
    return True
