-- Writes one batch of heart-rate readings and advances each user's alert state, atomically.
--
-- Loaded once with SCRIPT LOAD and called with EVALSHA by store/store.py (ReadingStore).
-- The caller sorts the readings by (user, ts_ms); the whole script runs as one Redis command.
-- On Redis Cluster every call holds users of one hash slot only (the caller groups by slot).
--
-- KEYS, for user u = 1..U (four keys per user, all hash-tagged {<user_id>}, see store/keys.py):
--   KEYS[4u-3]  hr:{<user_id>}:readings  hot part: sorted set, score ts_ms, member "%013d:%d:%d"
--   KEYS[4u-2]  hr:{<user_id>}:alert     hash with the AlertState fields
--   KEYS[4u-1]  hr:{<user_id>}:chunks    compacted chunks: score chunk start, member blob
--   KEYS[4u]    hr:{<user_id>}:events    alert events: a Redis stream, one entry per raise/clear
-- ARGV:
--   ARGV[1]        now_ms          server clock, Unix ms (retention cut-off is now - retention)
--   ARGV[2]        retention_ms    readings with ts < now_ms - retention_ms are removed
--   ARGV[3]        sustain_ms      an out-of-band class must last this long to raise, ms
--   ARGV[4]        clear_readings  consecutive NORMAL readings that clear an active alert
--   ARGV[5]        U               number of users in this call
--   ARGV[6]        chunk_ms        span of a compacted chunk (store/keys.py CHUNK_MS)
--   ARGV[7]        events_keep_ms  alert events older than this are trimmed (XADD MINID)
--   ARGV[8]        channel         every alert event is also PUBLISHed here (store/alert_events.py)
--   ARGV[8+u]      n_u             number of readings of user u (u = 1..U)
--   ARGV[8+U+u]    checked_u       compacted chunks of user u the caller has already searched for
--                                  these readings: "start=sha1,start=sha1" (sha1 of the blob it
--                                  read), or "" (none)
--   ARGV[9+2U]     all readings in one string, members joined by ',': user 1's first, each
--                  user's ascending by ts_ms. A member is ts_ms as exactly 13 digits, ':',
--                  bpm, ':', classification (one digit: 0 NORMAL, 1 LOW, 2 HIGH), e.g.
--                  "1700000000000:72:0"; it is stored as-is, so a reading keeps its class.
--                  (One argument rather than one per reading: packing and parsing thousands of
--                  arguments cost more than the whole Lua loop.)
-- Returns { dup, per_user }:
--   dup       string with one char per reading in input order: '1' duplicate, '0' stored,
--             '2' not looked at: the reading's user has a reading in a compacted chunk that is
--             not in checked_u (or whose blob changed since), so nothing of that user was
--             written; the caller searches those chunks (Lua cannot decompress them) and calls
--             again with checked_u, leaving out the readings it found there
--   per_user  flat integers, 4 per user in KEYS order: active, since_ms, and the numbers of
--             alerts raised and cleared by this call (as core.alerts.step_alerts' events)
--
-- Duplicates: a reading is a duplicate when a stored reading of that user has the same ts_ms, in
-- the hot part or in a compacted chunk. Hot part: one ZRANGEBYSCORE over the batch's [first, last]
-- ts with LIMIT n+1 (O(log n + n)), or, when that window already holds more readings than the
-- batch, ZRANGEBYSCORE ts ts LIMIT 0 1 per reading (O(log n) each). Compacted chunks: one ZCOUNT
-- per distinct chunk of the user's readings (usually one: the current, open chunk, not compacted).
-- A sorted set rather than a Stream because Stream IDs must grow (XADD rejects an ID below the top
-- entry, so late readings could not be stored) and plain Redis 6.2/7.0 has no time-series module.
--
-- Retention: hot readings older than the cut-off and whole chunks that end at or before it are
-- removed here; readings of the chunk that straddles the cut-off are filtered out by the reads
-- (with a cut-off that lags by at most a minute). The alert hash also keeps chunk_lo/chunk_hi,
-- the oldest and newest compacted chunk (compact.lua sets them), so that a user's write costs no
-- extra command for its chunks unless it reaches back into them or to the cut-off.
--
-- Alert events: every raise and clear is appended to the user's events stream (XADD, id from the
-- server clock, trimmed to events_keep_ms) with fields t (alert type), a (1 raised, 0 cleared),
-- at (the reading's ts_ms) and bpm, and PUBLISHed on the channel as lines
-- "<stream id> <user_id> <type> <active> <at_ms> <bpm>" (one message per call, lines joined by
-- newlines, each user's in order) in the same atomic step, so watchers on any replica see a user's events in
-- order (store/alert_hub.py). A reading older than events_keep_ms (against now_ms) advances the
-- state but makes no event. Raising LOW over an active HIGH
-- (or the reverse) gives two events: the clear of the old type, then the raise.
--
-- Alert machine: mirrors core/alerts.py step by step; tests/integration/test_store.py checks
-- that the two agree. Readings with ts_ms <= last_ts_ms are late: stored, no state change.

local now_ms = tonumber(ARGV[1])
local retention_ms = tonumber(ARGV[2])
local sustain_ms = tonumber(ARGV[3])
local clear_readings = tonumber(ARGV[4])
local n_users = tonumber(ARGV[5])
local chunk_ms = tonumber(ARGV[6])
local events_keep_ms = tonumber(ARGV[7])
local channel = ARGV[8]
local ARGV_HEAD = 8

local FIELDS = { 'active', 'since_ms', 'pending', 'pending_since_ms', 'normal_count',
  'last_ts_ms' }
local TS_DIGITS = 13
-- New members are added with one ZADD per this many (score, member) pairs: unpack() and a
-- C call take at most ~8000 values (LUAI_MAXCSTACK).
local ZADD_PAIRS = 1000

-- Lua numbers are doubles (exact for integers below 2^53); '%.0f' prints them without the
-- exponent that tostring() would use for large values.
local function int_text(x)
  return string.format('%.0f', x)
end

-- Advances state s (a table of the FIELDS) by one non-late reading; returns raised, cleared.
local function step(s, ts, c)
  if c == 0 then
    s.pending, s.pending_since_ms = 0, 0
    if s.active ~= 0 then
      s.normal_count = s.normal_count + 1
      if s.normal_count >= clear_readings then
        s.active, s.since_ms, s.normal_count = 0, 0, 0
        s.last_ts_ms = ts
        return 0, 1
      end
    end
    s.last_ts_ms = ts
    return 0, 0
  end
  s.normal_count = 0
  local raised, cleared = 0, 0
  if s.active ~= c then
    if s.pending ~= c then
      s.pending, s.pending_since_ms = c, ts
    end
    if ts - s.pending_since_ms >= sustain_ms then
      -- Raising LOW over an active HIGH (or the reverse) also ends the old alert.
      if s.active ~= 0 then
        cleared = 1
      end
      s.active, s.since_ms, s.pending, s.pending_since_ms = c, ts, 0, 0
      raised = 1
    end
  end
  s.last_ts_ms = ts
  return raised, cleared
end

-- Also read with the state (never written back by save_state): the oldest and newest compacted
-- chunk's start (set by compact.lua; nil: no chunk) and the cut-off the reads use (cut_ms).
local CHUNK_FIELDS = { 'chunk_lo', 'chunk_hi', 'cut_ms' }
-- cut_ms is rewritten only when it lags the current cut-off by more than this, ms.
local CUT_STEP_MS = 60000

local ALL_FIELDS = {}
for _, name in ipairs(FIELDS) do
  ALL_FIELDS[#ALL_FIELDS + 1] = name
end
for _, name in ipairs(CHUNK_FIELDS) do
  ALL_FIELDS[#ALL_FIELDS + 1] = name
end

local function load_state(key)
  local raw = redis.call('HMGET', key, unpack(ALL_FIELDS))
  local s = {}
  for i, name in ipairs(FIELDS) do
    s[name] = tonumber(raw[i]) or 0
  end
  local k = #FIELDS
  s.chunk_lo, s.chunk_hi, s.cut_ms = tonumber(raw[k + 1]), tonumber(raw[k + 2]), tonumber(raw[k + 3])
  return s
end

local function save_state(key, s)
  local args = {}
  for _, name in ipairs(FIELDS) do
    args[#args + 1] = name
    args[#args + 1] = int_text(s[name])
  end
  redis.call('HSET', key, unpack(args))
end

-- ZADD of the pairs collected in add (score, member, score, member, ...); returns a new table.
local function flush(zkey, add)
  if #add > 0 then
    redis.call('ZADD', zkey, unpack(add))
  end
  return {}
end

-- Set of stored ts_text in [first, last] of the user's (sorted) members, with one
-- ZRANGEBYSCORE ... LIMIT 0 n+1 (O(log n + k)); nil when more than n are stored there (then each
-- reading is checked on its own). Usually the range is empty: new readings are the newest.
local function stored_between(zkey, members)
  local n = #members
  local first = string.sub(members[1], 1, TS_DIGITS)
  local last = string.sub(members[n], 1, TS_DIGITS)
  local found = redis.call('ZRANGEBYSCORE', zkey, first, last, 'LIMIT', 0, n + 1)
  if #found > n then
    return nil
  end
  local known = {}
  for _, m in ipairs(found) do
    known[string.sub(m, 1, TS_DIGITS)] = true
  end
  return known
end

-- True when a reading of that user at ts_text is already stored.
local function is_stored(zkey, known, ts_text)
  if known then
    return known[ts_text] == true
  end
  return redis.call('ZRANGEBYSCORE', zkey, ts_text, ts_text, 'LIMIT', 0, 1)[1] ~= nil
end

-- The checked_u string as a table: chunk start (decimal text) -> sha1 of the blob searched.
local function parse_checked(text)
  local checked = {}
  for start, sha in string.gmatch(text, '(%d+)=(%x+)') do
    checked[start] = sha
  end
  return checked
end

-- True when some reading of members (ascending) lies in a compacted chunk the caller has not
-- searched (or whose blob changed since it did). Chunks newer than chunk_hi cannot exist, so a
-- user streaming current readings costs no command here.
local function needs_search(ckey, members, checked, chunk_hi)
  local last = nil
  for _, member in ipairs(members) do
    local ts = tonumber(string.sub(member, 1, TS_DIGITS))
    local first = ts - ts % chunk_ms
    if first > chunk_hi then
      return false
    end
    local start = int_text(first)
    if first ~= last then
      last = first
      if redis.call('ZCOUNT', ckey, start, start) > 0 then
        local sha = checked[start]
        if not sha then
          return true
        end
        local blob = redis.call('ZRANGEBYSCORE', ckey, start, start)[1]
        if redis.sha1hex(blob) ~= sha then
          return true
        end
      end
    end
  end
  return false
end

-- Appends one alert event to ekey; returns its line for the channel (see the header).
local function append_event(ekey, user, alert_type, active, ts, bpm)
  local at = int_text(ts)
  local id = redis.call('XADD', ekey, 'MINID', '~', int_text(now_ms - events_keep_ms), '*',
    't', alert_type, 'a', active, 'at', at, 'bpm', bpm)
  return table.concat({ id, user, alert_type, active, at, bpm }, ' ')
end

local dup = {}
local per_user = {}
local published = {} -- every alert event of this call, in order, for one PUBLISH
local next_member = string.gmatch(ARGV[ARGV_HEAD + 1 + 2 * n_users], '[^,]+')
-- '(' makes the bound exclusive: a reading exactly at the cut-off is kept.
local cutoff = '(' .. int_text(now_ms - retention_ms)
-- Chunks with start + chunk_ms <= now - retention hold only expired readings.
local chunk_cutoff = int_text(now_ms - retention_ms - chunk_ms)

for u = 1, n_users do
  local zkey, akey, ckey, ekey = KEYS[4 * u - 3], KEYS[4 * u - 2], KEYS[4 * u - 1], KEYS[4 * u]
  local user = string.sub(ekey, 5, -9) -- 'hr:{' .. user .. '}:events'
  local s = load_state(akey)
  local raised, cleared, changed = 0, 0, false
  local members = {}
  for i = 1, tonumber(ARGV[ARGV_HEAD + u]) do
    members[i] = next_member()
  end
  local has_chunks = s.chunk_hi ~= nil
  if has_chunks and #members > 0 and
      needs_search(ckey, members, parse_checked(ARGV[ARGV_HEAD + n_users + u]), s.chunk_hi) then
    for _ = 1, #members do
      dup[#dup + 1] = '2'
    end
  elseif #members > 0 then
    local known = stored_between(zkey, members)
    local lines = {} -- this user's alert events of this call, for the channel
    -- This call's new timestamps (not yet in the set while their ZADD is pending).
    local added, add = {}, {}
    for _, member in ipairs(members) do
      local ts_text = string.sub(member, 1, TS_DIGITS)
      if added[ts_text] or is_stored(zkey, known, ts_text) then
        dup[#dup + 1] = '1'
      else
        dup[#dup + 1] = '0'
        added[ts_text] = true
        add[#add + 1] = ts_text
        add[#add + 1] = member
        if #add >= 2 * ZADD_PAIRS then
          add = flush(zkey, add)
        end
        local ts = tonumber(ts_text)
        if ts > s.last_ts_ms then
          local before = s.active
          local up, down = step(s, ts, tonumber(string.sub(member, -1)))
          raised, cleared, changed = raised + up, cleared + down, true
          -- Readings older than the events' keep time change the state but make no event
          -- (a device's old buffer is history, not news).
          if up + down > 0 and ts >= now_ms - events_keep_ms then
            local bpm = string.match(member, ':(%d+):')
            if down > 0 then
              lines[#lines + 1] = append_event(ekey, user, before, 0, ts, bpm)
            end
            if up > 0 then
              lines[#lines + 1] = append_event(ekey, user, s.active, 1, ts, bpm)
            end
          end
        end
      end
    end
    flush(zkey, add)
    if changed then
      save_state(akey, s)
    end
    if #lines > 0 then -- one expiry per user and call, one message per call (below)
      redis.call('PEXPIRE', ekey, math.max(retention_ms, events_keep_ms))
      for _, line in ipairs(lines) do
        published[#published + 1] = line
      end
    end
    redis.call('ZREMRANGEBYSCORE', zkey, '-inf', cutoff)
    -- A user who stops sending leaves nothing behind: every reading is past retention by then.
    redis.call('PEXPIRE', zkey, retention_ms)
    redis.call('PEXPIRE', akey, retention_ms)
    -- Compacted chunks reach the cut-off: drop the whole expired ones, and move the cut-off the
    -- reads apply to the chunk that straddles it (read.lua), at most once per CUT_STEP_MS.
    local cut = now_ms - retention_ms
    if has_chunks and s.chunk_lo and s.chunk_lo <= cut and
        (not s.cut_ms or s.cut_ms < cut - CUT_STEP_MS) then
      redis.call('ZREMRANGEBYSCORE', ckey, '-inf', chunk_cutoff)
      redis.call('HSET', akey, 'cut_ms', int_text(cut))
      local oldest = redis.call('ZRANGE', ckey, 0, 0, 'WITHSCORES')
      if oldest[2] then
        redis.call('HSET', akey, 'chunk_lo', oldest[2])
      else
        redis.call('HDEL', akey, 'chunk_lo', 'chunk_hi')
      end
    end
  end
  per_user[#per_user + 1] = s.active
  per_user[#per_user + 1] = s.since_ms
  per_user[#per_user + 1] = raised
  per_user[#per_user + 1] = cleared
end

if #published > 0 then
  redis.call('PUBLISH', channel, table.concat(published, '\n'))
end

return { table.concat(dup), per_user }
