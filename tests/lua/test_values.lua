-- conn:send(v) / conn:recv() between two Lua ends of a pipe, and
-- mpconn.encode/decode/repr: every kind and its edge cases round-trip as
-- lua/README.md "Values" documents; what cannot be sent raises before
-- anything is sent; refused and malformed pickles give nil, message,
-- "VALUE" and leave the connection usable.
local H = require "harness"
local mpconn = require "mpconn"
local C = require "values_cases"
local null, list, tuple, dict = mpconn.null, mpconn.list, mpconn.tuple, mpconn.dict

local function pair()
  local a, b = assert(mpconn.pipe())
  a:set_timeout(10)
  b:set_timeout(10)
  return a, b
end

-- A connection to a child process (echo_peer.lua) that sends every
-- message back: values of any size go out and come back without the two
-- ends of one socket pair blocking each other.
local echo, echo_proc
local function echo_conn()
  if echo then return echo end
  local l = assert(mpconn.listen(H.address("abstract"), { authkey = "values" }))
  echo_proc = H.spawn(string.format("%s %s %s %s", H.lua, H.q(H.dir .. "/echo_peer.lua"), H.q(l.address),
    H.hex("values")))
  echo = assert(l:accept(30))
  l:close()
  echo:set_timeout(30)
  return echo
end

-- Sends v, receives what comes back (with opts) and returns it.
local function roundtrip(v, opts, send_opts)
  local c = echo_conn()
  H.eq(c:send(v, send_opts), true, "send")
  local got, msg, code = c:recv(opts)
  if got == nil and msg ~= nil then error("recv: " .. msg .. " " .. tostring(code), 2) end
  return got
end

local function same(got, want, what)
  if not C.deq(got, want) then
    error(string.format("%s: got %s, expected %s", what or "value", C.show(got), C.show(want)), 2)
  end
end

-- The Lua value the TO_PY case's Python value comes back as (lists and
-- tuples marked, dicts plain, strings and bytes as strings).
H.test("scalars round-trip with their Lua types", function()
  for _, v in ipairs({ true, false, 0, 1, -1, math.maxinteger, math.mininteger, 1.0, 0.5, -2.5e-310,
                       1 / 0, -1 / 0, 1.5e300, "", "x", "a\0b\0", H.ALL256, "\u{1D11E}\u{1F600}\u{10FFFF}" }) do
    same(roundtrip(v), v, H.repr(v))
  end
  H.eq(math.type(roundtrip(1.0)), "float", "1.0 stays a float")
  H.eq(math.type(roundtrip(3)), "integer", "3 stays an integer")
end)

H.test("-0.0 keeps its sign and nan stays nan", function()
  local z = roundtrip(-0.0)
  H.eq(math.type(z), "float", "type of -0.0")
  H.eq(1 / z, -1 / 0, "1 / -0.0")
  local n = roundtrip(0 / 0)
  H.ok(n ~= n, "nan")
end)

H.test("nil at the top level is None and comes back as a single nil", function()
  local a, b = pair()
  H.eq(a:send(nil), true, "send nil")
  H.eq(select("#", b:recv()), 1, "number of results")
  H.eq(a:send(null), true, "send mpconn.null")
  H.eq(select("#", b:recv()), 1, "number of results")
  H.eq(mpconn.encode(nil), mpconn.encode(null), "nil and mpconn.null pickle alike")
  H.eq(mpconn.repr(nil), "None", "repr")
end)

