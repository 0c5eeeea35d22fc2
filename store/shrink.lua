-- Rebuilds a user's hot sorted set that shrank a lot, so that it stops holding the memory of its
-- largest size.
--
-- A backfill (a device uploading a week at once) grows the hot part to hundreds of thousands of
-- readings; compaction then removes them, but the set keeps its hash table (~8 B per reading it
-- once held: Redis shrinks it only when no AOF rewrite or snapshot child is running). Rebuilding
-- it (DEL and ZADD of what is left, in one script: atomic) gives a right-sized table, or the
-- compact encoding when few readings are left. store/compaction.py calls it after a compaction
-- pass that moved far more readings than it left.
--
-- KEYS[1]  hr:{<user_id>}:readings  hot part (sorted set, score ts_ms)
-- ARGV[1]  max_left                 do nothing when more readings than this are left
-- Returns the number of readings rebuilt (0: nothing done).

local left = redis.call('ZCARD', KEYS[1])
if left == 0 or left > tonumber(ARGV[1]) then
  return 0
end
local rest = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
-- At most 1000 pairs per ZADD: unpack() takes at most ~8000 values (LUAI_MAXCSTACK).
for i = 1, #rest, 2000 do
  local args = {}
  for j = i, math.min(i + 1999, #rest), 2 do
    args[#args + 1] = rest[j + 1]
    args[#args + 1] = rest[j]
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return left
