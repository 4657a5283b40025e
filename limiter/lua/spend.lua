-- spend.lua: expire old buckets, check, and debit one org's rolling window, atomically.
--
-- A credit consumed at time t is recorded in the bucket starting at b = t - t % bucket and is
-- live while now < b + bucket + window: never freed before t + window, at most one bucket later.
-- A rejected call writes nothing except the removal of buckets that have already expired.
--
-- KEYS[1]  sorted set: member = bucket start (unix ms, decimal), score = the same
-- KEYS[2]  hash: bucket start (unix ms) -> credits consumed in that bucket
-- KEYS[3]  string: running total of the credits held by live buckets
-- ARGV[1]  cost (credits, integer >= 0; 0 only reads)
-- ARGV[2]  limit (credits per window, integer)
-- ARGV[3]  window (ms)
-- ARGV[4]  bucket (ms)
-- ARGV[5]  now (unix ms), or "" to use the Redis server's clock (TIME)
--
-- Reply (integers): {status, used, retry_after_ms, reset_ms, bucket_ms}
--   status          1 allowed, 0 rejected (not enough credits), -1 rejected (cost > limit)
--   used            credits held by live buckets after this call
--   retry_after_ms  rejected (0): ms until enough credits free up for this cost; else 0
--   reset_ms        ms until the oldest live bucket frees up; 0 when nothing is held
--   bucket_ms       allowed with cost > 0: the bucket debited (a refund names it); else 0

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
	return {-1, used, 0, reset_ms(), 0}
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
				return {0, used, tonumber(members[i]) + bucket + window - now, reset_ms(), 0}
			end
		end
		start = start + chunk
	end
	-- Unreachable while the total matches the buckets; answer a full window rather than 0.
	return {0, used, window + bucket, reset_ms(), 0}
end

if cost == 0 then
	return {1, used, 0, reset_ms(), 0}
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

return {1, used, 0, reset_ms(), b}
