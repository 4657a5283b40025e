-- spend.lua: expire old buckets, check, and debit one org's rolling window, and take a
-- concurrency lease, atomically.
--
-- A credit consumed at time t is recorded in the bucket starting at b = t - t % bucket and is
-- live while now < b + bucket + window: never freed before t + window, at most one bucket later.
-- A lease is a member of a sorted set scored by its expiry; leases of a replica that died
-- expire on their own. A rejected call writes nothing except the removal of expired buckets and
-- leases.
--
-- KEYS[1]  sorted set: member = bucket start (unix ms, decimal), score = the same
-- KEYS[2]  hash: bucket start (unix ms) -> credits consumed in that bucket
-- KEYS[3]  string: running total of the credits held by live buckets
-- ARGV[1]  cost (credits, integer >= 0; 0 only reads)
-- ARGV[2]  limit (credits per window, integer)
-- ARGV[3]  window (ms)
-- ARGV[4]  bucket (ms)
-- KEYS[4]  sorted set: lease id -> expiry (unix ms) of the org's calls in flight
-- KEYS[5]  sorted set: the same for its heavy calls in flight
-- ARGV[5]  now (unix ms), or "" to use the Redis server's clock (TIME)
-- ARGV[6]  concurrency cap (calls in flight; 0: no cap and no lease)
-- ARGV[7]  heavy cap (heavy calls in flight; 0: this call is not heavy or has no sub-cap)
-- ARGV[8]  lease id (unique per call)
-- ARGV[9]  lease time to live (ms)
-- KEYS[9..10], ARGV[13..14]: usage by rule, see the block of that name below.
--
-- Reply (integers): {status, used, retry_after_ms, reset_ms, bucket_ms, in_flight}
--   status          1 allowed, 0 rejected (not enough credits), -1 rejected (cost > limit),
--                   -2 rejected (concurrency cap), -3 rejected (heavy cap)
--   used            credits held by live buckets after this call
--   retry_after_ms  rejected (0): ms until enough credits free up for this cost; else 0
--   reset_ms        ms until the oldest live bucket frees up; 0 when nothing is held
--   bucket_ms       allowed with cost > 0: the bucket debited (a refund names it); else 0
--   in_flight       calls in flight for the cap that applied, this one included when allowed

local cost = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local bucket = tonumber(ARGV[4])
local now
if ARGV[5] == nil or ARGV[5] == '' then
	local t = redis.call('TIME')
	now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
	now = tonumber(ARGV[5])
end

local cap = tonumber(ARGV[6] or '0')
local heavy_cap = tonumber(ARGV[7] or '0')
local lease = ARGV[8]
local lease_ttl = tonumber(ARGV[9] or '0')

local chunk = 512

-- Expire: buckets with start <= now - window - bucket are free again.
local cutoff = now - window - bucket
local used = tonumber(redis.call('GET', KEYS[3]) or '0')
local freed = 0
while true do
	local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, chunk)
	if #dead == 0 then
		break
	end
	local vals = redis.call('HMGET', KEYS[2], unpack(dead))
	for i = 1, #vals do
		freed = freed + (tonumber(vals[i]) or 0)
	end
	redis.call('HDEL', KEYS[2], unpack(dead))
	redis.call('ZREM', KEYS[1], unpack(dead))
	if #dead < chunk then
		break
	end
end
if freed > 0 then
	used = used - freed
	if used <= 0 then
		used = 0
		redis.call('DEL', KEYS[3])
	else
		redis.call('SET', KEYS[3], string.format('%d', used), 'KEEPTTL')
	end
end

local function reset_ms()
	local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
	if #first == 0 then
		return 0
	end
	return tonumber(first[2]) + bucket + window - now
end

if cost > limit then
	return {-1, used, 0, reset_ms(), 0, 0}
end

-- Concurrency comes before credits: a call refused for it is not debited.
local in_flight = 0
if cap > 0 and cost > 0 then
	redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
	in_flight = redis.call('ZCARD', KEYS[4])
	if in_flight >= cap then
		return {-2, used, 0, reset_ms(), 0, in_flight}
	end
	if heavy_cap > 0 then
		redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
		local heavy = redis.call('ZCARD', KEYS[5])
		if heavy >= heavy_cap then
			return {-3, used, 0, reset_ms(), 0, heavy}
		end
	end
end

if used + cost > limit then
	-- Walk the buckets oldest first until enough credits would be free for this cost.
	local need = used + cost - limit
	local got = 0
	local start = 0
	while true do
		local members = redis.call('ZRANGE', KEYS[1], start, start + chunk - 1)
		if #members == 0 then
			break
		end
		local vals = redis.call('HMGET', KEYS[2], unpack(members))
		for i = 1, #vals do
			got = got + (tonumber(vals[i]) or 0)
			if got >= need then
				return {0, used, tonumber(members[i]) + bucket + window - now, reset_ms(), 0, 0}
			end
		end
		start = start + chunk
	end
	-- Unreachable while the total matches the buckets; answer a full window rather than 0.
	return {0, used, window + bucket, reset_ms(), 0, 0}
end

if cost == 0 then
	return {1, used, 0, reset_ms(), 0, 0}
end

local b = now - now % bucket
local member = string.format('%d', b)
if redis.call('HINCRBY', KEYS[2], member, cost) == cost then
	redis.call('ZADD', KEYS[1], b, member)
end
used = redis.call('INCRBY', KEYS[3], cost)

-- Every live bucket frees by now + window + bucket, so idle keys vanish by then.
local ttl = window + bucket
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)

-- Usage by rule (KEYS[9..10], ARGV[13..14]) ------------------------------------------------
-- KEYS[9]   hash: "<slot start ms>:<rule>" -> credits debited in that slot by that rule
-- KEYS[10]  sorted set: the same members, score = slot start (unix ms), to trim old slots
-- ARGV[13]  rule name of this call ("" records nothing)
-- ARGV[14]  usage slot (ms): window/24, an hour for a 24h window
-- The debit is recorded in the slot holding its bucket b (refund.lua finds it from b). Slots
-- that ended a window ago are trimmed when a new member appears, so an org holds at most
-- (window/slot + 2) x rules members; both keys expire a window and a slot after the last debit.
local rule = ARGV[13] or ''
local slot = tonumber(ARGV[14] or '0') or 0
if rule ~= '' and slot > 0 then
	local s = b - b % slot
	local m = string.format('%d', s) .. ':' .. rule
	if redis.call('HINCRBY', KEYS[9], m, cost) == cost then
		redis.call('ZADD', KEYS[10], s, m)
		local old = redis.call('ZRANGEBYSCORE', KEYS[10], '-inf', now - window - slot, 'LIMIT', 0, chunk)
		if #old > 0 then
			redis.call('HDEL', KEYS[9], unpack(old))
			redis.call('ZREM', KEYS[10], unpack(old))
		end
	end
	redis.call('PEXPIRE', KEYS[9], window + slot)
	redis.call('PEXPIRE', KEYS[10], window + slot)
end
-- End of usage by rule ----------------------------------------------------------------------

if cap > 0 then
	redis.call('ZADD', KEYS[4], now + lease_ttl, lease)
	redis.call('PEXPIRE', KEYS[4], lease_ttl)
	in_flight = in_flight + 1
	if heavy_cap > 0 then
		redis.call('ZADD', KEYS[5], now + lease_ttl, lease)
		redis.call('PEXPIRE', KEYS[5], lease_ttl)
	end
end

return {1, used, 0, reset_ms(), b, in_flight}
