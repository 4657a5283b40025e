package limiter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// MeterDays is how many UTC days of add-on consumption a store keeps (at least the 92 days,
// three months, a billing report may ask for). A day's record goes when a later day is
// metered MeterDays or more days after it, or when the org meters nothing for MeterDays days.
// The scripts get it as an argument.
const MeterDays = 100

// meterDaysArg and emptyArg are script arguments boxed once: boxing a string per call allocates.
var (
	meterDaysArg any = strconv.Itoa(MeterDays)
	emptyArg     any = ""
)

const msPerDay = 24 * 60 * 60 * 1000

// Day returns the UTC day (days since 1970-01-01) of t: the unit of the meter.
func Day(t time.Time) int64 { return dayOf(t.UnixMilli()) }

// dayOf is the UTC day of ms (unix ms).
func dayOf(ms int64) int64 { return floorDiv(ms, msPerDay) }

// debitDay is the UTC day d's add-on credits were metered on: d.Day, or for a Decision made
// without one (zero value), the day of its bucket.
func debitDay(d Decision) int64 {
	if d.Day != 0 {
		return d.Day
	}
	return dayOf(d.Bucket)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// WithAddons returns k with add-on credits: its limit becomes free plus the add-on limit the
// store holds for the org (set with Meter.SetAddon), or plus addon while the store holds
// none, at most free plus addonCap (so a stored limit above a lowered cap counts as the cap);
// the part of each debit above free is metered per UTC day. free may be 0: then every
// credit is add-on consumption.
func (k Key) WithAddons(free, addon, addonCap int64) Key {
	addon = min(addon, addonCap)
	k.Free, k.Addon, k.AddonCap, k.Limit = free, addon, addonCap, free+addon
	k.addonArgv = []any{strconv.FormatInt(free, 10), strconv.FormatInt(addon, 10), strconv.FormatInt(addonCap, 10)}
	return k
}

// addons reports whether k has add-on credits (WithAddons).
func (k Key) addons() bool { return k.addonArgv != nil }

// noAddonArgs are the add-on arguments of a key without add-ons.
var noAddonArgs = []any{emptyArg, emptyArg, emptyArg}

// addonArgs returns spend.lua's free, addon and addon_cap arguments for k.
func (k Key) addonArgs() []any {
	if k.addonArgv == nil {
		return noAddonArgs
	}
	return k.addonArgv
}

// Meter holds the add-on side of a store: add-on limits changed at run time, and the add-on
// credits metered by Spend. Both stores implement it, with the same semantics (package
// storetest checks them).
type Meter interface {
	// SetAddon stores org's add-on limit; 0 switches add-ons off. It applies to the org's
	// next Spend on every replica sharing the store, and overrides Key.Addon from then on.
	SetAddon(ctx context.Context, org string, limit int64) error
	// Addon returns the add-on limit stored for org, and false when none was ever stored
	// (Key.Addon applies).
	Addon(ctx context.Context, org string) (int64, bool, error)
	// Metered returns org's add-on credits consumed per UTC day (see Day), for the days from
	// and to inclusive; days with nothing metered are absent.
	Metered(ctx context.Context, org string, from, to int64) (map[int64]int64, error)
}

var (
	_ Meter = (*RedisStore)(nil)
	_ Meter = (*MemoryStore)(nil)
)

// errNegativeAddon guards SetAddon; callers check the cap before.
var errNegativeAddon = errors.New("negative add-on limit")

// SetAddon implements Meter. The limit is a setting, kept without expiry.
func (s *RedisStore) SetAddon(ctx context.Context, org string, limit int64) error {
	if limit < 0 {
		return fmt.Errorf("set add-on %s: %w", org, errNegativeAddon)
	}
	if err := s.setter().Set(ctx, NewRedisKeys(org).Addon, limit, 0).Err(); err != nil {
		return fmt.Errorf("set add-on %s: %w", org, err)
	}
	return nil
}

// Addon implements Meter.
func (s *RedisStore) Addon(ctx context.Context, org string) (int64, bool, error) {
	n, err := s.setter().Get(ctx, NewRedisKeys(org).Addon).Int64()
	switch {
	case errors.Is(err, redis.Nil):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("add-on %s: %w", org, err)
	}
	return n, true, nil
}

// Metered implements Meter.
func (s *RedisStore) Metered(ctx context.Context, org string, from, to int64) (map[int64]int64, error) {
	all, err := s.setter().HGetAll(ctx, NewRedisKeys(org).Meter).Result()
	if err != nil {
		return nil, fmt.Errorf("meter %s: %w", org, err)
	}
	out := make(map[int64]int64)
	for k, v := range all {
		day, err1 := strconv.ParseInt(k, 10, 64)
		n, err2 := strconv.ParseInt(v, 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("meter %s: bad record %q=%q", org, k, v)
		}
		if day >= from && day <= to && n > 0 {
			out[day] = n
		}
	}
	return out, nil
}

// cmdable is what the billing calls need beyond scripts; every go-redis client has it.
type cmdable interface {
	Get(ctx context.Context, key string) *redis.StringCmd
	Set(ctx context.Context, key string, value any, expiration time.Duration) *redis.StatusCmd
	HGetAll(ctx context.Context, key string) *redis.MapStringStringCmd
}

func (s *RedisStore) setter() cmdable {
	if c, ok := s.client.(cmdable); ok {
		return c
	}
	return scriptOnly{}
}

// scriptOnly answers every call with an error: a store built on a bare redis.Scripter cannot
// hold add-on settings.
type scriptOnly struct{}

var errNoCommands = errors.New("the Redis client runs scripts only")

func (scriptOnly) Get(ctx context.Context, _ string) *redis.StringCmd {
	c := redis.NewStringCmd(ctx)
	c.SetErr(errNoCommands)
	return c
}

func (scriptOnly) Set(ctx context.Context, _ string, _ any, _ time.Duration) *redis.StatusCmd {
	c := redis.NewStatusCmd(ctx)
	c.SetErr(errNoCommands)
	return c
}

func (scriptOnly) HGetAll(ctx context.Context, _ string) *redis.MapStringStringCmd {
	c := redis.NewMapStringStringCmd(ctx)
	c.SetErr(errNoCommands)
	return c
}

// SetAddon implements Meter.
func (s *MemoryStore) SetAddon(_ context.Context, org string, limit int64) error {
	if limit < 0 {
		return fmt.Errorf("set add-on %s: %w", org, errNegativeAddon)
	}
	w := s.get(org)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.addon, w.addonSet = limit, true
	return nil
}

// Addon implements Meter.
func (s *MemoryStore) Addon(_ context.Context, org string) (int64, bool, error) {
	w := s.get(org)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.addon, w.addonSet, nil
}

// Metered implements Meter.
func (s *MemoryStore) Metered(_ context.Context, org string, from, to int64) (map[int64]int64, error) {
	w := s.get(org)
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[int64]int64)
	for day, n := range w.meter {
		if day >= from && day <= to && n > 0 {
			out[day] = n
		}
	}
	return out, nil
}

