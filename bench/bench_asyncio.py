"""asyncio side of the benchmark (SPEC 6 and 8, issue 16): the ways an asyncio
program can speak the multiprocessing.connection framing (a 4-byte
big-endian signed length, then the payload), driven identically.

    python bench_asyncio.py IMPL LOOP MODE SIZE COUNT TRANSPORT

IMPL:
  streams   asyncio streams (open_unix_connection / start_unix_server):
            readexactly() for the header and for the payload, writer.write()
            of header and payload (one write up to 16 KiB, as CPython's
            send_bytes) and await writer.drain() after every message
  protocol  a hand-written asyncio.Protocol framer: data_received() parses
            every whole frame of a chunk by slicing (one bytes per message),
            keeps a small partial frame as bytes and a large one as a list
            of chunks joined once; receivers wait on futures; pause_writing /
            resume_writing give senders their back-pressure
  threads   stock multiprocessing.connection Connections, every blocking call
            in loop.run_in_executor (the default thread pool): the
            aioprocessing approach
  mpconn    mpconn.asyncio (SPEC 8): await aio.Client(addr), aio.Listener,
            await listener.accept(), await conn.send_bytes(), recv_bytes()
  mpconn-ra the same with read_ahead=True on both ends (on request only)
LOOP: asyncio (the default loop) | uvloop.
MODE: pingpong | stream (COUNT messages one way, ended by one 1-byte
acknowledgement).  TRANSPORT: unix | tcp.

Both ends are the same implementation, each in its own process with its own
loop: the parent measures; a forked child (forked before any loop exists) is
the peer.  Placement (pinning) is done by the driver with taskset, which the
child inherits.  Prints one JSON object like bench_py.py, or, when the
implementation or the loop cannot be had here, {"skipped": "why"} with exit
status 0, so the driver shows the row as skipped and runs the rest.
"""
import asyncio
import json
import os
import struct
import sys
import tempfile
import time
from collections import deque

HEADER = struct.Struct("!i")
pack_header = HEADER.pack
unpack_header = HEADER.unpack_from
# CPython's send_bytes joins header and payload up to this size (one write)
# and writes them separately above it (PROTOCOL.md 1.2).
JOIN_MAX = 16384


class Skip(Exception):
    pass


# --- asyncio streams -------------------------------------------------------

class StreamsConn:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    async def send_bytes(self, payload):
        w = self.writer
        n = len(payload)
        if n <= JOIN_MAX:
            w.write(pack_header(n) + payload)
        else:
            w.write(pack_header(n))
            w.write(payload)
        await w.drain()

    async def recv_bytes(self):
        r = self.reader
        (n,) = unpack_header(await r.readexactly(4))
        if n < 0:
            raise OSError("bad message length")  # the extended -1 form is not benchmarked
        return await r.readexactly(n)

    def close(self):
        self.writer.close()


# StreamReader's buffer limit: 2 MiB lets a 1 MiB message be buffered whole
# (the default 64 KiB pauses and resumes the transport on the way; measured
# here, that made no difference beyond noise on either loop).
STREAMS_LIMIT = 2 << 20


async def streams_server(addr, transport, ready):
    conns = asyncio.get_running_loop().create_future()

    def accepted(reader, writer):
        if not conns.done():
            conns.set_result(StreamsConn(reader, writer))

    if transport == "unix":
        srv = await asyncio.start_unix_server(accepted, addr, limit=STREAMS_LIMIT)
        real = addr
    else:
        srv = await asyncio.start_server(accepted, addr[0], addr[1], limit=STREAMS_LIMIT)
        real = srv.sockets[0].getsockname()[:2]
    ready(real)
    conn = await conns
    srv.close()
    return conn


async def streams_client(addr, transport):
    if transport == "unix":
        r, w = await asyncio.open_unix_connection(addr, limit=STREAMS_LIMIT)
    else:
        r, w = await asyncio.open_connection(addr[0], addr[1], limit=STREAMS_LIMIT)
    return StreamsConn(r, w)


# --- a hand-written asyncio.Protocol framer ---------------------------------

# A frame whose payload is at least this long and not yet whole is gathered
# as a list of chunks and joined once (one copy); a shorter one is kept as
# bytes and prefixed to the next chunk (a copy of a few bytes).
GATHER_MIN = 4096


