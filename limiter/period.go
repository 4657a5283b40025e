package limiter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrPeriodExhausted means a monthly plan's calls for the subscription period (monthly limit
// plus additional calls) are used up; PeriodDecision.End says when the next period starts.
var ErrPeriodExhausted = errors.New("calls of the subscription period used up")

// PeriodKey names one org's monthly plan: a call quota per subscription period.
type PeriodKey struct {
	// Org is the organization ID (the Redis hash tag, as in Key).
	Org string
	// Monthly is the calls per subscription period.
	Monthly int64
	// Additional is the additional calls allowed per period while the store holds no
	// additional limit for the org (set with Meter.SetAddon, which holds both the add-on
	// credits of window plans and the additional calls of monthly plans). Whichever applies
	// counts as at most MaxAdditional.
	Additional int64
	// MaxAdditional is the most additional calls per period that count, whatever is
	// configured or stored (the plan's rule; see package plans).
	MaxAdditional int64
	// AnchorDay is the day of the month (1 to 28) each period starts on, at 00:00 UTC.
	AnchorDay int

	redisKeys *RedisKeys // built by Prepared; nil: built per call
}

// Prepared returns k with its Redis key names built, for a PeriodKey kept per org: its calls
// then build none.
func (k PeriodKey) Prepared() PeriodKey {
	k.redisKeys = k.redis()
	return k
}

// redis returns k's Redis keys: those Prepared built, else new ones.
func (k PeriodKey) redis() *RedisKeys {
	if k.redisKeys != nil {
		return k.redisKeys
	}
	return NewRedisKeys(k.Org)
}

// PeriodDecision is the result of counting one call of a monthly plan.
type PeriodDecision struct {
	// Allowed reports whether the call was counted.
	Allowed bool
	// Used is the calls counted in the period (this one included when allowed); Limit is the
	// monthly limit plus the additional calls allowed.
	Used, Limit int64
	// Additional is 1 when this call was beyond the monthly limit: an additional call,
	// metered for billing on Day (see Meter.Metered), else 0.
	Additional int64
	// Day is the UTC day of the call (days since 1970-01-01).
	Day int64
	// Start and End bound the subscription period (End is the start of the next).
	Start, End time.Time
}

// PeriodStore counts the calls of monthly plans. Both stores implement it, with the same
// semantics.
type PeriodStore interface {
	// SpendCall counts one call of k's plan at now (zero: the store's clock), or rejects it
	// with ErrPeriodExhausted and counts nothing. With count false it only reads.
	SpendCall(ctx context.Context, k PeriodKey, now time.Time, count bool) (PeriodDecision, error)
	// RefundCall takes back a counted call (the upstream was never reached, or the window
	// refused it), and un-meters it if it was an additional call.
	RefundCall(ctx context.Context, k PeriodKey, d PeriodDecision) error
}

var (
	_ PeriodStore = (*RedisStore)(nil)
	_ PeriodStore = (*MemoryStore)(nil)
)

var periodScript = mustScript("period.lua")

// PeriodOf returns the subscription period containing t for periods starting on day anchor
// (1 to 28) of each month, at 00:00 UTC.
func PeriodOf(t time.Time, anchor int) (start, end time.Time) {
	t = t.UTC()
	start = time.Date(t.Year(), t.Month(), anchor, 0, 0, 0, 0, time.UTC)
	if t.Day() < anchor {
		start = start.AddDate(0, -1, 0)
	}
	return start, start.AddDate(0, 1, 0)
}

func dayTime(day int64) time.Time { return time.UnixMilli(day * msPerDay).UTC() }

func checkAnchor(k PeriodKey) error {
	if k.AnchorDay < 1 || k.AnchorDay > 28 {
		return fmt.Errorf("period %s: anchor day %d not in 1..28", k.Org, k.AnchorDay)
	}
	return nil
}

