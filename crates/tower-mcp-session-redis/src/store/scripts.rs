//! The Lua scripts of [`RedisSessionStore`](super::RedisSessionStore). Each runs on one
//! node: the record scripts touch only keys of one session (one hash tag), the index
//! scripts only the two index keys (the `%index` tag).
//!
//! Times are Redis server time in milliseconds (`TIME`), so instances with skewed clocks
//! agree on deadlines. Deadlines are written with `%d` so the text stored in the record
//! and the text in the index member are the same string.

use std::sync::LazyLock;

use redis::Script;

/// KEYS: meta. ARGV: idle ms, lifetime ms, then record field/value pairs.
/// Returns -1 when a live record has the id, else `{deadline, expires_at}`.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local life = tonumber(ARGV[2])
local ttl = math.min(tonumber(ARGV[1]), life)
local dl = string.format('%d', now + life)
redis.call('HSET', KEYS[1], 'dl', dl, 'la', string.format('%d', now), 'av', 0, unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ttl)
return {dl, now + ttl}
";

/// KEYS: meta. ARGV: idle ms, '1' to return the record.
///
/// Reads `dl` first, so a missing session costs one hash lookup. The TTL never passes
/// the lifetime deadline; a record found at its deadline is removed like an expiry (no
/// tombstone), so `take_expired` reports it. The refresh is activity: `la` is set to
/// now (`HSET` keeps the TTL just set). Returns nil when there is no session, else
/// `{earlier, dl, fields...}`: `earlier` is the new expiry (ms) when this refresh moved
/// it *before* the old one (a shorter idle timeout), so the caller lowers the session's
/// index score, else 0; the record fields follow only when asked for.
const REFRESH: &str = r"
local dl = redis.call('HGET', KEYS[1], 'dl')
if not dl then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = math.min(tonumber(ARGV[1]), tonumber(dl) - now)
if ttl <= 0 then
  redis.call('DEL', KEYS[1])
  return false
end
local old = redis.call('PTTL', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('HSET', KEYS[1], 'la', string.format('%d', now))
local earlier = 0
if old > 0 and ttl < old then earlier = now + ttl end
local out = {earlier, dl}
if ARGV[2] == '1' then
  local fields = redis.call('HMGET', KEYS[1], 'v', 'c', 'i', 'k', 'p')
  for i = 1, #fields do out[#out + 1] = fields[i] end
end
return out
";

/// KEYS: meta. Returns nil when there is no live session, else the milliseconds since
/// its last activity `la`, by the same server clock that wrote it. The record's TTL
/// cannot tell this once the lifetime caps it, so it is not used. A record without `la`
/// (written before the field existed) counts from its creation time `c`.
const IDLE_FOR: &str = r"
local f = redis.call('HMGET', KEYS[1], 'dl', 'la', 'c')
if not f[1] then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(f[1]) <= now then return false end
local la = tonumber(f[2]) or tonumber(f[3]) or now
return math.max(now - la, 0)
";

/// KEYS: meta, tombstone. ARGV: tombstone ms, invalidation channel, session id.
/// Returns the deadline of the removed record, or nil when there was none. The id is
/// published on the channel in the same step, so no instance's local cache can see
/// the record gone without hearing of it (`cache.rs`).
///
/// The tombstone holds the deadline, which names this incarnation of the session: a
/// sweep that finds the record gone and the tombstone there drops the index member
/// without reporting it, so a deletion is never reported as an expiry even while the
/// deleter's own removal of the member is still in flight.
const DELETE: &str = r"
local dl = redis.call('HGET', KEYS[1], 'dl')
if not dl then return false end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], dl, 'PX', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return dl
";

/// KEYS: meta. ARGV: expected version, attributes as a JSON object ('' for none).
/// Returns -1 (no live session), 0 (version conflict) or 1 (written). `HSET` on an
/// existing key keeps its TTL, so the session's expiry is unchanged.
const REPLACE_ATTRIBUTES: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if (redis.call('HGET', KEYS[1], 'av') or '0') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], 'a')
else
  redis.call('HSET', KEYS[1], 'a', ARGV[2])
