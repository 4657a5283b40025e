-- usage.lua: read where one org's window stands, without writing anything.
--
-- Used is the sum of the live buckets (those a Spend at now would not expire), so it is exact
-- against the window even when expired buckets have not been trimmed yet.
--
-- KEYS[1]  sorted set: member = bucket start (unix ms), score = the same (spend.lua KEYS[1])
-- KEYS[2]  hash: bucket start (unix ms) -> credits (spend.lua KEYS[2])
-- KEYS[3]  sorted set: lease id -> expiry (unix ms), calls in flight (spend.lua KEYS[4])
-- KEYS[4]  sorted set: the same for heavy calls (spend.lua KEYS[5])
-- KEYS[5]  hash: "<slot start ms>:<rule>" -> credits (spend.lua KEYS[9])
-- KEYS[6]  sorted set: the same members scored by slot start (spend.lua KEYS[10])
-- ARGV[1]  window (ms)
-- ARGV[2]  bucket (ms)
-- ARGV[3]  usage slot (ms)
-- ARGV[4]  now (unix ms), or "" to use the Redis server's clock (TIME)
--
-- Reply: {{now_ms, used, reset_ms, in_flight, heavy_in_flight}, {slot members}, {credits}}
--   reset_ms   ms until the oldest live bucket frees up; 0 when nothing is held
--   members    "<slot start ms>:<rule>" of the slots that overlap the window, with their credits

local window = tonumber(ARGV[1])
local bucket = tonumber(ARGV[2])
local slot = tonumber(ARGV[3])
local now
if ARGV[4] == nil or ARGV[4] == '' then
	local t = redis.call('TIME')
	now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
	now = tonumber(ARGV[4])
end

local chunk = 512
local cutoff = '(' .. string.format('%d', now - window - bucket)
local used = 0
local reset = 0
local start = 0
while true do
	local live = redis.call('ZRANGEBYSCORE', KEYS[1], cutoff, '+inf', 'LIMIT', start, chunk)
	if #live == 0 then
		break
	end
	if start == 0 then
		reset = tonumber(live[1]) + bucket + window - now
	end
	local vals = redis.call('HMGET', KEYS[2], unpack(live))
	for i = 1, #vals do
		used = used + (tonumber(vals[i]) or 0)
	end
	if #live < chunk then
		break
	end
	start = start + chunk
end

local alive = '(' .. string.format('%d', now)
local in_flight = redis.call('ZCOUNT', KEYS[3], alive, '+inf')
local heavy = redis.call('ZCOUNT', KEYS[4], alive, '+inf')

local members = redis.call('ZRANGEBYSCORE', KEYS[6], '(' .. string.format('%d', now - window - slot), '+inf')
local credits = {}
if #members > 0 then
	local vals = redis.call('HMGET', KEYS[5], unpack(members))
	for i = 1, #vals do
		credits[i] = tonumber(vals[i]) or 0
	end
end

return {{now, used, reset, in_flight, heavy}, members, credits}
