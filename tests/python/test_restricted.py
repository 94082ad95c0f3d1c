"""Restricted recv(): Listener/Client(restricted=True), conn.recv(restricted=)
and mpconn.RestrictedPickleError (SPEC section 9, issue 18).

* The value set, sent by every stock CPython found (2.7, 3.6-3.13: the
  machine's python3 and pyenv's) at every protocol it has: the restricted
  result equals pickle.loads() of the same bytes, types, float bits, dict
  order and sharing (which objects are the same object) included.
* Every hostile pickle of the C decoder's tests (tests/c/test_pickle.c,
  tests/c/test_conn_value.c, the fuzz corpus's hostile_* inputs) is refused
  with RestrictedPickleError; pickles that would run os.system, exec, eval
  or subprocess leave their marker file unwritten; deep nesting, huge
  claimed lengths and memo abuse are errors, not crashes.
* A refused message leaves the connection in step: the next recv() works.
* Random mutations of valid pickles through the Python entry point: never a
  crash; each result equals what pickle.loads (with only the allowed
  globals) makes of the same bytes, or an exception is raised.
"""
import binascii
import collections
import glob
import math
import multiprocessing
import os
import pickle
import pickletools
import random
import re
import struct
import subprocess
import sys
import threading

import pytest

import mpconn
from mpconn import Client, Listener, Pipe, RestrictedPickleError
from mpconn import core as _core

from conftest import HERE, ROOT, get_stock_interpreters, make_address, start_thread, version_tuple

PEER = os.path.join(HERE, "peers", "restricted_peer.py")
KEY = b"restricted values \x00\xff"

restricted_loads = _core._restricted_loads

# ---------------------------------------------------------------- the value set
# (name, expression): Python literal expressions that 2.7 and 3.x both read
# (u'' for str, b'' for bytes; Python 2 sends b'' as its str), evaluated by
# each stock peer and here.  Every allowed type, the edges of each encoding,
# nesting, sharing and cycles.

