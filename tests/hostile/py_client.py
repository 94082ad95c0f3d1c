"""A client on the mpconn Python package, for the hostile suite.

    python py_client.py ADDRESS --authkey-hex HEX [--timeout S]

Connects with mpconn.Client(..., timeout=S), sends b"hello", receives one
message and prints "ok <hex>" (exit 0), or prints
"error <Exception>: <text>" (exit 1) on any exception.
"""
import binascii
import sys

from mpconn import Client


def main():
    addr = sys.argv[1]
    key = binascii.unhexlify(sys.argv[sys.argv.index("--authkey-hex") + 1])
    timeout = float(sys.argv[sys.argv.index("--timeout") + 1]) if "--timeout" in sys.argv else None
    host, port = addr.rsplit(":", 1)
    try:
        with Client((host, int(port)), authkey=key, timeout=timeout) as conn:
            conn.send_bytes(b"hello")
            msg = conn.recv_bytes()
    except Exception as e:
        print("error %s: %s" % (type(e).__name__, e))
        sys.stdout.flush()
        return 1
    print("ok " + binascii.hexlify(msg).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
