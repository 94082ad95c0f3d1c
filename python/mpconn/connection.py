"""Drop-in replacement for multiprocessing.connection, on libmpconn.

Same names, signatures, defaults, behaviours, exceptions and error texts as
CPython's module (see PROTOCOL.md section 3 in the project), so existing code
only changes its import.  Extras are keyword-only and change nothing for
existing code:

* ``Listener(..., *, dialect='modern', digest='sha256', handshake_timeout=None,
  read_ahead=False, tls=None, restricted=False)``
* ``Listener.accept(*, timeout=None)``
* ``Client(..., *, timeout=None, dialect='modern', digest='sha256', read_ahead=False,
  tls=None, restricted=False)``
* ``TLS(certfile=, keyfile=, cafile=, capath=, server_hostname=, verify=True)``:
  TLS between mpconn peers (see its docstring).
* ``Connection.recv(*, restricted=None)`` and ``Connection.restricted``: a
  restricted recv() decodes with the C allow-list decoder, which builds only
  None, bool, int, float, str, bytes, bytearray, list, tuple, dict, set and
  frozenset (shared and cyclic references as pickle makes them) and runs
  nothing; anything else raises RestrictedPickleError, a
  pickle.UnpicklingError, and the connection stays in step.
* ``Pipe(duplex=True, *, read_ahead=False)``
* ``Connection.send_bytes_many(buffers)``: many messages in one system call.

Reading: by default a connection reads a message's header and then exactly
its payload, as CPython does, so every unread byte stays in the kernel and a
connection can be shared with other processes, forked, handed over and
watched with select() on its fileno().  ``read_ahead=True`` reads through a
64 KiB buffer instead (fewer system calls for streams of small messages); its
contract: this process is the only reader of the connection, and readiness
is asked of ``poll()`` or ``mpconn.wait()``, which see the buffer, not of a
raw select() on the descriptor.

``dialect`` is the handshake we offer when we challenge: ``'modern'``
(``{sha256}``, CPython >= 3.12; still accepts legacy replies), ``'legacy'``
(20-byte MD5 challenge, exactly CPython <= 3.11) or ``'strict'`` (modern, and
MD5 refused both ways).  We always answer both dialects (except MD5 in
strict mode), so every CPython version can talk to us.

The hot methods of Connection (send_bytes, recv_bytes, recv_bytes_into,
poll, send, recv) are implemented in C (mpconn.core.ConnectionBase); they
release the GIL whenever they may block and never copy payloads through an
intermediate Python object.
"""

import os
import selectors
import socket
import sys
import time

import multiprocessing.connection as _stock
from multiprocessing import AuthenticationError, BufferTooShort, reduction, util

from . import core as _core
from ._errors import RestrictedPickleError, make_error

__all__ = ["Client", "Listener", "Pipe", "wait", "TLS", "RestrictedPickleError"]

# Module-level names that are CPython's own (identical behaviour by
# construction, including the version-dependent temporary socket names).
families = _stock.families
default_family = _stock.default_family
address_type = _stock.address_type
arbitrary_address = _stock.arbitrary_address
BUFSIZE = 8192
CONNECTION_TIMEOUT = 20.0

_MESSAGE_LENGTH = 256  # every handshake read (PROTOCOL.md 2.1)

_DIALECTS = {
    "modern": _core.MPC_DIALECT_MODERN,
    "legacy": _core.MPC_DIALECT_LEGACY,
    "strict": _core.MPC_DIALECT_STRICT,
}

_core._setup(make_error, reduction.ForkingPickler.dumps, reduction.ForkingPickler.loads,
             RestrictedPickleError)
# In a forked child, calls that were in progress in the parent's other
# threads are not in progress here: closing a copied connection then closes it.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_core._after_fork_child)


