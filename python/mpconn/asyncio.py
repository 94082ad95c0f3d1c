"""asyncio for mpconn: the synchronous objects in non-blocking mode, driven by
the running event loop.

    import mpconn.asyncio as aio

    async with aio.Listener(("127.0.0.1", 6000), authkey=b"secret") as listener:
        conn = await listener.accept()
        async with conn:
            async for obj in conn:          # recv() until EOF
                await conn.send(("ok", obj))

    conn = await aio.Client(("127.0.0.1", 6000), authkey=b"secret")

Names mirror mpconn (and so multiprocessing.connection): ``Listener``,
``Client`` (a coroutine function), ``Pipe``, and connections whose ``send``,
``recv``, ``send_bytes``, ``recv_bytes``, ``recv_bytes_into`` and ``poll``
are coroutines.  ``wrap(conn)`` turns a synchronous mpconn Connection into
an asynchronous one.  Exceptions are the synchronous API's (EOFError,
AuthenticationError, BufferTooShort, OSError, ssl.SSLError under TLS ...).

How it works: every call first tries the operation, which in non-blocking
mode either completes or raises BlockingIOError having consumed or accepted
nothing; only then does it wait, with ``loop.add_reader``/``add_writer`` on
the descriptor (what the connection says it wants), and tries again.  No
threads, no executor, no polling; the default loop and uvloop both work.

Rules:

* Deadlines are the caller's: ``asyncio.wait_for()`` (or
  ``asyncio.timeout()`` on Python >= 3.11).  ``Listener(...,
  handshake_timeout=s)`` bounds each accepted client's handshake.
* A send returns once the connection has taken its message: written, or
  queued and then written by the loop as the socket takes more (asyncio's
  transports do the same).  Small messages queue up to 64 KiB and go out
  many per system call; a send waits while the queue is full, and a large
  message waits until everything before it is written.  An error writing
  queued output is raised by the next send.  ``close()`` finishes queued
  output in the background (for up to 30 s) and then closes the descriptor;
  ``async with`` waits for it.
* Cancelling any call is safe.  A cancelled receive loses nothing: a
  partly received message stays inside the connection and the next receive
  returns it whole.  A cancelled send has sent nothing (a message once
  taken is always written whole, before anything sent later).
* One receiving task and one sending task at a time per connection (they
  may run concurrently with each other); a second concurrent receiver (or a
  second sender while one waits) gets RuntimeError.  ``poll()`` may run
  beside a receiver.
* Name resolution blocks (as the synchronous API's); numeric addresses
  never do.
* ``wrap(conn)`` switches conn to non-blocking mode for good: use only the
  asynchronous object afterwards.
"""

import asyncio as _asyncio
from multiprocessing import reduction as _reduction
from operator import index as _index

from . import connection as _sync
from . import core as _core
from ._errors import make_error as _make_error
from .connection import AuthenticationError, BufferTooShort  # noqa: F401  (re-exported)

__all__ = ["Client", "Connection", "Listener", "Pipe", "wrap",
           "AuthenticationError", "BufferTooShort"]

_READ = 1
_WRITE = 2
# What a connection's _try_ methods return instead of raising
# BlockingIOError (an exception costs more than a whole small message).
_AGAIN = _core._AGAIN
_dumps = _reduction.ForkingPickler.dumps
# Small messages queued in Python, waiting for the socket, before a send
# waits (asyncio's transports pause their writers at 64 KiB too).
_HIGH_WATER = 64 * 1024
# Seconds a close()d connection goes on writing its queued output.
_LINGER = 30.0
_RECEIVING = "another task is already receiving on this connection"
_SENDING = "another task is already sending on this connection"


def _wake(fut):
    if not fut.done():
        fut.set_result(None)


