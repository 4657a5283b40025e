-- clock_ms returns arg (unix ms), or the Redis server's clock (TIME) when arg is absent or
-- "": one clock for every replica.
local function clock_ms(arg)
	if arg == nil or arg == '' then
		local t = redis.call('TIME')
		return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
	end
	return tonumber(arg)
end

-- day_of returns the UTC day (days since 1970-01-01) of ms (unix ms). Go twin: dayOf.
local function day_of(ms)
	return math.floor(ms / 86400000)
end

-- capped_limit returns base plus the allowance stored at key, or dflt while none is stored,
-- the allowance counting as at most cap: the add-on credits of a window plan, the additional
-- calls of a monthly plan. The admin API changes the stored allowance at run time, so only
-- the script knows it. Go twin: cappedLimit.
local function capped_limit(base, key, dflt, cap)
	return base + math.min(tonumber(redis.call('GET', key) or dflt or '0') or 0, cap)
end

-- above_free returns how many more credits are above the free allotment free when a window
-- holding from credits holds to: what a debit meters, or a refund un-meters (from > to).
-- Go twin: aboveFree.
local function above_free(free, from, to)
	return math.max(0, to - free) - math.max(0, from - free)
end

-- record_expires returns when a debit's record (spend.lua's calls hash) expires, unix ms.
local function record_expires(rec)
	return tonumber(string.match(rec, '^(%d+):')) or 0
end