class TLS(object):
    """TLS settings for ``Listener(..., tls=)`` and ``Client(..., tls=)``.

    The names are the ssl module's.  certfile/keyfile: our certificate
    (chain) and its key (keyfile None: in certfile); a listener needs them,
    a client gives them for mutual TLS.  cafile/capath: the CAs that verify
    the peer (a client without them uses the system store; a listener with
    them requires client certificates).  server_hostname: the name the
    server's certificate must carry (None: the host of the address).
    verify=False turns the client's verification of the server off.

    Order on the wire: connect, the TLS handshake (TLS 1.2 at least), then
    the usual authkey handshake and messages inside TLS.  Failures raise
    ssl.SSLError (ssl.SSLCertVerificationError when a certificate does not
    verify).  mpconn peers only: stock CPython does not speak TLS.
    """

    __slots__ = ("certfile", "keyfile", "cafile", "capath", "server_hostname", "verify")

    def __init__(self, certfile=None, keyfile=None, cafile=None, capath=None,
                 server_hostname=None, verify=True):
        self.certfile = certfile
        self.keyfile = keyfile
        self.cafile = cafile
        self.capath = capath
        self.server_hostname = server_hostname
        self.verify = verify

    def __repr__(self):
        return "TLS(%s)" % ", ".join(
            "%s=%r" % (n, getattr(self, n)) for n in self.__slots__
            if getattr(self, n) is not None and (n != "verify" or not self.verify))

    def _to_c(self):
        def path(p):
            return None if p is None else os.fsencode(p)
        name = self.server_hostname
        if name is not None and not isinstance(name, str):
            raise TypeError("server_hostname must be a str, not %s" % type(name).__name__)
        return (path(self.certfile), path(self.keyfile), path(self.cafile), path(self.capath),
                name, bool(self.verify))


def _tls_arg(tls):
    if tls is None:
        return None
    if not isinstance(tls, TLS):
        raise TypeError("tls must be an mpconn.TLS, not %s" % type(tls).__name__)
    return tls._to_c()


def _dialect_code(dialect):
    try:
        return _DIALECTS[dialect]
    except (KeyError, TypeError):
        raise ValueError(
            "dialect must be one of %s, not %r" % (", ".join(sorted(_DIALECTS)), dialect)
        ) from None


def _check_digest(digest):
    if digest is not None and not isinstance(digest, str):
        raise TypeError("digest must be a str, not %s" % type(digest).__name__)
    return digest


# ---------------------------------------------------------------------------
# Connection
# ---------------------------------------------------------------------------


class Connection(_core.ConnectionBase):
    """Connection(handle, readable=True, writable=True)

    A connection over a socket or pipe descriptor (which it takes over).
    """

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()

    def __reduce__(self):
        # pickle.dumps(conn) works on stock Connections; ours travel by
        # DupFd, as through ForkingPickler.
        return _reduce_connection(self)

    def __copy__(self):
        # copy.copy(conn) works on stock Connections: a Connection over a
        # duplicate of the descriptor (stock shares the very descriptor,
        # which ends in a double close).
        return type(self)(os.dup(self.fileno()), self.readable, self.writable)


def _raise_status(status, message):
    raise make_error(_core.mpc_status_name(status), message or _core.mpc_strerror(status))


def _set_read_ahead(conn):
    """Switches conn to read-ahead (the core's mpc_conn_set_read_ahead)."""
    status = _core.mpc_conn_set_read_ahead(conn, 1)
    if status != _core.MPC_OK:
        raise make_error(_core.mpc_status_name(status), _core.mpc_conn_errmsg(conn),
                         _core.mpc_conn_errno(conn))


def _check_authkey_type(authkey):
    if not isinstance(authkey, bytes):
        raise ValueError("Authkey must be bytes, not {0!s}".format(type(authkey)))


_DIRECTION_ERRORS = {"readable": "connection is write-only", "writable": "connection is read-only"}


