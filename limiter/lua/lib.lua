-- lib.lua: the helpers the scripts share. A script cannot call another's functions, so the
-- limiter builds every script at init as the helpers of this file it uses (directly or
-- through other helpers) followed by the script's own file (limiter/scripts.go); each helper
-- exists once. A helper is one paragraph, its comment and its function, with no blank line
-- inside, and uses only helpers above it. To run a script by hand:
--   cat lib.lua spend.lua > whole.lua && redis-cli --eval whole.lua KEYS , ARGV
--
-- Helpers touch only the keys and numbers passed to them. Formulas live in Go, and a script
-- gets the numbers it needs as ARGV; the formulas here use what only a script can know (the
-- server's clock, a setting the admin API stores in Redis, what a window holds), and each
-- has a Go twin that limiter's tests run against it (lua_test.go).

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

-- meter_take takes n (> 0) off the meter's record of day (a string), dropping it at zero.
local function meter_take(key, day, n)
	if n > 0 and redis.call('HINCRBY', key, day, -n) <= 0 then
		redis.call('HDEL', key, day)
	end
end

-- meter_drop takes drop credits off the meter (key) when credits of a debit that metered own
-- add-on credits on day go back: its own part from its day, the rest (later calls metered
-- because the debit held free credits) from the next day first, where they were metered if
-- the give-back came after midnight, else from day. Returns the part of own taken.
local function meter_drop(key, day, drop, own)
	own = math.min(drop, own)
	meter_take(key, string.format('%d', day), own)
	local rest = drop - own
	if rest > 0 then
		local next_day = string.format('%d', day + 1)
		local n = math.min(rest, tonumber(redis.call('HGET', key, next_day) or '0') or 0)
		meter_take(key, next_day, n)
		meter_take(key, string.format('%d', day), rest - n)
	end
	return own
end

-- The window's ring (see spend.lua's header): bucket number k is counted in slot k % slots of
-- the string at key ring, eight bytes a slot (BITFIELD i64). The helpers below take buckets
-- from..to with to - from < slots.

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

-- ring_last_held returns the last bucket in from..to holding credits (from if none does):
-- ring_first_held, newest first.
local function ring_last_held(ring, slots, from, to)
	local k = to
	while k > from do
		local first = math.max(k - 63, from)
		local vals = ring_read(ring, slots, first, k)
		for i = #vals, 1, -1 do
			if vals[i] ~= 0 then
				return first + i - 1
			end
		end
		k = first - 1
	end
	return from
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

-- ring_vacated keeps the tail on the oldest bucket holding credits and the head on the newest
-- once bucket k was emptied while the window (its hash pos) still holds used credits (a
-- debit whose clock ran back is bounded by head, which must hold credits, as the memory
-- store's newest bucket does). Returns head and tail.
local function ring_vacated(ring, pos, slots, k, head, tail, used)
	if used > 0 and k == tail then
		tail = ring_first_held(ring, slots, tail + 1, head)
		redis.call('HSET', pos, 'tail', string.format('%d', tail))
	end
	if used > 0 and k == head then
		head = ring_last_held(ring, slots, tail, head - 1)
		redis.call('HSET', pos, 'head', string.format('%d', head))
	end
	return head, tail
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

-- usage_take takes n credits (> 0) off rule's usage slot starting at s (ms), dropping its
-- member at zero.
local function usage_take(use, idx, s, rule, n)
	local m = string.format('%d', s) .. ':' .. rule
	local rec = tonumber(redis.call('HGET', use, m) or '0')
	if rec > 0 then
		if rec <= n then
			redis.call('HDEL', use, m)
			redis.call('ZREM', idx, m)
		else
			redis.call('HINCRBY', use, m, -n)
		end
	end
end
