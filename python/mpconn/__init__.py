"""mpconn: a faster, drop-in ``multiprocessing.connection`` on libmpconn.

    from mpconn import Listener, Client

Same names, signatures, behaviours and exceptions as CPython's
multiprocessing.connection, byte-compatible on the wire with every CPython
version (both handshake dialects), plus keyword-only extras (timeouts, a
dialect/digest choice, a batched send, a restricted recv() that decodes
plain values only and runs nothing).
"""

from .core import mpc_version as _mpc_version
from .connection import (
    BUFSIZE,
    CONNECTION_TIMEOUT,
    AuthenticationError,
    BufferTooShort,
    Client,
    Connection,
    Listener,
    Pipe,
    RestrictedPickleError,
    TLS,
    address_type,
    answer_challenge,
    arbitrary_address,
    default_family,
    deliver_challenge,
    families,
    wait,
)

__version__ = _mpc_version()

__all__ = [
    "Client",
    "Listener",
    "Pipe",
    "wait",
    "TLS",
    "Connection",
    "AuthenticationError",
    "BufferTooShort",
    "RestrictedPickleError",
    "deliver_challenge",
    "answer_challenge",
    "address_type",
    "arbitrary_address",
    "families",
    "default_family",
]
