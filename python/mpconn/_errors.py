"""The one table that turns a C status (mpc_status_name()) into the exception
CPython's multiprocessing.connection raises in the same situation.

Every failure of the C core reaches Python through make_error(): the
extension calls it with (status_name, message, errno, payload) and raises
what it returns.  Messages that CPython fixes (``"bad message length"``,
``"handle is closed"`` ...) come from here, not from the C detail text, so
they match CPython exactly; the C text is used where CPython's words are
the C core's (authentication) or where there is no CPython equivalent.

The table is checked at import against the extension's STATUS_NAMES, which
is made from the core's status list (MPC_STATUS_MAP in mpconn.h): a status
added to the core without an entry here makes ``import mpconn`` fail.
"""

import errno as _errno
import os
import pickle
import socket

from multiprocessing import AuthenticationError, BufferTooShort

__all__ = ["make_error", "STATUS_EXCEPTIONS", "RestrictedPickleError"]


class RestrictedPickleError(pickle.UnpicklingError):
    """A message recv(restricted=True) refused: an opcode, a global or a
    shape outside the allow-list (None, bool, int, float, str, bytes,
    bytearray, list, tuple, dict, set, frozenset), or a malformed pickle.
    The message names the opcode, the global if any and the byte offset;
    nothing of the pickle ran, and the connection is still in step."""


def _os_error(message, err, payload):
    if err:
        # OSError(errno, text) picks the subclass (ConnectionRefusedError,
        # BrokenPipeError ...), as CPython's socket calls do.
        return OSError(err, os.strerror(err))
    return OSError(message)


def _tls(message, err, payload):
    # ssl.SSLError, so existing ``except ssl.SSLError`` clauses work; a
    # certificate that does not verify is SSLCertVerificationError (a
    # ValueError too, as the ssl module makes it).  Imported here, at the
    # first TLS failure: `import mpconn` does not load Python's own OpenSSL
    # (a second copy beside the wheel's) for programs that never use TLS.
    import ssl

    if "certificate verify failed" in message:
        return ssl.SSLCertVerificationError(1, message)
    return ssl.SSLError(1, message)


def _intr(message, err, payload):
    return InterruptedError(_errno.EINTR, message)


# status name -> factory(message, errno, payload) -> exception instance
STATUS_EXCEPTIONS = {
    "EOF": lambda m, e, p: EOFError(),
    "TIMEOUT": lambda m, e, p: TimeoutError(m),
    "AUTH": lambda m, e, p: AuthenticationError(m),
    "PROTO": lambda m, e, p: OSError(m),
    "TOOLONG": lambda m, e, p: OSError("bad message length"),
    "TOOSHORT": lambda m, e, p: BufferTooShort(p),
    "CLOSED": lambda m, e, p: OSError("handle is closed"),
    "OS": _os_error,
    "INVAL": lambda m, e, p: ValueError(m),
    "NOMEM": lambda m, e, p: MemoryError(m),
    "TRUNCATED": lambda m, e, p: OSError("got end of file during message"),
    "AGAIN": lambda m, e, p: BlockingIOError(_errno.EAGAIN, m),
    "INTR": _intr,
    "NOTREADABLE": lambda m, e, p: OSError("connection is write-only"),
    "NOTWRITABLE": lambda m, e, p: OSError("connection is read-only"),
    "RESOLVE": lambda m, e, p: socket.gaierror(m),
    "VALUE": lambda m, e, p: ValueError(m),
    "TLS": _tls,
}


def _check_table(status_names):
    missing = [n for n in status_names if n != "OK" and n not in STATUS_EXCEPTIONS]
    unknown = [n for n in STATUS_EXCEPTIONS if n not in status_names]
    if missing or unknown:
        raise ImportError("mpconn._errors.STATUS_EXCEPTIONS is out of step with the C core's "
                          "statuses: no entry for %s; no such status: %s"
                          % (", ".join(missing) or "-", ", ".join(unknown) or "-"))


def make_error(name, message, err=0, payload=None):
    """Return the exception for a C status name (never raises itself)."""
    factory = STATUS_EXCEPTIONS.get(name)
    if factory is None:
        return OSError("%s: %s" % (name, message))
    return factory(message, err, payload)


def _check():
    from . import core

    _check_table(core.STATUS_NAMES)


_check()