-- drop_through removes the fields of hash key whose numbers are at most last.
local function drop_through(key, last)
	local old = {}
	for _, f in ipairs(redis.call('HKEYS', key)) do
		if tonumber(f) <= last then
			old[#old + 1] = f
		end
	end
	if #old > 0 then
		redis.call('HDEL', key, unpack(old))
	end
end

-- meter_add adds n to the meter (hash key: UTC day -> add-on credits or additional calls) on
-- day. A new day drops the days past retention (keep days), so the hash stays bounded; the
-- meter expires keep days after its last addition.
local function meter_add(key, day, n, keep)
	if redis.call('HINCRBY', key, string.format('%d', day), n) == n then
		drop_through(key, day - keep)
	end
	redis.call('PEXPIRE', key, keep * 86400000)
end

-- ring_read returns the counters of buckets from..to, oldest first: one GETRANGE per
-- contiguous run.
local function ring_read(ring, slots, from, to)
	local vals = {}
	local k = from
	while k <= to do
		local s = k % slots
		local n = math.min(to - k + 1, slots - s) -- contiguous up to the end of the string
		local raw = redis.call('GETRANGE', ring, s * 8, (s + n) * 8 - 1)
		local pos = 1
		for _ = 1, n do
			local v = 0
			if pos + 7 <= #raw then
				v = struct.unpack('>i8', raw, pos)
			end
			pos = pos + 8
			vals[#vals + 1] = v
		end
		k = k + n
	end
	return vals
end

-- ring_clear zeroes the counters of buckets from..to.
local function ring_clear(ring, slots, from, to)
	local k = from
	while k <= to do
		local s = k % slots
		local n = math.min(to - k + 1, slots - s)
		redis.call('SETRANGE', ring, s * 8, string.rep('\0', n * 8))
		k = k + n
	end
end

-- ring_first_held returns the first bucket in from..to holding credits (to if none does).
local function ring_first_held(ring, slots, from, to)
	local k = from
	while k < to do
		local last = math.min(k + 63, to)
		local vals = ring_read(ring, slots, k, last)
		for i = 1, #vals do
			if vals[i] ~= 0 then
				return k + i - 1
			end
		end
		k = last + 1
	end
	return to
end

-- relaid_held returns the credits a ring (its string raw) laid out for another bucket (ob ms)
-- and slot count (os) still holds at now: the sum of its buckets a spend under that layout
-- would not expire. That layout's window is not stored; (os - 1) * ob is at least that
-- window, so no credit is freed early. An unreadable layout keeps the whole running total
-- (total). spend.lua carries these credits over; usage.lua reports them.
local function relaid_held(raw, head, tail, ob, os, now, total)
	if ob == nil or os == nil or ob <= 0 or os < 2 then
		return total
	end
	local first = math.max(tail, math.floor((now - os * ob) / ob) + 1, head - os + 1)
	local held = 0
	for k = first, head do
		local at = (k % os) * 8 + 1
		if at + 7 <= #raw then
			held = held + struct.unpack('>i8', raw, at)
		end
	end
	return math.max(held, 0)
end

-- notices judges an org's usage notices after its usage changed to used credits (notices.go
-- says what they are): it re-arms each fired threshold (hash fired: percent -> the level in
-- credits it fired at) that usage is now below, and, given the limit in force (a number;
-- nil only re-arms), fires each threshold of thresholds ("50,80,100", ascending) whose level,
-- ceil(percent x limit / 100), usage reached and that has not fired: one event per threshold
-- in the stream outbox (fields p, used, limit, at (ms), w (window ms)), at most max kept.
-- With the limit, a fired threshold is judged at its level under that limit. The fired hash
-- lives keep ms from the last debit, as long as any credit it counts. Returns the events
-- queued. Every script that changes used calls it. Go twin: MemoryStore's judgeNotices.
local function notices(fired, outbox, used, limit, thresholds, now, window, keep, max)
	local f = redis.call('HGETALL', fired)
	if #f == 0 and (limit == nil or thresholds == '') then
		return 0
	end
	local had = {}
	for i = 1, #f, 2 do
		had[f[i]] = tonumber(f[i + 1])
	end
	local queued = 0
	if limit then
		for p in string.gmatch(thresholds, '%d+') do
			local level = math.max(1, math.ceil(tonumber(p) * limit / 100))
			if had[p] then
				had[p] = level
			elseif used >= level then
				redis.call('XADD', outbox, 'MAXLEN', max, '*', 'p', p, 'used', string.format('%d', used),
					'limit', string.format('%d', limit), 'at', string.format('%d', now), 'w', string.format('%d', window))
				redis.call('HSET', fired, p, string.format('%d', level))
				queued = queued + 1
			end
		end
	end
	local gone = {}
	for p, level in pairs(had) do
		if used < level then
			gone[#gone + 1] = p
		end
	end
	if #gone > 0 then
		redis.call('HDEL', fired, unpack(gone))
	end
	if limit and (queued > 0 or #f > 2 * #gone) then
		redis.call('PEXPIRE', fired, keep)
	end
	return queued
end

-- usage_add adds n credits (> 0) debited by rule in the usage slot starting at s (ms) to the
-- usage by rule (hash use: "<slot start>:<rule>" -> credits; sorted set idx: the same members
-- scored by slot start). A slot's first credits add a member: then the slots that ended a
-- window ago are trimmed, so an org holds at most (window/slot + 2) x rules members, and
-- both keys expire window + slot from now (the newest member began before now, so that
-- outlives every member).
local function usage_add(use, idx, s, rule, n, now, window, slot)
	local m = string.format('%d', s) .. ':' .. rule
	if redis.call('HINCRBY', use, m, n) == n then
		redis.call('ZADD', idx, s, m)
		local old = redis.call('ZRANGEBYSCORE', idx, '-inf', now - window - slot, 'LIMIT', 0, 512)
		if #old > 0 then
			redis.call('HDEL', use, unpack(old))
			redis.call('ZREM', idx, unpack(old))
		end
		redis.call('PEXPIRE', use, window + slot)
		redis.call('PEXPIRE', idx, window + slot)
	end
end

-- spend.lua: expire old buckets, check, and debit one org's rolling window, and take a
-- concurrency lease, atomically.
--
-- A credit consumed at time t is recorded in the bucket starting at b = t - t % bucket and is
-- live while now < b + bucket + window: never freed before t + window, at most one bucket later.
-- A lease is a member of a sorted set scored by its expiry; leases of a replica that died
-- expire on their own. A rejected call writes nothing except the removal of expired buckets and
-- leases.
--
-- Window storage (a ring): bucket number k = start / bucket is counted in slot k % slots of a
-- string of slots = ceil(window / bucket) + 1 big-endian signed 64-bit counters (BITFIELD i64),
-- so an org's window takes slots * 8 bytes (11,528 for 24h in minutes) whatever the request
-- rate (slots comes from Go, ARGV[15]). A hash holds head (newest bucket number written) and
-- tail (oldest live bucket number holding credits), and the bucket (ms) and slots the ring was
-- laid out for. Invariants: head - tail < slots; every slot outside tail..head is zero; when
-- used > 0 the tail slot is not zero. Expiry walks forward from the tail, so each bucket is
-- read and cleared once (amortized O(1) per call). The ring's helpers are in lib.lua.
--
-- KEYS (limiter.RedisKeys, spend list)
--   [1]  ring        string: the ring of per-bucket credits (slots * 8 bytes)
--   [2]  pos         hash: head, tail (bucket numbers), bucket (ms) and slots of the layout
--   [3]  used        string: running total of the credits held by live buckets
--   [4]  inflight    sorted set: lease id -> expiry (unix ms) of the org's calls in flight
--   [5]  heavy       sorted set: the same for its heavy calls in flight
--   [6]  addon       string: the org's add-on limit (credits) set through the admin API; "0" is off
--   [7]  meter       hash: UTC day (days since 1970-01-01) -> add-on credits consumed that day
--   [8]  use         hash: "<slot start ms>:<rule>" -> credits debited in that slot by that rule
--   [9]  useidx      sorted set: the same members, score = slot start (unix ms), to trim old slots
--   [10] calls       hash: call id -> "<expires ms>:d:<bucket ms>:<cost>:<add-on>:<day>", the
--                    record of its debit (with ":s" once settled: settle.lua), or "<expires ms>:r" (refunded) or "<expires ms>:x"
--                    (compensated before its debit ran: refund.lua); the field "~" holds the
--                    cursor of the sweep of expired ones
--   [11] notify      hash: the org's notice settings set through the admin API (thresholds)
--   [12] fired       hash: threshold (percent) -> level (credits) it fired at (lib.lua notices)
--   [13] outbox      stream: the org's notice events waiting for delivery
--
-- ARGV, in three groups as RedisStore.spendArgs builds them.
-- The call:
--   [1]  cost        credits (integer >= 0; 0 only reads)
--   [2]  now         unix ms, or "" to use the Redis server's clock (TIME)
--   [3]  call        id of this debit ("" records nothing); also its lease id
--   [4]  lease       lease id to take ("" without a cap)
--   [5]  force       "1": record the debit whatever the limit and caps (credits a gateway
--                    admitted on its own while it could not reach Redis); "": decide as usual
-- The org's key (limiter.Key):
--   [6]  limit       credits per window, without add-ons
--   [7]  cap         calls in flight (0: no cap and no lease)
--   [8]  heavy_cap   heavy calls in flight (0: this call is not heavy or has no sub-cap)
--   [9]  rule        cost-table rule of this call ("" records no usage by rule)
--   [10] free        free allotment (credits), or "" when the org has no add-ons: then [6] is
--                    the limit; with add-ons the limit is free plus the add-on limit
--   [11] addon       add-on limit (credits) to use while KEYS[6] does not exist
--   [12] addon_cap   add-on cap (credits): a stored add-on limit above it counts as the cap
-- The store (limiter.Options, the same on every call):
--   [13] window      ms
--   [14] bucket      ms
--   [15] slots       counters in the ring: ceil(window / bucket) + 1
--   [16] lease_ttl   ms a lease lasts unless renewed or released
--   [17] slot        usage slot (ms): window/24, an hour for a 24h window
--   [18] call_ttl    ms a debit's record is kept
--   [19] keep        days the meter keeps (limiter.MeterDays)
--   [20] outbox_max  events the outbox keeps at most
-- The org's notices (limiter.Key):
--   [21] thresholds  percents of the limit that queue a notice ("50,80,100"; "" none), used
--                    while KEYS[11] holds no thresholds
--
-- Reply (integers; limiter.spendReply, decoded by name in decodeSpendReply):
--   {status, used, retry_after_ms, reset_ms, bucket_ms, in_flight, addon, limit, day, cost,
--    notices}
--   status          1 allowed, 0 rejected (not enough credits), -1 rejected (cost > limit),
--                   -2 rejected (concurrency cap), -3 rejected (heavy cap), -4 not run: the
--                   call was compensated or refunded before (or, forced, is known at all),
--                   -5 not run again: the call's debit ran already (this is a resend, its
--                   first reply lost), answered as that debit (allowed) with the window now
--   used            credits held by live buckets after this call
--   retry_after_ms  rejected (0): ms until enough credits free up for this cost; else 0
--   reset_ms        ms until the oldest live bucket frees up; 0 when nothing is held
--   bucket_ms       allowed with cost > 0: the bucket debited (a refund names it); else 0
--   in_flight       calls in flight for the cap that applied, this one included when allowed
--   addon           allowed: the part of this debit above the free allotment, metered on
--                   day; else 0
--   limit           the limit that applied (free allotment + add-on limit with add-ons)
--   day             the UTC day of now (days since 1970-01-01): the day add-ons are metered
--                   on; -5: the day the debit metered them on
--   cost            credits this call debited: ARGV[1] when allowed, the recorded cost for
--                   -5; else 0
--   notices         notice events this call queued in the outbox (lib.lua notices)

local ring_key, pos_key, used_key = KEYS[1], KEYS[2], KEYS[3]
local inflight_key, heavy_key = KEYS[4], KEYS[5]
local addon_key, meter_key = KEYS[6], KEYS[7]
local use_key, useidx_key, calls_key = KEYS[8], KEYS[9], KEYS[10]
local notify_key, fired_key, outbox_key = KEYS[11], KEYS[12], KEYS[13]

local cost_arg = ARGV[1] -- as sent, for BITFIELD INCRBY
local cost = tonumber(cost_arg)
local now = clock_ms(ARGV[2])
local call, lease, force = ARGV[3], ARGV[4], ARGV[5] == '1'

local limit = tonumber(ARGV[6])
local cap, heavy_cap = tonumber(ARGV[7]), tonumber(ARGV[8])
local rule = ARGV[9]
local free = tonumber(ARGV[10])
local addon_default, addon_cap = ARGV[11], tonumber(ARGV[12]) or 0

local window, bucket, slots = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
local lease_ttl, slot, call_ttl = tonumber(ARGV[16]), tonumber(ARGV[17]), tonumber(ARGV[18])
local keep = tonumber(ARGV[19])
local outbox_max = ARGV[20]
local thresholds = redis.call('HGET', notify_key, 'thresholds') or ARGV[21]
local queued = 0

local pos = redis.call('HMGET', pos_key, 'head', 'tail', 'bucket', 'slots')
local head, tail = tonumber(pos[1]), tonumber(pos[2])
local fresh = head == nil or tail == nil -- no ring (never used, idle, or evicted)
local used = 0
if not fresh then
	used = tonumber(redis.call('GET', used_key) or '0')
end

-- The window or bucket changed since the ring was laid out: its slots mean other buckets now.
-- Keep what the old layout still holds, all of it in the current bucket: it frees one window
-- from now, never earlier than it would have. Buckets the old layout has expired are not
-- carried over (the running total may still count them: expiry is lazy).
if not fresh and (tonumber(pos[3]) ~= bucket or tonumber(pos[4]) ~= slots) then
	used = relaid_held(redis.call('GET', ring_key) or '', head, tail, tonumber(pos[3]), tonumber(pos[4]), now, used)
	local k = math.floor(now / bucket)
	redis.call('SET', ring_key, string.rep('\0', slots * 8))
	if used > 0 then
		redis.call('BITFIELD', ring_key, 'SET', 'i64', '#' .. string.format('%d', k % slots), string.format('%d', used))
	end
	head, tail = k, k
	redis.call('HSET', pos_key, 'head', string.format('%d', k), 'tail', string.format('%d', k),
		'bucket', string.format('%d', bucket), 'slots', string.format('%d', slots))
	redis.call('SET', used_key, string.format('%d', used))
	local ttl = k * bucket + bucket + window - now
	redis.call('PEXPIRE', ring_key, ttl)
	redis.call('PEXPIRE', pos_key, ttl)
	redis.call('PEXPIRE', used_key, ttl)
end

-- Billing: with add-ons the limit is the free allotment plus the add-on limit stored in Redis,
-- read here so that every replica applies a change on its next call.
local metered = 0
if free then
	limit = capped_limit(free, addon_key, addon_default, addon_cap)
end

-- reset_ms is the wait until the oldest live bucket frees up.
local function reset_ms()
	if used <= 0 then
		return 0
	end
	return tail * bucket + bucket + window - now
end

-- reply is the script's reply (see the header) with the window as it stands.
local function reply(status, retry_ms, bucket_ms, in_flight)
	local debited = 0
	if status == 1 then
		debited = cost
	end
	return {status, used, retry_ms, reset_ms(), bucket_ms, in_flight, metered, limit, day_of(now), debited, queued}
end

-- Debit records: a call whose id is known already does nothing. Compensated or refunded, it
-- answers -4. Debited (this is a resend: a retry whose first reply was lost), it answers -5
-- below, as that debit did, once expiry has run (reset_ms needs a live tail). A forced debit
-- answers -4 for any record: it must apply once, and its writer takes -4 for "written".
-- A few expired records go on every call, so they stay bounded by the rate of debits over
-- their lifetime.
-- A forced debit carries its call's own time, maybe long past: its record lives from the
-- server's time, so it outlasts retries of the write.
local rec_now = now
if force then
	rec_now = clock_ms('')
end
local replay -- the record of this call's debit, when it ran already
if call ~= '' then
	local rec = redis.call('HGET', calls_key, call)
	if rec and record_expires(rec) > rec_now then
		if not force and string.find(rec, '^%d+:d:') then
			replay = rec
		else
			return {-4, 0, 0, 0, 0, 0, 0, limit, day_of(now), 0, 0}
		end
	end
end

-- Expire: buckets with start <= now - window - bucket are free again.
local cutoff = now - window - bucket
local used_held = used
if used > 0 then
	if head * bucket <= cutoff then
		used = 0
		fresh = true
		redis.call('DEL', ring_key, pos_key, used_key)
	elseif tail * bucket <= cutoff then
		local last = math.floor(cutoff / bucket) -- the newest dead bucket, before head
		local vals = ring_read(ring_key, slots, tail, last)
		for i = 1, #vals do
			used = used - vals[i]
		end
		ring_clear(ring_key, slots, tail, last)
		tail = ring_first_held(ring_key, slots, last + 1, head)
		if used < 0 then
			used = 0
		end
		redis.call('SET', used_key, string.format('%d', used), 'KEEPTTL')
		redis.call('HSET', pos_key, 'tail', string.format('%d', tail))
	end
end
if fresh or used < used_held then
	notices(fired_key, outbox_key, used, nil, thresholds, now, window, window + bucket, outbox_max) -- re-arm
end

-- A resend of a debit that ran: the debit's bucket, cost, add-on part and day from its record,
-- the calls in flight with the lease it took (still held unless released or expired since).
if replay then
	local b, c, a, d = string.match(replay, '^%d+:d:(%-?%d+):(%d+):(%d+):(%d+)')
	local in_flight = 0
	if cap > 0 and tonumber(c) > 0 then
		redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', now)
		in_flight = redis.call('ZCARD', inflight_key)
	end
	return {-5, used, 0, reset_ms(), tonumber(b), in_flight, tonumber(a), limit, tonumber(d), tonumber(c), 0}
end

if cost > limit and not force then
	return reply(-1, 0, 0, 0)
end

-- Concurrency comes before credits: a call refused for it is not debited.
local in_flight = 0
if cap > 0 and cost > 0 and not force then
	redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', now)
	in_flight = redis.call('ZCARD', inflight_key)
	if in_flight >= cap then
		return reply(-2, 0, 0, in_flight)
	end
	if heavy_cap > 0 then
		redis.call('ZREMRANGEBYSCORE', heavy_key, '-inf', now)
		local heavy = redis.call('ZCARD', heavy_key)
		if heavy >= heavy_cap then
			return reply(-3, 0, 0, heavy)
		end
	end
end

if used + cost > limit and not force then
	-- Walk the buckets oldest first until enough credits would be free for this cost.
	local need = used + cost - limit
	local got = 0
	local k = tail
	while used > 0 and k <= head do
		local last = math.min(k + 63, head)
		local vals = ring_read(ring_key, slots, k, last)
		for i = 1, #vals do
			got = got + vals[i]
			if got >= need then
				return reply(0, (k + i - 1) * bucket + bucket + window - now, 0, 0)
			end
		end
		k = last + 1
	end
	-- Unreachable while the total matches the buckets; answer a full window rather than 0.
	return reply(0, window + bucket, 0, 0)
end

if cost == 0 then
	return reply(1, 0, 0, 0)
end

local k = math.floor(now / bucket)
local moved = true -- head or tail changes: write them, and push the expiry out
if fresh then
	redis.call('SET', ring_key, string.rep('\0', slots * 8))
	redis.call('HSET', pos_key, 'bucket', string.format('%d', bucket), 'slots', string.format('%d', slots))
	head, tail = k, k
elseif used <= 0 then
	head, tail = k, k -- every slot is zero
elseif k > head then
	head = k -- head - tail < slots: the tail is live, so it started after now - window - bucket
elseif k < tail then
	-- The clock ran back: keep the ring's span within slots.
	k = math.max(k, head - slots + 1)
	tail = k
else
	moved = false
end
redis.call('BITFIELD', ring_key, 'INCRBY', 'i64', '#' .. string.format('%d', k % slots), cost_arg)
local used_before = used
used = used + cost
redis.call('SET', used_key, string.format('%d', used), 'KEEPTTL')
local b = k * bucket

if moved then
	redis.call('HSET', pos_key, 'head', string.format('%d', head), 'tail', string.format('%d', tail))
	-- The keys live until the newest bucket frees (it frees last): later debits into the
	-- same bucket or older ones need not push the expiry again.
	local ttl = head * bucket + bucket + window - now
	redis.call('PEXPIRE', ring_key, ttl)
	redis.call('PEXPIRE', pos_key, ttl)
	redis.call('PEXPIRE', used_key, ttl)
end
queued = notices(fired_key, outbox_key, used, limit, thresholds, now, window, window + bucket, outbox_max)

-- Billing: the part of the debit above the free allotment is add-on consumption, summed per
-- UTC day of now (reply[9]; a refund names the day). Not the bucket's day: a bucket that does
-- not divide a day can start before midnight.
if free then
	metered = above_free(free, used_before, used)
	if metered > 0 then
		meter_add(meter_key, day_of(now), metered, keep)
	end
end

-- Usage by rule: the debit is recorded in the slot holding its bucket b (refund.lua and
-- settle.lua find it from b); usage_add trims old slots and keeps the keys' expiry.
if rule ~= '' and slot > 0 then
	usage_add(use_key, useidx_key, b - b % slot, rule, cost, now, window, slot)
end

if cap > 0 then
	redis.call('ZADD', inflight_key, now + lease_ttl, lease)
	redis.call('PEXPIRE', inflight_key, lease_ttl)
	in_flight = in_flight + 1
	if heavy_cap > 0 then
		redis.call('ZADD', heavy_key, now + lease_ttl, lease)
		redis.call('PEXPIRE', heavy_key, lease_ttl)
	end
end

if call ~= '' and call_ttl > 0 then
	redis.call('HSET', calls_key, call, string.format('%d:d:%d:%d:%d:%d', rec_now + call_ttl, b, cost, metered, day_of(now)))
	redis.call('PEXPIRE', calls_key, call_ttl)
	-- Sweep: one debit in 8 (by the clock) reads 32 more records and drops the expired ones, so
	-- records go at least as fast as they come (one a debit); the hash expires with the last.
	if rec_now % 8 == 0 then
		local r = redis.call('HSCAN', calls_key, redis.call('HGET', calls_key, '~') or '0', 'COUNT', 32)
		local dead = {}
		for i = 1, #r[2], 2 do
			if r[2][i] ~= '~' and record_expires(r[2][i + 1]) <= rec_now then
				dead[#dead + 1] = r[2][i]
			end
		end
		if #dead > 0 then
			redis.call('HDEL', calls_key, unpack(dead))
		end
		redis.call('HSET', calls_key, '~', r[1])
	end
end

return reply(1, 0, b, in_flight)
