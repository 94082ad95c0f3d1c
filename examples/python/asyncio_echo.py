"""An asyncio server and client on mpconn.asyncio: one event loop serves
every client at once, and the client is an ordinary coroutine.

The server answers every object a client sends with ("ok", object), until
the client closes.  Any multiprocessing.connection client (stock CPython
included, any version) can talk to it; the client can talk to any
multiprocessing.connection Listener that answers.

Usage:
  asyncio_echo.py serve  [ADDRESS] [AUTHKEY]   serve until Ctrl-C
  asyncio_echo.py client [ADDRESS] [AUTHKEY]   send a few objects, print the replies
  ADDRESS  "host:port" (port 0 picks a free port; the server prints the one
           it got) or a Unix socket path; default "127.0.0.1:6000"
  AUTHKEY  default "secret"
"""
import asyncio
import sys

import mpconn.asyncio as aio


async def handle(conn):
    async with conn:
        async for obj in conn:  # recv() until the client closes
            await conn.send(("ok", obj))


async def serve(address, authkey):
    # read_ahead: one read serves many small messages (the wire is the same;
    # the peer can be any multiprocessing.connection client).
    async with aio.Listener(address, authkey=authkey, backlog=64, read_ahead=True) as listener:
        print("Listening on {!r}".format(listener.address), flush=True)
        tasks = set()
        while True:
            try:
                conn = await listener.accept()
            except (aio.AuthenticationError, EOFError, OSError) as e:
                print("refused a client: {!r}".format(e), flush=True)
                continue
            task = asyncio.ensure_future(handle(conn))
            tasks.add(task)  # keep a reference until it ends
            task.add_done_callback(tasks.discard)


async def client(address, authkey):
    async with await aio.Client(address, authkey=authkey, read_ahead=True) as conn:
        for obj in ("ping", {"level": 42}, b"\x00\xff" * 3):
            await conn.send(obj)
            # a deadline is the caller's: here 10 s for each reply
            print("reply: {!r}".format(await asyncio.wait_for(conn.recv(), 10)), flush=True)


def parse_address(text):
    if ":" in text and "/" not in text:
        host, port = text.rsplit(":", 1)
        return (host, int(port))
    return text


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("serve", "client"):
        sys.exit(__doc__)
    address = parse_address(sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:6000")
    authkey = (sys.argv[3] if len(sys.argv) > 3 else "secret").encode()
    coro = serve(address, authkey) if sys.argv[1] == "serve" else client(address, authkey)
    try:
        asyncio.run(coro)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
