#!/usr/bin/env python3
"""Generates tests/c/vectors/pickle_vectors.txt: pickles written by stock
CPython (this python3 at protocols 0-5, and Python 2.7 at protocols 0-2 when
it is installed) with the repr() that Python 3 prints after loading them.

Run from anywhere with stock CPython 3 (no third-party modules):

    python3 tests/c/vectors/gen_pickle_vectors.py [--py2 /path/to/python2.7]

Each line of the output is tab-separated:

    name  origin  protocol  py2str  pickle-hex  repr

A repr longer than 400 characters is stored as "fnv1a64:" and the 16 hex
digits of its 64-bit FNV-1a hash, to keep the file small; the large batch
cases (over 1000 elements) are written at protocols 2 and 4 only.

origin is "py3.X" or "py2.7"; py2str is the Python 3 `encoding` used to load
(ascii, latin1 or bytes; the C decoder's mpc_py2str option); repr is what
Python 3 prints for pickle.loads(pickle) (repr() never contains tabs or
newlines).  test_pickle.c decodes every pickle, compares the C printer's
text with repr, and, for py3 pickles at protocol 2-5, checks that encoding
the decoded tree gives back the same bytes.
"""
import math
import os
import pickle
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "pickle_vectors.txt")


def py3_values():
    shared = [1, 2]
    s = "shared str"
    t = (1, "t")
    b = b"shared bytes"
    fz = frozenset({7})
    v = [
        ("none", None), ("true", True), ("false", False),
        ("int_0", 0), ("int_1", 1), ("int_m1", -1), ("int_255", 255), ("int_256", 256),
        ("int_65535", 65535), ("int_65536", 65536), ("int_2p31m1", 2**31 - 1),
        ("int_2p31", 2**31), ("int_m2p31", -2**31), ("int_m2p31m1", -2**31 - 1),
        ("int_2p63m1", 2**63 - 1), ("int_2p63", 2**63), ("int_m2p63", -2**63),
        ("int_m2p63m1", -2**63 - 1), ("int_2p64m1", 2**64 - 1), ("int_2p64", 2**64),
        ("int_m2p64", -2**64), ("int_m2p64p1", -2**64 + 1), ("int_10p100", 10**100),
        ("int_m10p100", -10**100), ("int_2p1000", 2**1000), ("int_m2p2040", -2**2040),
        ("int_m128", -128), ("int_m129", -129), ("int_m32768", -32768), ("int_2p40", 2**40),
        ("float_0", 0.0), ("float_m0", -0.0), ("float_1", 1.0), ("float_0p1", 0.1),
        ("float_1e16", 1e16), ("float_1e15", 1e15), ("float_1em5", 1e-5), ("float_1em4", 1e-4),
        ("float_1p5e300", 1.5e300), ("float_min", 5e-324), ("float_max", 1.7976931348623157e308),
        ("float_inf", math.inf), ("float_minf", -math.inf), ("float_nan", math.nan),
        ("float_pi", math.pi), ("float_1e22", 1e22), ("float_123", 123456789.123),
        ("float_m2p5", -2.5), ("float_third", 1 / 3), ("float_1e23", 1e23),
        ("str_empty", ""), ("str_abc", "abc"), ("str_squote", "it's"), ("str_dquote", 'say "hi"'),
        ("str_both", "both ' and \""), ("str_ws", "tab\tnl\ncr\r"), ("str_nul", "nul\x00zero"),
        ("str_e_acute", "\u00e9"), ("str_cjk", "\u4e2d\u6587"), ("str_emoji", "\U0001F600 non-BMP"),
        ("str_ctrl", "\x7f\x80\xa0\xad\x1b"), ("str_linesep", "\u2028\u00a0\u3000"),
        ("str_surrogate", "\ud800x"), ("str_backslash", "back\\slash"), ("str_300", "x" * 300),
        ("str_private", "\ue000\U000F0000"), ("str_unassigned", "\u0378\U000E01F0"),
        ("bytes_empty", b""), ("bytes_abc", b"abc"), ("bytes_bin", b"\x00\xff\x7f\x80\t\n\r\\"),
        ("bytes_squote", b"it's"), ("bytes_both", b"'\""), ("bytes_300", b"y" * 300),
        ("bytearray_empty", bytearray()), ("bytearray_bin", bytearray(b"abc\x00\xff")),
        ("list_empty", []), ("list_123", [1, 2, 3]), ("tuple_empty", ()), ("tuple_1", (1,)),
        ("tuple_2", (1, 2)), ("tuple_3", (1, 2, 3)), ("tuple_4", (1, 2, 3, 4)),
        ("dict_empty", {}), ("dict_1", {"a": 1}), ("dict_2", {"a": 1, "b": [1, 2]}),
        ("dict_keys", {1: "x", (1, 2): None, None: True, 1.5: b"b", frozenset({1}): 2, b"k": 3,
                       -(2**70): "big", "": 0, (): (), False: 0.0}),
        ("set_empty", set()), ("set_123", {1, 2, 3}), ("frozenset_empty", frozenset()),
        ("frozenset_12", frozenset({1, 2})), ("set_mixed", {None, 1.5, (1, "a"), b"z"}),
        ("player", {"name": "Alice", "level": 42, "hp": 97.5, "items": ["sword", "shield"],
                    "pos": (1.5, -2.0), "flags": {"admin": False, "tags": {"a"}},
                    "avatar": b"\x89PNG", "id": 2**64 + 1}),
        ("shared_list", [shared, shared, {"k": shared}]), ("shared_str", [s, s, (s,)]),
        ("shared_tuple", [t, t]), ("shared_bytes", [b, b]), ("shared_frozenset", [fz, {fz: fz}]),
        ("repeated_values", ["same", "same", 1.5, 1.5]),
        ("list_1500", list(range(1500))),
        ("dict_1000", {i: i for i in range(1000)}), ("dict_1001", {i: i for i in range(1001)}),
        ("set_1000", set(range(1000))), ("set_1001", set(range(1001))),
        ("frozenset_1500", frozenset(range(1500))),
        ("tuple_1200", tuple(range(1200))),
        ("list_of_bytes", [b"a", b"b", b"a"]), ("list_of_bytearrays", [bytearray(b"a"), bytearray(b"b")]),
        ("list_of_sets", [{1}, {2}, frozenset({3}), set()]), ("memo_300",
                                                               [str(i) for i in range(300)] + [[]]),
    ]
    deep = 0
    for _ in range(50):
        deep = [deep]
    v.append(("deep_50", deep))
    deept = ()
    for _ in range(8):  # shared twice per level: repr grows as 2**levels
        deept = (deept, {"d": deept})
    v.append(("deep_tuple_dict", deept))
    v.extend(recursive_values())
    return v