end
redis.call('HINCRBY', KEYS[1], 'av', 1)
return 1
";

/// KEYS: meta, tombstone. ARGV: the deadline named by the index member.
/// Returns `{state, now, expires_at}`: state 1 live (this incarnation's record is there
/// and expires at `expires_at`), 2 deleted (tombstone of this incarnation), 0 expired.
const CHECK: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('HGET', KEYS[1], 'dl') == ARGV[1] then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then ttl = math.max(tonumber(ARGV[1]) - now, 1000) end
  return {1, now, now + ttl}
end
if redis.call('GET', KEYS[2]) == ARGV[1] then return {2, now, now} end
return {0, now, now}
";

/// KEYS: sessions, slots. ARGV: cap, slot token, hold ms. Returns 1 (slot taken) or 0.
///
/// Lapsed slots are dropped first; their number is bounded by the cap. Every member
/// of the sessions index counts, including sessions that expired but were not yet
/// taken: the engine runs `take_expired` when this says full, then tries again.
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return 0 end
local hold = tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], now + hold, ARGV[2])
if redis.call('PTTL', KEYS[2]) < hold + 1000 then redis.call('PEXPIRE', KEYS[2], hold + 1000) end
return 1
";

/// KEYS: sessions, slots, ids. ARGV: member, first check time, deadline, slot token
/// ('' for none), ids member. Both indexes live until a minute past the latest
/// deadline of their members, so they never outlive them by more.
const INDEX: &str = r"
if ARGV[4] ~= '' then redis.call('ZREM', KEYS[2], ARGV[4]) end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local want = math.max(tonumber(ARGV[3]) - now + 60000, 1000)
if redis.call('PTTL', KEYS[1]) < want then redis.call('PEXPIRE', KEYS[1], want) end
if redis.call('PTTL', KEYS[3]) < want then redis.call('PEXPIRE', KEYS[3], want) end
return 1
";

/// KEYS: sessions, ids. ARGV: index member, ids member. Drops one incarnation of a
/// session from both indexes.
const UNINDEX: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
";

/// KEYS: sessions, slots. ARGV: max. The members whose check time has passed, oldest
/// first; lapsed slots are dropped on the way.
const DUE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
";

/// KEYS: sessions, ids. ARGV: triples of member, verdict ('l' live, 'd' deleted, 'g'
/// gone), next check time. Returns the gone members this call removed: `ZREM` answers 1
/// to one caller only, so across instances each expiry is reported once. `ZADD XX`
/// never re-adds a member another caller removed meanwhile. A member `<dl>:<id>` ends
/// its incarnation's ids member `<id> <dl>` too.
const SETTLE: &str = r"
local gone = {}
for i = 1, #ARGV, 3 do
  local m = ARGV[i]
  local verdict = ARGV[i + 1]
  if verdict == 'l' then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[i + 2], m)
  else
    local colon = string.find(m, ':', 1, true)
    if colon then
      redis.call('ZREM', KEYS[2], string.sub(m, colon + 1) .. ' ' .. string.sub(m, 1, colon - 1))
    end
    if redis.call('ZREM', KEYS[1], m) == 1 and verdict == 'g' then
      gone[#gone + 1] = m
    end
  end
end
return gone
";

pub(super) static CREATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CREATE));
pub(super) static REFRESH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REFRESH));
pub(super) static IDLE_FOR_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(IDLE_FOR));
pub(super) static DELETE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(DELETE));
pub(super) static REPLACE_ATTRIBUTES_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REPLACE_ATTRIBUTES));
pub(super) static CHECK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CHECK));
pub(super) static RESERVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RESERVE));
pub(super) static INDEX_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(INDEX));
pub(super) static UNINDEX_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(UNINDEX));
pub(super) static DUE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(DUE));
pub(super) static SETTLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SETTLE));