class _Waiters(object):
    """Who waits for one descriptor, on one loop: futures waiting for it to
    be readable or writable, and the output pump of a connection (called
    whenever it is writable, before the writable futures wake).  One
    add_reader (add_writer) registration however many wait (a receiver and a
    sender may both wait for writability, a poll beside a receive for
    readability).  The write registration is removed as soon as nobody waits
    any more; the read registration stays after it has woken a reader (who
    usually waits again soon: a request, then its reply) and goes at the
    second readiness in a row that finds nobody waiting (the first may be
    stale: asyncio's loop reports the readiness it polled before the woken
    receiver ran and read), so a receive loop costs no system call to the
    loop's selector per message."""

    __slots__ = ("_fd", "_loop", "_readers", "_writers", "_pump", "_pump_events", "_rreg",
                 "_wreg", "_rkeep")

    def __init__(self, fd):
        self._fd = fd
        self._loop = None
        self._readers = []
        self._writers = []
        self._pump = None
        self._pump_events = 0
        self._rreg = False
        self._wreg = False
        self._rkeep = 0  # readinesses with nobody waiting before the read registration goes

    def _update(self):
        """Makes the loop's registrations match who waits."""
        loop = self._loop
        pump = self._pump_events if self._pump is not None else 0
        want = bool(self._readers) or bool(pump & _READ) or (self._rkeep and self._rreg)
        if want != self._rreg:
            if want:
                loop.add_reader(self._fd, self._on_readable)
            else:
                loop.remove_reader(self._fd)
            self._rreg = want
        want = bool(self._writers) or bool(pump & _WRITE)
        if want != self._wreg:
            if want:
                loop.add_writer(self._fd, self._on_writable)
            else:
                loop.remove_writer(self._fd)
            self._wreg = want

    def _on_readable(self):
        readers = self._readers
        if readers and self._pump is None and self._rreg:
            # The hot path: wake the receivers and keep listening.
            self._readers = []
            self._rkeep = 2
            for fut in readers:
                _wake(fut)
            return
        self._readers = []
        pumped = self._pump is not None and self._pump_events & _READ
        if pumped:
            self._pump()
        # Nobody woken, twice in a row: stop listening (readiness would
        # call again at every turn of the loop).
        self._rkeep = 2 if readers else max(self._rkeep - 1, 0)
        self._update()
        for fut in readers:
            _wake(fut)

    def _on_writable(self):
        writers, self._writers = self._writers, []
        if self._pump is not None and self._pump_events & _WRITE:
            self._pump()
        self._update()
        for fut in writers:
            _wake(fut)

    def _use(self, loop):
        if loop is self._loop:
            return
        if self._readers or self._writers or self._pump is not None:
            raise RuntimeError("this mpconn object is already in use by another event loop")
        old = self._loop
        if old is not None and (self._rreg or self._wreg):
            # A registration kept on the loop used before: it goes (that
            # loop may be closed, its registrations gone with it).
            if not old.is_closed():
                if self._rreg:
                    old.remove_reader(self._fd)
                if self._wreg:
                    old.remove_writer(self._fd)
            self._rreg = self._wreg = False
            self._rkeep = 0
        self._loop = loop

    def add(self, loop, fut, events):
        self._use(loop)
        if events & _READ:
            self._readers.append(fut)
        if events & _WRITE:
            self._writers.append(fut)
        try:
            self._update()
        except BaseException:
            self.discard(fut)
            raise

    def discard(self, fut):
        """Forgets fut (woken, cancelled or timed out)."""
        if fut in self._readers:
            self._readers.remove(fut)
        if fut in self._writers:
            self._writers.remove(fut)
        self._update()

    def set_pump(self, loop, pump, events=_WRITE):
        """pump() is called whenever the descriptor is ready for events
        (before the futures waiting for the same wake), until
        set_pump(loop, None)."""
        if pump is not None:
            self._use(loop)
        self._pump = pump
        self._pump_events = events
        self._update()

    def clear(self):
        """Drops every registration (before the descriptor is closed) and
        wakes every waiter: it retries and meets the closed object."""
        waiters = self._readers + self._writers
        self._readers = []
        self._writers = []
        self._pump = None
        self._pump_events = 0
        self._rkeep = 0
        loop = self._loop
        if loop is not None and not loop.is_closed():
            self._update()
        self._rreg = self._wreg = False
        for fut in waiters:
            if not fut.done() and not fut.get_loop().is_closed():
                _wake(fut)

    async def ready(self, events, deadline=None):
        """Waits until the descriptor is ready for events (or deadline, a
        loop.time() value, has passed)."""
        loop = _asyncio.get_running_loop()
        fut = loop.create_future()
        self.add(loop, fut, events)
        timer = None if deadline is None else loop.call_at(deadline, _wake, fut)
        try:
            await fut
        finally:
            if timer is not None:
                timer.cancel()
            self.discard(fut)


def _as_sync_connection(conn):
    if not isinstance(conn, _sync.Connection):
        raise TypeError("an mpconn Connection is required, not %s" % type(conn).__name__)
    return conn


def _fresh(error):
    """A new exception like error (raising one instance again and again
    would chain its tracebacks)."""
    try:
        return type(error)(*error.args)
    except Exception:  # pragma: no cover - an exception type with odd arguments
        return error