def _check_direction(connection, first, second):
    """The OSError stock's send_bytes/recv_bytes give on a one-way end, in
    the order the handshake leg uses them (a closed connection is left to
    the handshake, which reports it as stock does)."""
    if connection.closed:
        return
    for need in (first, second):
        if not getattr(connection, need):
            raise OSError(_DIRECTION_ERRORS[need])


def deliver_challenge(connection, authkey, digest_name="sha256", *, dialect="modern"):
    """Challenge the peer to prove it knows authkey (the server's first leg).

    Works with mpconn Connections (in C, GIL released) and with any object
    that has send_bytes/recv_bytes, such as a stock CPython Connection.
    """
    _check_authkey_type(authkey)
    code = _dialect_code(dialect)
    if isinstance(connection, _core.ConnectionBase):
        # stock sends the challenge first, then reads the reply
        _check_direction(connection, "writable", "readable")
        connection._handshake(0, authkey, code, digest_name, None)
        return
    n = _core.MPC_HS_LEGACY_RANDOM if code == _core.MPC_DIALECT_LEGACY else _core.MPC_HS_MODERN_RANDOM
    status, random = _core.mpc_random(n)
    if status:
        _raise_status(status, None)
    status, challenge, message = _core.mpc_hs_challenge(code, digest_name, random)
    if status:
        _raise_status(status, message)
    connection.send_bytes(challenge)
    reply = connection.recv_bytes(_MESSAGE_LENGTH)
    status, message = _core.mpc_hs_verify(code, authkey, challenge, reply)
    if status:
        connection.send_bytes(_core.MPC_HS_FAILURE.encode())
        _raise_status(status, message)
    connection.send_bytes(_core.MPC_HS_WELCOME.encode())


def answer_challenge(connection, authkey, *, dialect="modern"):
    """Answer the peer's challenge with authkey (the client's first leg)."""
    _check_authkey_type(authkey)
    code = _dialect_code(dialect)
    if isinstance(connection, _core.ConnectionBase):
        # stock reads the challenge first, then sends the reply
        _check_direction(connection, "readable", "writable")
        connection._handshake(1, authkey, code, None, None)
        return
    challenge = connection.recv_bytes(_MESSAGE_LENGTH)
    status, reply, message = _core.mpc_hs_respond(code, authkey, challenge)
    if status:
        _raise_status(status, message)
    connection.send_bytes(reply)
    verdict = connection.recv_bytes(_MESSAGE_LENGTH)
    status, message = _core.mpc_hs_check_welcome(verdict)
    if status:
        _raise_status(status, message)


# ---------------------------------------------------------------------------
# Addresses: Python forms <-> the C string syntax ("host:port", "[v6]:port",
# "/path", "@abstract").
# ---------------------------------------------------------------------------


def _validate_family(family):
    if sys.platform != "win32" and family == "AF_PIPE":
        raise ValueError("Family %s is not recognized." % family)
    if family not in ("AF_INET", "AF_INET6", "AF_UNIX"):
        getattr(socket, family)  # AttributeError for a non-family, as CPython
        raise ValueError("Family %s is not supported by mpconn." % family)


def _inet_address(address, family):
    if not isinstance(address, tuple) or not 2 <= len(address) <= (4 if family == "AF_INET6" else 2):
        if family == "AF_INET6" or (isinstance(address, tuple) and len(address) == 4):
            raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
        raise TypeError("AF_INET address must be a pair (host, port)")
    host, port = address[0], address[1]
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("ascii")
    if not isinstance(host, str):
        raise TypeError("str, bytes or bytearray expected, not %s" % type(host).__name__)
    port = port.__index__() if hasattr(port, "__index__") else port
    if not isinstance(port, int):
        raise TypeError("'%s' object cannot be interpreted as an integer" % type(port).__name__)
    if not 0 <= port <= 65535:
        raise OverflowError("port must be 0-65535.")
    if family == "AF_INET6" or ":" in host:
        if host == "":
            host = "::"
        elif ":" not in host:
            # A name: resolve it to an IPv6 literal here so the C side
            # cannot pick IPv4 for an AF_INET6 listener or client.
            infos = socket.getaddrinfo(host, port, socket.AF_INET6, socket.SOCK_STREAM)
            host = infos[0][4][0]
        return ("[%s]:%d" % (host, port)).encode("ascii")
    if host[:1] in ("@", "[") or "/" in host:
        # The C syntax would read these as an abstract name, an IPv6
        # literal or a Unix path; resolve as stock does (socket.gaierror
        # with the resolver's code) and hand C the literal.
        host = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    try:
        text = host.encode("ascii")
    except UnicodeEncodeError:
        text = host.encode("idna")
    return text + b":" + str(port).encode("ascii")


_SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path) on Linux


def _abstract(name):
    if len(name) + 1 > _SUN_PATH_MAX:
        raise OSError("AF_UNIX path too long")
    return b"@" + name


def _unix_address(address):
    if isinstance(address, str):
        if address.startswith("\0"):
            return _abstract(os.fsencode(address[1:]))
        path = os.fsencode(address)
    elif isinstance(address, (bytes, bytearray)):
        if address[:1] == b"\0":
            return _abstract(bytes(address[1:]))
        path = bytes(address)
    elif isinstance(address, os.PathLike):
        path = os.fsencode(address)
    else:
        raise TypeError("a bytes-like object is required, not '%s'" % type(address).__name__)
    if b"\0" in path:
        raise ValueError("embedded null byte")
    if len(path) >= _SUN_PATH_MAX:
        raise OSError("AF_UNIX path too long")
    if b"/" not in path and (b":" in path or path[:1] in (b"@", b"[")):
        # keeps "a:b" or "@x" from reading as TCP/abstract in the C syntax
        path = b"./" + path
    return path


def _to_c_address(address, family):
    if family in ("AF_INET", "AF_INET6"):
        return _inet_address(address, family)
    return _unix_address(address)


def _inet_from_c(text, family):
    host, _, port = text.rpartition(":")
    if host.startswith("["):
        return (host[1:-1], int(port), 0, 0)
    if family == "AF_INET6":
        return (host, int(port), 0, 0)
    return (host, int(port))


# ---------------------------------------------------------------------------
# Listener / Client / Pipe
# ---------------------------------------------------------------------------


def _reraise_gaierror(error, address):
    """The C core reports a failed lookup without its EAI_* code; ask the
    resolver again so the gaierror carries errno and text as stock's."""
    if error.errno is None and isinstance(address, tuple):
        family = socket.AF_INET6 if len(address) == 4 else socket.AF_INET
        socket.getaddrinfo(address[0], address[1], family, socket.SOCK_STREAM)
    raise error


def _close_handle(handle):
    handle.close()


