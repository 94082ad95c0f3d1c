-- The value cases shared by the Lua value tests: what a Lua value becomes in
-- Python (TO_PY) and what a Python value becomes in Lua (FROM_PY), exactly
-- as lua/README.md "Values" documents, plus a strict deep comparison.
-- Python expressions are written so that Python 2.7 reads them too (u'...').
local mpconn = require "mpconn"
local null, list, tuple, dict = mpconn.null, mpconn.list, mpconn.tuple, mpconn.dict

local C = {}

local function range(a, b)
  local t = {}
  for i = a, b do t[#t + 1] = i end
  return t
end

local PLAYER_ORDER = { "name", "level", "score", "inventory", "position", "online" }
function C.player()
  return dict({
    name = "Alice", level = 42, score = 1337.5,
    inventory = { "sword", "shield", "potion" },
    position = tuple { 10, -3 }, online = true,
  }, PLAYER_ORDER)
end

-- Lua value -> the Python value it arrives as (a Python expression).
-- Each entry: { name, function returning the Lua value, expression }.
C.TO_PY = {
  { "nil at the top level is None", function() return nil end, "None" },
  { "mpconn.null is None", function() return null end, "None" },
  { "true", function() return true end, "True" },
  { "false", function() return false end, "False" },
  { "an integer", function() return 42 end, "42" },
  { "math.maxinteger", function() return math.maxinteger end, "9223372036854775807" },
  { "math.mininteger", function() return math.mininteger end, "-9223372036854775807 - 1" },
  { "an integral float stays a float", function() return 1.0 end, "1.0" },
  { "-0.0", function() return -0.0 end, "-0.0" },
  { "inf", function() return 1 / 0 end, "float('inf')" },
  { "-inf", function() return -1 / 0 end, "float('-inf')" },
  { "nan", function() return 0 / 0 end, "float('nan')" },
  { "a large float", function() return 1.5e300 end, "1.5e300" },
  { "an empty string is str", function() return "" end, "u''" },
  { "ASCII is str", function() return "hello" end, "u'hello'" },
  { "embedded zeros", function() return "a\0b\0" end, "u'a\\x00b\\x00'" },
  { "non-BMP UTF-8 is str", function() return "\u{1D11E}\u{1F600}\u{E9}\u{20AC}" end,
    "u'\\U0001d11e\\U0001f600\\xe9\\u20ac'" },
  { "invalid UTF-8 is bytes", function() return "\xff\xfe\0a" end, "b'\\xff\\xfe\\x00a'" },
  { "an encoded surrogate is not valid UTF-8: bytes", function() return "\xed\xa0\x80" end,
    "b'\\xed\\xa0\\x80'" },
  { "mpconn.bytes forces bytes", function() return mpconn.bytes("abc") end, "b'abc'" },
  { "mpconn.bytearray", function() return mpconn.bytearray("a\0") end, "bytearray(b'a\\x00')" },
  { "mpconn.bigint", function() return mpconn.bigint("123456789012345678901234567890") end,
    "123456789012345678901234567890" },
  { "a negative mpconn.bigint", function() return mpconn.bigint("-18446744073709551617") end,
    "-18446744073709551617" },
  { "keys 1..n are a list", function() return { 1, "two", 3.0 } end, "[1, u'two', 3.0]" },
  { "mpconn.list{} is an empty list", function() return list {} end, "[]" },
  { "{} is an empty dict", function() return {} end, "{}" },
  { "mpconn.dict{} is an empty dict", function() return dict {} end, "{}" },
  { "a table with a hole is a dict", function() return { [1] = "a", [3] = "c" } end, "{1: u'a', 3: u'c'}" },
  { "1..n plus a string key is a dict", function() return { 10, 20, x = 1 } end, "{1: 10, 2: 20, u'x': 1}" },
  { "mpconn.dict of a sequence is a dict", function() return dict { "a", "b" } end, "{1: u'a', 2: u'b'}" },
  { "mpconn.tuple", function() return tuple { 1, "a" } end, "(1, u'a')" },
  { "an empty tuple", function() return tuple {} end, "()" },
  { "mpconn.set", function() return mpconn.set { 3, 1, 2 } end, "set([1, 2, 3])" },
  { "mpconn.frozenset", function() return mpconn.frozenset { "a" } end, "frozenset([u'a'])" },
  { "null inside a list and a dict", function() return { a = null, b = { null, 1 } } end,
    "{u'a': None, u'b': [None, 1]}" },
  { "a nil hole in a marked list is None", function() return list { 1, nil, 3 } end, "[1, None, 3]" },
  { "dict keys sorted: numbers, strings, booleans", function()
      return { [2] = "x", [1.5] = "y", b = 1, a = 2, [true] = 3, [-7] = 0 }
    end, "{-7: 0, 1.5: u'y', 2: u'x', u'a': 2, u'b': 1, True: 3}" },
  { "a tuple key", function() return { [tuple { 1, 2 }] = "p" } end, "{(1, 2): u'p'}" },
  { "a frozenset key", function() return { [mpconn.frozenset { 1 }] = "f" } end, "{frozenset([1]): u'f'}" },
  { "an mpconn.null key is None", function() return { [null] = 1 } end, "{None: 1}" },
  { "mpconn.dict with a key order", function() return dict({ z = 1, a = 2, m = 3 }, { "z", "m" }) end,
    "{u'z': 1, u'm': 3, u'a': 2}" },
  { "nested containers", function()
      return { list {}, { {}, tuple { list { 1 } } }, { k = { 1, { 2 } } } }
    end, "[[], [{}, ([1],)], {u'k': [1, [2]]}]" },
  { "the player data, in its order", C.player,
    "{u'name': u'Alice', u'level': 42, u'score': 1337.5, u'inventory': [u'sword', u'shield', u'potion'], "
    .. "u'position': (10, -3), u'online': True}" },
  { "a long list (crosses pickle frames)", function() return range(1, 100000) end, "list(range(1, 100001))" },
  { "a long str", function() return string.rep("\u{1F600}x", 50000) end, "u'\\U0001f600x' * 50000" },
}

local function bytes_or(s, marked, kind)
  if marked then return (kind == "bytearray" and mpconn.bytearray or mpconn.bytes)(s) end
  return s
end

-- Python value -> the Lua value it arrives as.  Each entry: { expression,
-- function(opts) returning the expected Lua value, recv options }.
C.FROM_PY = {
  { "None", function() return nil end },
  { "True", function() return true end },
  { "False", function() return false end },
  { "0", function() return 0 end },
  { "-5", function() return -5 end },
  { "2**63 - 1", function() return math.maxinteger end },
  { "-2**63", function() return math.mininteger end },
  { "2**64", function() return mpconn.bigint("18446744073709551616") end },
  { "-(10**30)", function() return mpconn.bigint("-1000000000000000000000000000000") end },
  { "1.0", function() return 1.0 end },
  { "-0.0", function() return -0.0 end },
  { "float('inf')", function() return 1 / 0 end },
  { "float('-inf')", function() return -1 / 0 end },
  { "float('nan')", function() return 0 / 0 end },
  { "u''", function() return "" end },
  { "u'a\\x00b'", function() return "a\0b" end },
  { "u'\\U0001d11e\\U0001f600\\xe9'", function() return "\u{1D11E}\u{1F600}\u{E9}" end },
  { "b'\\xff\\x00abc'", function() return "\xff\0abc" end },
  { "b'\\xff\\x00abc'", function() return mpconn.bytes("\xff\0abc") end, { bytes = "marked" } },
  { "bytearray(b'ab')", function() return "ab" end },
  { "bytearray(b'ab')", function() return mpconn.bytearray("ab") end, { bytes = "marked" } },
  { "[1, [2, [3, []]]]", function() return list { 1, list { 2, list { 3, list {} } } } end },
  { "(1, u'a')", function() return list { 1, "a" } end },
  { "(1, u'a')", function() return tuple { 1, "a" } end, { tuple = "marked" } },
  { "()", function() return list {} end },
  { "{}", function() return {} end },
  { "{u'a': None, u'b': [None, 1]}", function() return { a = null, b = list { null, 1 } } end },
  { "{(1, 2): u'p'}", function() return { [tuple { 1, 2 }] = "p" } end },
  { "{None: 1, u'None': 2}", function() return { [null] = 1, None = 2 } end },
  { "{1: u'x', u'1': u'y', 2.5: True}", function() return { [1] = "x", ["1"] = "y", [2.5] = true } end },
  { "set([1, 2, 3])", function() return mpconn.set { 1, 2, 3 } end },
  { "frozenset([u'a', (1, 2)])", function() return mpconn.frozenset { "a", tuple { 1, 2 } } end },
  { "set()", function() return mpconn.set {} end },
  { "list(range(100000))", function() return list(range(0, 99999)) end },
  { "u'\\U0001f600x' * 50000", function() return string.rep("\u{1F600}x", 50000) end },
}

-- Strict deep equality: types, integer/float subtype, sign of zero, nan,
-- marks (mpconn.kind), and table keys compared deeply.
local deq
local function find_key(t, k, used)
  if type(k) ~= "table" then return rawget(t, k) ~= nil and k or nil end
  for k2 in pairs(t) do
    if not used[k2] and type(k2) == "table" and deq(k, k2) then return k2 end
  end
  return nil
end

function deq(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) then return false end
    if a ~= a then return b ~= b end
    if a == 0 and b == 0 and math.type(a) == "float" then return 1 / a == 1 / b end
    return a == b
  end
  if type(a) ~= "table" then return rawequal(a, b) end
  if mpconn.kind(a) ~= mpconn.kind(b) then return false end
  local oa, ob = mpconn.order(a), mpconn.order(b)
  if (oa == nil) ~= (ob == nil) then return false end
  local n, used = 0, {}
  for k, v in pairs(a) do
    n = n + 1
    local k2 = find_key(b, k, used)
    if k2 == nil or not deq(v, b[k2]) then return false end
    used[k2] = true
  end
  for _ in pairs(b) do n = n - 1 end
  return n == 0
end
C.deq = deq

-- A short rendering of a Lua value for failure messages.
function C.show(v, depth)
  depth = depth or 0
  if type(v) == "string" then
    if #v > 40 then return string.format("<%d-byte string>", #v) end
    return string.format("%q", v)
  end
  if type(v) ~= "table" then return tostring(v) .. "(" .. (math.type(v) or type(v)) .. ")" end
  if depth > 3 then return "{...}" end
  local parts, n = {}, 0
  for k, x in pairs(v) do
    n = n + 1
    if n > 8 then parts[#parts + 1] = "..."; break end
    parts[#parts + 1] = "[" .. C.show(k, depth + 1) .. "]=" .. C.show(x, depth + 1)
  end
  return (mpconn.kind(v) or "table") .. "{" .. table.concat(parts, ", ") .. "}"
end

return C