def _message_view(conn, buf, offset, size):
    """The bytes of buf[offset:offset+size] as a memoryview, with the checks
    and errors of the synchronous send_bytes()."""
    if conn.closed:
        raise _make_error("CLOSED", None)
    if not conn.writable:
        raise _make_error("NOTWRITABLE", None)
    offset = _index(offset)
    if size is not None:
        size = _index(size)
    try:
        view = memoryview(buf)
    except TypeError:
        raise TypeError("a bytes-like object is required, not '%s'" % type(buf).__name__) from None
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    length = len(view)
    if offset < 0:
        raise ValueError("offset is negative")
    if length < offset:
        raise ValueError("buffer length < offset")
    if size is None:
        size = length - offset
    elif size < 0:
        raise ValueError("size is negative")
    elif size > length - offset:
        raise ValueError("buffer length < offset + size")
    return view[offset:offset + size]


def _drop_registrations(io, conn):
    """Removes io's registrations from its loop (conn, the descriptor's
    owner, stays alive until then)."""
    loop = io._loop
    if loop is None or loop.is_closed():
        return
    try:
        running = _asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop or not loop.is_running():
        io.clear()
    else:  # another thread runs the loop: let it do it, then let conn go
        loop.call_soon_threadsafe(io.clear)
        loop.call_soon_threadsafe(id, conn)


class _ClosedConnection(object):
    """What an asynchronous Connection holds after close() while its last
    output is still being written in the background: every call raises as
    on a closed connection."""

    __slots__ = ("readable", "writable", "restricted")
    closed = True

    def __init__(self, readable, writable, restricted):
        self.readable = readable
        self.writable = writable
        self.restricted = restricted

    def _closed(self, *args, **kwargs):
        raise _make_error("CLOSED", None)

    fileno = send_bytes = send_bytes_many = recv_bytes = recv_bytes_into = recv = poll = _closed
    _flush = _try_send_bytes = _try_recv_bytes = _try_recv = _closed

    def _wants(self):
        return 0

    def _pending(self):
        return False

    def close(self):
        pass


def _linger(loop, conn, outq):
    """Writes what a closed connection still had to send, in the background
    on loop, then closes it (as an asyncio transport's close() does); gives
    up after _LINGER seconds or at the first error."""
    io = _Waiters(conn.fileno())

    def finish():
        timer.cancel()
        io.set_pump(loop, None)
        conn.close()

    def pump():
        try:
            if conn._flush():
                if outq:
                    conn.send_bytes_many(outq)
                    del outq[:]
                if conn._flush():
                    finish()
                    return
        except BlockingIOError:
            pass
        except Exception:  # the peer is gone: nothing more to deliver
            finish()
            return
        io.set_pump(loop, pump, conn._wants() or _WRITE)

    timer = loop.call_later(_LINGER, finish)
    io.set_pump(loop, pump, conn._wants() or _WRITE)


