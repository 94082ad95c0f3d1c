#!/usr/bin/env python
"""A stock-CPython peer for the value tests (test_values.py): only the
standard library's multiprocessing.connection and pickle, nothing from
mpconn.  Runs under CPython 2.7 and 3.6+.

  value_peer.py send ADDRESS [--authkey-hex HEX] [--protocol P] NAME...
      Connects with Client and sends the value of each case NAME (see
      valuedata.py).  --protocol default (the default) uses conn.send(obj),
      exactly what a program does; a number P uses
      conn.send_bytes(pickle.dumps(obj, protocol=P)), since Connection.send
      always uses the interpreter's default protocol.  Prints one line
      "REPR <repr(obj)>" per case, in order, then "DONE".
  value_peer.py hostile ADDRESS MARKER [--authkey-hex HEX]
      Sends pickles that would run os.system('touch MARKER') if loaded, each
      followed by a normal value, 'after N'.  Prints "SENT <what>" per
      pickle and "DONE".
  value_peer.py recv [--authkey-hex HEX] NAME...
      Listens on 127.0.0.1:0, prints "ADDRESS 127.0.0.1:PORT", accepts one
      client and receives one value per NAME with conn.recv(), printing
      "GOT <name> OK <repr>" when it is exactly the case's value (types,
      -0.0, nan and dict order included) or "GOT <name> MISMATCH <repr>".
Exit status: 0 success, 4 any error (line "ERROR <type>: <text>"), 5 a
mismatch.
"""
from __future__ import print_function

import binascii
import io
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import valuedata  # noqa: E402

from multiprocessing.connection import Client, Listener  # noqa: E402

if sys.version_info[0] == 2:  # pragma: no cover
    _out = io.open(sys.stdout.fileno(), 'w', encoding='utf-8', closefd=False)
else:
    _out = io.open(sys.stdout.fileno(), 'w', encoding='utf-8', errors='surrogateescape',
                   closefd=False)


def out(line):
    if isinstance(line, bytes):  # Python 2 str
        line = line.decode('utf-8', 'replace')
    try:
        _out.write(line + '\n')
    except UnicodeEncodeError:
        # a lone surrogate in a repr is escaped by repr itself; this is only
        # for safety
        _out.write(line.encode('utf-8', 'backslashreplace').decode('utf-8') + '\n')
    _out.flush()


def address_of(text):
    host, port = text.rsplit(':', 1)
    return (host, int(port))


def take_option(argv, name, default=None):
    if name in argv:
        i = argv.index(name)
        value = argv[i + 1]
        del argv[i:i + 2]
        return value
    return default


class Exploit(object):
    """Pickles as a call of os.system(command)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def run_send(argv, key):
    protocol = take_option(argv, '--protocol', 'default')
    address = argv.pop(0)
    conn = Client(address_of(address), authkey=key)
    for name in argv:
        value = valuedata.build(name)
        if protocol == 'default':
            conn.send(value)
        else:
            conn.send_bytes(pickle.dumps(value, protocol=int(protocol)))
        out('REPR ' + repr(value))
    out('DONE')
    conn.close()
    return 0


def run_hostile(argv, key):
    address, marker = argv[0], argv[1]
    command = 'touch ' + marker
    conn = Client(address_of(address), authkey=key)
    payloads = [('classic GLOBAL+REDUCE', ("cos\nsystem\n(S'%s'\ntR." % command).encode('ascii')),
                ('pickle.dumps(os.system)', pickle.dumps(os.system))]
    for p in range(0, pickle.HIGHEST_PROTOCOL + 1):
        payloads.append(('__reduce__ protocol %d' % p, pickle.dumps(Exploit(command), protocol=p)))
    payloads.append(('eval builtin', pickle.dumps(eval)))
    for i, (what, data) in enumerate(payloads):
        conn.send_bytes(data)
        conn.send('after %d' % i)
        out('SENT ' + what)
    out('DONE')
    conn.close()
    return 0


def run_recv(argv, key):
    listener = Listener(('127.0.0.1', 0), authkey=key)
    out('ADDRESS %s:%d' % listener.address)
    conn = listener.accept()
    rc = 0
    for name in argv:
        got = conn.recv()
        ok = valuedata.same(valuedata.build(name), got)
        out('GOT %s %s %s' % (name, 'OK' if ok else 'MISMATCH', repr(got)))
        if not ok:
            rc = 5
    conn.close()
    listener.close()
    return rc


def main():
    argv = sys.argv[1:]
    cmd = argv.pop(0)
    key_hex = take_option(argv, '--authkey-hex')
    key = binascii.unhexlify(key_hex.encode('ascii')) if key_hex is not None else None
    try:
        if cmd == 'send':
            return run_send(argv, key)
        if cmd == 'hostile':
            return run_hostile(argv, key)
        if cmd == 'recv':
            return run_recv(argv, key)
        out('ERROR usage: unknown command %s' % cmd)
        return 4
    except Exception as e:  # noqa: BLE001 - reported to the test
        out('ERROR %s: %s' % (type(e).__name__, e))
        return 4


if __name__ == '__main__':
    sys.exit(main())