// limitFor returns the limit of key in w: with add-ons, the free allotment plus the add-on
// limit held (see cappedLimit). w.mu is held.
func (w *memWindow) limitFor(key Key) int64 {
	if !key.addons() {
		return key.Limit
	}
	return cappedLimit(key.Free, w.addon, w.addonSet, key.Addon, key.AddonCap)
}

// Allowance returns the add-on credits (or additional calls) that apply: the allowance
// stored through Meter.SetAddon when set, else dflt (the configured one), counting as at
// most cap.
func Allowance(stored int64, set bool, dflt, cap int64) int64 {
	if !set {
		stored = dflt
	}
	return min(stored, cap)
}

// cappedLimit is base plus Allowance: the limit of a window plan with add-ons (base the free
// allotment), or the calls of a monthly plan's period (base its monthly calls). The stored
// allowance can change at run time, so the scripts compute this too, from what Redis holds:
// capped_limit in lua/lib.lua, its twin, tested against it.
func cappedLimit(base, stored int64, set bool, dflt, cap int64) int64 {
	return base + Allowance(stored, set, dflt, cap)
}

// meter records the add-on part of a debit that took the window from before to after
// credits, on day, and returns it. w.mu is held.
func (w *memWindow) meterDebit(key Key, before, after, day int64) int64 {
	if !key.addons() {
		return 0
	}
	n := aboveFree(key.Free, before, after)
	if n <= 0 {
		return 0
	}
	w.meterDay(day, n)
	return n
}

// meterDay adds n to the meter's record of day, dropping the days past retention when day is
// new. w.mu is held.
func (w *memWindow) meterDay(day, n int64) {
	if w.meter == nil {
		w.meter = make(map[int64]int64)
	}
	if _, ok := w.meter[day]; !ok {
		for d := range w.meter {
			if d <= day-MeterDays {
				delete(w.meter, d)
			}
		}
	}
	w.meter[day] += n
}

// unmeterDay takes n credits off the meter's record of day, never below zero. w.mu is held.
func (w *memWindow) unmeterDay(day, n int64) {
	if n <= 0 {
		return
	}
	if w.meter[day] -= n; w.meter[day] <= 0 {
		delete(w.meter, day)
	}
}

// unmeterDrop takes drop off the meter: the refunded debit's own add-on part (own) from its
// day, the rest (later calls metered because the debit held free credits) from the next day
// first, where they were metered if the refund came after midnight, else from day. As
// refund.lua. w.mu is held.
func (w *memWindow) unmeterDrop(day, drop, own int64) {
	own = min(drop, own)
	w.unmeterDay(day, own)
	if rest := drop - own; rest > 0 {
		n := min(rest, w.meter[day+1])
		w.unmeterDay(day+1, n)
		w.unmeterDay(day, rest-n)
	}
}

// refundMetered is what a refund giving back given credits takes off the meter, with used
// the window's total before the refund: the drop of the part above the free allotment. That
// is exact when no credits expired between the debit and its refund: a later call that was
// metered only because the refunded one held free credits is not billed (had the refunded
// call never happened, it would not have been), and refunds in a row never un-meter one
// credit twice. refund.lua computes the same.
func refundMetered(key Key, used, given int64) int64 {
	if !key.addons() {
		return 0
	}
	return aboveFree(key.Free, used-given, used)
}

// aboveFree is how many more credits are above the free allotment free when a window
// holding from credits holds to (negative when to < from): what a debit meters, and a refund
// un-meters. The scripts compute it from the window they hold: above_free in lua/lib.lua, its
// twin, tested against it.
func aboveFree(free, from, to int64) int64 {
	return max(0, to-free) - max(0, from-free)
}
