-- Values that share sub-objects (issue 14, item 4): what a message costs to
-- decode, print, encode and send is bounded by its size, not by the size of
-- its expansion.  A 260-byte pickle sharing one list at every level of 30
-- (2^30 leaves when expanded) is the hostile case.
local H = require "harness"
local mpconn = require "mpconn"

local DEPTH = 30

-- Protocol 2: list k = [list k-1, list k-1], each list memoized (BINPUT k).
local function hostile_pickle(depth)
  local p = { "\x80\x02]q\x00" }
  for k = 1, depth do
    p[#p + 1] = "]q" .. string.char(k) .. "(h" .. string.char(k - 1) .. "h" .. string.char(k - 1) .. "e"
  end
  p[#p + 1] = "."
  return table.concat(p)
end

local function timed(what, fn, ...)
  local t0 = os.clock()
  local r = table.pack(fn(...))
  local dt = os.clock() - t0
  H.ok(dt < 1.0, string.format("%s took %.3f s of CPU", what, dt))
  return table.unpack(r, 1, r.n)
end

H.test("a small pickle sharing one list at every level: decode, repr, encode and send cost its size", function()
  local p = hostile_pickle(DEPTH)
  H.ok(#p < 300, "the pickle has " .. #p .. " bytes")
  local v = timed("decode", mpconn.decode, p)
  H.eq(rawequal(v[1], v[2]), true, "one table for the shared list")
  local text, err, code = timed("repr with a limit", mpconn.repr, v, 1000)
  H.eq(text, nil, "too long to print")
  H.eq(code, "VALUE", "the code")
  H.match(err, "longer than 1000", "the message")
  local e = timed("encode", mpconn.encode, v)
  H.ok(#e < 2 * #p + 64, "the pickle sent back has " .. #e .. " bytes")
  local back = timed("decode again", mpconn.decode, e)
  H.eq(rawequal(back[1], back[2]), true, "still shared")
  local a, b = mpconn.pipe()
  H.eq(timed("send", a.send, a, v), true, "sent")
  local r = timed("recv", b.recv, b)
  local x = r
  for _ = 1, DEPTH do
    H.eq(rawequal(x[1], x[2]), true, "shared at every level")
    x = x[1]
  end
  H.eq(mpconn.kind(x), "list", "the innermost list")
  a:close(); b:close()
end)

H.test("a table referenced twice is sent once and arrives as one shared object", function()
  local inner = mpconn.list { 1, 2 }
  local outer = { inner, inner, { k = inner } }
  local v = mpconn.decode(mpconn.encode(outer))
  H.eq(rawequal(v[1], v[2]), true, "one list")
  H.eq(rawequal(v[1], v[3].k), true, "the same list inside the dict")
  -- What Python prints for l = [1, 2]; [l, l, {'k': l}]:
  H.eq(mpconn.repr(outer), "[[1, 2], [1, 2], {'k': [1, 2]}]", "repr")
  -- Depth counts every place a shared table is used.
  local deep = mpconn.list { 1 }
  for _ = 1, 10 do deep = mpconn.list { deep, deep } end
  H.raises("nesting deeper than 5", mpconn.encode, deep, { max_depth = 5 })
  H.ok(mpconn.encode(deep, { max_depth = 12 }), "12 levels fit")
  H.raises("nesting deeper than 11", mpconn.encode, { x = deep }, { max_depth = 11 })
end)

H.done()
