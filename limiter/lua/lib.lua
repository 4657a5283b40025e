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

-- debit_record reads the record of a debit (spend.lua's calls hash: "<expires ms>:d:<bucket
-- ms>:<cost>:<add-on>:<day>", with ":s" once settle.lua settled it): its bucket, cost, add-on
-- part and day as numbers, and whether it is settled; nil for a record of another kind
-- (refunded, compensated).
local function debit_record(rec)
	local b, c, a, d, s = string.match(rec, '^%d+:d:(%-?%d+):(%d+):(%d+):(%d+)(:?s?)$')
	if not b then
		return nil
	end
	return tonumber(b), tonumber(c), tonumber(a), tonumber(d), s == ':s'
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

-- The window (see spend.lua's header) lives in the hash pos: head and tail (bucket numbers),
-- used (the running total), the bucket (ms) and slots it was laid out for, and w, where its
-- buckets are. A light window ("s", sparse) keeps them in pos itself, field "<bucket
-- number>" -> credits, a field for each bucket holding credits; once pos holds more than 72
-- fields (64 buckets and its own), they move to a ring: the string ring of slots counters of w bytes ("4": BITFIELD i32, "8": i64, once a
-- bucket outgrew i32; no w: a ring written before w was kept, i64), bucket k in slot
-- k % slots. An empty window starts sparse again. The helpers below take the window as
-- win_load returns it, and buckets from..to with to - from < slots.

-- win_load reads the window of hashes pos (and string ring) laid out for bucket ms and slots,
-- with the credits of bucket k: a table of its keys, its layout (bucket, slots: in force; lb,
-- ls: as stored), head, tail (nil when there is no window), used, sparse, w and at (the
-- credits of k, sparse), and in more the values of the fields of pos named in the list
-- extra (read in the same HMGET; false when absent). A window written before used moved into
-- pos keeps its total in the string used: migrate moves it into pos (scripts that write).
local function win_load(ring, pos, used, bucket, slots, k, migrate, extra)
	local p = redis.call('HMGET', pos, 'head', 'tail', 'bucket', 'slots', 'used', 'w', string.format('%d', k),
		unpack(extra or {}))
	local win = {ring = ring, pos = pos, bucket = bucket, slots = slots, head = tonumber(p[1]), tail = tonumber(p[2]),
		lb = tonumber(p[3]), ls = tonumber(p[4]), used = tonumber(p[5]), sparse = p[6] == 's', w = tonumber(p[6]) or 8,
		k = k, at = tonumber(p[7]) or 0, max = 72, more = {unpack(p, 8)}}
	if win.head == nil or win.tail == nil then
		win.head, win.tail, win.used = nil, nil, 0
	elseif win.used == nil then
		win.used = tonumber(redis.call('GET', used) or '0') or 0
		if migrate then
			redis.call('HSET', pos, 'used', string.format('%d', win.used))
			redis.call('DEL', used)
		end
	end
	return win
end

-- win_map returns the buckets of a sparse window, bucket number -> credits, read once.
local function win_map(win)
	if not win.map then
		win.map = {}
		local f = redis.call('HGETALL', win.pos)
		for i = 1, #f, 2 do
			local k = tonumber(f[i])
			if k then
				win.map[k] = tonumber(f[i + 1])
			end
		end
	end
	return win.map
end

-- win_read returns the credits of buckets from..to, oldest first (a ring: one GETRANGE per
-- contiguous run).
local function win_read(win, from, to)
	local vals = {}
	if win.sparse then
		local map = win_map(win)
		for k = from, to do
			vals[#vals + 1] = map[k] or 0
		end
		return vals
	end
	local w, slots = win.w, win.slots
	local fmt = '>i' .. w
	local k = from
	while k <= to do
		local s = k % slots
		local n = math.min(to - k + 1, slots - s) -- contiguous up to the end of the string
		local raw = redis.call('GETRANGE', win.ring, s * w, (s + n) * w - 1)
		local at = 1
		for _ = 1, n do
			local v = 0
			if at + w - 1 <= #raw then
				v = struct.unpack(fmt, raw, at)
			end
			at = at + w
			vals[#vals + 1] = v
		end
		k = k + n
	end
	return vals
end

-- win_get returns the credits of bucket k.
local function win_get(win, k)
	if not win.sparse then
		return win_read(win, k, k)[1]
	elseif win.map then
		return win.map[k] or 0
	elseif k == win.k then
		return win.at
	end
	return tonumber(redis.call('HGET', win.pos, string.format('%d', k)) or '0')
end

-- win_clear empties buckets from..to and returns the credits they held (used is the
-- caller's to write).
local function win_clear(win, from, to)
	local gone = 0
	if win.sparse then
		local fields = {}
		for k, v in pairs(win_map(win)) do
			if k >= from and k <= to then
				gone = gone + v
				fields[#fields + 1] = string.format('%d', k)
				win.map[k] = nil
			end
		end
		if #fields > 0 then
			redis.call('HDEL', win.pos, unpack(fields))
		end
		return gone
	end
	for _, v in ipairs(win_read(win, from, to)) do
		gone = gone + v
	end
	local w, slots = win.w, win.slots
	local k = from
	while k <= to do
		local s = k % slots
		local n = math.min(to - k + 1, slots - s)
		redis.call('SETRANGE', win.ring, s * w, string.rep('\0', n * w))
		k = k + n
	end
	return gone
end

-- win_first_held returns the first bucket in from..to holding credits (to if none does).
local function win_first_held(win, from, to)
	if win.sparse then
		local first = to
		for k, v in pairs(win_map(win)) do
			if v ~= 0 and k >= from and k < first then
				first = k
			end
		end
		return first
	end
	local k = from
	while k < to do
		local last = math.min(k + 63, to)
		local vals = win_read(win, k, last)
		for i = 1, #vals do
			if vals[i] ~= 0 then
				return k + i - 1
			end
		end
		k = last + 1
	end
	return to
end

-- win_last_held returns the last bucket in from..to holding credits (from if none does):
-- win_first_held, newest first.
local function win_last_held(win, from, to)
	if win.sparse then
		local last = from
		for k, v in pairs(win_map(win)) do
			if v ~= 0 and k <= to and k > last then
				last = k
			end
		end
		return last
	end
	local k = to
	while k > from do
		local first = math.max(k - 63, from)
		local vals = win_read(win, first, k)
		for i = #vals, 1, -1 do
			if vals[i] ~= 0 then
				return first + i - 1
			end
		end
		k = first - 1
	end
	return from
end

-- win_ring moves a sparse window's buckets into a ring of i32 counters (i64 if one needs
-- them), expiring with pos.
local function win_ring(win)
	local w = 4
	for _, v in pairs(win_map(win)) do
		if v > 2147483647 or v < -2147483648 then
			w = 8
		end
	end
	local sets, fields = {}, {}
	for k, v in pairs(win.map) do
		sets[#sets + 1] = 'SET'
		sets[#sets + 1] = 'i' .. w * 8
		sets[#sets + 1] = '#' .. string.format('%d', k % win.slots)
		sets[#sets + 1] = string.format('%d', v)
		fields[#fields + 1] = string.format('%d', k)
	end
	redis.call('SET', win.ring, string.rep('\0', win.slots * w))
	local ttl = redis.call('PTTL', win.pos)
	if ttl > 0 then
		redis.call('PEXPIRE', win.ring, ttl)
	end
	if #sets > 0 then
		redis.call('BITFIELD', win.ring, unpack(sets))
		redis.call('HDEL', win.pos, unpack(fields))
	end
	redis.call('HSET', win.pos, 'w', string.format('%d', w))
	win.sparse, win.w, win.map = false, w, nil
end

-- win_widen rewrites a ring of i32 counters as i64, for a bucket that outgrew i32.
local function win_widen(win)
	local raw = redis.call('GET', win.ring) or ''
	local parts = {}
	for s = 0, win.slots - 1 do
		local v = 0
		if s * 4 + 4 <= #raw then
			v = struct.unpack('>i4', raw, s * 4 + 1)
		end
		parts[#parts + 1] = struct.pack('>i8', v)
	end
	local ttl = redis.call('PTTL', win.ring)
	redis.call('SET', win.ring, table.concat(parts))
	if ttl > 0 then
		redis.call('PEXPIRE', win.ring, ttl)
	end
	redis.call('HSET', win.pos, 'w', '8')
	win.w = 8
end

-- win_add adds n credits (n < 0 takes them; a bucket never goes below zero) to bucket k and
-- to used (stored at least 0), writing the pos fields of the list more (name, value, ...)
-- with them, and returns the bucket's credits. A sparse window's new bucket that takes pos
-- past 72 fields (about 64 buckets: a listpack of about 700 bytes, still well under the
-- ring's 5.8 KB and Redis's 128-entry listpack limit) moves its buckets to a ring.
local function win_add(win, k, n, more)
	win.used = win.used + n
	local fields = {'used', string.format('%d', math.max(win.used, 0))}
	for _, f in ipairs(more or {}) do
		fields[#fields + 1] = f
	end
	if not win.sparse then
		local slot = '#' .. string.format('%d', k % win.slots)
		local v = redis.call('BITFIELD', win.ring, 'OVERFLOW', 'FAIL', 'INCRBY', 'i' .. win.w * 8, slot, n)[1]
		if not v then
			win_widen(win)
			v = redis.call('BITFIELD', win.ring, 'INCRBY', 'i64', slot, n)[1]
		end
		redis.call('HSET', win.pos, unpack(fields))
		return v
	end
	local before = win_get(win, k)
	local v = before + n
	local ks = string.format('%d', k)
	if v == 0 then
		redis.call('HDEL', win.pos, ks)
	else
		fields[#fields + 1] = ks
		fields[#fields + 1] = string.format('%d', v)
	end
	redis.call('HSET', win.pos, unpack(fields))
	if win.map then
		win.map[k] = v ~= 0 and v or nil
	end
	if k == win.k then
		win.at = v
	end
	if before == 0 and v ~= 0 and redis.call('HLEN', win.pos) > win.max then
		win_ring(win)
	end
	return v
end

-- win_relaid_held returns the credits a window laid out for another bucket (lb ms) and slots
-- (ls) still holds at now: the sum of its buckets a spend under that layout would not expire.
-- That layout's window is not stored; (ls - 1) * lb is at least that window, so no credit is
-- freed early. An unreadable layout keeps the whole running total. spend.lua carries these
-- credits over; usage.lua reports them.
local function win_relaid_held(win, now)
	local ob, os = win.lb, win.ls
	if ob == nil or os == nil or ob <= 0 or os < 2 then
		return win.used
	end
	local first = math.max(win.tail, math.floor((now - os * ob) / ob) + 1, win.head - os + 1)
	local held = 0
	if win.sparse then
		for k, v in pairs(win_map(win)) do
			if k >= first and k <= win.head then
				held = held + v
			end
		end
		return math.max(held, 0)
	end
	local raw, w = redis.call('GET', win.ring) or '', win.w
	for k = first, win.head do
		local at = (k % os) * w + 1
		if at + w - 1 <= #raw then
			held = held + struct.unpack('>i' .. w, raw, at)
		end
	end
	return math.max(held, 0)
end

-- win_expire sets the window's keys to expire in ttl ms.
local function win_expire(win, ttl)
	redis.call('PEXPIRE', win.pos, ttl)
	if not win.sparse then
		redis.call('PEXPIRE', win.ring, ttl)
	end
end

-- notices judges an org's usage notices after its usage changed to used credits (notices.go
-- says what they are): it re-arms each fired threshold (hash fired: percent -> the level in
-- credits it fired at) that usage is now below, and, given the limit in force (a number;
-- nil only re-arms), fires each threshold of thresholds ("50,80,100", ascending) whose level,
-- ceil(percent x limit / 100), usage reached and that has not fired: one event per threshold
-- in the stream outbox (fields p, used, limit, at (ms), w (window ms)), at most max kept.
-- With the limit, a fired threshold is judged at its level under that limit. The fired hash
-- lives keep ms from the last debit, as long as any credit it counts. Returns the events
-- queued, and whether any threshold is left fired. Every script that changes used calls it.
-- Go twin: MemoryStore's judgeNotices.
local function notices(fired, outbox, used, limit, thresholds, now, window, keep, max)
	local f = redis.call('HGETALL', fired)
	if #f == 0 and (limit == nil or thresholds == '') then
		return 0, false
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
	return queued, queued > 0 or #f > 2 * #gone
end

-- win_vacated keeps the tail on the oldest bucket holding credits and the head on the newest
-- once bucket k was emptied while the window still holds used credits (a debit whose clock
-- ran back is bounded by head, which must hold credits, as the memory store's newest bucket
-- does).
local function win_vacated(win, k)
	if win.used > 0 and k == win.tail then
		win.tail = win_first_held(win, win.tail + 1, win.head)
		redis.call('HSET', win.pos, 'tail', string.format('%d', win.tail))
	end
	if win.used > 0 and k == win.head then
		win.head = win_last_held(win, win.tail, win.head - 1)
		redis.call('HSET', win.pos, 'head', string.format('%d', win.head))
	end
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
