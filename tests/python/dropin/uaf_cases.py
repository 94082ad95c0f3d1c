"""Issue 13 item 3: arguments whose conversion (__index__/__float__) closes
the connection or listener in the middle of a call.

Run as a script (optionally under valgrind with PYTHONMALLOC=malloc): each
case prints one line "CASE <name> <outcome>" and the script exits 0.  The
contract checked here: the call must not touch the freed handle (valgrind
reports no invalid read/write), must not send anything, and must end with
OSError (the connection is closed by the time it would be used) -- or, if
the implementation converts every argument before looking at the handle,
with the same OSError("handle is closed") / OSError("listener is closed")
that a call on a closed object gives.
"""

import sys

from mpconn import Listener, Pipe


class Closer:
    """An index/float-like argument that closes `target` when converted."""

    def __init__(self, target, value):
        self.target, self.value = target, value

    def __index__(self):
        self.target.close()
        return self.value

    def __float__(self):
        self.target.close()
        return float(self.value)


def outcome(fn):
    try:
        r = fn()
    except BaseException as e:  # noqa: B902 - reported
        return "raised %s: %s" % (type(e).__name__, e)
    return "returned %r" % (r,)


def main():
    results = {}
    # send_bytes(buf, offset=Closer): closes a then sends with it
    for arg in ("offset", "size"):
        a, b = Pipe()
        if arg == "offset":
            call = lambda: a.send_bytes(b"hello world", Closer(a, 1))
        else:
            call = lambda: a.send_bytes(b"hello world", 0, Closer(a, 5))
        results["send_bytes_" + arg] = outcome(call)
        # a's close reads as end of file at b; a message must not arrive
        got = outcome(b.recv_bytes) if b.poll(0.2) else "nothing"
        results["send_bytes_%s_peer_got_data" % arg] = str(got.startswith("returned"))
        b.close()
    a, b = Pipe()
    b.send_bytes(b"x" * 100)
    results["recv_bytes_maxlength"] = outcome(lambda: a.recv_bytes(Closer(a, 1000)))
    a, b = Pipe()
    b.send_bytes(b"x" * 100)
    buf = bytearray(200)
    results["recv_bytes_into_offset"] = outcome(lambda: a.recv_bytes_into(buf, Closer(a, 10)))
    a, b = Pipe()
    results["poll_timeout"] = outcome(lambda: a.poll(Closer(a, 0.2)))
    l = Listener(("127.0.0.1", 0))
    results["accept_timeout"] = outcome(lambda: l.accept(timeout=Closer(l, 0.2)))
    for k, v in results.items():
        print("CASE", k, v)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