class FramedProtocol(asyncio.Protocol):
    """The protocol is its own connection: send_bytes / recv_bytes.

    Whole frames are sliced straight out of the chunk the loop hands over
    (one bytes object per message, no other allocation); only a partial
    frame at the chunk's end is kept.  Measured in-process on 256 KiB chunks
    of 16 B frames, this took 0.21 us a message against 0.24 us for the
    same parser on a bytearray buffer with memoryview slices (tobytes()),
    so the faster one is benchmarked."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.transport = None
        self.messages = deque()   # received, not yet taken
        self.waiters = deque()    # receivers' futures
        self.rest = b""           # a partial small frame (header included)
        self.parts = None         # a partial large payload: its chunks
        self.need = 0             # bytes the partial large payload still lacks
        self.paused = None        # a future while the transport is paused
        self.error = None
        self.made = self.loop.create_future()

    # The transport's side.
    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(self)

    def _deliver(self, msg):
        waiters = self.waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(msg)
                return
        self.messages.append(msg)

    def data_received(self, data):
        if self.parts is not None:  # a large payload in progress
            need = self.need
            n = len(data)
            if n < need:
                self.parts.append(data)
                self.need = need - n
                return
            if n == need:
                self.parts.append(data)
                data = b""
            else:
                self.parts.append(data[:need])
                data = data[need:]
            msg = b"".join(self.parts)
            self.parts = None
            self._deliver(msg)
            if not data:
                return
        elif self.rest:
            data = self.rest + data
            self.rest = b""
        # Every whole frame of this chunk, one slice (one bytes) each.
        end = len(data)
        pos = 0
        deliver = self._deliver
        waiters, messages = self.waiters, self.messages
        while end - pos >= 4:
            (n,) = unpack_header(data, pos)
            if n < 0:
                self._fail(OSError("bad message length"))
                return
            stop = pos + 4 + n
            if stop > end:
                if n >= GATHER_MIN:
                    self.parts = [memoryview(data)[pos + 4:]]
                    self.need = stop - end
                    return
                break
            if waiters:
                deliver(data[pos + 4:stop])
            else:
                messages.append(data[pos + 4:stop])
            pos = stop
        if pos < end:
            self.rest = data[pos:]

    def _fail(self, exc):
        self.error = exc
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def eof_received(self):
        self._fail(EOFError())

    def connection_lost(self, exc):
        if self.error is None:
            self._fail(exc or EOFError())
        if self.paused is not None and not self.paused.done():
            self.paused.set_result(None)

    def pause_writing(self):
        self.paused = self.loop.create_future()

    def resume_writing(self):
        p, self.paused = self.paused, None
        if p is not None and not p.done():
            p.set_result(None)

    # The program's side.
    async def send_bytes(self, payload):
        if self.paused is not None:
            await self.paused
        if self.error is not None:
            raise self.error
        n = len(payload)
        if n <= JOIN_MAX:
            self.transport.write(pack_header(n) + payload)
        else:
            self.transport.write(pack_header(n))
            self.transport.write(payload)

    async def recv_bytes(self):
        if self.messages:
            return self.messages.popleft()
        if self.error is not None:
            raise self.error
        w = self.loop.create_future()
        self.waiters.append(w)
        return await w

    def close(self):
        self.transport.close()


async def protocol_server(addr, transport, ready):
    loop = asyncio.get_running_loop()
    first = loop.create_future()

    def factory():
        p = FramedProtocol()
        if not first.done():
            first.set_result(p)
        return p

    if transport == "unix":
        srv = await loop.create_unix_server(factory, addr)
        real = addr
    else:
        srv = await loop.create_server(factory, addr[0], addr[1])
        real = srv.sockets[0].getsockname()[:2]
    ready(real)
    p = await first
    await p.made
    srv.close()
    return p


async def protocol_client(addr, transport):
    loop = asyncio.get_running_loop()
    if transport == "unix":
        _, p = await loop.create_unix_connection(FramedProtocol, addr)
    else:
        _, p = await loop.create_connection(FramedProtocol, addr[0], addr[1])
    return p


# --- stock Connections in the thread pool (aioprocessing) -------------------

class ThreadsConn:
    def __init__(self, conn):
        self.conn = conn
        self.loop = asyncio.get_running_loop()

    async def send_bytes(self, payload):
        await self.loop.run_in_executor(None, self.conn.send_bytes, payload)

    async def recv_bytes(self):
        return await self.loop.run_in_executor(None, self.conn.recv_bytes)

    def close(self):
        self.conn.close()


async def threads_server(addr, transport, ready):
    from multiprocessing.connection import Listener
    listener = Listener(addr)
    ready(listener.address)
    conn = await asyncio.get_running_loop().run_in_executor(None, listener.accept)
    listener.close()
    return ThreadsConn(conn)


async def threads_client(addr, transport):
    from multiprocessing.connection import Client
    conn = await asyncio.get_running_loop().run_in_executor(None, Client, addr)
    return ThreadsConn(conn)


# --- mpconn.asyncio ---------------------------------------------------------

def import_aio():
    try:
        import mpconn.asyncio as aio
    except ImportError:
        raise Skip("mpconn.asyncio not available")
    return aio


def mpconn_kw(impl):
    return {"read_ahead": True} if impl == "mpconn-ra" else {}


async def mpconn_server(addr, transport, ready, impl):
    aio = import_aio()
    listener = aio.Listener(addr, **mpconn_kw(impl))
    ready(listener.address)
    conn = await listener.accept()
    listener.close()
    return conn


async def mpconn_client(addr, transport, impl):
    aio = import_aio()
    return await aio.Client(addr, **mpconn_kw(impl))


# --- the two sides ----------------------------------------------------------

async def serve(conn, mode, count):
    send, recv = conn.send_bytes, conn.recv_bytes
    if mode == "pingpong":
        for _ in range(count):
            await send(await recv())
    else:
        for _ in range(count):
            await recv()
        await send(b"k")


async def drive(conn, mode, count, payload):
    """The measuring side's loop; returns (seconds, latencies)."""
    send, recv = conn.send_bytes, conn.recv_bytes
    lat = []
    clock = time.perf_counter
    t0 = clock()
    if mode == "pingpong":
        for _ in range(count):
            a = clock()
            await send(payload)
            await recv()
            lat.append(clock() - a)
    else:
        for _ in range(count):
            await send(payload)
        await recv()
    return clock() - t0, lat


