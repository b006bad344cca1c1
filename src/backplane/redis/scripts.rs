//! The Lua scripts the Redis backplane runs (`mod.rs` has the key layout). Each is one atomic
//! step in Redis: that is what makes a serial, a share of a channel or a node's removal the
//! same for every node, however many append at once. Each touches the keys of one part of the
//! log only (one slot in a Redis Cluster); the keys it builds from the part's prefix (`ARGV`)
//! share the part's hash tag. They live apart from the threads that send them because they are
//! a second language with its own review.

/// Gives the channel its next serial (continuing from what the appending node knows when the
/// hash holds nothing for it, or less than the node holds of the same stream), appends the
/// intent and trims the log, atomically. A reset (`ARGV[2]` `r`) restarts the channel's serials
/// in the stream `ARGV[3]`. A mutation (`m`) takes a serial like a publish, but only if the
/// channel's stream is still its message's (`ARGV[3]`; else -1) and the message has the
/// versions it was checked against (`ARGV[8]`, kept under the key `ARGV[7]` for an hour after
/// its last mutation; else -2): so two mutations of one message checked against the same
/// state cannot both be taken.
/// KEYS: serials, log. ARGV: channel field, mode (`1` next serial, `0` none, `r` reset, `m`
/// mutation), stream id, the appending node's newest serial, log length, entry; for a mutation
/// the message's version key and versions.
pub(super) const APPEND_SCRIPT: &str = r#"
local sid = ''
local n = 0
if ARGV[2] == 'r' then
  redis.call('HSET', KEYS[1], ARGV[1], '0 ' .. ARGV[3])
elseif ARGV[2] == '1' or ARGV[2] == 'm' then
  local cur = redis.call('HGET', KEYS[1], ARGV[1])
  local at = cur and string.find(cur, ' ', 1, true)
  if ARGV[2] == 'm' then
    if cur and string.sub(cur, at + 1) ~= ARGV[3] then return -1 end
    local v = redis.call('GET', ARGV[7])
    if v and v ~= ARGV[8] then return -2 end
    redis.call('SET', ARGV[7], tonumber(ARGV[8]) + 1, 'PX', 3600000)
  end
  if cur then
    n = tonumber(string.sub(cur, 1, at - 1)) + 1
    sid = string.sub(cur, at + 1)
    -- A Redis that came back behind (a replica promoted before it had the newest writes)
    -- must not hand out serials the nodes already hold.
    if sid == ARGV[3] and tonumber(ARGV[4]) >= n then n = tonumber(ARGV[4]) + 1 end
  else
    n = tonumber(ARGV[4]) + 1
    sid = ARGV[3]
  end
  redis.call('HSET', KEYS[1], ARGV[1], n .. ' ' .. sid)
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'n', n, 's', sid, 'op', ARGV[6])
return n
"#;

/// Keeps a node's share of a channel as the change says and appends the change, atomically.
/// KEYS: members hash, shares set, counts hash, log, sharers set. ARGV: channel field, mode
/// (`j`oin, `u`pdate, `l`eave, `c`ount, `s`ync, `d`ue), log length, entry, node, then the
/// mode's arguments.
pub(super) const SHARE_SCRIPT: &str = r#"
local m = ARGV[2]
if m == 'j' then
  redis.call('HSET', KEYS[1], ARGV[6], ARGV[7])
elseif m == 'u' then
  if redis.call('HEXISTS', KEYS[1], ARGV[6]) == 1 then redis.call('HSET', KEYS[1], ARGV[6], ARGV[7]) end
elseif m == 'l' then
  redis.call('HDEL', KEYS[1], ARGV[6])
elseif m == 's' then
  redis.call('DEL', KEYS[1])
  for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
if m == 'c' or m == 's' then
  if ARGV[6] == '0' then redis.call('HDEL', KEYS[3], ARGV[1]) else redis.call('HSET', KEYS[3], ARGV[1], ARGV[6]) end
