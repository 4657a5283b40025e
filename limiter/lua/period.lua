-- period.lua: count one call of a monthly plan against its subscription period, atomically:
-- the monthly call limit first, then the additional calls (metered per UTC day for billing).
--
-- A period starts at UTC midnight of the anchor day of a month and ends at the same day of the
-- next month. Nothing rolls over: each period has its own counter. A rejected call writes
-- nothing.
--
-- KEYS[1]  hash: period start (UTC day number) -> calls counted in that period
-- KEYS[2]  string: additional calls allowed per period, set through the admin API ("0" is off)
-- KEYS[3]  hash: UTC day -> additional calls used that day (the meter spend.lua also uses)
-- ARGV[1]  "spend" (count one call), "read" (count nothing), or "refund" (take one back)
-- ARGV[2]  monthly call limit (calls per period)
-- ARGV[3]  additional calls to allow while KEYS[2] does not exist (the configured ones)
-- ARGV[4]  anchor day of the month (1 to 28)
-- ARGV[5]  now (unix ms), or "" to use the Redis server's clock (TIME)
-- ARGV[6]  days the meter keeps
-- ARGV[7]  refund: the period start (day number) the call was counted in
-- ARGV[8]  refund: 1 if the call was an additional call, else 0 (informational)
-- ARGV[9]  refund: the UTC day of the call (an additional call taken back is un-metered on it)
--
-- Reply (integers): {status, used, limit, additional, period_start_day, period_end_day, day}
--   status      1 counted (or read, or refunded), 0 rejected: the period's calls are used up
--   used        calls counted in the period, this one included
--   limit       monthly limit + additional calls allowed
--   additional  1 when this call is an additional call (metered on day), else 0
--   period_*    the period, as UTC day numbers (start inclusive, end exclusive)
--   day         the UTC day of now

local period_key, addon_key, meter_key = KEYS[1], KEYS[2], KEYS[3]

local mode = ARGV[1]
local monthly = tonumber(ARGV[2])
local anchor = tonumber(ARGV[4])
local now = clock_ms(ARGV[5])
local keep = tonumber(ARGV[6])

if mode == 'refund' then
	-- The period holds one call fewer. If it held more than the monthly limit, one call fewer
	-- is additional, whichever call is taken back: a refunded monthly call makes a later
	-- additional call a monthly one. So the meter follows the count, not the refunded call.
	local before = tonumber(redis.call('HGET', period_key, ARGV[7]) or '0')
	if before <= 0 then
		return {1, 0, 0, 0, 0, 0, 0}
	end
	if before <= 1 then
		redis.call('HDEL', period_key, ARGV[7])
	else
		redis.call('HINCRBY', period_key, ARGV[7], -1)
	end
	if before > monthly then
		meter_take(meter_key, ARGV[9], 1)
	end
	return {1, 0, 0, 0, 0, 0, 0}
end

-- Civil calendar <-> day numbers (days since 1970-01-01), H. Hinnant's algorithms.
local function days_from_civil(y, m, d)
	if m <= 2 then
		y = y - 1
	end
	local era = math.floor(y / 400)
	local yoe = y - era * 400
	local mp = m > 2 and m - 3 or m + 9
	local doy = math.floor((153 * mp + 2) / 5) + d - 1
	local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
	return era * 146097 + doe - 719468
end

local function civil_from_days(z)
	z = z + 719468
	local era = math.floor(z / 146097)
	local doe = z - era * 146097
	local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
	local y = yoe + era * 400
	local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
	local mp = math.floor((5 * doy + 2) / 153)
	local d = doy - math.floor((153 * mp + 2) / 5) + 1
	local m = mp < 10 and mp + 3 or mp - 9
	if m <= 2 then
		y = y + 1
	end
	return y, m, d
end

local day = day_of(now)
local y, m, d = civil_from_days(day)
if d < anchor then
	m = m - 1
	if m == 0 then
		m, y = 12, y - 1
	end
end
local start = days_from_civil(y, m, anchor)
local ny, nm = y, m + 1
if nm == 13 then
	ny, nm = y + 1, 1
end
local finish = days_from_civil(ny, nm, anchor)
local field = string.format('%d', start)

-- At most twice the monthly limit, even if a larger number was stored under an older limit.
local limit = capped_limit(monthly, addon_key, ARGV[3], 2 * monthly)
local used = tonumber(redis.call('HGET', period_key, field) or '0')

if mode ~= 'spend' then
	return {1, used, limit, 0, start, finish, day}
end
if used + 1 > limit then
	return {0, used, limit, 0, start, finish, day}
end

if redis.call('HINCRBY', period_key, field, 1) == 1 then
	-- A new period: drop the counters of periods long gone.
	drop_through(period_key, start - keep - 1)
end
redis.call('PEXPIRE', period_key, (finish - day + keep) * 86400000)
used = used + 1

local extra = 0
if used > monthly then
	extra = 1
	meter_add(meter_key, day, 1, keep)
end

return {1, used, limit, extra, start, finish, day}
