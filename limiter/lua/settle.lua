-- settle.lua: correct an earlier debit to the cost its call settled on (known once the upstream
-- answered), in the bucket that recorded it, once.
--
-- The debit is found by its call's record (spend.lua's calls hash). The difference between the
-- settled and the recorded cost is debited into, or given back from, the debit's own bucket,
-- with the running total, the usage by rule and the add-on meter, and the record is rewritten
-- with the settled cost and marked settled (":s"): a resent settle then does nothing, and a
-- refund after it gives back the settled cost. An extra debit is applied whatever the limit (the upstream has done
-- the work); the org is then refused until enough credits free up. A debit whose bucket has
-- left the window (or a window laid out for another bucket or window) is settled on the meter only.
--
-- KEYS (limiter.RedisKeys, settle list; spend.lua's header says what each holds)
--   [1]  ring        string: the ring of per-bucket credits, once sparse gave way
--   [2]  pos         hash: head, tail, used, bucket, slots and w of the layout, and the
--                    buckets of a sparse window
--   [3]  used        string: the running total of a window written before it moved into pos
--   [4]  meter       hash: UTC day -> add-on credits consumed
--   [5]  use         hash: "<slot start ms>:<rule>" -> credits
--   [6]  useidx      sorted set: the same members scored by slot start
--   [7]  calls       hash: call id -> the record of its debit, "<expires ms>:<state>[:…]"
--   [8]  fired       hash: the usage notices fired (lib.lua's notices)
--   [9]  addon       string: the org's add-on limit set through the admin API
--   [10] notify      hash: the org's notice settings set through the admin API
--   [11] outbox      stream: the org's usage notices waiting for delivery
--
-- ARGV, in three groups as RedisStore.Settle builds them.
-- The call:
--   [1]  cost        the settled cost (credits, >= 0)
--   [2]  reserved    credits the debit took (from its Decision; used when its record is gone)
--   [3]  bucket_ms   bucket start (unix ms) of the debit (likewise)
--   [4]  addon       add-on credits the debit metered (likewise)
--   [5]  day         the UTC day they were metered on (likewise)
--   [6]  call        call id of the debit
--   [7]  now         unix ms, or "" to use the Redis server's clock (TIME)
-- The org's key (limiter.Key):
--   [8]  rule        rule name of the debit ("" recorded no usage by rule)
--   [9]  limit       credits per window, without add-ons (as spend.lua's ARGV[6])
--   [10] free        the free allotment (credits), or "" when the org has no add-ons
--   [11] addon       add-on limit to use while KEYS[9] does not exist
--   [12] addon_cap   add-on cap (credits)
-- The store (limiter.Options):
--   [13] window      ms
--   [14] bucket      ms
--   [15] slots       counters in the ring
--   [16] slot        usage slot (ms)
--   [17] call_ttl    ms a record is kept
--   [18] keep        days the meter keeps (limiter.MeterDays)
--   [19] outbox_max  events the outbox keeps at most
-- The org's notices:
--   [20] thresholds  percents of the limit that queue a notice ("" none), used while KEYS[10]
--                    holds no thresholds
--
-- Reply (integers; decoded in RedisStore.Settle):
--   {applied, cost, moved, metered, used, notices}
--   applied   1 settled now; 0 nothing to do: settled already (a resend), or refunded or
--             compensated, or no record and no debit given
--   cost      the call's cost now (0 when refunded or compensated)
--   moved     credits debited into the window (> 0) or given back (< 0) by this settle
--   metered   add-on credits metered (> 0) or taken off the meter (< 0) by this settle
--   used      credits held by the window's live buckets after this settle
--   notices   usage notices this settle queued (an extra debit can cross a threshold; a
--             give-back re-arms those usage fell below)

local ring_key, pos_key, used_key = KEYS[1], KEYS[2], KEYS[3]
local meter_key, use_key, useidx_key, calls_key = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local fired_key, addon_key, notify_key, outbox_key = KEYS[8], KEYS[9], KEYS[10], KEYS[11]

local cost = tonumber(ARGV[1])
local reserved, debit_ms = tonumber(ARGV[2]), tonumber(ARGV[3])
local addon, debit_day = tonumber(ARGV[4]) or 0, tonumber(ARGV[5]) or 0
local call = ARGV[6]
local now = clock_ms(ARGV[7])

local rule = ARGV[8]
local limit, free = tonumber(ARGV[9]), tonumber(ARGV[10])
local addon_default, addon_cap = ARGV[11], tonumber(ARGV[12]) or 0

local window, bucket, slots = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
local uslot, call_ttl, keep = tonumber(ARGV[16]), tonumber(ARGV[17]), tonumber(ARGV[18])
local outbox_max = ARGV[19]

-- The debit: from its record while there is one (whatever the arguments say), else (a call
-- that outlived its record) from the arguments.
local rec = redis.call('HGET', calls_key, call)
local settled = false
if rec then
	local b, c, a, d, s = debit_record(rec)
	if not b then
		return {0, 0, 0, 0, 0, 0} -- refunded or compensated: nothing is charged to settle
	end
	debit_ms, reserved, addon, debit_day, settled = b, c, a, d, s
elseif (reserved or 0) <= 0 then
	return {0, 0, 0, 0, 0, 0}
end

-- The window as it stands: the credits of buckets past the window that no spend has expired
-- yet are not held any more (spend.lua drops them on its next run; nothing is written here).
local k = math.floor(debit_ms / bucket)
local win = win_load(ring_key, pos_key, used_key, bucket, slots, k, not settled)
local head, tail, used = win.head, win.tail, win.used
local laid_out = head and win.lb == bucket and win.ls == slots
local cutoff = now - window - bucket
local dead = 0
if laid_out and used > 0 and tail * bucket <= cutoff then
	local last = math.min(math.floor(cutoff / bucket), head)
	for _, v in ipairs(win_read(win, tail, last)) do
		dead = dead + v
	end
end

if settled then
	return {0, reserved, 0, 0, math.max(used - dead, 0), 0} -- settled already: a resend
end

local live = laid_out and used > 0 and k >= tail and k <= head and k * bucket > cutoff
local held = 0
if live then
	held = win_get(win, k)
	live = held > 0
end

-- The window: the difference goes into the debit's bucket (a give-back never takes more than
-- the bucket holds).
local moved = 0
local held_before = math.max(used - dead, 0) -- what the org's window holds before the settle
if live then
	moved = cost - reserved
	if moved < 0 then
		moved = -math.min(-moved, held)
	end
	if moved ~= 0 then
		win_add(win, k, moved)
	end
	used = used + moved
	if held + moved == 0 then
		win_vacated(win, k)
	end
end
local held_after = held_before + moved
-- The one point where the org's window total changes: from held_before to held_after
-- credits (equal when the debit's bucket has left the window). The usage notices follow it:
-- an extra debit may cross a threshold of the limit in force (add-ons included, as spend.lua
-- reads it), a give-back re-arms those usage fell below.
local queued = 0
if moved ~= 0 then
	if free then
		limit = capped_limit(free, addon_key, addon_default, addon_cap)
	end
	local thresholds = redis.call('HGET', notify_key, 'thresholds') or ARGV[20]
	queued = notices(fired_key, outbox_key, held_after, limit, thresholds, now, window, window + bucket, outbox_max)
	if queued > 0 then
		redis.call('HDEL', pos_key, 'q') -- spend.lua's quiet notices: one fired
	end
end

-- Billing: the add-on part of the debit follows the settled cost. In the window, as spend.lua
-- and refund.lua meter it: the change of the part of the total above the free allotment,
-- on the debit's day. Out of it (the window that would tell has passed): the credits of the
-- reservation that were free stay free, and every settled credit beyond them is add-on.
local new_addon = addon
if free then
	if live then
		local change = above_free(free, held_before, held_after)
		if change > 0 then
			meter_add(meter_key, debit_day, change, keep)
			new_addon = addon + change
		elseif change < 0 then
			-- As refund.lua: the debit's own add-on part first (meter_drop).
			local own = meter_drop(meter_key, debit_day, -change, addon)
			new_addon = addon - own
		end
	else
		new_addon = math.max(0, cost - (reserved - addon))
		if new_addon > addon then
			meter_add(meter_key, debit_day, new_addon - addon, keep)
		else
			meter_take(meter_key, string.format('%d', debit_day), addon - new_addon)
		end
	end
end

-- Usage by rule: the difference moves in the slot and rule the debit was recorded under.
if rule ~= '' and uslot > 0 and moved ~= 0 then
	local s = debit_ms - debit_ms % uslot
	if moved > 0 then
		usage_add(use_key, useidx_key, s, rule, moved, now, window, uslot)
	else
		usage_take(use_key, useidx_key, s, rule, -moved)
	end
end

-- The record, now of the settled debit, kept a whole TTL from now (a resend of this settle,
-- or the call's refund, may come up to a TTL after it).
redis.call('HSET', calls_key, call, string.format('%d:d:%d:%d:%d:%d:s', now + call_ttl, debit_ms, cost, new_addon, debit_day))
redis.call('PEXPIRE', calls_key, math.max(call_ttl, redis.call('PTTL', calls_key)))

return {1, cost, moved, new_addon - addon, held_after, queued}