// SpendCall implements PeriodStore.
func (s *RedisStore) SpendCall(ctx context.Context, k PeriodKey, now time.Time, count bool) (PeriodDecision, error) {
	if err := checkAnchor(k); err != nil {
		return PeriodDecision{}, err
	}
	mode := "read"
	if count {
		mode = "spend"
	}
	keys := k.redis().period
	cmd := appendPeriodArgs(periodScript.command(keys, periodArgc), k, mode, msArg(now), "", "")
	v, err := periodScript.runInts(ctx, s.client, keys, cmd)
	if err != nil {
		return PeriodDecision{}, fmt.Errorf("period %s: %w", k.Org, err)
	}
	r, err := decodePeriodReply(v)
	if err != nil {
		return PeriodDecision{}, fmt.Errorf("period %s: %w", k.Org, err)
	}
	d := PeriodDecision{Allowed: r.status == 1, Used: r.used, Limit: r.limit, Additional: r.additional,
		Start: dayTime(r.startDay), End: dayTime(r.endDay), Day: r.day}
	if !d.Allowed {
		return d, ErrPeriodExhausted
	}
	return d, nil
}

// RefundCall implements PeriodStore.
func (s *RedisStore) RefundCall(ctx context.Context, k PeriodKey, d PeriodDecision) error {
	if !d.Allowed {
		return nil
	}
	keys := k.redis().period
	cmd := appendPeriodArgs(periodScript.command(keys, periodArgc), k, "refund", "", strconv.FormatInt(Day(d.Start), 10), strconv.FormatInt(d.Day, 10))
	if err := periodScript.run(ctx, s.client, keys, cmd).Err(); err != nil {
		return fmt.Errorf("period refund %s: %w", k.Org, err)
	}
	return nil
}

// periodArgc is the length of period.lua's ARGV.
const periodArgc = 9

// appendPeriodArgs appends period.lua's ARGV to cmd, in the groups of its header: the call
// (mode, now, and for a refund the period start and the call's day), the plan, the store.
func appendPeriodArgs(cmd []any, k PeriodKey, mode, now, start, day string) []any {
	return append(cmd, mode, now, start, day, // the call
		k.Monthly, k.Additional, k.MaxAdditional, k.AnchorDay, // the plan
		meterDaysArg) // the store
}

// periodReply is period.lua's reply, field for field (its header says what each means).
type periodReply struct {
	status, used, limit, additional, startDay, endDay, day int64
}

// decodePeriodReply reads period.lua's reply: the one place that knows its order.
func decodePeriodReply(v []int64) (periodReply, error) {
	if len(v) != 7 {
		return periodReply{}, fmt.Errorf("script replied %d values, want 7", len(v))
	}
	return periodReply{status: v[0], used: v[1], limit: v[2], additional: v[3], startDay: v[4], endDay: v[5], day: v[6]}, nil
}

// SpendCall implements PeriodStore.
func (s *MemoryStore) SpendCall(_ context.Context, k PeriodKey, now time.Time, count bool) (PeriodDecision, error) {
	if err := checkAnchor(k); err != nil {
		return PeriodDecision{}, err
	}
	if now.IsZero() {
		now = time.Now()
	}
	start, end := PeriodOf(now, k.AnchorDay)
	w := s.get(k.Org)
	w.mu.Lock()
	defer w.mu.Unlock()
	sd := Day(start)
	limit := cappedLimit(k.Monthly, w.addon, w.addonSet, k.Additional, k.MaxAdditional)
	d := PeriodDecision{Allowed: true, Used: w.periods[sd], Limit: limit, Day: Day(now), Start: start, End: end}
	if !count {
		return d, nil
	}
	if d.Used+1 > d.Limit {
		d.Allowed = false
		return d, ErrPeriodExhausted
	}
	if w.periods == nil {
		w.periods = make(map[int64]int64)
	}
	if _, ok := w.periods[sd]; !ok {
		for p := range w.periods {
			if p < sd-MeterDays {
				delete(w.periods, p)
			}
		}
	}
	w.periods[sd]++
	d.Used++
	if d.Used > k.Monthly {
		d.Additional = 1
		w.meterDay(d.Day, 1)
	}
	return d, nil
}

// RefundCall implements PeriodStore.
func (s *MemoryStore) RefundCall(_ context.Context, k PeriodKey, d PeriodDecision) error {
	if !d.Allowed {
		return nil
	}
	w := s.get(k.Org)
	w.mu.Lock()
	defer w.mu.Unlock()
	sd := Day(d.Start)
	before := w.periods[sd]
	if before <= 0 {
		return nil
	}
	if w.periods[sd]--; w.periods[sd] <= 0 {
		delete(w.periods, sd)
	}
	// One call fewer is additional when the period held more than the monthly limit,
	// whichever call is taken back (as period.lua).
	if before > k.Monthly {
		w.unmeterDay(d.Day, 1)
	}
	return nil
}
