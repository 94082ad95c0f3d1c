"""A long-lived listener on the mpconn Python package, for the hostile suite.

    python py_listener.py ADDRESS [--authkey-hex HEX] [--handshake-timeout S]
                          [--io-timeout S] [--backlog N]

Prints "listening on ADDRESS" first, then serves clients one after another
for ever, echoing every message back, and prints one outcome line per
client (line-buffered):

    client N message <hex of the first 32 bytes> (<length> bytes)
    client N handshake <Exception>: <text>   the handshake (accept) failed
    client N recv <Exception>: <text>        receiving failed
    client N recv TIMEOUT                    nothing within --io-timeout
    client N end EOFError after K messages   clean close at a boundary
"""
import argparse
import binascii
import sys

from mpconn import Listener


def main():
    p = argparse.ArgumentParser()
    p.add_argument("address")
    p.add_argument("--authkey-hex")
    p.add_argument("--handshake-timeout", type=float)
    p.add_argument("--io-timeout", type=float, default=None)
    p.add_argument("--backlog", type=int, default=1)
    a = p.parse_args()
    host, port = a.address.rsplit(":", 1)
    key = binascii.unhexlify(a.authkey_hex) if a.authkey_hex else None
    out = sys.stdout
    with Listener((host, int(port)), backlog=a.backlog, authkey=key,
                  handshake_timeout=a.handshake_timeout) as listener:
        out.write("listening on %s:%d\n" % listener.address)
        out.flush()
        n = 0
        while True:
            n += 1
            try:
                conn = listener.accept()
            except Exception as e:
                out.write("client %d handshake %s: %s\n" % (n, type(e).__name__, e))
                out.flush()
                continue
            count = 0
            try:
                while True:
                    # Python connections have no I/O deadline of their own
                    # (as CPython); poll bounds the wait for the next message.
                    if a.io_timeout is not None and not conn.poll(a.io_timeout):
                        out.write("client %d recv TIMEOUT after %d messages\n" % (n, count))
                        break
                    msg = conn.recv_bytes()
                    count += 1
                    out.write("client %d message %s (%d bytes)\n"
                              % (n, binascii.hexlify(msg[:32]).decode(), len(msg)))
                    out.flush()
                    conn.send_bytes(msg)
            except EOFError:
                out.write("client %d end EOFError after %d messages\n" % (n, count))
            except Exception as e:
                out.write("client %d recv %s: %s\n" % (n, type(e).__name__, e))
            finally:
                conn.close()
                out.flush()


if __name__ == "__main__":
    main()