class Connection(object):
    """An asynchronous mpconn connection (made by Client, Listener.accept,
    Pipe or wrap; ``Connection(conn)`` is ``wrap(conn)``).

    Output: a send returns once the connection has taken its message:
    written, or queued to be written by the loop as soon as the socket takes
    more.  Small messages queue here, up to _HIGH_WATER bytes (then a send
    waits), and go out many per system call; a large one waits until all
    earlier output is written, and the connection keeps what the socket
    does not take at once.  An error writing queued output is raised by the
    next send."""

    __slots__ = ("_conn", "_io", "_receiving", "_sending", "_outq", "_outsize", "_queued",
                 "_out_error", "__weakref__")

    def __init__(self, conn):
        conn = _as_sync_connection(conn)
        conn._setblocking(False)
        self._conn = conn
        self._io = _Waiters(conn.fileno())
        self._receiving = False
        self._sending = False
        self._outq = []  # small messages (bytes) the connection has not taken yet
        self._outsize = 0  # their bytes
        self._queued = False  # output waits (in _outq or inside the connection): the pump runs
        self._out_error = None  # what writing queued output failed with

    def __repr__(self):
        conn = self._conn
        state = "closed" if conn.closed else "fd=%d" % conn.fileno()
        return "<%s.%s %s>" % (type(self).__module__, type(self).__name__, state)

    def __del__(self):
        # Dropped without close(): the read registration kept for the next
        # receive must go before the synchronous object closes the
        # descriptor (a loop must never watch a closed descriptor, whose
        # number the next socket reuses).
        io = getattr(self, "_io", None)  # (None: __init__ failed)
        if io is not None and (io._rreg or io._wreg):
            _drop_registrations(io, self._conn)

    # -- properties of the synchronous object

    @property
    def closed(self):
        """True if the connection is closed."""
        return self._conn.closed

    @property
    def readable(self):
        """True if the connection is readable."""
        return self._conn.readable

    @property
    def writable(self):
        """True if the connection is writable."""
        return self._conn.writable

    @property
    def restricted(self):
        """True if recv() decodes with the allow-list decoder (see the
        synchronous Connection)."""
        return self._conn.restricted

    @restricted.setter
    def restricted(self, flag):
        self._conn.restricted = flag

    def fileno(self):
        """File descriptor of the connection."""
        return self._conn.fileno()

    def close(self):
        """Close the connection.  Tasks waiting on it wake and get
        OSError("handle is closed").  Output still queued is written in the
        background by the loop (as an asyncio transport's close() does) for
        up to _LINGER seconds, and then the descriptor is closed."""
        conn = self._conn
        io = self._io
        if self._queued and not conn.closed:
            self._pump()  # what the socket takes now
        loop = io._loop
        outq, queued = self._outq, self._queued
        self._outq = []
        self._outsize = 0
        self._queued = False
        io.clear()
        if queued and not conn.closed and loop is not None and not loop.is_closed():
            self._conn = _ClosedConnection(conn.readable, conn.writable, conn.restricted)
            _linger(loop, conn, outq)
        else:
            conn.close()

    # -- the engine

    def _check_same(self, conn):
        """After a wait: conn is still ours (a close() replaces it)."""
        if self._conn is not conn:
            raise _make_error("CLOSED", None)

    async def _recv_wait(self, op, *args):
        """A receive whose first try returned _AGAIN: waits for what the
        connection wants and tries op(*args) again (a _try_ method) until it
        returns something else.  The hot path of every receive that waits,
        so the future is awaited here, not in a helper coroutine."""
        conn = self._conn
        io = self._io
        # The loop the read registration is kept on, while it runs (asking
        # asyncio for the running loop costs a getpid() system call; a task
        # of a loop running in another thread gets asyncio's "attached to a
        # different loop" RuntimeError).
        loop = io._loop
        if not (io._rreg and loop.is_running()):
            loop = _asyncio.get_running_loop()
        trust_pending = True
        self._receiving = True
        try:
            while True:
                events = conn._wants() or _READ
                if events & _READ and trust_pending and conn._pending():
                    # A whole message is already buffered: never wait on the
                    # descriptor for it (once; should the call still want
                    # input, the next round waits for it).
                    events &= ~_READ
                    trust_pending = False
                if events:
                    fut = loop.create_future()
                    if events == _READ and io._rreg and io._loop is loop:
                        io._readers.append(fut)  # (io.add(), registered already)
                    else:
                        io.add(loop, fut, events)
                    try:
                        await fut
                    finally:
                        if events != _READ or fut.cancelled() or not fut.done():
                            io.discard(fut)  # (a woken reader is dropped already)
                    self._check_same(conn)
                r = op(*args)
                if r is not _AGAIN:
                    return r
        finally:
            self._receiving = False

    # -- output

    def _start_pump(self):
        self._queued = True
        self._io.set_pump(_asyncio.get_running_loop(), self._pump, self._conn._wants() or _WRITE)

    def _follow(self, conn):
        """The pump waits for what the connection wants (writability; under
        TLS it may be readability)."""
        events = conn._wants() or _WRITE
        if events != self._io._pump_events:
            self._io.set_pump(self._io._loop, self._pump, events)

    def _pump(self):
        """Writes queued output as far as the socket takes it (the loop calls
        it whenever the descriptor is writable); stops once all is out."""
        conn = self._conn
        try:
            if not conn._flush():
                self._follow(conn)
                return
            outq = self._outq
            if outq:
                try:
                    if len(outq) == 1:
                        conn.send_bytes(outq[0])
                    else:
                        conn.send_bytes_many(outq)
                except BlockingIOError:
                    self._follow(conn)
                    return
                self._outq = []
                self._outsize = 0
                if conn._wants():
                    self._follow(conn)
                    return
        except Exception as e:  # raised by the next send
            self._out_error = e
            self._outq = []
            self._outsize = 0
        self._queued = False
        self._io.set_pump(None, None)

    async def _wait_output(self, limit):
        """Waits until at most limit bytes are queued here (None: until all
        output, the connection's own included, is written)."""
        conn = self._conn
        while self._queued and (limit is None or self._outsize > limit):
            await self._io.ready(self._io._pump_events or _WRITE)  # the pump runs first
            self._check_same(conn)
        if self._out_error is not None:
            raise _fresh(self._out_error)

    def _send_check(self):
        if self._sending:
            raise RuntimeError(_SENDING)
        raise _fresh(self._out_error)

    async def _send_queued(self, buf, offset, size):
        """A send while earlier output waits: queue a small message; a large
        one waits for all earlier output to be written."""
        conn = self._conn
        view = _message_view(conn, buf, offset, size)
        n = view.nbytes
        self._sending = True
        try:
            if n < _HIGH_WATER:
                await self._wait_output(_HIGH_WATER - n)
                self._outq.append(view.tobytes())
                self._outsize += n
                if not self._queued:
                    self._start_pump()
                return
            await self._wait_output(None)
            while True:
                try:
                    conn.send_bytes(view)
                    break
                except BlockingIOError:
                    pass
                await self._io.ready(conn._wants() or _WRITE)
                self._check_same(conn)
            if conn._wants():
                self._start_pump()
        finally:
            self._sending = False

    # -- receiving

    async def recv_bytes(self, maxlength=None):
        """Receive one message as bytes (OSError("bad message length") when it
        is longer than maxlength; EOFError at end of file)."""
        if self._receiving:
            raise RuntimeError(_RECEIVING)
        op = self._conn._try_recv_bytes
        r = op(maxlength)
        if r is not _AGAIN:
            return r
        return await self._recv_wait(op, maxlength)

    async def recv_bytes_into(self, buf, offset=0):
        """Receive one message into buf at offset; returns its length
        (BufferTooShort, carrying the message, when it does not fit)."""
        if self._receiving:
            raise RuntimeError(_RECEIVING)
        conn = self._conn

        def op():
            try:
                return conn.recv_bytes_into(buf, offset)
            except BlockingIOError:
                return _AGAIN
        r = op()
        if r is not _AGAIN:
            return r
        return await self._recv_wait(op)

    async def recv(self, *, restricted=None):
        """Receive one (unpickled) object.  restricted=True (default: the
        connection's restricted attribute) decodes it with the allow-list
        decoder, as the synchronous recv() does."""
        if self._receiving:
            raise RuntimeError(_RECEIVING)
        op = self._conn._try_recv
        r = op() if restricted is None else op(restricted=restricted)
        if r is not _AGAIN:
            return r
        if restricted is None:
            return await self._recv_wait(op)
        return await self._recv_wait(lambda: op(restricted=restricted))

    async def poll(self, timeout=0.0):
        """Whether there is data to read, waiting up to timeout seconds for
        it (None: no limit).  May run beside a receiving task."""
        conn = self._conn
        if self._poll_now():  # also raises what the synchronous poll() does
            return True
        if timeout is not None:
            timeout = float(timeout)
            if not timeout > 0:  # also NaN
                return False
        loop = _asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            await self._io.ready(_READ, deadline)
            self._check_same(conn)
            if conn._pending() or self._poll_now():
                return True
            if deadline is not None and loop.time() >= deadline:
                return False

    def _poll_now(self):
        try:
            return self._conn.poll(0)
        except BlockingIOError:
            return False

    # -- sending

    async def send_bytes(self, buf, offset=0, size=None):
        """Send the bytes of buf[offset:offset+size] as one message.  Returns
        once the connection has taken it (see the class); buf may be reused
        then.  Cancelled, it has sent nothing."""
        if self._sending or self._out_error is not None:
            self._send_check()
        if not self._queued:
            wants = self._conn._try_send_bytes(buf, offset, size)
            if wants is not _AGAIN:
                if wants:  # part of it waits inside the connection
                    self._start_pump()
                return
        elif type(buf) is bytes and not offset and size is None:
            # The hot path of a stream of small messages: the socket is
            # full, the pump will write this with the others.
            n = len(buf)
            conn = self._conn
            if self._outsize + n <= _HIGH_WATER and not conn.closed and conn.writable:
                self._outq.append(buf)
                self._outsize += n
                return
        await self._send_queued(buf, offset, size)

    async def send(self, obj):
        """Send a (picklable) object, pickled as the synchronous send() does."""
        if self._sending or self._out_error is not None:
            self._send_check()
        conn = self._conn
        # The synchronous send()'s checks, before pickling as it does.
        if conn.closed:
            raise _make_error("CLOSED", None)
        if not conn.writable:
            raise _make_error("NOTWRITABLE", None)
        await self.send_bytes(_dumps(obj))

    # -- protocols

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc_value, exc_tb):
        """Waits for the output still queued (when the block ended without
        an exception), then closes."""
        try:
            if exc_type is None and self._queued:
                try:
                    await self._wait_output(None)
                except (OSError, EOFError):
                    pass
        finally:
            self.close()

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.recv()
        except EOFError:
            raise StopAsyncIteration from None


