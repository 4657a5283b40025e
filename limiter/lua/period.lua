-- period.lua: count one call of a monthly plan against its subscription period, atomically:
-- the monthly call limit first, then the additional calls (metered per UTC day for billing).
--
-- A period starts at UTC midnight of the anchor day of a month and ends at the same day of the
-- next month. Nothing rolls over: each period has its own counter. A rejected call writes
-- nothing.
--
-- KEYS (limiter.RedisKeys, period list)
--   [1]  period      hash: period start (UTC day number) -> calls counted in that period
--   [2]  addon       string: additional calls allowed per period, set through the admin API
--                    ("0" is off)
--   [3]  meter       hash: UTC day -> additional calls used that day (spend.lua's meter)
--
-- ARGV, in three groups as RedisStore's SpendCall and RefundCall build them.
-- The call:
--   [1]  mode        "spend" (count one call), "read" (count nothing), or "refund" (take one back)
--   [2]  now         unix ms, or "" to use the Redis server's clock (TIME); unused by refund
--   [3]  start       refund: the period start (day number) the call was counted in
--   [4]  day         refund: the UTC day of the call (an additional call taken back is
--                    un-metered on it)
-- The org's plan (limiter.PeriodKey):
--   [5]  monthly     calls per period
--   [6]  additional  additional calls to allow while KEYS[2] does not exist (the configured ones)
--   [7]  max_additional  the most additional calls that count, whatever is stored
--   [8]  anchor      anchor day of the month (1 to 28)
-- The store:
--   [9]  keep        days the meter (and the period counters past their period) keep
--
-- Reply (integers; limiter.periodReply, decoded by name in decodePeriodReply):
--   {status, used, limit, additional, period_start_day, period_end_day, day}
--   status      1 counted (or read, or refunded), 0 rejected: the period's calls are used up
--   used        calls counted in the period, this one included
--   limit       monthly limit + additional calls allowed
--   additional  1 when this call is an additional call (metered on day), else 0
--   period_*    the period, as UTC day numbers (start inclusive, end exclusive)
--   day         the UTC day of now
--   (refund replies {1, 0, 0, 0, 0, 0, 0})

local period_key, addon_key, meter_key = KEYS[1], KEYS[2], KEYS[3]

local mode = ARGV[1]
local monthly = tonumber(ARGV[5])
local keep = tonumber(ARGV[9])

if mode == 'refund' then
	-- The period holds one call fewer. If it held more than the monthly limit, one call fewer
	-- is additional, whichever call is taken back: a refunded monthly call makes a later
	-- additional call a monthly one. So the meter follows the count, not the refunded call.
	local start, day = ARGV[3], ARGV[4]
	local before = tonumber(redis.call('HGET', period_key, start) or '0')
	if before <= 0 then
		return {1, 0, 0, 0, 0, 0, 0}
	end
	if before <= 1 then
		redis.call('HDEL', period_key, start)
	else
		redis.call('HINCRBY', period_key, start, -1)
	end
	if before > monthly then
		meter_take(meter_key, day, 1)
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

local now = clock_ms(ARGV[2])
local anchor = tonumber(ARGV[8])
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

-- At most max_additional, even if a larger number was stored under an older limit.
local limit = capped_limit(monthly, addon_key, ARGV[6], tonumber(ARGV[7]))
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
