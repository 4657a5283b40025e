-- refund.lua: give back credits of an earlier debit, from the bucket that recorded it.
--
-- If that bucket has expired already, the credits are free anyway and nothing changes.
-- The window is stored as in spend.lua (a ring of per-bucket counters; see its header).
--
-- KEYS[1]  string: the ring of per-bucket credits
-- KEYS[2]  hash: head, tail (bucket numbers), bucket and slots of the layout
-- KEYS[3]  string: running total of the credits held by live buckets
-- ARGV[1]  credits to give back (integer > 0)
-- ARGV[2]  bucket start (unix ms) named by the debit
-- ARGV[3]  window (ms)
-- ARGV[4]  bucket (ms)
-- KEYS[4]  billing: hash UTC day -> add-on credits consumed (the meter of spend.lua)
-- ARGV[5]  billing: add-on credits the debit metered (0 or absent: none)
-- ARGV[6]  billing: the UTC day (days since 1970-01-01) they were metered on
-- KEYS[5]  usage by rule: hash "<slot start ms>:<rule>" -> credits (spend.lua KEYS[8])
-- KEYS[6]  usage by rule: the same members scored by slot start (spend.lua KEYS[9])
-- ARGV[7]  rule name of the debit ("" records nothing)
-- ARGV[8]  usage slot (ms)
-- ARGV[9]  billing: the free allotment (credits), or "" when the org has no add-ons
-- KEYS[7]  hash: call id -> the record of its debit, "<expires ms>:<state>[:…]" (spend.lua KEYS[10])
-- ARGV[10] call id of the debit ("": refund by ARGV[1], [2], [5] and [6] alone)
-- ARGV[11] how long a record is kept (ms)
-- ARGV[12] now (unix ms), or "" to use the Redis server's clock (TIME)
--
-- With a call id the refund applies once: from the debit's record (ARGV[1], [2], [5], [6]
-- are then ignored), which it marks refunded. A call with no record and no credits given
-- (ARGV[1] 0: a compensation, its debit's reply lost) is marked so that its debit, if it still
-- comes, does nothing; with credits given (a debit older than its record), they are given
-- back and the call marked refunded.
--
-- Reply (integer): the credits given back (0 when the bucket had expired)

local ring_key, pos_key, used_key = KEYS[1], KEYS[2], KEYS[3]
local meter_key, use_key, useidx_key, calls_key = KEYS[4], KEYS[5], KEYS[6], KEYS[7]

local credits = tonumber(ARGV[1])
local debit_ms = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local bucket = tonumber(ARGV[4])
local debit_day = ARGV[6]
local addon = tonumber(ARGV[5] or '0') or 0

local call = ARGV[10] or ''
if call ~= '' then
	local ttl = tonumber(ARGV[11])
	local now = clock_ms(ARGV[12])
	local rec = redis.call('HGET', calls_key, call)
	if rec and (credits or 0) <= 0 and (tonumber(string.match(rec, '^(%d+):')) or 0) <= now then
		rec = nil -- a compensation past the record's life: as if it were gone already
	end
	if rec then
		local b, c, a, d = string.match(rec, '^%d+:d:(%-?%d+):(%d+):(%d+):(%d+)$')
		if not b then
			return 0 -- refunded, or compensated, already
		end
		debit_ms, credits, addon, debit_day = tonumber(b), tonumber(c), tonumber(a), d
		-- Marked refunded for a whole TTL from now: a retry of this refund (its reply lost),
		-- which may come up to a TTL after its first attempt, must find the mark.
		redis.call('HSET', calls_key, call, string.format('%d:r', now + ttl))
	else
		redis.call('HSET', calls_key, call, string.format('%d:%s', now + ttl, (credits or 0) > 0 and 'r' or 'x'))
	end
	redis.call('PEXPIRE', calls_key, math.max(ttl, redis.call('PTTL', calls_key)))
	if (credits or 0) <= 0 then
		return 0
	end
end

local slots = math.ceil(window / bucket) + 1
local k = math.floor(debit_ms / bucket)

-- Billing: what the refund takes off the meter (memory store: refundMetered). A refund that
-- gives credits back takes off the drop of the part above the free allotment (ARGV[9]), so a
-- later call metered only because the refunded one held free credits is not billed, and
-- refunds in a row never un-meter a credit twice. One that gives nothing back (its bucket is
-- gone) takes off what the debit metered: a call the gateway refunds is never billed.
local free = tonumber(ARGV[9] or '')
local function unmeter(n)
	meter_take(meter_key, debit_day, n)
end
-- unmeter_drop takes drop off the meter: the debit's own add-on part from its day, the rest
-- (later calls metered because the debit held free credits) from the next day first, where
-- they were metered if the refund came after midnight, else from the debit's day.
local function unmeter_drop(drop)
	local own = math.min(drop, addon)
	meter_take(meter_key, debit_day, own)
	local rest = drop - own
	if rest > 0 then
		local next_day = string.format('%d', tonumber(debit_day) + 1)
		local n = math.min(rest, tonumber(redis.call('HGET', meter_key, next_day) or '0') or 0)
		meter_take(meter_key, next_day, n)
		meter_take(meter_key, debit_day, rest - n)
	end
end

local pos = redis.call('HMGET', pos_key, 'head', 'tail', 'bucket', 'slots')
local head, tail = tonumber(pos[1]), tonumber(pos[2])
if head == nil or tail == nil or k < tail or k > head then
	unmeter(addon)
	return 0
end
if tonumber(pos[3]) ~= bucket or tonumber(pos[4]) ~= slots then
	unmeter(addon)
	return 0 -- laid out for another window or bucket: the debit's bucket is gone
end
local used = tonumber(redis.call('GET', used_key) or '0')
if used <= 0 then
	unmeter(addon)
	return 0
end
local function slot(n)
	return '#' .. string.format('%d', n % slots)
end
local held = redis.call('BITFIELD', ring_key, 'GET', 'i64', slot(k))[1]
if held <= 0 then
	unmeter(addon)
	return 0
end
if credits > held then
	credits = held
end
if free then
	unmeter_drop(above_free(free, used - credits, used))
end
redis.call('BITFIELD', ring_key, 'INCRBY', 'i64', slot(k), string.format('%d', -credits))
used = used - credits
redis.call('SET', used_key, string.format('%d', math.max(used, 0)), 'KEEPTTL')

-- Keep the tail on the oldest bucket that holds credits, and the head on the newest
-- (spend.lua bounds a debit whose clock ran back by head, which must hold credits, as the
-- memory store's newest bucket does).
if used > 0 and held == credits and k == tail then
	tail = ring_first_held(ring_key, slots, tail + 1, head)
	redis.call('HSET', pos_key, 'tail', string.format('%d', tail))
end
if used > 0 and held == credits and k == head then
	head = ring_last_held(ring_key, slots, tail, head - 1)
	redis.call('HSET', pos_key, 'head', string.format('%d', head))
end

-- Usage by rule: the refunded
-- credits leave the slot and rule they were recorded under.
local rule = ARGV[7] or ''
local uslot = tonumber(ARGV[8] or '0') or 0
if rule ~= '' and uslot > 0 then
	local b = debit_ms
	local m = string.format('%d', b - b % uslot) .. ':' .. rule
	local rec = tonumber(redis.call('HGET', use_key, m) or '0')
	if rec > 0 then
		if rec <= credits then
			redis.call('HDEL', use_key, m)
			redis.call('ZREM', useidx_key, m)
		else
			redis.call('HINCRBY', use_key, m, -credits)
		end
	end
end
-- End of usage by rule.

return credits