end
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('SADD', KEYS[5], ARGV[5]) else redis.call('SREM', KEYS[5], ARGV[5]) end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'n', 0, 's', '', 'op', ARGV[4])
return 0
"#;

/// A heartbeat: this node lives for another node timeout; then the sweep: every node whose
/// heartbeat ran out is taken for dead, moved to the `gone` set (the writer then runs
/// `GONE_SCRIPT` in every part and takes it out of the set; a node that fails midway leaves it
/// there for the next heartbeat of any node). Returns that set. When Redis heard no heartbeat
/// from anyone for longer than `ARGV[3]` ms (it was down, stalled or cut off from every node),
/// that time counts against no node: every deadline moves by it, so an outage longer than the
/// node timeout removes no node that stayed alive. A node that beats is no longer gone.
/// KEYS: nodes, time of the last heartbeat, gone. ARGV: node, timeout ms, gap ms.
pub(super) const HEARTBEAT_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('GET', KEYS[2]) or now)
if now - last > tonumber(ARGV[3]) then
  local nodes = redis.call('ZRANGE', KEYS[1], 0, -1)
  for _, n in ipairs(nodes) do redis.call('ZINCRBY', KEYS[1], now - last, n) end
end
redis.call('SET', KEYS[2], now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)) do
  redis.call('ZREM', KEYS[1], n)
  redis.call('SADD', KEYS[3], n)
end
return redis.call('SMEMBERS', KEYS[3])
"#;

/// Removes a node taken for dead from one part: its share of the part's channels, and appends
/// that it is gone. Running it twice appends a second entry that finds nothing left to remove.
/// KEYS: log, sharers. ARGV: node, the node that noticed, log length, the part's prefix.
pub(super) const GONE_SCRIPT: &str = r#"
local shares = ARGV[4] .. 'shares:' .. ARGV[1]
for _, ch in ipairs(redis.call('SMEMBERS', shares)) do
  redis.call('DEL', ARGV[4] .. 'members:' .. ARGV[1] .. ':' .. ch)
end
redis.call('DEL', shares, ARGV[4] .. 'counts:' .. ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
local entry = cjson.encode({k = 'gone', node = ARGV[1], by = ARGV[2]})
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'n', 0, 's', '', 'op', entry)
return 0
"#;

/// Appends an entry and keeps it under a field of a hash until it expires, for nodes that
/// start later (revocations). KEYS: hash, log. ARGV: field, log length, entry.
pub(super) const KEEP_SCRIPT: &str = r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'n', 0, 's', '', 'op', ARGV[3])
return 0
"#;

/// The part's log position, the kept entries still in force (expired ones are dropped) and
/// every node's share of the part's channels, read at one instant:
/// `{last id, {entry, ...}, {node, channel field, count, {user, info, ...}}, ...}`.
/// KEYS: sharers, log, kept entries. ARGV: the part's prefix.
pub(super) const SNAPSHOT_SCRIPT: &str = r#"
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local out = {'0-0', {}}
if #newest > 0 then out[1] = newest[1][1] end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000
local kept = redis.call('HGETALL', KEYS[3])
for i = 1, #kept, 2 do
  local until_ms = cjson.decode(kept[i + 1]).expires_at_ms
  if until_ms and until_ms < now then
    redis.call('HDEL', KEYS[3], kept[i])
  else
    table.insert(out[2], kept[i + 1])
  end
end
for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  for _, ch in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'shares:' .. n)) do
    local count = redis.call('HGET', ARGV[1] .. 'counts:' .. n, ch) or '0'
    table.insert(out, {n, ch, count, redis.call('HGETALL', ARGV[1] .. 'members:' .. n .. ':' .. ch)})
  end
end
return out
"#;

/// Takes an idempotency key if free (marked in progress with an empty value); else answers
/// what it holds.
pub(super) const CLAIM_SCRIPT: &str = r#"
if redis.call('SET', KEYS[1], '', 'NX', 'PX', ARGV[1]) then return {1} end
return {0, redis.call('GET', KEYS[1])}
"#;