def wrap(conn):
    """An asynchronous connection made of a synchronous mpconn Connection,
    which is switched to non-blocking mode (use only the result from then
    on)."""
    return Connection(conn)


async def _handshake(aconn, deadline=None):
    """Finishes the connect and handshake of a connection made non-blocking;
    closes it on any failure (cancellation included)."""
    conn = aconn._conn
    try:
        while not conn._flush():
            if deadline is not None and _asyncio.get_running_loop().time() >= deadline:
                raise _make_error("TIMEOUT", "handshake timed out")
            await aconn._io.ready(conn._wants() or _READ, deadline)
    except BaseException:
        aconn.close()
        raise
    return aconn


async def Client(address, family=None, authkey=None, *, dialect="modern", digest="sha256",
                 read_ahead=False, tls=None, restricted=False):
    """Connect to the address of a Listener (ours or CPython's); returns an
    asynchronous Connection once the handshake (with an authkey) is done.

    Deadlines: asyncio.wait_for() / asyncio.timeout() around the call.
    """
    conn = _sync.Client(address, family, authkey, dialect=dialect, digest=digest,
                        read_ahead=read_ahead, tls=tls, restricted=restricted,
                        _nonblocking=True)
    try:
        aconn = Connection(conn)
    except BaseException:
        conn.close()
        raise
    return await _handshake(aconn)


