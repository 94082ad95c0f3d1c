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

-- What the hostile cases cost is checked by size, not by the clock: a decoder,
-- printer or encoder that expanded the 2^30 paths would make output of that
-- size or never end (ctest's timeout), so the checks below are on sizes and
-- on sharing.  No absolute time bound: sanitizer builds run 5-20x slower.
H.test("a small pickle sharing one list at every level: decode, repr, encode and send cost its size", function()
  local p = hostile_pickle(DEPTH)
  H.ok(#p < 300, "the pickle has " .. #p .. " bytes")
  local v = mpconn.decode(p)
  H.eq(rawequal(v[1], v[2]), true, "one table for the shared list")
  local text, err, code = mpconn.repr(v, 1000)
  H.eq(text, nil, "too long to print")
  H.eq(code, "VALUE", "the code")
  H.match(err, "longer than 1000", "the message")
  local e = mpconn.encode(v)
  H.ok(#e < 2 * #p + 64, "the pickle sent back has " .. #e .. " bytes")
  local back = mpconn.decode(e)
  H.eq(rawequal(back[1], back[2]), true, "still shared")
  local a, b = mpconn.pipe()
  H.eq(a:send(v), true, "sent")
  local r = b:recv()
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

-- A tree of n nodes, each with a link to its parent (every node but the
-- root is reached twice: from its parent's children and from its children).
local function parent_tree(n)
  local root = { children = {} }
  local level = { root }
  local count = 1
  while count < n do
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
  return root, count
end

-- Least CPU time of three runs of fn(arg), the collector stopped (its work
-- grows with everything alive, not with what fn does).
local function cpu(fn, arg)
  local best = math.huge
  for _ = 1, 3 do
    collectgarbage("collect")
    collectgarbage("stop")
    local t0 = os.clock()
    fn(arg)
    best = math.min(best, os.clock() - t0)
    collectgarbage("restart")
  end
  return best
end

H.test("a tree whose nodes point to their parents is sent in linear time", function()
  -- Growth, not speed, whatever the build (sanitizers slow both sizes
  -- alike): 9x the nodes must cost well under 81x (quadratic); caches make
  -- linear code measure 9-30x here.
  local small, ns = parent_tree(9000)
  local big, nb = parent_tree(81000)
  local e = mpconn.encode(big)
  local v = mpconn.decode(e)
  H.eq(rawequal(v.children[2].parent, v), true, "the parent link")
  H.eq(rawequal(v.children[1].children[3].parent.parent, v), true, "two levels up")
  local es = mpconn.encode(small)
  local ratio_enc = cpu(mpconn.encode, big) / math.max(cpu(mpconn.encode, small), 1e-6)
  local ratio_dec = cpu(mpconn.decode, e) / math.max(cpu(mpconn.decode, es), 1e-6)
  local grow = nb / ns
  H.ok(ratio_enc < 5 * grow, string.format(
    "encode: %d nodes cost %.1fx %d nodes (linear %.1fx, quadratic %.0fx)",
    nb, ratio_enc, ns, grow, grow * grow))
  H.ok(ratio_dec < 5 * grow, string.format(
    "decode: %d nodes cost %.1fx %d nodes (linear %.1fx, quadratic %.0fx)",
    nb, ratio_dec, ns, grow, grow * grow))
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
  local v = mpconn.decode(p)
  H.eq(rawequal(v[1][3], v), true, "the cycle back to the root")
  local text, err = mpconn.repr(v, 1000)
  H.eq(text, nil, "too long to print")
  H.match(err, "longer than 1000", "the message")
  local e = mpconn.encode(v)
  H.ok(#e < 2 * #p + 64, "the pickle sent back has " .. #e .. " bytes")
  local a, b = mpconn.pipe()
  H.eq(a:send(v), true, "sent")
  local r = b:recv()
  H.eq(rawequal(r[1][1][1], r[1][1][2]), true, "still shared")
  a:close(); b:close()
end)

H.done()