VALUE_SET = [
    ("none", "None"),
    ("true", "True"),
    ("false", "False"),
    ("ints", "[0, 1, -1, 255, 256, -128, -129, 65535, 65536, 2**31 - 1, -2**31, 2**31, "
             "-2**31 - 1, 2**40, 2**63 - 1, -2**63]"),
    ("int_2p63", "2**63"),
    ("int_2p64", "2**64"),
    ("int_m2p64p1", "-(2**64) + 1"),
    ("int_10p30", "10**30"),
    ("int_m10p30", "-(10**30)"),
    ("int_2p1000", "2**1000"),
    ("int_m2p2040", "-2**2040"),
    ("int_10p4299", "10**4299"),
    ("int_2p20000", "2**20000"),
    ("floats", "[0.0, 1.0, -2.5, 0.1, 1.0 / 3, 1e300, -1e-300, 5e-324, 1.7976931348623157e308, "
               "123456789.123456789, 2.0**53 + 2]"),
    ("float_m0", "-0.0"),
    ("float_inf", "float('inf')"),
    ("float_minf", "float('-inf')"),
    ("float_nan", "float('nan')"),
    ("nans_in_containers", "[float('nan'), (float('nan'),), {u'n': float('nan')}]"),
    ("str_empty", "u''"),
    ("str_ascii", "u'hello'"),
    ("str_nul", "u'a\\x00b\\x00'"),
    ("str_unicode", "u'\\U0001d11e\\U0001f600\\xe9\\u20ac'"),
    ("str_latin1", "u'\\x80\\xff\\xe9'"),
    ("str_lone_surrogate", "u'\\ud800'"),
    ("str_surrogates", "u'a\\udfff b\\udc80'"),
    ("str_escapes", "u'quote\\' \"dq\" back\\\\slash \\n\\r\\t \\\\u0041 \\\\U00000041'"),
    ("str_long", "u'x' * 70000"),
    ("str_long_unicode", "u'\\U0001f600x' * 5000"),
    ("bytes_empty", "b''"),
    ("bytes_abc", "b'abc'"),
    ("bytes_binary", "b'\\x00\\xff\\x80' * 3"),
    ("bytes_300", "b'a' * 300"),
    ("bytes_quotes", "b'\\'\"\\\\'"),
    ("bytearray_empty", "bytearray()"),
    ("bytearray_nul", "bytearray(b'a\\x00')"),
    ("bytearray_all", "bytearray(range(256))"),
    ("list_empty", "[]"),
    ("list_nested", "[1, [2, [3, []]]]"),
    ("tuples", "[(), (1,), (1, u'a'), (1, 2, 3), (1, 2, 3, 4), ((),)]"),
    ("tuple_root", "(1, u'a', None)"),
    ("dict_empty", "{}"),
    ("dict_simple", "{u'a': None, u'b': [None, 1]}"),
    ("dict_keys", "{(1, 2): u'p', frozenset([1]): u'f', None: 0, 2.5: True, -7: b'x', "
                  "u'1': 1, 1: u'1', 2**70: u'big', (u'n', (1, 2.5)): u'nested'}"),
    ("dict_big", "dict((u'k%d' % i, i * 1.5) for i in range(1000))"),
    ("set_empty", "set()"),
    ("set_ints", "set([1, 2, 3])"),
    ("set_mixed", "set([frozenset([1]), (2, 3), u'a', b'b', None, 2.5, 2**80])"),
    ("set_big", "set(range(1000))"),
    ("frozenset_empty", "frozenset()"),
    ("frozenset_mixed", "frozenset([u'a', (1, 2), frozenset([3])])"),
    ("player", "{u'name': u'Alice', u'level': 42, u'score': 1337.5, u'inventory': "
               "[u'sword', u'shield', u'potion'], u'position': (10, -3), u'online': True}"),
    ("records", "[dict(id=i, name=u'user%d' % i, tags=[u'a', u'b'], score=i / 3.0, "
                "raw=bytearray(b'xy'), flags=frozenset([i % 3])) for i in range(200)]"),
    ("deep_50", "[" * 50 + "]" * 50),
    ("deep_tuple_dict", "(" * 20 + "{u'k': [" + "1" + "]}" + ",)" * 20),
    ("list_long", "list(range(100000))"),
    ("mixed_types", "[None, True, 1, 1.0, u'1', b'1', bytearray(b'1'), [1], (1,), {1: 1}, "
                    "set([1]), frozenset([1])]"),
    # sharing: one object in several places is one object after loading
    ("shared_list", "(lambda x: [x, x, {u'k': x}, (x,)])([1, 2])"),
    ("shared_str", "(lambda s: [s, s, (s, s), {s: s}])(u'shared' * 20)"),
    ("shared_bytes", "(lambda b: [b, b])(b'bytes' * 10)"),
    ("shared_bytearray", "(lambda b: [b, b, (b,)])(bytearray(b'ab'))"),
    ("shared_tuple", "(lambda t: [t, t, {t: t}])((1, u'x'))"),
    ("shared_frozenset", "(lambda f: (f, f, set([f])))(frozenset([1, 2]))"),
    ("shared_set", "(lambda s: [s, s])(set([1]))"),
    ("shared_dict", "(lambda d: [d, {u'a': d}, d])({u'a': 1})"),
    ("shared_float", "(lambda f: [f, f])(float('nan'))"),
    ("shared_bigint", "(lambda n: [n, n])(2**100)"),
    # cycles: as pickle makes them
    ("cycle_list", "(lambda l: (l.append(l), l)[1])([])"),
    ("cycle_dict", "(lambda d: (d.__setitem__(u'self', d), d)[1])({})"),
    ("cycle_two_lists", "(lambda a, b: (a.append(b), b.append(a), a)[2])([], [])"),
    ("cycle_through_tuple", "(lambda l: (l.append((l, 1)), l)[1])([])"),
    ("cycle_tuple_root", "(lambda l: (l.append((l, 1)), l[0])[1])([])"),
    ("cycle_dict_list_tuple", "(lambda d: (d.__setitem__(u'k', [d, (d,)]), d)[1])({})"),
    ("cycle_in_dict_value_under_tuple_key", "(lambda d: (d.__setitem__((), d), d)[1])({})"),
]

# ------------------------------------------------------------------ helpers


def _float_bits(f):
    return struct.pack("<d", f)


def _cached(x):
    """Objects CPython may share by value whatever the pickle says (small
    ints, one-character str, empty or one-byte bytes made by a call,
    singletons): their identity is not the pickle's sharing."""
    if x is None or isinstance(x, bool):
        return True
    if type(x) is int:
        return -5 <= x <= 256
    if type(x) in (str, bytes, tuple, frozenset):
        return len(x) <= 1 if type(x) in (str, bytes) else len(x) == 0
    return False