H.test("invalid UTF-8 is sent as bytes, valid UTF-8 as str", function()
  H.eq(mpconn.repr("h\u{E9}\u{1F600}"), "'h\u{E9}\u{1F600}'", "valid UTF-8")
  H.eq(mpconn.repr("\xff\xfe\0a"), "b'\\xff\\xfe\\x00a'", "invalid")
  H.eq(mpconn.repr("\xc0\xaf"), "b'\\xc0\\xaf'", "overlong")
  H.eq(mpconn.repr("\xed\xa0\x80"), "b'\\xed\\xa0\\x80'", "encoded surrogate")
  H.eq(mpconn.repr("\xf4\x90\x80\x80"), "b'\\xf4\\x90\\x80\\x80'", "beyond U+10FFFF")
  H.eq(mpconn.repr("\xe2\x82"), "b'\\xe2\\x82'", "truncated sequence")
  H.eq(mpconn.repr(string.rep("a", 13) .. "\xff"), "b'aaaaaaaaaaaaa\\xff'", "after an ASCII run")
  H.eq(mpconn.repr(mpconn.bytes("abc")), "b'abc'", "mpconn.bytes")
  -- Either way the Lua string comes back byte for byte.
  H.eq(roundtrip("\xff\xfe\0a"), "\xff\xfe\0a", "bytes come back as a string")
  same(roundtrip("\xff\0", { bytes = "marked" }), mpconn.bytes("\xff\0"), "bytes, marked")
  same(roundtrip(mpconn.bytes("ab"), { bytes = "marked" }), mpconn.bytes("ab"), "mpconn.bytes, marked")
  same(roundtrip(mpconn.bytearray("ab"), { bytes = "marked" }), mpconn.bytearray("ab"), "bytearray, marked")
  H.eq(roundtrip(mpconn.bytearray("ab")), "ab", "bytearray as a string")
  local b = mpconn.bytes("x\0y")
  H.eq(tostring(b), "x\0y", "tostring of mpconn.bytes")
  H.eq(#b, 3, "length of mpconn.bytes")
  H.eq(b.value, "x\0y", "its value field")
  H.eq(mpconn.kind(b), "bytes", "kind")
end)

H.test("integers beyond 64 bits arrive as mpconn.bigint and go back as ints", function()
  local big = mpconn.bigint("-123456789012345678901234567890")
  same(roundtrip(big), big, "bigint")
  H.eq(tostring(roundtrip(big)), "-123456789012345678901234567890", "tostring")
  H.eq(mpconn.repr(big), "-123456789012345678901234567890", "repr")
  -- A bigint whose text fits 64 bits is an ordinary int.
  H.eq(roundtrip(mpconn.bigint("12")), 12, "small bigint")
  H.eq(roundtrip(mpconn.bigint("9223372036854775807")), math.maxinteger, "int64 max")
  H.raises("decimal text", mpconn.bigint, "12a")
  H.raises("decimal text", mpconn.bigint, 1.5)
end)

H.test("lists, tuples, dicts and sets round-trip, empty ones included", function()
  same(roundtrip({ 1, 2, 3 }), list { 1, 2, 3 }, "a sequence is a list")
  same(roundtrip(list {}), list {}, "empty list")
  same(roundtrip({}), {}, "{} is an empty dict")
  H.eq(mpconn.repr({}), "{}", "repr of {}")
  same(roundtrip(dict {}), {}, "mpconn.dict{}")
  same(roundtrip(tuple { 1, "a" }), list { 1, "a" }, "a tuple arrives as a list")
  same(roundtrip(tuple { 1, "a" }, { tuple = "marked" }), tuple { 1, "a" }, "a tuple, marked")
  same(roundtrip(tuple {}, { tuple = "marked" }), tuple {}, "empty tuple, marked")
  same(roundtrip(mpconn.set { 1, "a", 2.5 }), mpconn.set { 1, "a", 2.5 }, "set")
  same(roundtrip(mpconn.set {}), mpconn.set {}, "empty set")
  same(roundtrip(mpconn.frozenset { 1 }), mpconn.frozenset { 1 }, "frozenset")
  same(roundtrip({ 1, 2, x = 3 }), { 1, 2, x = 3 }, "1..n and more is a dict")
  same(roundtrip({ [1] = "a", [3] = "c" }), { [1] = "a", [3] = "c" }, "holes make a dict")
  same(roundtrip(dict { "a", "b" }), { "a", "b" }, "a sequence marked as a dict")
  H.eq(mpconn.repr(dict { "a", "b" }), "{1: 'a', 2: 'b'}", "its repr")
  H.eq(mpconn.repr(mpconn.set { "b", 10, "a", 2 }), "{2, 10, 'a', 'b'}", "set items sorted")
end)

H.test("mpconn.null stands for None inside lists, dicts and sets", function()
  local v = roundtrip({ list { null, 1, null }, { a = null }, mpconn.set { null } })
  same(v, list { list { null, 1, null }, { a = null }, mpconn.set { null } }, "nulls")
  H.ok(rawequal(v[1][1], null), "the very sentinel")
  H.eq(tostring(null), "mpconn.null", "tostring")
  H.eq(mpconn.kind(null), "null", "kind")
  H.eq(mpconn.repr(list { 1, nil, 3 }), "[1, None, 3]", "a nil hole in a marked list")
  H.eq(mpconn.repr({ [null] = 1 }), "{None: 1}", "a None key")
  same(roundtrip({ [null] = 1 }), { [null] = 1 }, "a None key comes back as mpconn.null")
end)

H.test("nested containers of every kind round-trip", function()
  local v = { list {}, { {}, tuple { list { 1 } } }, { k = { 1, { 2, mpconn.set { "x" } } } } }
  same(roundtrip(v, { tuple = "marked" }),
    list { list {}, list { {}, tuple { list { 1 } } }, { k = list { 1, list { 2, mpconn.set { "x" } } } } },
    "nested")
  for _, case in ipairs(C.TO_PY) do
    -- Every documented case survives a trip through Lua unchanged in Python
    -- terms: encoding what came back gives the same repr.
    local first = mpconn.repr(case[2]())
    local back = roundtrip(case[2](), { bytes = "marked", tuple = "marked", ordered = true })
    H.eq(mpconn.repr(back), first, case[1])
  end
end)

H.test("dict keys are sent sorted: numbers, strings, bytes, booleans, then the rest", function()
  H.eq(mpconn.repr({ b = 1, a = 2, [10] = 3, [-1.5] = 4, [2] = 5, [true] = 6, [false] = 7,
                     [mpconn.bytes("z")] = 8, ["\xff"] = 9 }),
    "{-1.5: 4, 2: 5, 10: 3, 'a': 2, 'b': 1, b'z': 8, b'\\xff': 9, False: 7, True: 6}", "order")
  H.eq(mpconn.encode({ x = 1, y = 2, z = 3 }), mpconn.encode({ z = 3, y = 2, x = 1 }), "deterministic bytes")
end)

H.test("mpconn.dict with a key order, and recv{ordered = true}, keep the order", function()
  local d = dict({ z = 1, a = 2, m = 3, [5] = 4 }, { "z", "m", "missing", "z" })
  H.eq(mpconn.repr(d), "{'z': 1, 'm': 3, 5: 4, 'a': 2}", "listed keys first, the rest sorted")
  local back = roundtrip(d, { ordered = true })
  H.eq(mpconn.kind(back), "dict", "marked dict")
  same(mpconn.order(back), { "z", "m", 5, "a" }, "received order")
  H.eq(mpconn.repr(back), "{'z': 1, 'm': 3, 5: 4, 'a': 2}", "re-sent in that order")
  H.eq(back.z, 1, "fields readable")
  H.eq(mpconn.order(roundtrip(d)), nil, "no order without the option")
  H.raises("equal in Python", mpconn.encode, dict({ [1] = "a", [true] = "b" }, { 1, true }))
  H.raises("equal in Python", mpconn.encode, dict({ [1] = "a", [true] = "b" }, { 1 }))
end)

H.test("tuples used as dict keys or set items come back as marked tuples", function()
  local v = roundtrip({ [tuple { 1, tuple { 2, 3 } }] = "p" })
  local k = next(v)
  H.eq(mpconn.kind(k), "tuple", "the key")
  H.eq(mpconn.kind(k[2]), "tuple", "a tuple inside the key")
  H.eq(mpconn.repr(v), "{(1, (2, 3)): 'p'}", "re-sent as a tuple key")
  local s = roundtrip(mpconn.frozenset { tuple { 1 }, mpconn.frozenset { 2 } })
  H.eq(mpconn.repr(s), "frozenset({(1,), frozenset({2})})", "set of a tuple and a frozenset")
end)

H.test("long lists and strings cross pickle frames", function()
  local t = {}
  for i = 1, 200000 do t[i] = i % 3 == 0 and ("s" .. i) or i end
  local back = roundtrip(t)
  H.eq(#back, 200000, "length")
  H.eq(back[199998], "s199998", "an element")
  H.eq(back[200000], 200000, "the last")
  local s = string.rep("\u{1F600}\0", 300000)
  H.eq(roundtrip(s), s, "long str")
end)

H.test("protocols 2 to 5 all round-trip; others are refused", function()
  for p = 2, 5 do
    local v = { a = list { 1, 2.5, "x", mpconn.bytes("\0") }, b = mpconn.set { 1 }, c = tuple { true } }
    same(roundtrip(v, { tuple = "marked", bytes = "marked" }, { protocol = p }),
      { a = list { 1, 2.5, "x", mpconn.bytes("\0") }, b = mpconn.set { 1 }, c = tuple { true } }, "protocol " .. p)
    H.eq(mpconn.encode(1, { protocol = p }):byte(2), p, "protocol byte")
  end
  local a, b = pair()
  H.raises("2, 3, 4 or 5 expected", a.send, a, 1, { protocol = 1 })
  H.raises("unknown option 'proto'", a.send, a, 1, { proto = 2 })
  H.raises("2, 3, 4 or 5 expected", mpconn.encode, 1, { protocol = 6 })
  H.eq(mpconn.encode(7), "\x80\x04K\x07.", "pickle.dumps(7, 4)")
  H.eq(mpconn.encode("abcd"), "\x80\x04\x95\x08\x00\x00\x00\x00\x00\x00\x00\x8c\x04abcd\x94.",
    "pickle.dumps('abcd', 4)")
end)

H.test("what cannot be sent raises and sends nothing", function()
  local a, b = pair()
  local deep = {}
  local c = deep
  for _ = 1, 1000 do c[1] = {}; c = c[1] end
  local cases = {
    { print, "cannot send a value of type function" },
    { { 1, { f = print } }, "cannot send a value of type function %(at value%[2%]%[\"f\"%]%)" },
    { coroutine.create(print), "cannot send a value of type thread" },
    { io.stdout, "cannot send a value of type userdata" },
    { deep, "nesting deeper than 1000 levels" },
    { { [{}] = 1 }, "dict key of type dict is unhashable" },
    { { [list { 1 }] = 1 }, "dict key of type list is unhashable" },
    { mpconn.set { {} }, "set item of type dict is unhashable" },
    { { [1] = "a", [true] = "b", x = 1 }, "two dict keys are equal in Python" },
    { { [0] = "a", [false] = "b" }, "two dict keys are equal in Python" },
    { { [mpconn.bigint("5")] = 1, [5] = 2, x = 1 }, "two dict keys are equal in Python" },
    { setmetatable({}, { __mpconn = 99 }), "unknown __mpconn mark 99" },
    { setmetatable({ value = 5 }, getmetatable(mpconn.bytes(""))), "has no string in its field 'value'" },
  }
  for i, case in ipairs(cases) do
    H.raises(case[2], a.send, a, case[1])
    H.raises(case[2], mpconn.encode, case[1])
    H.eq(b:poll(0), false, "case " .. i .. ": nothing was sent")
  end
  -- 1000 levels (999 tables around a scalar) are fine; max_depth raises it.
  H.eq(a:send(deep[1]), true, "999 nested lists")
  H.eq(type(b:recv()), "table", "received")
  H.eq(a:send(deep, { max_depth = 1001 }), true, "with max_depth")
  H.fails("VALUE", "nesting deeper than 1000", b:recv())
  H.eq(a:send(deep, { max_depth = 1001 }), true, "again")
  H.eq(type(b:recv({ max_depth = 1001 })), "table", "received with max_depth")
  H.raises("value expected", a.send, a)
  a:close()
  H.raises("closed", a.send, a, 1)
  H.raises("mpconn connection expected", a.send, {}, 1)
end)

-- Pickles written by hand (as CPython writes them) and sent as bytes.
local CLASSIC = "cos\nsystem\n(S'touch /nonexistent/x'\ntR."
local REDUCE4 = "\x80\x04\x95\x2e\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94"
  .. "\x8c\x13touch /nonexistent/x\x94\x85\x94R\x94."

H.test("a refused pickle gives nil, message, VALUE naming the opcode and global, then the next value", function()
  local a, b = pair()
  for _, case in ipairs({
    { CLASSIC, "refused opcode GLOBAL of global 'os%.system' at offset 0" },
    { REDUCE4, "refused opcode STACK_GLOBAL of global 'posix%.system' at offset %d+" },
    { "\x80\x02c__builtin__\neval\n.", "refused opcode GLOBAL of global '__builtin__%.eval'" },
    { "\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94(K", "truncated" },
    { "\x80\x02h\x05.", "memo" },
    { "\x80\x02a.", "underflow" },
    { "not a pickle", "" },
  }) do
    H.eq(a:send_bytes(case[1]), true, "send_bytes")
    H.fails("VALUE", case[2], b:recv())
    H.eq(a:send({ next = true }), true, "send")
    same(b:recv(), { next = true }, "the next value")
  end
  H.fails("VALUE", "refused opcode GLOBAL of global 'os%.system'", mpconn.decode(CLASSIC))
end)

H.test("received values Lua cannot hold give nil, message, VALUE and the connection stays usable", function()
  local a, b = pair()
  -- {float('nan'): 1} and {'a': 1, b'a': 2} at protocol 4
  local nan_key = "\x80\x04\x95\x0f\x00\x00\x00\x00\x00\x00\x00}\x94G\x7f\xf8\x00\x00\x00\x00\x00\x00K\x01s."
  local str_bytes = "\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94K\x01C\x01a\x94K\x02u."
  H.eq(a:send_bytes(nan_key), true, "send nan key")
  H.fails("VALUE", "nan", b:recv())
  H.eq(a:send_bytes(str_bytes), true, "send str and bytes keys")
  H.fails("VALUE", "both become the same Lua string", b:recv())
  H.eq(a:send_bytes(str_bytes), true, "again")
  local v = assert(b:recv({ bytes = "marked" }))
  H.eq(v.a, 1, "str key")
  H.eq(mpconn.repr(v), "{'a': 1, b'a': 2}", "bytes key kept apart when marked")
  H.eq(a:send("ok"), true, "send")
  H.eq(b:recv(), "ok", "the next value")
end)

H.test("sub-objects the pickle shares arrive as one shared table", function()
  -- a = []; b = [a, a]; c = [b, b]; ... 40 levels: 2^40 leaves if copied.
  local parts = { "\x80\x02]q\x00" }
  for i = 1, 40 do parts[#parts + 1] = string.format("(h%sh%slq%s", string.char(i - 1), string.char(i - 1), string.char(i)) end
  parts[#parts + 1] = "."
  local a, b = pair()
  H.eq(a:send_bytes(table.concat(parts)), true, "send")
  local t0 = mpconn.monotonic()
  local v = assert(b:recv())
  H.ok(mpconn.monotonic() - t0 < 1, "received quickly")
  H.ok(rawequal(v[1], v[2]), "shared")
  H.ok(rawequal(v[1][1][1], v[2][2][2]), "shared deeper")
  -- A long str the pickle shares is one Lua string (not copied per use).
  local long = string.rep("x", 100)
  local p = "\x80\x02]q\x00(X\x64\x00\x00\x00" .. long .. "q\x01h\x01h\x01e."
  H.eq(a:send_bytes(p), true, "send")
  local w = assert(b:recv())
  H.eq(#w, 3, "three items")
  H.eq(w[3], long, "the string")
end)

H.test("end of file is nil, \"closed\", \"EOF\" as for recv_bytes", function()
  local a, b = pair()
  a:close()
  H.fails("EOF", "^closed$", b:recv())
  b:close()
  H.raises("closed", b.recv, b)
  H.raises("unknown option 'byte'", function() local x, y = pair(); return y:recv({ byte = "marked" }) end)
end)

H.test("a one-way pipe's writer sends values", function()
  local r, w = assert(mpconn.pipe(false))
  H.eq(w:send({ 1, 2 }), true, "send")
  same(r:recv(), list { 1, 2 }, "received")
  r:close()
  local ok, msg, code = w:send(string.rep("x", 1 << 20))
  H.eq(ok, nil, "send to a closed reader")
  H.eq(code, "OS", "code")
end)

H.test("encode/decode agree with conn:send/recv and repr prints Python's text", function()
  local v = C.player()
  local a, b = pair()
  a:send(v)
  H.eq(b:recv_bytes(), mpconn.encode(v), "the bytes conn:send sends")
  -- bytes(multiprocessing.reduction.ForkingPickler.dumps(player)), i.e. what
  -- CPython 3.11's conn.send(player) sends for the same dict.
  H.eq(mpconn.encode(v), "\x80\x04\x95\x77\x00\x00\x00\x00\x00\x00\x00\x7d\x94\x28\x8c\x04\x6e\x61\x6d\x65\x94\x8c\x05\x41\x6c\x69\x63\x65\x94\x8c\x05\x6c\x65\x76\x65\x6c\x94\x4b\x2a\x8c\x05\x73\x63\x6f\x72\x65\x94\x47\x40\x94\xe6\x00\x00\x00\x00\x00\x8c\x09\x69\x6e\x76\x65\x6e\x74\x6f\x72\x79\x94\x5d\x94\x28\x8c\x05\x73\x77\x6f\x72\x64\x94\x8c\x06\x73\x68\x69\x65\x6c\x64\x94\x8c\x06\x70\x6f\x74\x69\x6f\x6e\x94\x65\x8c\x08\x70\x6f\x73\x69\x74\x69\x6f\x6e\x94\x4b\x0a\x4a\xfd\xff\xff\xff\x86\x94\x8c\x06\x6f\x6e\x6c\x69\x6e\x65\x94\x88\x75\x2e", "byte-identical to CPython")
  H.eq(mpconn.repr(v), "{'name': 'Alice', 'level': 42, 'score': 1337.5, 'inventory': ['sword', 'shield', "
    .. "'potion'], 'position': (10, -3), 'online': True}", "repr")
  local back = mpconn.decode(mpconn.encode(v), { ordered = true, tuple = "marked" })
  H.eq(mpconn.repr(back), mpconn.repr(v), "decode(encode(v))")
  same(mpconn.order(back), mpconn.order(v), "its key order")
  H.eq(mpconn.decode(mpconn.encode(nil)), nil, "None")
  H.fails("VALUE", "longer than 5", mpconn.repr({ 1, 2, 3 }, 5))
  H.raises("string expected", mpconn.decode, 5)
end)

H.test("marking helpers mark in place and refuse foreign metatables", function()
  local t = { 1 }
  H.ok(rawequal(list(t), t), "mpconn.list returns its argument")
  H.eq(mpconn.kind(t), "list", "kind")
  H.eq(mpconn.kind(tuple(t)), "tuple", "re-marked as a tuple")
  H.eq(mpconn.kind(list()), "list", "mpconn.list() makes a new table")
  H.raises("already has a metatable", list, setmetatable({}, {}))
  H.eq(mpconn.kind({}), nil, "a plain table has no kind")
  H.eq(mpconn.kind(5), nil, "a number has no kind")
  local s = mpconn.set { "a", "a", "b" }
  H.eq(s.a, true, "set membership")
  H.eq(mpconn.kind(s), "set", "set kind")
end)

if echo then
  echo:close()
  local out, ok = H.finish(echo_proc)
  H.test("the echo peer saw every message", function()
    H.match(out, "^ECHOED %d+", "echo peer output")
    H.ok(ok, "echo peer exit status")
  end)
end

H.done()
