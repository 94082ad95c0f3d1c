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

-- Cycles (issue 14, item 5): what CPython writes for containers that contain
-- themselves (bytes from CPython 3.11 and 2.7, the same at every version).
local function unhex(h) return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end

H.test("cyclic values from CPython arrive as cyclic tables at every protocol", function()
  -- a = []; a.append(a) at protocols 0, 1, 2, 4
  for _, hx in ipairs { "286c70300a67300a612e", "5d71006800612e", "80025d71006800612e",
                        "80049506000000000000005d946800612e" } do
    local v = mpconn.decode(unhex(hx))
    H.eq(rawequal(v[1], v), true, "the list is its own item (" .. hx .. ")")
    H.eq(mpconn.repr(v), "[[...]]", "repr as Python")
  end
  -- d = {}; d['self'] = d
  local d = mpconn.decode(unhex("8004950d000000000000007d948c0473656c66946800732e"))
  H.eq(rawequal(d.self, d), true, "the dict is its own value")
  -- l = []; t = (l,); l.append(t), protocols 0 and 2
  for _, hx in ipairs { "28286c70300a2867300a7470310a61303067310a2e", "80025d71006800857101613068012e" } do
    local t = mpconn.decode(unhex(hx), { tuple = "marked" })
    H.eq(rawequal(t[1][1], t), true, "the tuple's list holds the tuple")
    H.eq(mpconn.kind(t), "tuple", "a tuple")
    H.eq(mpconn.repr(t), "([(...)],)", "repr as Python")
  end
end)

H.test("cyclic tables are sent as CPython pickles them, byte for byte", function()
  local a = {}
  a[1] = a
  H.eq(H.hex(mpconn.encode(a, { protocol = 2 })), "80025d71006800612e", "a = [a] at protocol 2")
  H.eq(H.hex(mpconn.encode(a, { protocol = 4 })), "80049506000000000000005d946800612e", "at protocol 4")
  H.eq(mpconn.repr(a), "[[...]]", "repr")
  local d = {}
  d.self = d
  H.eq(H.hex(mpconn.encode(d, { protocol = 4 })), "8004950d000000000000007d948c0473656c66946800732e",
       "d = {'self': d}")
  H.eq(mpconn.repr(d), "{'self': {...}}", "repr")
  local l = mpconn.list {}
  local t = mpconn.tuple { l }
  l[1] = t
  H.eq(H.hex(mpconn.encode(t, { protocol = 2 })), "80025d71006800857101613068012e", "t = ([t],)")
  H.eq(H.hex(mpconn.encode(l, { protocol = 4 })), "80049508000000000000005d9468008594612e", "l = [(l,)]")
  local self_tuple = mpconn.tuple {}
  self_tuple[1] = self_tuple
  H.raises("a tuple cannot contain itself", mpconn.encode, self_tuple)
  local s = mpconn.set {}
  s[s] = true
  H.raises("unhashable", mpconn.encode, s)
  -- Round trip through a connection.
  local x, y = mpconn.pipe()
  H.eq(x:send(d), true, "sent")
  local back = y:recv()
  H.eq(rawequal(back.self, back), true, "received as a cycle")
  x:close(); y:close()
end)

H.test("a tree whose nodes point to their parents is sent in linear time", function()
  local root = { children = {} }
  local level = { root }
  local count = 1
  while count < 30000 do
    local nxt = {}
    for _, node in ipairs(level) do
      for _ = 1, 3 do
        local c = { parent = node, children = {} }
        node.children[#node.children + 1] = c
        nxt[#nxt + 1] = c
        count = count + 1
      end
    end
    level = nxt
  end
  local e = timed("encode of " .. count .. " nodes with parent links", mpconn.encode, root)
  local v = timed("decode", mpconn.decode, e)
  H.eq(rawequal(v.children[2].parent, v), true, "the parent link")
  H.eq(rawequal(v.children[1].children[3].parent.parent, v), true, "two levels up")
end)

-- The C test's hostile case: level k = [level k-1, level k-1, root] for 30
-- levels, then root.append(level 30): 2^30 paths, every level on a cycle.
local function hostile_cyclic_pickle(depth)
  local p = { "\x80\x04]\x94]\x940" }
  for k = 1, depth do
    p[#p + 1] = "(h" .. string.char(k) .. "2h\x00l\x940"
  end
  p[#p + 1] = "h" .. string.char(depth + 1) .. "a."
  return table.concat(p)
end

H.test("a small hostile cyclic pickle: decode, repr, encode and send cost its size", function()
  local p = hostile_cyclic_pickle(DEPTH)
  H.ok(#p < 300, "the pickle has " .. #p .. " bytes")
  local v = timed("decode", mpconn.decode, p)
  H.eq(rawequal(v[1][3], v), true, "the cycle back to the root")
  local text, err = timed("repr with a limit", mpconn.repr, v, 1000)
  H.eq(text, nil, "too long to print")
  H.match(err, "longer than 1000", "the message")
  local e = timed("encode", mpconn.encode, v)
  H.ok(#e < 2 * #p + 64, "the pickle sent back has " .. #e .. " bytes")
  local a, b = mpconn.pipe()
  H.eq(timed("send", a.send, a, v), true, "sent")
  local r = timed("recv", b.recv, b)
  H.eq(rawequal(r[1][1][1], r[1][1][2]), true, "still shared")
  a:close(); b:close()
end)

H.done()
