-- Reads a user's readings, hot and compacted, in one atomic step (so that a compaction running at
-- the same time can neither hide a reading nor show it twice). Lua cannot decompress the blobs:
-- it returns them and store/store.py decodes, merges and filters.
--
-- KEYS (one user, one hash slot):
--   KEYS[1]  hr:{<user_id>}:readings  hot part (sorted set, score ts_ms, member "%013d:%d:%d")
--   KEYS[2]  hr:{<user_id>}:chunks    compacted chunks (score chunk start, member blob)
--   KEYS[3]  hr:{<user_id>}:alert     hash; its field cut_ms is the retention cut-off of the
--                                      user's last write (store.lua): older readings are expired
-- ARGV:
--   ARGV[1]  mode       'range', 'recent' or 'chunk'
--   range:   ARGV[2] from_ms, ARGV[3] to_ms, ARGV[4] chunk_ms
--            hot members with from <= ts <= to, and every chunk that can hold such a reading
--   recent:  ARGV[2] n
--            the n newest hot members (newest first) and the newest chunks, newest first, until
--            they hold n readings or are older than the n-th newest hot reading (the blob
--            header, store/codec.py HEADER_FORMAT, gives a chunk's count and last ts)
--   chunk:   ARGV[2] start, ARGV[3] chunk_ms (for store/compaction.py)
--            the hot members with start <= ts < start + chunk_ms and the chunk's blob, if any
-- Returns { hot, chunks, cut_ms }: hot is the hot members joined by ',' (one string: parsing a
-- reply of thousands of strings cost more than the rest of a read), in ascending ts order except
-- for 'recent' (newest first); chunks is flat { start, blob, start, blob, ... }; cut_ms is false
-- when the user was never written.

local TS_DIGITS = 13
local mode = ARGV[1]
local cut_ms = redis.call('HGET', KEYS[3], 'cut_ms')

if mode == 'chunk' then
  local start = ARGV[2]
  local stop = '(' .. string.format('%.0f', tonumber(start) + tonumber(ARGV[3]))
  local hot = redis.call('ZRANGEBYSCORE', KEYS[1], start, stop)
  local blob = redis.call('ZRANGEBYSCORE', KEYS[2], start, start)
  local out = {}
  if blob[1] then
    out = { start, blob[1] }
  end
  return { table.concat(hot, ','), out, cut_ms }
end

if mode == 'range' then
  local from, to = ARGV[2], ARGV[3]
  local first_chunk = '(' .. string.format('%.0f', tonumber(from) - tonumber(ARGV[4]))
  local hot = redis.call('ZRANGEBYSCORE', KEYS[1], from, to)
  local chunks = redis.call('ZRANGEBYSCORE', KEYS[2], first_chunk, to, 'WITHSCORES')
  -- WITHSCORES answers member, score pairs; callers want start, blob.
  local out = {}
  for i = 1, #chunks, 2 do
    out[#out + 1] = chunks[i + 1]
    out[#out + 1] = chunks[i]
  end
  return { table.concat(hot, ','), out, cut_ms }
end

local n = tonumber(ARGV[2])
local hot = redis.call('ZREVRANGE', KEYS[1], 0, n - 1)
local floor_ts = nil
if #hot == n then
  floor_ts = tonumber(string.sub(hot[n], 1, TS_DIGITS))
end
local out, total, i = {}, 0, 0
while total < n do
  local chunk = redis.call('ZREVRANGE', KEYS[2], i, i, 'WITHSCORES')
  if #chunk == 0 then
    break
  end
  -- A blob whose header cannot be read counts as empty here; decoding it names it as corrupt.
  local ok, _, _, count, _, last = pcall(struct.unpack, '<BBI4i8i8', chunk[1])
  if ok and floor_ts and last < floor_ts then
    break
  end
  out[#out + 1] = chunk[2]
  out[#out + 1] = chunk[1]
  if ok then
    total = total + count
  end
  i = i + 1
end
return { table.concat(hot, ','), out, cut_ms }
