-- spend.lua: expire old buckets, check, and debit one org's rolling window, and take a
-- concurrency lease, atomically.
--
-- A credit consumed at time t is recorded in the bucket starting at b = t - t % bucket and is
-- live while now < b + bucket + window: never freed before t + window, at most one bucket later.
-- A lease is a member of a sorted set scored by its expiry; leases of a replica that died
-- expire on their own. A rejected call writes nothing except the removal of expired buckets and
-- leases.
--
-- Window storage: bucket number k = start / bucket. The hash pos holds head (newest bucket
-- number written), tail (oldest live bucket number holding credits), used (the running total
-- of the credits held by live buckets), the bucket (ms) and slots the window was laid out
-- for, and w, where the buckets are. A window starts sparse (w "s"): each bucket holding
-- credits is a field of pos, "<k>" -> credits, so a light org's window is one small hash
-- (about 150 bytes, and 9 a bucket). Once pos holds more than 72 fields (about 64 buckets)
-- they move to a ring: bucket k counted in slot k % slots of the string ring, slots =
-- ceil(window / bucket) + 1 big-endian signed counters (slots comes from Go, ARGV[15]) of
-- w = 4 bytes (BITFIELD i32; 5,764 bytes for 24h in minutes, whatever the request rate), or
-- 8 (i64) once a bucket outgrew i32. A ring that empties gives way to a sparse window again.
-- Windows written before pos held used and w keep a ring of i64 counters and their total
-- in the string used; the scripts read them as such and move the total into pos on their
-- next write. Invariants: head - tail < slots; no bucket outside tail..head holds credits;
-- when used > 0 the tail bucket holds credits. Expiry walks forward from the tail, so each
-- bucket is read and cleared once (amortized O(1) per call). The window's helpers (win_*)
-- are in lib.lua.
--
-- KEYS (limiter.RedisKeys, spend list)
--   [1]  ring        string: the ring of per-bucket credits (slots * w bytes), once sparse
--                    gave way
--   [2]  pos         hash: head, tail (bucket numbers), used, bucket (ms), slots and w of the
--                    layout, while sparse "<bucket number>" -> credits, and cx and q (below)
--   [3]  used        string: the running total of a window written before used moved into pos
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

local cost = tonumber(ARGV[1])
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
local queued = 0

-- pos also holds cx, the server's time (ms) until which the calls hash is known to live, and
-- q, "1" when the org's last debit found no thresholds (in KEYS[11] or ARGV[21]) and none
-- fired: while the key brings none either, its notices cost nothing (the admin API clears q
-- when it sets thresholds; a debit or settle that fires one clears it).
local win = win_load(ring_key, pos_key, used_key, bucket, slots, math.floor(now / bucket), true, {'cx', 'q'})
local calls_until = tonumber(win.more[1])
local quiet = ARGV[21] == '' and win.more[2] == '1'
local thresholds = ''
if not quiet then
	thresholds = redis.call('HGET', notify_key, 'thresholds') or ARGV[21]
end
local head, tail, used = win.head, win.tail, win.used
local fresh = head == nil -- no window (never used, idle, or evicted)

-- The window or bucket changed since the ring was laid out: its slots mean other buckets now.
-- Keep what the old layout still holds, all of it in the current bucket: it frees one window
-- from now, never earlier than it would have. Buckets the old layout has expired are not
-- carried over (the running total may still count them: expiry is lazy).
if not fresh and (win.lb ~= bucket or win.ls ~= slots) then
	used = win_relaid_held(win, now)
	local k = math.floor(now / bucket)
	redis.call('DEL', ring_key, pos_key)
	win.sparse, win.map, win.used = true, {}, 0
	head, tail = k, k
	win_add(win, k, used, {'head', string.format('%d', k), 'tail', string.format('%d', k),
		'bucket', string.format('%d', bucket), 'slots', string.format('%d', slots), 'w', 's'})
	win_expire(win, k * bucket + bucket + window - now)
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
		if not force and debit_record(rec) then
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
		redis.call('DEL', ring_key, pos_key)
		win.map, win.at = {}, 0
	elseif tail * bucket <= cutoff then
		local last = math.floor(cutoff / bucket) -- the newest dead bucket, before head
		used = math.max(used - win_clear(win, tail, last), 0)
		tail = win_first_held(win, last + 1, head)
		win.used, win.tail = used, tail
		redis.call('HSET', pos_key, 'used', string.format('%d', used), 'tail', string.format('%d', tail))
	end
end
if (fresh or used < used_held) and not quiet then
	notices(fired_key, outbox_key, used, nil, thresholds, now, window, window + bucket, outbox_max) -- re-arm
end

-- A resend of a debit that ran: the debit's bucket, cost, add-on part and day from its record,
-- the calls in flight with the lease it took (still held unless released or expired since).
if replay then
	local b, c, a, d = debit_record(replay)
	local in_flight = 0
	if cap > 0 and c > 0 then
		redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', now)
		in_flight = redis.call('ZCARD', inflight_key)
	end
	return {-5, used, 0, reset_ms(), b, in_flight, a, limit, d, c, 0}
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
		local vals = win_read(win, k, last)
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
local more = {}
if fresh then
	win.sparse = true -- a new window starts sparse
	more = {'bucket', string.format('%d', bucket), 'slots', string.format('%d', slots), 'w', 's'}
	head, tail = k, k
elseif used <= 0 then
	head, tail = k, k -- every bucket is empty: a ring gives way to a sparse window
	if not win.sparse then
		redis.call('DEL', ring_key)
		win.sparse, win.map = true, {}
		more = {'w', 's'}
	end
elseif k > head then
	head = k -- head - tail < slots: the tail is live, so it started after now - window - bucket
elseif k < tail then
	-- The clock ran back: keep the ring's span within slots.
	k = math.max(k, head - slots + 1)
	tail = k
else
	moved = false
end
local used_before = used
if moved then
	more[#more + 1] = 'head'
	more[#more + 1] = string.format('%d', head)
	more[#more + 1] = 'tail'
	more[#more + 1] = string.format('%d', tail)
end
win.used = used
win_add(win, k, cost, more)
used = used + cost
local b = k * bucket

if moved then
	-- The keys live until the newest bucket frees (it frees last): later debits into the
	-- same bucket or older ones need not push the expiry again.
	win_expire(win, head * bucket + bucket + window - now)
end
if not quiet then
	local fired
	queued, fired = notices(fired_key, outbox_key, used, limit, thresholds, now, window, window + bucket, outbox_max)
	if thresholds == '' and not fired then
		redis.call('HSET', pos_key, 'q', '1')
	elseif win.more[2] == '1' then
		redis.call('HDEL', pos_key, 'q')
	end
end

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
	-- The hash outlives the record: its expiry is pushed to two TTLs from now once it is
	-- within one, so most debits need not push it (refund.lua and settle.lua only lengthen it).
	local server_now = rec_now
	if ARGV[2] ~= '' and not force then
		server_now = clock_ms('')
	end
	if not calls_until or calls_until < server_now + call_ttl then
		redis.call('PEXPIRE', calls_key, 2 * call_ttl)
		redis.call('HSET', pos_key, 'cx', string.format('%d', server_now + 2 * call_ttl))
	end
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
