-- Options and arguments that used to be taken silently (issue 14, items 7
-- and 9): each now raises, or behaves as the README says.
local H = require "harness"
local mpconn = require "mpconn"

H.test("set_timeout(0) is the non-blocking mode, never 'no limit'", function()
  local a, b = mpconn.pipe()
  a:set_timeout(0)
  local v, msg, code = a:recv_bytes()
  H.eq(v, nil, "nothing to receive")
  H.eq(msg, "wantread", "would wait")
  H.eq(code, "AGAIN", "code")
  a:set_timeout(0.0)
  -- Other values still work.
  a:set_timeout(0.05)
  local t0 = mpconn.monotonic()
  v, _, code = a:recv_bytes()
  H.eq(v, nil, "nothing to receive")
  H.eq(code, "TIMEOUT", "a positive timeout times out")
  H.ok(mpconn.monotonic() - t0 < 5, "quickly")
  a:set_timeout(nil)
  a:set_timeout(-1)
  a:set_timeout(math.huge)
  a:close(); b:close()
end)

H.test("encode raises for an unknown option and an out-of-range max_depth", function()
  H.raises("unknown option 'protocl' to 'encode'", mpconn.encode, { 1 }, { protocl = 2 })
  H.raises("option max_depth to 'encode'", mpconn.encode, { 1 }, { max_depth = (1 << 32) + 3 })
  H.raises("option max_depth to 'encode'", mpconn.encode, { 1 }, { max_depth = -1 })
  H.raises("option max_depth to 'encode'", mpconn.encode, { 1 }, { max_depth = 1.5 })
  -- A valid max_depth still limits.
  H.raises("nesting deeper than 2", mpconn.encode, { { { 1 } } }, { max_depth = 2 })
  H.eq(mpconn.encode({ 1 }, { protocol = 2 }):sub(1, 2), "\x80\x02", "protocol 2 taken")
end)

H.test("equal tables keyed math.maxinteger and 2.0^63 encode the same whatever the insertion order", function()
  local t1, t2 = {}, {}
  t1[math.maxinteger] = "i"; t1[2.0 ^ 63] = "f"
  t2[2.0 ^ 63] = "f"; t2[math.maxinteger] = "i"
  local e1, e2 = mpconn.encode(t1), mpconn.encode(t2)
  H.eq(e1, e2, "same pickle")
  -- Python's order: 2**63 - 1 < 2.0**63.
  H.eq(mpconn.repr(t1), "{9223372036854775807: 'i', 9.223372036854776e+18: 'f'}", "repr")
  local t3, t4 = {}, {}
  t3[math.mininteger] = 1; t3[-2.0 ^ 63 - 2048.0] = 2; t3[-2.5] = 3; t3[-2] = 4
  t4[-2] = 4; t4[-2.5] = 3; t4[-2.0 ^ 63 - 2048.0] = 2; t4[math.mininteger] = 1
  H.eq(mpconn.encode(t3), mpconn.encode(t4), "negative keys")
  H.eq(mpconn.repr(t3), "{-9.223372036854778e+18: 2, -9223372036854775808: 1, -2.5: 3, -2: 4}", "negative order")
end)

H.test("an address with a zero byte is refused, not cut short", function()
  H.raises("zero byte", mpconn.listen, "@abc\0def")
  H.raises("zero byte", mpconn.connect, "@abc\0def")
end)

H.test("an unknown digest is refused at listen, not at every client", function()
  H.raises("option digest to 'listen'", mpconn.listen, "127.0.0.1:0", { authkey = "k", digest = "bogus" })
  H.raises("option digest to 'connect'", mpconn.connect, "127.0.0.1:1", { authkey = "k", digest = "bogus" })
  H.raises("option digest to 'listen'", mpconn.listen, "127.0.0.1:0",
    { authkey = "k", digest = "md5", dialect = "strict" })
  local l = assert(mpconn.listen("127.0.0.1:0", { authkey = "k", digest = "sha3_256" }))
  l:close()
end)

H.done()