def setups(impl):
    if impl == "streams":
        return streams_server, streams_client
    if impl == "protocol":
        return protocol_server, protocol_client
    if impl == "threads":
        return threads_server, threads_client
    if impl in ("mpconn", "mpconn-ra"):
        return (lambda a, t, r: mpconn_server(a, t, r, impl),
                lambda a, t: mpconn_client(a, t, impl))
    raise SystemExit("unknown implementation %r" % impl)


def runner(loop_name):
    """A function running a coroutine to its end on a new loop of the kind."""
    if loop_name == "asyncio":
        return asyncio.run
    if loop_name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise Skip("uvloop not installed")

        def run(coro):
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
                return r.run(coro)
        return run
    raise SystemExit("unknown loop %r" % loop_name)


def main():
    impl, loop_name, mode, size, count, transport = sys.argv[1:7]
    size, count = int(size), int(count)
    if mode not in ("pingpong", "stream"):
        raise SystemExit("mode: pingpong or stream")
    name = "aio-%s%s" % (impl, "-uv" if loop_name == "uvloop" else "")
    try:
        run = runner(loop_name)
        if impl.startswith("mpconn"):
            import_aio()  # skip before forking
    except Skip as e:
        print(json.dumps({"impl": name, "mode": mode, "size": size, "skipped": str(e)}))
        return
    server_setup, client_setup = setups(impl)
    if transport == "unix":
        addr = os.path.join(tempfile.mkdtemp(), "a.sock")
    else:
        addr = ("127.0.0.1", 0)

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the peer: its own loop, made after the fork
        os.close(rfd)

        def ready(real):
            os.write(wfd, json.dumps(real).encode())
            os.close(wfd)

        async def peer():
            conn = await server_setup(addr, transport, ready)
            await serve(conn, mode, count)
            conn.close()

        code = 0
        try:
            run(peer())
        except BaseException as e:  # report, never hang the parent
            sys.stderr.write("server: %r\n" % (e,))
            code = 2
        os._exit(code)
    os.close(wfd)
    got = b""
    while True:
        chunk = os.read(rfd, 4096)
        if not chunk:
            break
        got += chunk
    os.close(rfd)
    if not got:
        os.waitpid(pid, 0)
        sys.exit("server failed before listening")
    real = json.loads(got)
    real = real if isinstance(real, str) else tuple(real)
    payload = b"x" * size

    async def measure():
        conn = await client_setup(real, transport)
        res = await drive(conn, mode, count, payload)
        conn.close()
        return res

    secs, lat = run(measure())
    _, status = os.waitpid(pid, 0)
    if status != 0:
        sys.exit("server failed")
    p50 = p99 = 0.0
    if lat:
        lat.sort()
        p50 = lat[len(lat) // 2] * 1e6
        p99 = lat[int(len(lat) * 0.99)] * 1e6
    print(json.dumps({
        "impl": name, "mode": mode, "size": size, "count": count,
        "seconds": secs, "ops_per_s": count / secs,
        "mb_per_s": count * size / secs / 1e6, "p50_us": p50, "p99_us": p99,
    }))


if __name__ == "__main__":
    main()
