"""Restricted recv()'s decoder on the paths the common opcodes take (the
speed work of issue 18): the objects are pickle.loads' objects down to their
size in memory and which of them are the interpreter's shared ones, large
memos and their long references work at every protocol, and the errors met
on these paths keep their message, opcode and offset.
"""
import pickle
import sys

import pytest

from mpconn import RestrictedPickleError
from test_restricted import assert_same, local_pickles, restricted_loads

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


def records(n):
    """A list of n records, as bench/bench_py.py's values mode sends."""
    return [{"id": i, "name": "user%d" % i, "email": "user%d@example.com" % i,
             "score": i / 3.0, "tags": ["a", "b", "c"][: i % 4], "active": i % 2 == 0,
             "data": b"\x00\x01" * (i % 8)} for i in range(n)]


def assert_same_layout(expected, got, where):
    """assert_same(), and every str, bytes and container of got takes the
    memory its counterpart in expected takes (sys.getsizeof: list capacity,
    dict table, str width)."""
    assert_same(expected, got, where)
    seen = set()
    stack = [(expected, got)]
    while stack:
        a, b = stack.pop()
        if id(a) in seen:
            continue
        seen.add(id(a))
        if isinstance(a, (str, bytes, bytearray, list, tuple, dict, set, frozenset)):
            assert sys.getsizeof(a) == sys.getsizeof(b), (where, type(a).__name__, a)
        if isinstance(a, (list, tuple)):
            stack.extend(zip(a, b))
        elif isinstance(a, dict):
            stack.extend(zip(a.keys(), b.keys()))
            stack.extend(zip(a.values(), b.values()))
        elif isinstance(a, (set, frozenset)):
            stack.extend(zip(a, b))


def strs():
    """ASCII strs of every length up to 40, and the same with a non-ASCII
    code point (Latin-1, BMP, astral, lone surrogate) at each position."""
    out = []
    for n in range(41):
        base = "".join(chr(ord("a") + i % 26) for i in range(n))
        out.append(base)
        for c in (u"\xe9", u"\u20ac", u"\U0001d11e", u"\ud800"):
            for i in range(n):
                out.append(base[:i] + c + base[i + 1:])
            if n == 0:
                out.append(c)
    return out


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_strs_and_bytes_of_every_length_are_the_objects_pickle_loads_makes(proto):
    values = strs() + [bytes(bytearray(range(n))) for n in range(41)]
    for v in values:
        try:
            data = pickle.dumps(v, proto)
        except UnicodeEncodeError:  # a lone surrogate at protocol 0: raw-unicode-escape
            continue
        expected, got = pickle.loads(data), restricted_loads(data)
        assert type(got) is type(expected) and got == expected, (proto, v)
        assert sys.getsizeof(got) == sys.getsizeof(expected), (proto, v)
        # A shared object (the empty str or bytes, a one-character str)
        # exactly where pickle.loads gives one.  (Not checked for bytes
        # below protocol 3, pickled as _codecs.encode(str, 'latin1'): there
        # pickle.loads returns the interpreter's shared one-byte objects and
        # the decoder makes new ones.)
        if not (isinstance(v, bytes) and proto < 3):
            assert (got is expected) == (pickle.loads(data) is expected), (proto, v)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_the_value_set_and_records_are_laid_out_as_pickle_loads_lays_them_out(proto):
    for name, p, data in local_pickles():
        if p == proto:
            assert_same_layout(pickle.loads(data), restricted_loads(data), "%s/%d" % (name, p))
    data = pickle.dumps(records(1000), proto)
    assert_same_layout(pickle.loads(data), restricted_loads(data), "records/%d" % proto)


def test_containers_built_from_a_mark_are_laid_out_as_pickle_loads_lays_them_out():
    # Hand-made (CPython's picklers write these opcodes with few or no
    # items): MARK ... DICT, LIST, TUPLE, FROZENSET with many items.
    items = b"".join(b"Vk%d\nI%d\n" % (i, i) for i in range(12))
    for data in (b"(" + items + b"d.", b"(" + items + b"l.", b"(" + items + b"t.",
                 b"\x80\x04(" + b"".join(b"K%c" % i for i in range(40)) + b"\x91.",
                 b"\x80\x04\x8f(" + b"".join(b"K%c" % i for i in range(40)) + b"\x90."):
        assert_same_layout(pickle.loads(data), restricted_loads(data), repr(data[:20]))


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_large_memos_and_their_long_references_equal_pickle_loads(proto):
    # 20,000 memoized strs and lists, each referenced again after the
    # 256th key (LONG_BINGET from protocol 1 on), in several containers.
    words = ["w%d" % i for i in range(20000)]
    lists = [[w] for w in words[:300]]
    value = [words, list(reversed(words)), lists, {w: l for w, l in zip(words, lists)}, lists]
    data = pickle.dumps(value, proto)
    assert_same(pickle.loads(data), restricted_loads(data), "memo/%d" % proto)


