//! The Lua scripts of [`RedisEventLog`](crate::RedisEventLog): each operation is one
//! script on one node, atomic.

use std::sync::LazyLock;

use redis::Script;

/// KEYS: index, meta, list, numbering. ARGV: stream id, ttl ms, max streams, session
/// base, numbering ttl ms, producer lease ms ('0' for none), lease note. Returns {1,
/// the ids of the streams dropped to make room...}, or {-3} when the session holds
/// `max streams` and none of them may go.
///
/// A stream made with a lease gets `lex` (when the lease runs out, milliseconds on the
/// server's clock) and `lnt` (the note) in its hash; an existing stream is left as it is.
///
/// A stream whose keys expired unfinished and that is opened again goes on from the
/// newest sequence number it had (kept in the numbering hash), so no event id is ever
/// issued twice and an old cursor reads as evicted.
///
/// At the bound, the session's longest-finished stream leaves, found in the session's
/// finished set (`…:evf`, scored by when each finished) without looking at the other
/// streams; only when no finished stream is left does the script look at every stream,
/// dropping those whose keys expired. An unfinished stream is never dropped to make
/// room (it may be the standalone stream, or an answer still being produced). The new stream
/// gets a score above every other. Keys of other streams are built from the session
/// base: they share the session's hash tag, so they are in this script's slot.
const OPEN: &str = r"
local dropped = {1}
if redis.call('EXISTS', KEYS[2]) == 0 then
  local max = tonumber(ARGV[3])
  local n = redis.call('ZCARD', KEYS[1])
  local evf = ARGV[4] .. ':evf'
  -- The session's finished streams by when they finished: the longest-finished one
  -- makes room without looking at every stream.
  while n >= max do
    local f = redis.call('ZRANGE', evf, 0, 0)
    if not f[1] then break end
    redis.call('ZREM', evf, f[1])
    if redis.call('ZREM', KEYS[1], f[1]) == 1 then
      dropped[#dropped + 1] = f[1]
      local b = redis.call('HGET', ARGV[4] .. ':ev:' .. f[1] .. ':m', 'bytes')
      redis.call('DEL', ARGV[4] .. ':ev:' .. f[1] .. ':m', ARGV[4] .. ':ev:' .. f[1])
      if b and redis.call('HEXISTS', KEYS[4], 'b') == 1 then redis.call('HINCRBY', KEYS[4], 'b', -tonumber(b)) end
      n = n - 1
    end
  end
  if n >= max then
    local finished = {}
    for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
      local h = redis.call('HMGET', ARGV[4] .. ':ev:' .. sid .. ':m', 'fin', 'fat')
      if not h[1] then
        redis.call('DEL', ARGV[4] .. ':ev:' .. sid)
        redis.call('ZREM', KEYS[1], sid)
        dropped[#dropped + 1] = sid
        n = n - 1
      elseif h[1] == '1' then
        finished[#finished + 1] = {tonumber(h[2] or '0'), sid}
      end
    end
    table.sort(finished, function(a, b) return a[1] < b[1] end)
    for _, f in ipairs(finished) do
      if n < max then break end
      redis.call('DEL', ARGV[4] .. ':ev:' .. f[2] .. ':m', ARGV[4] .. ':ev:' .. f[2])
      redis.call('ZREM', KEYS[1], f[2])
      redis.call('ZREM', evf, f[2])
      dropped[#dropped + 1] = f[2]
      n = n - 1
    end
    if n >= max then return {-3} end
  end
  local t = redis.call('TIME')
  local score = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if top[2] and tonumber(top[2]) >= score then score = tonumber(top[2]) + 1 end
  local last = redis.call('HGET', KEYS[4], ARGV[1]) or 0
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[2], 'last', last, 'bytes', 0, 'fin', 0)
  if tonumber(ARGV[6]) > 0 then
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('HSET', KEYS[2], 'lex', now + tonumber(ARGV[6]), 'lnt', ARGV[7])
  end
  redis.call('ZADD', KEYS[1], score, ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('PEXPIRE', KEYS[4], ARGV[5]) end
return dropped
";

/// KEYS: index, meta, list, numbering. ARGV: payload, max events, max bytes, ttl ms,
/// mode, max session bytes, session base, stream id, numbering ttl ms. Mode '0'
/// appends, '1' appends and finishes the stream, '2' appends and finishes only if the
/// stream is unfinished and its producer lease (`lex`) has run out, else changes
/// nothing and returns -4: the check and the write are one step, so of readers racing
/// to end an abandoned stream exactly one does. Finishing clears the lease. Returns the
/// new sequence number, -1 for an unknown stream, -2 for a finished one.
///
/// The numbering hash holds the newest sequence number of every unfinished stream (see
/// `OPEN`); a finished stream leaves it.
///
/// The session bound is the memory log's: when the session's streams hold more than
/// `max session bytes`, oldest events go from finished streams first (longest finished
/// first), then from this stream, then from the session's other unfinished streams,
/// largest first; an unfinished stream keeps its newest event. The session's bytes are
/// counted in the numbering hash (`b`): an upper bound (streams whose keys expired are
/// not taken off), made exact whenever it exceeds the bound and the streams are
/// counted one by one, so an append within the bound looks at no other stream.
const APPEND: &str = r"
local m = redis.call('HMGET', KEYS[2], 'last', 'bytes', 'fin')
if not m[1] then return -1 end
if ARGV[5] == '2' then
  local lex = redis.call('HGET', KEYS[2], 'lex')
  if m[3] == '1' or not lex then return -4 end
  local t = redis.call('TIME')
  if tonumber(lex) > tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then return -4 end
end
if m[3] == '1' then return -2 end
local seq = tonumber(m[1]) + 1
local bytes = tonumber(m[2]) + #ARGV[1]
local len = redis.call('RPUSH', KEYS[3], ARGV[1])
local max_n = tonumber(ARGV[2])
local max_b = tonumber(ARGV[3])
local grown = #ARGV[1]
while len > 1 and (len > max_n or bytes > max_b) do
  local p = #redis.call('LPOP', KEYS[3])
  bytes = bytes - p
  grown = grown - p
  len = len - 1
end
redis.call('HSET', KEYS[2], 'last', seq, 'bytes', bytes)
local evf = ARGV[7] .. ':evf'
if ARGV[5] ~= '0' then
  local t = redis.call('TIME')
  local fat = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
  redis.call('HSET', KEYS[2], 'fin', 1, 'fat', fat)
  redis.call('HDEL', KEYS[2], 'lex', 'lnt')
  redis.call('HDEL', KEYS[4], ARGV[8])
  redis.call('ZADD', evf, fat, ARGV[8])
  redis.call('PEXPIRE', evf, ARGV[4])
else
  redis.call('HSET', KEYS[4], ARGV[8], seq)
end
local limit = tonumber(ARGV[6])
-- `b` in the numbering hash: the session's retained bytes, never less than the truth
-- (streams that expired are not taken off), exact after every full count below. While
-- it is within the limit, nothing needs counting.
local counted = redis.call('HGET', KEYS[4], 'b')
if counted and tonumber(counted) + grown <= limit then
  redis.call('HINCRBY', KEYS[4], 'b', grown)
  redis.call('PEXPIRE', KEYS[4], ARGV[9])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  return seq
end
local total = 0
local finished, open = {}, {}
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = redis.call('HMGET', ARGV[7] .. ':ev:' .. sid .. ':m', 'bytes', 'fin', 'fat')
  if h[1] then
    local b = tonumber(h[1])
    total = total + b
    if sid == ARGV[8] then
    elseif h[2] == '1' then finished[#finished + 1] = {tonumber(h[3] or '0'), sid}
    else open[#open + 1] = {b, sid} end
  end
end
if total > limit then
  table.sort(finished, function(a, b) return a[1] < b[1] end)
  table.sort(open, function(a, b) return a[1] > b[1] end)
  local order = {}
  for _, f in ipairs(finished) do order[#order + 1] = {f[2], 0} end
  order[#order + 1] = {ARGV[8], 1}
  for _, o in ipairs(open) do order[#order + 1] = {o[2], 1} end
  for _, o in ipairs(order) do
    if total <= limit then break end
    local list = ARGV[7] .. ':ev:' .. o[1]
    local n = redis.call('LLEN', list)
    local freed = 0
    while n > o[2] and total > limit do
      local p = #redis.call('LPOP', list)
      freed = freed + p
      total = total - p
      n = n - 1
    end
    if freed > 0 then redis.call('HINCRBY', list .. ':m', 'bytes', -freed) end
  end
end
redis.call('HSET', KEYS[4], 'b', total)
redis.call('PEXPIRE', KEYS[4], ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return seq
";

/// KEYS: index, meta, list, numbering. ARGV: ttl ms, stream id, session base. Returns
/// -1 for an unknown stream. Finishing clears the producer lease. The first
/// finish records when (`fat`, microseconds), the order in which finished streams go;
/// written as a string, since Lua formats numbers with 14 significant digits.
const FINISH: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
if redis.call('HGET', KEYS[2], 'fin') ~= '1' then
  local t = redis.call('TIME')
  local fat = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
  redis.call('HSET', KEYS[2], 'fin', 1, 'fat', fat)
  redis.call('ZADD', ARGV[3] .. ':evf', fat, ARGV[2])
  redis.call('PEXPIRE', ARGV[3] .. ':evf', ARGV[1])
end
redis.call('HDEL', KEYS[2], 'lex', 'lnt')
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
return 1
";

/// KEYS: meta, list. ARGV: cursor, max.
/// Returns {-1} (unknown), {-2, last, first} (evicted) or {last, fin, payload...}.
const READ: &str = r"
local m = redis.call('HMGET', KEYS[1], 'last', 'fin')
if not m[1] then return {-1} end
local last = tonumber(m[1])
local after = tonumber(ARGV[1])
local first = last - redis.call('LLEN', KEYS[2]) + 1
if after > last or after + 1 < first then return {-2, last, first} end
local out = {last, (m[2] == '1') and 1 or 0}
local max = tonumber(ARGV[2])
if after < last and max > 0 then
  local start = after + 1 - first
  local items = redis.call('LRANGE', KEYS[2], start, start + max - 1)
  for i = 1, #items do out[#out + 1] = items[i] end
end
return out
";

/// KEYS: index. ARGV: session base.
const REMOVE_SESSION: &str = r"
local sids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, sid in ipairs(sids) do
  redis.call('DEL', ARGV[1] .. ':ev:' .. sid .. ':m', ARGV[1] .. ':ev:' .. sid)
end
redis.call('DEL', KEYS[1], ARGV[1] .. ':evl', ARGV[1] .. ':evf')
return #sids
";

pub(crate) static OPEN_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(OPEN));
pub(crate) static APPEND_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(APPEND));
pub(crate) static FINISH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(FINISH));
pub(crate) static READ_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(READ));

/// KEYS: meta. ARGV: op, value. Per-stream reader state kept beside the events, so
/// every instance sees it: `dlv` (highest sequence number delivered to a client) and
/// `rdr` (newest reader claim). Returns -1 for an unknown stream, else the field's value
/// after the operation. Never creates the hash: its TTL belongs to append and open.
const READER_STATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local op = ARGV[1]
if op == 'mark' then
  local cur = tonumber(redis.call('HGET', KEYS[1], 'dlv') or '0')
  local seq = tonumber(ARGV[2])
  if seq > cur then redis.call('HSET', KEYS[1], 'dlv', seq) return seq end
  return cur
elseif op == 'claim' then
  return redis.call('HINCRBY', KEYS[1], 'rdr', 1)
elseif op == 'dlv' or op == 'rdr' then
  return tonumber(redis.call('HGET', KEYS[1], op) or '0')
end
return -1
";

pub(crate) static READER_STATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(READER_STATE));
pub(crate) static REMOVE_SESSION_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REMOVE_SESSION));

/// KEYS: meta. ARGV: op, lease ms. The producer lease of one stream, on the server's
/// clock. `renew` sets `lex` to now + lease ms on an unfinished stream that has a lease
/// and returns {1}, else {0}. `state` returns {0} (no lease: none given, finished, or
/// unknown stream), {1} (live) or {2, note} (run out). Never creates the hash.
const LEASE: &str = r"
local m = redis.call('HMGET', KEYS[1], 'fin', 'lex', 'lnt')
if m[1] ~= '0' or not m[2] then return {0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] == 'renew' then
  redis.call('HSET', KEYS[1], 'lex', now + tonumber(ARGV[2]))
  return {1}
end
if tonumber(m[2]) > now then return {1} end
return {2, m[3] or ''}
";

pub(crate) static LEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LEASE));