def recursive_values():
    """Containers that contain themselves (CPython memoizes a list or dict
    before its items, and pops a tuple that showed up in the memo while its
    items were saved: POP..GET, POP_MARK GET)."""
    a = []
    a.append(a)
    d = {}
    d["self"] = d
    tl = []
    t = (tl,)
    tl.append(t)
    t4l = []
    t4 = (1, t4l, 2, 3)
    t4l.append(t4)
    t2l = []
    t2 = (t2l, t2l)
    t2l.append(t2)
    n1 = []
    n2 = [n1]
    n1.append(n2)
    n1.append(n1)
    dd = {}
    dl = [dd]
    dd[1] = dl
    dd[2] = (dl, dd)
    fz = frozenset({(1, "x")})
    keyed = {fz: []}
    keyed[fz].append(keyed)
    return [("cycle_list", a), ("cycle_dict", d), ("cycle_tuple_list", t),
            ("cycle_list_tuple", tl), ("cycle_tuple4_list", t4), ("cycle_tuple2_same", t2),
            ("cycle_nested", n1), ("cycle_dict_mix", dd), ("cycle_frozenset_key", keyed)]


PY2_SCRIPT = r'''
import pickle, sys, binascii
s = [1, 2]
cases = [
    ("py2_none", None), ("py2_true", True), ("py2_false", False), ("py2_int", 1),
    ("py2_neg", -1), ("py2_int_2p31", 2**31), ("py2_int_2p63", 2**63),
    ("py2_long", 12345678901234567890L), ("py2_long_small", 5L), ("py2_long_neg", -2**70),
    ("py2_float", 1.5), ("py2_float_pi", 3.141592653589793), ("py2_inf", float("inf")),
    ("py2_minf", float("-inf")), ("py2_nan", float("nan")), ("py2_m0", -0.0),
    ("py2_str", "ascii str"), ("py2_str_quotes", "it's \"q\"\t\n\\"),
    ("py2_unicode", u"unicode \xe9 \u1234 \U0001F600"), ("py2_unicode_ctl", u"\x00nul\n\\u005c\\"),
    ("py2_list", [1, "a", u"b"]), ("py2_tuple1", (1,)), ("py2_tuple4", (1, 2, 3, 4)),
    ("py2_dict", {"k": u"v"}), ("py2_set", set([1, 2])), ("py2_frozenset", frozenset([3])),
    ("py2_set_empty", set()), ("py2_bytearray", bytearray("ab")), ("py2_bytearray_empty", bytearray()),
    ("py2_shared", [s, s]), ("py2_nested", {"name": u"Bob", "scores": [1, 2.5, None], "t": (True,)}),
    ("py2_list_1500", range(1500)),
]
ca = []
ca.append(ca)
cl = []
ct = (cl, 1, 2, 3)
cl.append(ct)
cd = {}
cd["self"] = [cd, (cd,)]
cases += [("py2_cycle_list", ca), ("py2_cycle_tuple4", ct), ("py2_cycle_dict", cd)]
latin = [("py2_latin1_str", "caf\xe9"), ("py2_latin1_bytearray", bytearray("\xff\x00"))]
for proto in (0, 1, 2):
    for name, v in cases:
        sys.stdout.write("%s\t%d\tascii\t%s\n" % (name, proto, binascii.hexlify(pickle.dumps(v, proto))))
    for name, v in latin:
        # Python 3 cannot load a Python 2 bytearray with encoding='bytes'.
        for enc in (("latin1", "bytes") if "bytearray" not in name else ("latin1",)):
            sys.stdout.write("%s_%s\t%d\t%s\t%s\n" % (name, enc, proto, enc, binascii.hexlify(pickle.dumps(v, proto))))
'''


