"""The values the value-interop tests send, shared by the test process and
value_peer.py (which runs under CPython 2.7 and 3.6+, so this file is
written for both).

Every case is (name, builder, flags).  The builder makes the value fresh in
the running interpreter; flags say where a case cannot be used:
  'py3'     Python 2 cannot make the same value (bytes, which Python 2 would
            send as its str; lone surrogates; ...)
  'strset'  sets of str, bytes or None: their iteration order (and so the
            order of their repr) depends on the process's hash seed (and
            hash(None) on an address before 3.12), so only the sender's own
            repr can be compared with the text printed by the CLI
  'setorder' sets whose iteration order depends on the order their elements
            were inserted (colliding hashes): a receiver that rebuilds them
            from a repr's order can print them in another order
"""
from __future__ import unicode_literals

import math
import sys

PY2 = sys.version_info[0] == 2
if PY2:  # pragma: no cover - Python 2 only
    text_type = unicode  # noqa: F821
    int_types = (int, long)  # noqa: F821
    bytes_type = str
else:
    text_type = str
    int_types = (int,)
    bytes_type = bytes


def _shared():
    inner = [1, 'two', (3.0,)]
    return [inner, inner, {'again': inner}, (inner, inner)]


def _repeated_strings():
    s = 'repeated string ' * 4
    return [s, s, s, (s,)]


def _long_list():
    # ~300 kB at protocol 4: crosses many 64 kB frames
    return list(range(-50000, 50000, 3)) + ['end']


def _long_str():
    return 'x' * 200000 + '\u00e9' * 1000


def _nested():
    v = 'leaf'
    for i in range(60):
        v = [i, v] if i % 3 == 0 else ({'k%d' % i: v} if i % 3 == 1 else (v, i))
    return v


CASES = [
    ('scalars', lambda: [None, True, False, 0, 1, -1, 255, 256, 65535, 65536, -2 ** 31,
                         2 ** 31 - 1, 2 ** 31, -2 ** 31 - 1], ''),
    ('big_ints', lambda: [2 ** 63 - 1, -2 ** 63, 2 ** 63, -2 ** 63 - 1, 2 ** 64, 2 ** 100,
                          -2 ** 100, 10 ** 300, -(10 ** 300) + 1, 3 ** 2000], ''),
    ('floats', lambda: [0.0, -0.0, 1.5, -2.25, 0.1, 1.0 / 3, 1e16, 1e-5, 1e300, 5e-324,
                        1.7976931348623157e308, float('inf'), float('-inf'), float('nan'),
                        123456789.125], ''),
    ('text', lambda: ['', 'plain', 'it\'s "quoted"', 'tab\there\nnewline\r\\back',
                      'caf\u00e9', '\u4e2d\u6587', '\U0001f600 grin', 'nul\x00inside\x00',
                      '\x7f\x80\x9f\xa0\xad', '\u2028\u200b', '\U0010ffff', 'a' * 300], ''),
    ('bytes', lambda: [b'', b'abc', b'\x00\xff\x7f\x80', b"it's", b'"\'', bytes(bytearray(range(256)))],
     'py3'),
    ('bytearray', lambda: [bytearray(), bytearray(b'abc'), bytearray(b'\x00\xfe\'')], ''),
    ('surrogate', lambda: ['\ud800', 'x\udfffy'], 'py3'),
    ('empties', lambda: [[], (), {}, set(), frozenset(), '', [[]], ((),), {'': {}}], ''),
    ('tuples', lambda: [(1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ((1,), [2], {3: 4})], ''),
    ('sets', lambda: [set([1, 2, 3]), frozenset([4, 5]), set([(1, 2), -7, 3.5]),
                      [frozenset([frozenset([1])])]], 'setorder'),
    ('strset', lambda: [set(['alpha', 'beta', 'gamma', 'delta']), frozenset(['x', 'y', 'z']),
                        set([None, b'raw' if not PY2 else 'raw', 2])], 'strset'),
    ('dicts', lambda: {'name': 'Ada', 'level': 42, 'hp': 97.5, 'items': ['sword', 'shield'],
                       (1, 2): 'tuple key', 3: None, -1.5: [], True: 'bool key',
                       frozenset([1]): 'frozenset key', None: {}}, ''),
    ('dict_order', lambda: dict((k, i) for i, k in enumerate(['z', 'a', 'm', 'b', 'y'])), ''),
    ('shared', _shared, ''),
    ('repeated', _repeated_strings, ''),
    ('nested', _nested, ''),
    ('long_list', _long_list, ''),
    ('long_str', _long_str, ''),
]

# Python 2 < 3.7 dicts do not keep insertion order: cases with a dict of
# more than one key are compared only where the order is defined.
ORDERED_DICTS = ('dicts', 'dict_order')


def case_names(version, protocol=None):
    """The cases a peer of this version (a (major, minor) tuple) can send."""
    names = []
    for name, _build, flags in CASES:
        if version[0] == 2 and ('py3' in flags or 'strset' in flags):
            continue
        if version < (3, 7) and name in ORDERED_DICTS:
            continue
        names.append(name)
    return names


def build(name):
    for n, b, _f in CASES:
        if n == name:
            return b()
    raise KeyError(name)


def _kind(v):
    if isinstance(v, bool):
        return 'bool'
    if isinstance(v, int_types):
        return 'int'
    if isinstance(v, text_type):
        return 'str'
    return type(v).__name__


def same(a, b):
    """Deep equality that also checks types, tells -0.0 from 0.0, accepts nan
    == nan and keeps dict order: 'b is exactly the value a'."""
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        if not all(k in b and same(a[k], b[k]) for k in a):
            return False
        ordered = not PY2 and sys.version_info >= (3, 7)
        return not ordered or all(same(x, y) for x, y in zip(a, b))
    return a == b