def _unix_peer(fd):
    """accept()'s address for a Unix client: '' when it is unnamed, else the
    name it bound (str path; bytes for an abstract name), as stock."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
    try:
        return s.getpeername()
    except OSError:
        return ""
    finally:
        s.detach()


class Listener(object):
    """Listener(address=None, family=None, backlog=1, authkey=None)

    Returns a listener object with accept() and close() methods.  Extras
    (keyword-only): dialect, digest, handshake_timeout (seconds; None = no
    deadline, as CPython; it also bounds the TLS handshake), read_ahead,
    tls (an mpconn.TLS with certfile and keyfile), restricted (accepted
    connections recv() with the allow-list decoder; see the module
    docstring).
    """

    def __init__(self, address=None, family=None, backlog=1, authkey=None, *,
                 dialect="modern", digest="sha256", handshake_timeout=None, read_ahead=False,
                 tls=None, restricted=False):
        family = family or (address and address_type(address)) or default_family
        address = address or arbitrary_address(family)
        _validate_family(family)
        if family == "AF_INET" and isinstance(address, tuple) and len(address) == 4:
            family = "AF_INET6"
        caddr = _to_c_address(address, family)
        code = _dialect_code(dialect)
        _check_digest(digest)
        ctls = _tls_arg(tls)
        bad_key = authkey is not None and not isinstance(authkey, bytes)
        self._handle = None
        self._finalizer = None
        try:
            handle = _core.listen(caddr, None if bad_key else authkey, int(backlog), code,
                                  digest, handshake_timeout, ctls)
        except socket.gaierror as e:
            _reraise_gaierror(e, address)
        self._handle = handle
        self._family = _core.mpc_listener_family(handle)
        if self._family == "AF_UNIX":
            if caddr.startswith(b"@"):
                self._address = b"\0" + caddr[1:]
            else:
                self._address = address if isinstance(address, str) else os.fsdecode(address)
                # Unlinks the socket file at interpreter exit (and only in
                # this process), as CPython's Finalize does.
                self._finalizer = util.Finalize(self, _close_handle, args=(handle,),
                                                exitpriority=0)
        else:
            self._address = _inet_from_c(_core.mpc_listener_address(handle), self._family)
        self._last_accepted = None
        self._authkey = authkey
        self._read_ahead = bool(read_ahead)
        self._restricted = bool(restricted)
        if bad_key:
            # CPython binds first and then refuses the key.
            self.close()
            raise TypeError("authkey should be a byte string")

    def accept(self, *, timeout=None):
        """Accept a connection on the bound socket or named pipe of `self`.

        Returns a `Connection` object.  timeout (keyword-only, seconds)
        limits the wait for a client: TimeoutError when it passes.
        """
        handle = self._handle
        if handle is None:
            raise OSError("listener is closed")
        try:
            conn = handle.accept(Connection, timeout)
        except (AuthenticationError, EOFError, OSError) as e:
            # As CPython: a client that failed its handshake was accepted
            # first, so it is the last accepted one.
            if self._authkey is not None and self._handle is not None and \
                    not isinstance(e, (TimeoutError, BlockingIOError)) and \
                    str(e) != "listener is closed":
                peer = _core.mpc_listener_last_peer(self._handle)
                self._last_accepted = _inet_from_c(peer, self._family) if peer else ""
            raise
        if self._read_ahead:
            _set_read_ahead(conn)
        conn.restricted = self._restricted
        peer = _core.mpc_conn_peer(conn)
        if peer:
            self._last_accepted = _inet_from_c(peer, self._family)
        elif self._family == "AF_UNIX":
            self._last_accepted = _unix_peer(conn.fileno())
        else:
            self._last_accepted = ""
        return conn

    def _set_blocking(self, flag):
        # mpconn.asyncio: a non-blocking listener's accept() raises
        # BlockingIOError when no client waits, and returns non-blocking
        # connections whose _flush() finishes the handshake.
        if self._handle is None:
            raise OSError("listener is closed")
        self._handle._setblocking(bool(flag))

    def close(self):
        """Close the bound socket or named pipe of `self`."""
        handle = self._handle
        if handle is not None:
            self._handle = None
            if self._finalizer is not None:
                # Closing is ours in every process; the socket file is
                # removed by the process that made it only (the core checks).
                self._finalizer.cancel()
            handle.close()

    def fileno(self):
        if self._handle is None:
            raise OSError("listener is closed")
        return _core.mpc_listener_fileno(self._handle)

    @property
    def address(self):
        if self._handle is None:
            raise AttributeError("'NoneType' object has no attribute '_address'")
        return self._address

    @property
    def last_accepted(self):
        if self._handle is None:
            raise AttributeError("'NoneType' object has no attribute '_last_accepted'")
        return self._last_accepted

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()

    def __del__(self):
        handle = getattr(self, "_handle", None)
        if handle is not None and self._finalizer is None:
            handle.close()


def Client(address, family=None, authkey=None, *, timeout=None, dialect="modern",
           digest="sha256", read_ahead=False, tls=None, restricted=False, _nonblocking=False):
    """Returns a connection to the address of a `Listener`.

    Extras (keyword-only): timeout (seconds, covers connect and handshake;
    TimeoutError), dialect, digest, read_ahead, restricted (see the module
    docstring), tls (an mpconn.TLS: see its docstring).
    """
    family = family or address_type(address)
    _validate_family(family)
    if isinstance(address, tuple):
        # Unlike CPython, an IPv6 address (4-tuple or v6 literal) works.
        # As stock, family= does not change how a (host, port) pair is
        # reached (stock's socket client recomputes the family from the
        # address); a 4-tuple or an IPv6 literal goes over IPv6.
        kind = "AF_INET6" if len(address) == 4 else "AF_INET"
    else:
        kind = "AF_UNIX"
    caddr = _to_c_address(address, kind)
    code = _dialect_code(dialect)
    _check_digest(digest)
    ctls = _tls_arg(tls)
    bad_key = authkey is not None and not isinstance(authkey, bytes)
    try:
        conn = _core.connect(Connection, caddr, None if bad_key else authkey, code, digest,
                             timeout, bool(_nonblocking), ctls)
    except socket.gaierror as e:
        _reraise_gaierror(e, address)
    if bad_key:
        conn.close()
        raise TypeError("authkey should be a byte string")
    if read_ahead:
        _set_read_ahead(conn)
    conn.restricted = bool(restricted)
    return conn


def Pipe(duplex=True, *, read_ahead=False):
    """Returns pair of connection objects at either end of a pipe.

    duplex=False gives (reader, writer) over os.pipe().  read_ahead: see the
    module docstring.
    """
    a, b = _core.pipe(Connection, bool(duplex))
    if read_ahead:
        _set_read_ahead(a)
        _set_read_ahead(b)
    return a, b


# ---------------------------------------------------------------------------
# wait()
# ---------------------------------------------------------------------------

if hasattr(selectors, "PollSelector"):
    _WaitSelector = selectors.PollSelector
else:  # pragma: no cover
    _WaitSelector = selectors.SelectSelector


def wait(object_list, timeout=None):
    """Wait till an object in object_list is ready/readable.

    Accepts mpconn Connections, stock multiprocessing Connections, sockets,
    raw file descriptors and Process sentinels.  Returns list of those
    objects in object_list which are ready/readable.  An mpconn Connection
    with a message already in its read-ahead buffer counts as ready.
    """
    object_list = list(object_list)
    buffered = [o for o in object_list
                if isinstance(o, _core.ConnectionBase) and o._buffered()]
    with _WaitSelector() as selector:
        for obj in object_list:
            selector.register(obj, selectors.EVENT_READ)
        if buffered:
            timeout = 0
        if timeout is not None:
            deadline = time.monotonic() + timeout
        while True:
            ready = selector.select(timeout)
            if ready or buffered:
                ids = set(map(id, buffered))
                result = list(buffered)
                for key, _events in ready:
                    if id(key.fileobj) not in ids:
                        ids.add(id(key.fileobj))
                        result.append(key.fileobj)
                return result
            if timeout is not None:
                timeout = deadline - time.monotonic()
                if timeout < 0:
                    return ready


# ---------------------------------------------------------------------------
# Passing connections to child processes (fork, spawn, forkserver; and over
# other connections): the descriptor travels by DupFd, as for CPython's
# Connection objects.
# ---------------------------------------------------------------------------


def _reduce_connection(conn):
    if conn._buffered():
        raise ValueError("cannot pickle a Connection with unread buffered data")
    dup = reduction.DupFd(conn.fileno())
    return _rebuild_connection, (dup, conn.readable, conn.writable, conn.restricted)


def _rebuild_connection(dup, readable, writable, restricted=False):
    conn = Connection(dup.detach(), readable, writable)
    conn.restricted = restricted  # a restricted connection stays so in the child
    return conn


reduction.register(Connection, _reduce_connection)