BIG = {"list_1500", "dict_1000", "dict_1001", "set_1000", "set_1001",
       "frozenset_1500", "tuple_1200", "memo_300"}


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def short_repr(r):
    return r if len(r) <= 400 else "fnv1a64:%016x" % fnv1a64(r)


def py3_repr(data, enc):
    v = pickle.loads(data, encoding=enc if enc != "ascii" else "ASCII")
    return repr(v)


def main():
    py2 = "/root/.pyenv/versions/2.7.18/bin/python"
    if "--py2" in sys.argv:
        py2 = sys.argv[sys.argv.index("--py2") + 1]
    origin = "py%d.%d" % sys.version_info[:2]
    lines = []
    for name, value in py3_values():
        protos = (2, 4) if name in BIG else range(0, pickle.HIGHEST_PROTOCOL + 1)
        for proto in protos:
            data = pickle.dumps(value, proto)
            r = short_repr(repr(pickle.loads(data)))
            assert "\t" not in r and "\n" not in r
            lines.append("\t".join([name, origin, str(proto), "ascii", data.hex(), r]))
    if os.path.exists(py2):
        out = subprocess.run([py2, "-c", PY2_SCRIPT], check=True, stdout=subprocess.PIPE).stdout
        for line in out.decode().splitlines():
            name, proto, enc, hx = line.split("\t")
            if name == "py2_list_1500" and proto != "2":
                continue
            r = short_repr(py3_repr(bytes.fromhex(hx), enc))
            lines.append("\t".join([name, "py2.7", proto, enc, hx, r]))
    else:
        sys.stderr.write("note: %s not found, no Python 2.7 vectors\n" % py2)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d vectors to %s" % (len(lines), OUT))


if __name__ == "__main__":
    main()
