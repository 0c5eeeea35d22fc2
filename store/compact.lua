-- Moves one chunk's readings from a user's hot part into its compressed blob, atomically.
--
-- Called with EVALSHA by store/compaction.py after it read the hot readings of the chunk and the
-- chunk's current blob, merged and encoded them (Lua cannot compress). The move happens only if
-- nothing it read has changed since: otherwise it returns 0 and the compactor tries again later.
-- Being one script, it either happens whole or not at all (a kill -9 of Redis or of the compactor
-- at any point loses and duplicates nothing; AOF replays a script's effects as one MULTI/EXEC).
--
-- KEYS (one user, one hash slot):
--   KEYS[1]  hr:{<user_id>}:readings  hot part (sorted set, score ts_ms)
--   KEYS[2]  hr:{<user_id>}:chunks    compacted chunks (score chunk start, member blob)
--   KEYS[3]  hr:{<user_id>}:pin       while it exists, a write is searching the user's chunks
--                                      for duplicates: leave them alone (return 0)
--   KEYS[4]  hr:{<user_id>}:alert     its chunk_lo / chunk_hi (oldest / newest chunk start)
--                                      are kept up to date for store.lua
-- ARGV:
--   ARGV[1]  start        chunk start, ms; the chunk holds start <= ts_ms < start + chunk_ms
--   ARGV[2]  chunk_ms     chunk span, ms
--   ARGV[3]  hot_sha      sha1 of the chunk's hot members, ascending, joined by ','
--   ARGV[4]  old_sha      sha1 of the chunk's blob as read, or '' when there was none
--   ARGV[5]  blob         the new blob: the old blob's readings and the hot ones
--   ARGV[6]  retention_ms TTL of the chunks key (as the write script sets it)
-- Returns 1 when the chunk was written and its hot readings removed, 0 on a conflict.

if redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local start = ARGV[1]
local stop = '(' .. string.format('%.0f', tonumber(start) + tonumber(ARGV[2]))
local members = redis.call('ZRANGEBYSCORE', KEYS[1], start, stop)
if redis.sha1hex(table.concat(members, ',')) ~= ARGV[3] then
  return 0
end
local old = redis.call('ZRANGEBYSCORE', KEYS[2], start, start)
local old_sha = ''
if old[1] then
  old_sha = redis.sha1hex(old[1])
end
if old_sha ~= ARGV[4] then
  return 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], start, start)
redis.call('ZADD', KEYS[2], start, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], start, stop)
redis.call('PEXPIRE', KEYS[2], ARGV[6])
local bounds = redis.call('HMGET', KEYS[4], 'chunk_lo', 'chunk_hi')
local n = tonumber(start)
local lo, hi = tonumber(bounds[1]), tonumber(bounds[2])
if not lo or n < lo then
  redis.call('HSET', KEYS[4], 'chunk_lo', start)
end
if not hi or n > hi then
  redis.call('HSET', KEYS[4], 'chunk_hi', start)
end
if redis.call('PTTL', KEYS[4]) < 0 then
  redis.call('PEXPIRE', KEYS[4], ARGV[6])
end
return 1