def assert_same(expected, got, where="value"):
    """expected and got are equal, with the same types all the way down,
    the same float bits (-0.0, nan), the same dict and set order, and the
    same sharing: two places hold one object in expected exactly when they
    do in got.  Iterative (cycles and deep values are fine)."""
    by_exp, by_got, keep = {}, {}, []
    stack = [(expected, got, where)]
    while stack:
        a, b, path = stack.pop()
        if type(a) is not type(b):
            raise AssertionError("%s: type %s != %s (%r != %r)" % (
                path, type(a).__name__, type(b).__name__, a, b))
        if _cached(a) and _cached(b):
            if a != b:
                raise AssertionError("%s: %r != %r" % (path, a, b))
            continue
        seen_a, seen_b = by_exp.get(id(a)), by_got.get(id(b))
        if seen_a is not None or seen_b is not None:
            if seen_a is not b or seen_b is not a:
                raise AssertionError("%s: sharing differs (one object in one value, not in "
                                     "the other)" % path)
            continue
        by_exp[id(a)] = b
        by_got[id(b)] = a
        keep.append((a, b))
        if isinstance(a, float):
            if math.isnan(a) and math.isnan(b):
                continue
            if _float_bits(a) != _float_bits(b):
                raise AssertionError("%s: %r != %r" % (path, a, b))
        elif isinstance(a, (list, tuple)):
            if len(a) != len(b):
                raise AssertionError("%s: length %d != %d" % (path, len(a), len(b)))
            for i, (x, y) in enumerate(zip(a, b)):
                stack.append((x, y, "%s[%d]" % (path, i)))
        elif isinstance(a, dict):
            if len(a) != len(b):
                raise AssertionError("%s: %d != %d items" % (path, len(a), len(b)))
            for i, ((k1, v1), (k2, v2)) in enumerate(zip(a.items(), b.items())):
                stack.append((k1, k2, "%s key #%d" % (path, i)))
                stack.append((v1, v2, "%s[%r]" % (path, k1)))
        elif isinstance(a, (set, frozenset)):
            # Built by adding the same elements in the same order: the same
            # iteration order.
            if len(a) != len(b):
                raise AssertionError("%s: %d != %d elements" % (path, len(a), len(b)))
            for i, (x, y) in enumerate(zip(a, b)):
                stack.append((x, y, "%s element #%d" % (path, i)))
        elif a != b:
            raise AssertionError("%s: %r != %r" % (path, a, b))
    return len(keep)


def loads_or_exc(fn, data):
    try:
        return fn(data), None
    except Exception as e:  # compared by the caller
        return None, e


def check_against_stock(data, restricted_result=None, restricted_exc=None, where="value"):
    """The restricted result of data (given, or computed here) against
    pickle.loads(data): equal, or both raise."""
    if restricted_result is None and restricted_exc is None:
        restricted_result, restricted_exc = loads_or_exc(restricted_loads, data)
    expected, exc = loads_or_exc(pickle.loads, data)
    if exc is not None:
        assert restricted_exc is not None, "%s: pickle.loads raised %r, restricted returned %r" % (
            where, exc, restricted_result)
        return "both raise"
    if restricted_exc is not None:
        raise AssertionError("%s: restricted raised %r where pickle.loads gives %r" % (
            where, restricted_exc, expected))
    assert_same(expected, restricted_result, where)
    return "equal"


def local_pickles():
    """(name, protocol, pickle) of the value set, from this interpreter."""
    out = []
    for name, expr in VALUE_SET:
        v = eval(expr)
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            try:
                out.append((name, proto, pickle.dumps(v, proto)))
            except (ValueError, RecursionError):  # e.g. str(2**20000) at protocol 0, 3.11+
                pass
    return out


# ------------------------------------------------ the value set, stock peers