def Pipe(duplex=True, *, read_ahead=False):
    """A pair of asynchronous connections at either end of a pipe
    (duplex=False: (reader, writer))."""
    a, b = _sync.Pipe(duplex, read_ahead=read_ahead)
    try:
        return Connection(a), Connection(b)
    except BaseException:
        a.close()
        b.close()
        raise


class Listener(object):
    """Listener(address=None, family=None, backlog=1, authkey=None, *,
    dialect='modern', digest='sha256', handshake_timeout=None,
    read_ahead=False, tls=None, restricted=False)

    Binds and listens at once (no wait); ``await accept()`` waits for a
    client and finishes its handshake (within handshake_timeout seconds when
    given: TimeoutError("handshake timed out")).  A client that fails its
    handshake makes accept() raise (AuthenticationError ...), as the
    synchronous accept() does; the listener stays usable.
    """

    __slots__ = ("_listener", "_io", "_handshake_timeout", "__weakref__")

    def __init__(self, address=None, family=None, backlog=1, authkey=None, *,
                 dialect="modern", digest="sha256", handshake_timeout=None, read_ahead=False,
                 tls=None, restricted=False):
        if handshake_timeout is not None:
            handshake_timeout = float(handshake_timeout)
        self._listener = None
        listener = _sync.Listener(address, family, backlog, authkey, dialect=dialect,
                                  digest=digest, read_ahead=read_ahead, tls=tls,
                                  restricted=restricted)
        try:
            listener._set_blocking(False)
            self._io = _Waiters(listener.fileno())
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._handshake_timeout = handshake_timeout

    def __repr__(self):
        if self._listener is None or self._listener._handle is None:
            return "<%s.Listener closed>" % __name__
        return "<%s.Listener %r>" % (__name__, self._listener.address)

    async def accept(self):
        """Wait for a client; returns its asynchronous Connection once the
        handshake is done."""
        listener = self._listener
        while True:
            try:
                conn = listener.accept()
                break
            except BlockingIOError:
                pass
            await self._io.ready(_READ)
        try:
            aconn = Connection(conn)
        except BaseException:
            conn.close()
            raise
        deadline = None
        if self._handshake_timeout is not None:
            deadline = _asyncio.get_running_loop().time() + self._handshake_timeout
        return await _handshake(aconn, deadline)

    def close(self):
        """Close the listener (a Unix socket file it made is removed); tasks
        waiting in accept() wake and get OSError("listener is closed")."""
        if self._listener is not None:
            self._io.clear()
            self._listener.close()

    def fileno(self):
        return self._listener.fileno()

    @property
    def address(self):
        return self._listener.address

    @property
    def last_accepted(self):
        return self._listener.last_accepted

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc_value, exc_tb):
        self.close()
