-- usage.lua: read where one org's window stands, without writing anything.
--
-- Used is the sum of the live buckets (those a Spend at now would not expire), so it is exact
-- against the window even when expired buckets have not been trimmed yet.
--
-- KEYS (limiter.RedisKeys, usage list; spend.lua's header says what each holds)
--   [1]  ring        string: the ring of per-bucket credits, once sparse gave way
--   [2]  pos         hash: head, tail, used, bucket, slots and w of the layout, and the
--                    buckets of a sparse window
--   [3]  used        string: the running total of a window written before it moved into pos
--   [4]  inflight    sorted set: lease id -> expiry (unix ms), calls in flight
--   [5]  heavy       sorted set: the same for heavy calls
--   [6]  addon       string: the add-on limit stored through the admin API
--   [7]  use         hash: "<slot start ms>:<rule>" -> credits
--   [8]  useidx      sorted set: the same members scored by slot start
--
-- ARGV, as RedisStore.Usage builds them.
-- The read:
--   [1]  now         unix ms, or "" to use the Redis server's clock (TIME)
-- The store (limiter.Options):
--   [2]  window      ms
--   [3]  bucket      ms
--   [4]  slots       counters in the ring
--   [5]  slot        usage slot (ms)
--
-- Reply (limiter.usageReply, decoded by name in decodeUsageReply):
--   {{now_ms, used, reset_ms, in_flight, heavy_in_flight, addon}, {members}, {credits}}
--   now_ms           the instant of the read (unix ms)
--   used             credits held by the live buckets
--   reset_ms         ms until the oldest live bucket frees up; 0 when nothing is held
--   in_flight        calls in flight under unexpired leases; heavy_in_flight, heavy ones
--   addon            the stored add-on limit, or -1 when none was ever stored
--   members          "<slot start ms>:<rule>" of the slots that overlap the window
--   credits          the credits of each member, in the same order

local ring_key, pos_key, used_key = KEYS[1], KEYS[2], KEYS[3]
local inflight_key, heavy_key, addon_key = KEYS[4], KEYS[5], KEYS[6]
local use_key, useidx_key = KEYS[7], KEYS[8]

local now = clock_ms(ARGV[1])
local window, bucket, slots, slot = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

-- The live buckets are those starting after now - window - bucket, between the window's
-- tail and head.
local used = 0
local reset = 0
local win = win_load(ring_key, pos_key, used_key, bucket, slots, math.floor(now / bucket), false)
local head, tail = win.head, win.tail

if head ~= nil and (win.lb ~= bucket or win.ls ~= slots) then
	-- Laid out for another window or bucket: the next spend carries what the old layout still
	-- holds into its current bucket (spend.lua), so report that, freeing one window from now.
	used = win_relaid_held(win, now)
	if used > 0 then
		reset = math.floor(now / bucket) * bucket + bucket + window - now
	end
elseif head ~= nil then
	local first = math.max(tail, math.floor((now - window - bucket) / bucket) + 1)
	if first <= head and head - first < slots then
		local vals = win_read(win, first, head)
		for i = 1, #vals do
			if vals[i] ~= 0 then
				if reset == 0 then
					reset = (first + i - 1) * bucket + bucket + window - now
				end
				used = used + vals[i]
			end
		end
	end
end

local alive = '(' .. string.format('%d', now)
local in_flight = redis.call('ZCOUNT', inflight_key, alive, '+inf')
local heavy = redis.call('ZCOUNT', heavy_key, alive, '+inf')

local members = redis.call('ZRANGEBYSCORE', useidx_key, '(' .. string.format('%d', now - window - slot), '+inf')
local credits = {}
if #members > 0 then
	local vals = redis.call('HMGET', use_key, unpack(members))
	for i = 1, #vals do
		credits[i] = tonumber(vals[i]) or 0
	end
end

local addon = tonumber(redis.call('GET', addon_key) or '-1') or -1
return {{now, used, reset, in_flight, heavy, addon}, members, credits}
