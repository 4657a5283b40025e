-- refund.lua: give back credits of an earlier debit, from the bucket that recorded it.
--
-- If that bucket has expired already, the credits are free anyway and nothing changes.
-- The window is stored as in spend.lua (sparse in pos, or a ring of counters; see its header).
--
-- KEYS (limiter.RedisKeys, refund list; spend.lua's header says what each holds)
--   [1]  ring        string: the ring of per-bucket credits, once sparse gave way
--   [2]  pos         hash: head, tail, used, bucket, slots and w of the layout, and the
--                    buckets of a sparse window
--   [3]  used        string: the running total of a window written before it moved into pos
--   [4]  meter       hash: UTC day -> add-on credits consumed
--   [5]  use         hash: "<slot start ms>:<rule>" -> credits
--   [6]  useidx      sorted set: the same members scored by slot start
--   [7]  calls       hash: call id -> the record of its debit, "<expires ms>:<state>[:…]"
--   [8]  fired       hash: threshold (percent) -> level (credits) it fired at: re-armed below
--
-- ARGV, in three groups as RedisStore.refund builds them.
-- The debit (from its Decision):
--   [1]  credits     credits to give back (0: a compensation, its debit's reply lost)
--   [2]  bucket_ms   bucket start (unix ms) named by the debit
--   [3]  addon       add-on credits the debit metered (0: none)
--   [4]  day         the UTC day (days since 1970-01-01) they were metered on
--   [5]  call        call id of the debit ("": refund by [1] to [4] alone)
--   [6]  now         unix ms, or "" to use the Redis server's clock (TIME)
-- The org's key (limiter.Key):
--   [7]  rule        rule name of the debit ("" recorded no usage by rule)
--   [8]  free        the free allotment (credits), or "" when the org has no add-ons
-- The store (limiter.Options):
--   [9]  bucket      ms
--   [10] slots       counters in the ring (a ring laid out otherwise holds the debit no more)
--   [11] slot        usage slot (ms)
--   [12] call_ttl    ms a record is kept
--
-- With a call id the refund applies once: from the debit's record ([1] to [4] are then
-- ignored), which it marks refunded. A call with no record and no credits given (a
-- compensation) is marked so that its debit, if it still comes, does nothing; with credits
-- given (a debit older than its record), they are given back and the call marked refunded.
--
-- Reply (integer): the credits given back (0 when the bucket had expired)

local ring_key, pos_key, used_key = KEYS[1], KEYS[2], KEYS[3]
local meter_key, use_key, useidx_key, calls_key = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local fired_key = KEYS[8]

local credits = tonumber(ARGV[1])
local debit_ms = tonumber(ARGV[2])
local addon = tonumber(ARGV[3]) or 0
local debit_day = ARGV[4]
local call = ARGV[5]
local now_arg = ARGV[6]

local rule = ARGV[7]
local free = tonumber(ARGV[8])

local bucket, slots = tonumber(ARGV[9]), tonumber(ARGV[10])
local uslot, call_ttl = tonumber(ARGV[11]), tonumber(ARGV[12])

if call ~= '' then
	local ttl = call_ttl
	local now = clock_ms(now_arg)
	local rec = redis.call('HGET', calls_key, call)
	if rec and (credits or 0) <= 0 and record_expires(rec) <= now then
		rec = nil -- a compensation past the record's life: as if it were gone already
	end
	if rec then
		local b, c, a, d = debit_record(rec)
		if not b then
			return 0 -- refunded, or compensated, already
		end
		debit_ms, credits, addon, debit_day = b, c, a, string.format('%d', d)
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

local k = math.floor(debit_ms / bucket)

-- Billing: what the refund takes off the meter (memory store: refundMetered). A refund that
-- gives credits back takes off the drop of the part above the free allotment, so a
-- later call metered only because the refunded one held free credits is not billed, and
-- refunds in a row never un-meter a credit twice. One that gives nothing back (its bucket is
-- gone) takes off what the debit metered: a call the gateway refunds is never billed.
local function unmeter(n)
	meter_take(meter_key, debit_day, n)
end

local win = win_load(ring_key, pos_key, used_key, bucket, slots, k, true)
local head, tail = win.head, win.tail
if head == nil or k < tail or k > head then
	unmeter(addon)
	return 0
end
if win.lb ~= bucket or win.ls ~= slots then
	unmeter(addon)
	return 0 -- laid out for another window or bucket: the debit's bucket is gone
end
local used = win.used
if used <= 0 then
	unmeter(addon)
	return 0
end
local held = win_get(win, k)
if held <= 0 then
	unmeter(addon)
	return 0
end
if credits > held then
	credits = held
end
if free then
	meter_drop(meter_key, tonumber(debit_day), above_free(free, used - credits, used), addon)
end
win_add(win, k, -credits)
used = used - credits
notices(fired_key, nil, used, nil, '', 0, 0, 0, 0) -- re-arm the thresholds usage fell below

if held == credits then
	win_vacated(win, k)
end

-- Usage by rule: the refunded
-- credits leave the slot and rule they were recorded under.
if rule ~= '' and uslot > 0 then
	usage_take(use_key, useidx_key, debit_ms - debit_ms % uslot, rule, credits)
end
-- End of usage by rule.

return credits