S = b"\x8c\x08builtins\x94\x8c\x03set\x94\x93"  # builtins.set, by STACK_GLOBAL

# (pickle, the message restricted_loads raises): each opcode the decoder
# takes on its common path, in the situations it leaves to the full one.
ERRORS = [
    (b"\x80\x04\x8c", "pickle data was truncated at offset 2"),
    (b"\x80\x04\x8c\x05ab", "pickle data was truncated at offset 2"),
    (b"\x80\x04C\x03a", "pickle data was truncated at offset 2"),
    (b"\x80\x04h", "pickle data was truncated at offset 2"),
    (b"\x80\x04j\x00\x00", "pickle data was truncated at offset 2"),
    (b"\x80\x04K", "pickle data was truncated at offset 2"),
    (b"\x80\x04M\x01", "pickle data was truncated at offset 2"),
    (b"\x80\x04J\x01\x00\x00", "pickle data was truncated at offset 2"),
    (b"\x80\x04G\x00", "pickle data was truncated at offset 2"),
    (b"\x80\x04]", "pickle data was truncated at offset 3"),
    (b"\x80\x04N", "pickle data was truncated at offset 3"),
    (b"\x80\x04h\x05.", "memo key 5 not found at offset 2"),
    (b"\x80\x04j\x05\x00\x00\x00.", "memo key 5 not found at offset 2"),
    (b"\x80\x04\x94", "unpickling stack underflow at offset 2"),
    (b"\x80\x04(\x94.", "unpickling stack underflow at offset 3"),
    (b"\x80\x04q\x00", "unpickling stack underflow at offset 2"),
    (b"\x80\x04(q\x00.", "unpickling stack underflow at offset 3"),
    (b"\x80\x04\x8c\x02\xff\xfe.", "invalid UTF-8 in SHORT_BINUNICODE at offset 2"),
    (b"\x80\x04\x8c\x02\xed\xa0.", "invalid UTF-8 in SHORT_BINUNICODE at offset 2"),
    (b"\x80\x04](K\x01K\x02u.", "SETITEMS on a list at offset 8"),
    (b"\x80\x04]K\x01e.", "could not find MARK at offset 5"),
    (b"\x80\x04}K\x01a.", "APPEND on a dict at offset 5"),
    (b"\x80\x04}(K\x01u.", "odd number of items for SETITEMS at offset 6"),
    (b"\x80\x04a.", "unpickling stack underflow at offset 2"),
    (b"\x80\x04e.", "could not find MARK at offset 2"),
    (b"\x80\x04u.", "could not find MARK at offset 2"),
    (b"\x80\x04(u.", "unpickling stack underflow at offset 3"),
    (b"\x80\x04.", "unpickling stack underflow at offset 2"),
    (b"\x80\x04(.", "unpickling stack underflow at offset 3"),
    (b"\x80\x04}(" + S + b"K\x01u.",
     "refused global 'builtins.set' used as a value, not called, by SETITEMS at offset 24"),
    (b"\x80\x04](" + S + b"e.",
     "refused global 'builtins.set' used as a value, not called, by APPENDS at offset 22"),
    (b"\x80\x04]" + S + b"a.",
     "refused global 'builtins.set' used as a value, not called, by APPEND at offset 21"),
    (b"\x80\x04" + S + b"\x94h\x02.",
     "refused global 'builtins.set' used as a value, not called, by STOP at offset 23"),
    (b"\x80\x04" + S + b"\x94]h\x02a.",
     "refused global 'builtins.set' used as a value, not called, by APPEND at offset 24"),
]


@pytest.mark.parametrize("data,message", ERRORS, ids=[repr(d) for d, _ in ERRORS])
def test_errors_on_the_common_paths_name_opcode_and_offset(data, message):
    with pytest.raises(RestrictedPickleError) as info:
        restricted_loads(data)
    assert str(info.value) == message


def test_memo_references_to_the_top_and_to_themselves_equal_pickle_loads():
    for data in (b"\x80\x04K\x01q\x05.", b"\x80\x04K\x01q\x00q\x00h\x00.",
                 b"\x80\x04K\x01\x94K\x02r\x00\x00\x00\x00h\x00.", b"\x80\x04)\x94h\x00h\x00\x86.",
                 b"\x80\x04\x88\x89N\x87.", b"\x80\x04]\x94(h\x00h\x00e.",
                 b"\x80\x04" + b"]\x94" * 40 + b"(" +
                 b"".join(b"h%c" % i for i in range(39, -1, -3)) + b"e."):
        assert_same(pickle.loads(data), restricted_loads(data), repr(data[:20]))