INTERPRETERS = get_stock_interpreters()
OPTIONAL = ["2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]


def _interpreter_params():
    have = {".".join(v.split(".")[:2]) for _, _, v in INTERPRETERS}
    cells = [pytest.param(python, version, id=label) for label, python, version in INTERPRETERS]
    cells += [pytest.param(None, minor, id="missing-%s" % minor,
                           marks=pytest.mark.skip(reason="no CPython %s interpreter found "
                                                         "(pyenv versions)" % minor))
              for minor in OPTIONAL if minor not in have]
    return cells


def _spawn_peer(python, address):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # a stock interpreter, nothing of ours
    env.pop("PYTHONHOME", None)
    return subprocess.Popen([python, PEER, repr(address), binascii.hexlify(KEY).decode()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


@pytest.mark.parametrize("python,version", _interpreter_params())
def test_every_value_from_every_stock_python_at_every_protocol_equals_pickle_loads(
        python, version, tmp_path):
    marker = str(tmp_path / "evil-ran")
    with Listener(("127.0.0.1", 0), authkey=KEY, restricted=True) as listener:
        proc = _spawn_peer(python, listener.address)
        try:
            conn = listener.accept(timeout=60)
        except BaseException:
            proc.kill()
            raise AssertionError("the peer did not connect: %s" % proc.communicate()[1])
    try:
        assert conn.restricted
        hello = conn.recv_bytes().decode().split()
        assert hello[0] == "HELLO", hello
        highest = int(hello[2])
        counts = collections.Counter()
        loaded = {}  # (name, protocol) -> (pickle.loads result, exception)
        for name, expr in VALUE_SET:
            conn.send_bytes(("CASE " + expr).encode())
            for proto in range(highest + 1):
                where = "%s from %s at protocol %d" % (name, hello[1], proto)
                head = conn.recv_bytes()
                if head[:1] == b"E":  # this Python cannot pickle it so
                    counts["not picklable there"] += 1
                    continue
                data = head[1:]
                try:
                    got, exc = conn.recv(), None  # the same pickle again: restricted
                except Exception as e:
                    got, exc = None, e
                if exc is not None:
                    assert isinstance(exc, RestrictedPickleError), (where, exc)
                counts[check_against_stock(data, got, exc, where)] += 1
                loaded[name, proto] = loads_or_exc(pickle.loads, data)
        # multiprocessing's own send(): the protocol its pickler uses there
        v = version_tuple(version)
        default = 2 if v < (3, 0) else 3 if v < (3, 8) else 4
        for name, expr in VALUE_SET:
            if (name, default) not in loaded:
                continue
            conn.send_bytes(("SEND " + expr).encode())
            expected, exc = loaded[name, default]
            if exc is not None:
                with pytest.raises(RestrictedPickleError):
                    conn.recv()
            else:
                assert_same(expected, conn.recv(), "%s by send()" % name)
            counts["send()"] += 1
        # pickles that would run code: refused, nothing runs, the stream goes on
        for proto in range(highest + 1):
            conn.send_bytes(("EVIL %d %s" % (proto, marker)).encode())
            with pytest.raises(RestrictedPickleError) as info:
                conn.recv()
            assert re.search(r"global '(posix|os|nt)\.system'", str(info.value)), str(info.value)
            assert "at offset" in str(info.value)
            conn.send_bytes(b"SEND [u'still in step', 1]")
            assert conn.recv() == [u"still in step", 1]
            counts["refused"] += 1
        conn.send_bytes(b"BYE")
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        conn.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert not os.path.exists(marker), "a pickle ran os.system"
    assert counts["equal"] >= len(VALUE_SET) * (highest + 1) - 12, counts
    print(version, dict(counts))


def test_the_value_set_from_this_python_equals_pickle_loads_through_every_entry_point():
    n = 0
    a, b = Pipe()
    try:
        for name, proto, data in local_pickles():
            where = "%s at protocol %d" % (name, proto)
            assert check_against_stock(data, where=where) == "equal", where
            sender = start_thread(a.send_bytes, data)  # (larger than the pipe's buffer)
            assert check_against_stock(data, *loads_or_exc(lambda d: b.recv(restricted=True), data),
                                       where=where + " through recv()") == "equal"
            sender.join()
            n += 1
    finally:
        a.close()
        b.close()
    assert n > 5 * len(VALUE_SET)


def test_sharing_and_cycles_are_the_objects_pickle_makes():
    l = []
    l.append(l)
    got = restricted_loads(pickle.dumps(l, 4))
    assert got[0] is got
    t = restricted_loads(pickle.dumps((lambda x: (x.append((x, 1)), x[0])[1])([]), 2))
    assert type(t) is tuple and t[0][0] is t
    x = [1]
    a, b, c = restricted_loads(pickle.dumps([x, x, [x]], 3))
    assert a is b is c[0] and a == [1]
    s = u"shared" * 5
    got = restricted_loads(pickle.dumps({s: s, u"k": [s]}, 4))
    keys = list(got)
    assert keys[0] is got[keys[0]] is got[u"k"][0]
    # DUP and memo GET of any object: the same object
    assert restricted_loads(b"\x80\x04G?\xf8\x00\x00\x00\x00\x00\x002\x86.") == (1.5, 1.5)
    f1, f2 = restricted_loads(b"\x80\x04G?\xf8\x00\x00\x00\x00\x00\x002\x86.")
    assert f1 is f2


# ------------------------------------------------------------ hostile pickles


def _parse_c_strings(src, i):
    """Adjacent C string literals from src[i] (a '"'): (bytes, end)."""
    out = bytearray()
    escapes = {"n": b"\n", "t": b"\t", "r": b"\r", "a": b"\a", "b": b"\b", "f": b"\f",
               "v": b"\v", "\\": b"\\", '"': b'"', "'": b"'", "?": b"?"}
    while True:
        while src[i] in " \t\r\n":
            i += 1
        if src[i] != '"':
            return bytes(out), i
        i += 1
        while src[i] != '"':
            c = src[i]
            if c != "\\":
                out += c.encode("latin-1")
                i += 1
                continue
            i += 1
            c = src[i]
            if c == "x":  # greedy, as C's \x
                j = i + 1
                while src[j] in "0123456789abcdefABCDEF":
                    j += 1
                out.append(int(src[i + 1:j], 16) & 0xff)
                i = j
            elif c in "01234567":
                j = i
                while j < i + 3 and src[j] in "01234567":
                    j += 1
                out.append(int(src[i:j], 8) & 0xff)
                i = j
            else:
                out += escapes[c]
                i += 1
        i += 1


def c_refused_pickles():
    """The pickles the C tests expect the decoder to refuse: every literal
    REFUSED(...) of test_pickle.c and every send_raw(...) followed by
    assert_refused(...) in test_conn_value.c."""
    found = []
    with open(os.path.join(ROOT, "tests", "c", "test_pickle.c")) as f:
        src = f.read()
    for m in re.finditer(r"\bREFUSED\(\"", src):
        found.append(("test_pickle.c:%d" % src.count("\n", 0, m.start()),
                      _parse_c_strings(src, m.end() - 1)[0]))
    with open(os.path.join(ROOT, "tests", "c", "test_conn_value.c")) as f:
        src = f.read()
    for m in re.finditer(r"send_raw\(a, (\w+|\"[^\"]*\"), [^;]*\);\s*assert_refused", src):
        arg = m.group(1)
        if arg.startswith('"'):
            data = _parse_c_strings(src, m.start(1))[0]
        else:
            d = re.search(r"\b%s\[\] =\s*\"" % arg, src[:m.start()])
            data = _parse_c_strings(src, d.end() - 1)[0]
        found.append(("test_conn_value.c:%d" % src.count("\n", 0, m.start()), data))
    return found


C_REFUSED = c_refused_pickles()
CORPUS = sorted(glob.glob(os.path.join(ROOT, "tests", "fuzz", "corpus", "fuzz_pickle", "*")))


def corpus_pickle(path):
    with open(path, "rb") as f:
        data = f.read()
    return data[1:]  # the first byte picks the fuzzer's Python 2 str mode


def test_the_c_tests_hostile_pickles_were_found():
    assert len(C_REFUSED) >= 70
    assert any(b"system" in d for _, d in C_REFUSED)
    assert len([p for p in CORPUS if os.path.basename(p).startswith("hostile_")]) >= 7


@pytest.mark.parametrize("where,data", C_REFUSED, ids=[w for w, _ in C_REFUSED])
def test_every_pickle_the_c_decoder_refuses_is_refused(where, data):
    with pytest.raises(RestrictedPickleError) as info:
        restricted_loads(data)
    msg = str(info.value)
    assert msg and ("offset" in msg or "empty pickle" in msg), msg
    # ... and over a connection, which stays in step
    a, b = Pipe()
    with a, b:
        a.send_bytes(data)
        a.send([u"next"])
        with pytest.raises(RestrictedPickleError):
            b.recv(restricted=True)
        assert b.recv(restricted=True) == [u"next"]


@pytest.mark.parametrize("path", CORPUS, ids=[os.path.basename(p) for p in CORPUS])
def test_the_fuzz_corpus(path):
    data = corpus_pickle(path)
    name = os.path.basename(path)
    result, exc = loads_or_exc(restricted_loads, data)
    if name.startswith("hostile_") and name != "hostile_cycle":
        assert isinstance(exc, RestrictedPickleError), (name, result)
        return
    if exc is None:
        reference, rexc = loads_or_exc(reference_loads, data)
        assert rexc is None, (name, rexc)
        assert_same(reference, result, name)
    else:
        assert isinstance(exc, RestrictedPickleError), exc


class Evil(object):
    """Runs a command when unpickled by pickle.loads()."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def _evil_pickles(marker):
    cmd = "touch %s" % marker
    code = "open(%r, 'w').close()" % marker
    objs = [Evil(os.system, cmd), Evil(subprocess.call, ["touch", marker]),
            Evil(eval, code), Evil(exec, code),
            [1, Evil(os.system, cmd)], {u"k": Evil(os.system, cmd)}]
    out = []
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        for o in objs:
            out.append(pickle.dumps(o, proto))
    # hand-written: protocol 0 classics, INST, OBJ, BUILD on an allowed
    # global, __import__ and getattr chains, a global hidden in a memo
    m = marker.encode()
    out += [
        b"cos\nsystem\n(S'touch " + m + b"'\ntR.",
        b"(S'touch " + m + b"'\nios\nsystem\n.",
        b"(cos\nsystem\nS'touch " + m + b"'\no.",
        b"c__builtin__\neval\n(S'" + code.replace("'", "\\'").encode() + b"'\ntR.",
        b"cbuiltins\ngetattr\n(c__builtin__\n__import__\n(S'os'\ntRS'system'\ntR(S'touch "
        + m + b"'\ntR.",
        b"\x80\x02c__builtin__\nset\nq\x00]q\x01\x85q\x02Rq\x03}q\x04b.",
        b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94h\x02\x8c\x05touch\x85R.",
        b"\x80\x02cbuiltins\nset\nq\x00h\x00h\x00\x86.",
    ]
    return out


def test_pickles_that_would_run_code_are_refused_and_nothing_runs(tmp_path):
    marker = str(tmp_path / "ran")
    a, b = Pipe()
    with a, b:
        for data in _evil_pickles(marker):
            with pytest.raises(RestrictedPickleError) as info:
                restricted_loads(data)
            assert "offset" in str(info.value)
            a.send_bytes(data)
            with pytest.raises(RestrictedPickleError):
                b.recv(restricted=True)
            a.send(42)
            assert b.recv(restricted=True) == 42
    assert not os.path.exists(marker)


def test_the_message_names_opcode_global_and_offset():
    with pytest.raises(RestrictedPickleError) as info:
        restricted_loads(pickle.dumps(os.system, 4))
    msg = str(info.value)
    assert re.match(r"refused opcode STACK_GLOBAL of global '(posix|os|nt)\.system' at offset \d+$",
                    msg), msg
    with pytest.raises(RestrictedPickleError) as info:
        restricted_loads(b"cos\nsystem\n(S'echo hi'\ntR.")
    assert str(info.value) == "refused opcode GLOBAL of global 'os.system' at offset 0"
    with pytest.raises(RestrictedPickleError) as info:
        restricted_loads(pickle.dumps(collections.OrderedDict(a=1), 2))
    assert "refused opcode GLOBAL of global 'collections.OrderedDict' at offset 2" in str(info.value)
    with pytest.raises(RestrictedPickleError) as info:
        restricted_loads(b"\x80\x04}]Ns.")
    assert str(info.value) == "SETITEM: unhashable type: 'list' at offset 5"
    assert issubclass(RestrictedPickleError, pickle.UnpicklingError)
    assert mpconn.RestrictedPickleError is RestrictedPickleError
    assert "RestrictedPickleError" in mpconn.__all__


def _deep(depth):
    lists = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    tuples = b"\x80\x02" + b"(" * depth + b"t" * depth + b"."
    tuple1 = b"\x80\x02N" + b"\x85" * depth + b"."
    return [lists, tuples, tuple1]


def test_deep_nesting_is_an_error_not_a_crash():
    for data in _deep(100000):
        with pytest.raises(RestrictedPickleError) as info:
            restricted_loads(data)
        assert "nesting deeper than 1000" in str(info.value)
    # 1000 levels are fine, as in the C decoder
    assert restricted_loads(b"\x80\x02N" + b"\x85" * 999 + b".") is not None


def test_a_long_path_through_a_cycle_equals_pickle_loads():
    # root = [root]; then 100000 times: GET the newest list, append a new
    # one to it: a 100000-long chain, built without recursion.
    p = bytearray(b"\x80\x04]\x94" + b"2a")
    for i in range(100000):
        p += b"j" + struct.pack("<I", i) + b"]\x94a0"
    p += b"."
    check_against_stock(bytes(p), where="long path")


def test_a_small_pickle_sharing_one_list_at_every_level_costs_what_it_holds():
    p = bytearray(b"\x80\x04]\x94]\x940")
    for i in range(1, 31):
        p += b"(h" + bytes([i]) + b"2h\x00l\x940"
    p += b"h\x1fa."
    got = restricted_loads(bytes(p))
    check_against_stock(bytes(p), got, None, "shared levels")
    assert got[0][0] is got[0][1] and got[0][2] is got


def test_huge_claimed_lengths_and_memo_abuse_are_errors():
    for data in [b"\x80\x04\x8d" + b"\xff" * 8 + b"abc.", b"\x80\x04\x8e" + b"\xff" * 8 + b".",
                 b"\x80\x05\x96" + b"\xff" * 8 + b".", b"\x80\x02X\xff\xff\xff\xff.",
                 b"\x80\x02\x8b\xff\xff\xff\x7f\x01.", b"\x80\x04\x95" + b"\xff" * 8 + b"N.",
                 b"\x80\x02T\xff\xff\xff\xff.", b"\x80\x02h\x05.", b"\x80\x02j\xff\xff\xff\x7f.",
                 b"g99999999999999999999999\n.", b"p-1\n."]:
        with pytest.raises(RestrictedPickleError):
            restricted_loads(data)
    # a memo key far beyond the count costs nothing (pickle.loads would
    # allocate a 16 GiB memo for it); negative and sparse keys work
    got = restricted_loads(b"\x80\x02]r\xff\xff\xff\x7fp123456789\n0j\xff\xff\xff\x7f"
                           b"g123456789\n\x86.")
    assert got == ([], []) and got[0] is got[1]
    # a million memo entries of one byte each
    data = b"\x80\x04N" + b"\x94" * 1000000 + b"."
    assert restricted_loads(data) is None


def test_int_conversion_does_not_depend_on_the_str_digits_limit():
    if not hasattr(sys, "set_int_max_str_digits"):
        pytest.skip("no sys.set_int_max_str_digits before 3.11")
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        for proto in (2, 4, 5):
            data = pickle.dumps(-(3**4000), proto)
            assert restricted_loads(data) == pickle.loads(data)
    finally:
        sys.set_int_max_str_digits(old)


# ----------------------------------------------------------------- the API


def _serve_one(listener, out):
    conn = listener.accept(timeout=30)
    out.append(conn)


@pytest.mark.parametrize("kind", ["AF_INET", "AF_UNIX"])
def test_listener_and_client_restricted(kind, tmp_path):
    od = collections.OrderedDict(a=1)
    with Listener(make_address(kind, tmp_path), authkey=KEY, restricted=True) as listener:
        got = []
        t = start_thread(_serve_one, listener, got)
        client = Client(listener.address, authkey=KEY)
        t.join()
        server = got[0]
        with server, client:
            assert server.restricted and not client.restricted
            client.send(od)
            with pytest.raises(RestrictedPickleError):
                server.recv()
            client.send({u"fine": [1, 2.5, b"x"]})
            assert server.recv() == {u"fine": [1, 2.5, b"x"]}
            client.send(od)
            assert server.recv(restricted=False) == od  # stock unpickling, one call
            client.send(od)
            with pytest.raises(RestrictedPickleError):
                server.recv(restricted=None)  # None: the connection's setting
            server.send(od)
            assert client.recv() == od
            server.send(od)
            with pytest.raises(RestrictedPickleError):
                client.recv(restricted=True)
            server.send(od)
            client.restricted = True
            with pytest.raises(RestrictedPickleError):
                client.recv()
            client.restricted = False
            server.send(od)
            assert client.recv() == od
    with Listener(make_address(kind, tmp_path), authkey=KEY) as listener:
        got = []
        t = start_thread(_serve_one, listener, got)
        client = Client(listener.address, authkey=KEY, restricted=True)
        t.join()
        with got[0] as server, client:
            assert client.restricted and not server.restricted
            server.send(od)
            with pytest.raises(RestrictedPickleError):
                client.recv()
            server.send(u"ok")
            assert client.recv() == u"ok"


def test_recv_arguments():
    a, b = Pipe()
    with a, b:
        with pytest.raises(TypeError):
            b.recv(True)
        with pytest.raises(TypeError):
            b.recv(strict=True)
        with pytest.raises(AttributeError):
            del b.restricted
        b.restricted = 1
        assert b.restricted is True
        a.send([1])
        assert b.recv(restricted=0) == [1]


def _child_recv(conn, out):
    try:
        out.send(u"value %r" % (conn.recv(),))
    except RestrictedPickleError as e:
        out.send(u"refused: %s" % e)


def test_a_restricted_connection_stays_restricted_in_a_child_process():
    ctx = multiprocessing.get_context("fork")
    a, b = Pipe()
    report_r, report_w = ctx.Pipe(duplex=False)
    b.restricted = True
    p = ctx.Process(target=_child_recv, args=(b, report_w))
    p.start()
    try:
        a.send(collections.OrderedDict(a=1))
        assert report_r.poll(30)
        assert report_r.recv().startswith(u"refused: refused opcode")
    finally:
        p.join(30)
        a.close()
        b.close()


def test_a_restricted_connection_stays_restricted_when_pickled():
    from multiprocessing.reduction import ForkingPickler
    a, b = Pipe()
    with a, b:
        b.restricted = True
        c = ForkingPickler.loads(ForkingPickler.dumps(b))
        with c:
            assert c.restricted
            a.send(collections.OrderedDict(a=1))
            with pytest.raises(RestrictedPickleError):
                c.recv()
        b.restricted = False
        d = ForkingPickler.loads(ForkingPickler.dumps(b))
        with d:
            assert not d.restricted


def test_threads_receiving_restricted_at_once():
    value = [{u"k%d" % i: (i, float(i), u"v" * i, bytearray(b"b"))} for i in range(200)]
    pairs = [Pipe() for _ in range(4)]

    def work(a, b):
        for _ in range(50):
            a.send(value)
            assert b.recv(restricted=True) == value

    threads = [start_thread(work, a, b) for a, b in pairs]
    for t in threads:
        t.join(60)
    for a, b in pairs:
        a.close()
        b.close()


# ------------------------------------------------------------------ fuzzing

def reference_loads(data):
    """pickle.loads() itself, for input the restricted decoder accepted: its
    allow-list let only builtins.set/frozenset/bytearray/bytes and
    _codecs.encode through, so nothing else can run here (the fuzz seeds'
    payloads only touch a marker file, which the test checks)."""
    return pickle.loads(data)


def _reference_is_cheap(data):
    """pickle.loads() sizes its memo by the largest key: skip the reference
    for inputs whose keys are far beyond their size."""
    try:
        for op, arg, _pos in pickletools.genops(data):
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"):
                if not isinstance(arg, int) or arg > 100000 or arg < 0:
                    return False
            if op.name == "STOP":
                return True
    except Exception:
        return False
    return True


def _mutate(rng, data):
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        r = rng.random()
        if not b or r < 0.25:
            b.insert(rng.randint(0, len(b)), rng.randrange(256))
        elif r < 0.55:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif r < 0.7:
            b[rng.randrange(len(b))] = rng.choice(b"()]}eaustlhgq0123.\x85\x86\x87\x8f\x90\x91\x94RbcN")
        elif r < 0.85:
            del b[rng.randrange(len(b))]
        else:
            i, j = rng.randrange(len(b)), rng.randrange(len(b))
            b[i:i] = b[j:j + rng.randint(1, 8)]
    return bytes(b)


def test_fuzzed_pickles_never_crash_and_equal_pickle_loads_or_raise(tmp_path):
    marker = str(tmp_path / "ran")
    small = [d for _, _, d in local_pickles() if len(d) < 4096]
    seeds = small + [corpus_pickle(p) for p in CORPUS] + [d for _, d in C_REFUSED]
    seeds += _evil_pickles(marker)
    rng = random.Random(int(os.environ.get("MPCONN_FUZZ_SEED", "18")))
    counts = collections.Counter()
    a, b = Pipe()
    with a, b:
        for i in range(6000):
            data = _mutate(rng, rng.choice(seeds))
            if i % 10 == 0:  # through recv(): the stream stays in step
                a.send_bytes(data)
                a.send_bytes(b"\x80\x04K\x07.")
                result, exc = loads_or_exc(lambda d: b.recv(restricted=True), data)
                assert b.recv(restricted=True) == 7
            else:
                result, exc = loads_or_exc(restricted_loads, data)
            if exc is not None:
                assert isinstance(exc, (RestrictedPickleError, MemoryError)), (data, exc)
                counts["raised"] += 1
                continue
            if not _reference_is_cheap(data):
                counts["accepted, no reference"] += 1
                continue
            reference, rexc = loads_or_exc(reference_loads, data)
            assert rexc is None, "restricted accepted %r (%r), pickle.loads raised %r" % (
                data, result, rexc)
            assert_same(reference, result, repr(data[:60]))
            counts["equal"] += 1
    assert not os.path.exists(marker)
    assert counts["equal"] > 400 and counts["raised"] > 400, counts
    print(dict(counts))
