package limiter

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// UsageReader reads where an org's window stands without spending or writing anything. Both
// stores implement it, with the same results (package storetest checks them together).
type UsageReader interface {
	// Usage returns key's window at time now (zero: the store's own clock), in one round
	// trip. An org never seen has an empty Usage, not an error.
	Usage(ctx context.Context, key Key, now time.Time) (Usage, error)
}

var (
	_ UsageReader = (*RedisStore)(nil)
	_ UsageReader = (*MemoryStore)(nil)
)

// Usage is one org's window as read at Now.
type Usage struct {
	// Now is the instant of the read, on the store's clock.
	Now time.Time
	// Used is the credits held by the live buckets: exactly what a Spend at Now counts.
	Used int64
	// Reset is the wait until the oldest credits held free up; zero when nothing is held.
	Reset time.Duration
	// InFlight and HeavyInFlight are the org's calls in flight, and its heavy ones, under
	// unexpired concurrency leases.
	InFlight, HeavyInFlight int64
	// Slot is the length of one usage slot (UsageSlot of the window).
	Slot time.Duration
	// ByRule is the credits debited per slot and cost-table rule, for the slots that overlap
	// the window ending at Now, ordered by slot start and then rule. Refunded credits are not
	// in it. Slots at the edge of the window may hold credits already freed, so the sum can
	// be larger than Used.
	ByRule []RuleUsage
	// Addon is the add-on limit stored for the org (Meter.SetAddon), when AddonSet; read in
	// the same round trip, so the usage API reports the limit that applies.
	Addon    int64
	AddonSet bool
}

// RuleUsage is the credits one rule debited in one usage slot.
type RuleUsage struct {
	// Start is the slot's start.
	Start time.Time
	// Rule is the cost-table rule name (Key.Rule of the debits).
	Rule string
	// Credits is the credits debited, less those refunded.
	Credits int64
}

// UsageSlot returns the length of the usage slots for window: window/24 (an hour for 24h),
// truncated to whole milliseconds and at least 1ms. A window spans at most 26 slots.
func UsageSlot(window time.Duration) time.Duration {
	return max((window / 24).Truncate(time.Millisecond), time.Millisecond)
}

func sortRuleUsage(r []RuleUsage) {
	slices.SortFunc(r, func(a, b RuleUsage) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.Rule, b.Rule)
	})
}

// Usage implements UsageReader.
func (s *RedisStore) Usage(ctx context.Context, key Key, now time.Time) (Usage, error) {
	args := make([]any, 0, 1+len(s.usageStore))
	args = append(args, msArg(now))      // the read
	args = append(args, s.usageStore...) // the store
	reply, err := usageScript.Run(ctx, s.client, key.redis().usage, args...).Slice()
	if err != nil {
		return Usage{}, fmt.Errorf("usage %s: %w", key.Org, err)
	}
	r, err := decodeUsageReply(reply)
	if err != nil {
		return Usage{}, fmt.Errorf("usage %s: %w", key.Org, err)
	}
	u := Usage{
		Now:           time.UnixMilli(r.nowMs),
		Used:          r.used,
		Reset:         time.Duration(r.resetMs) * time.Millisecond,
		InFlight:      r.inFlight,
		HeavyInFlight: r.heavyInFlight,
		Addon:         max(r.addon, 0),
		AddonSet:      r.addon >= 0,
		Slot:          time.Duration(s.slotMs) * time.Millisecond,
		ByRule:        r.byRule,
	}
	sortRuleUsage(u.ByRule)
	return u, nil
}

// usageReply is usage.lua's reply, field for field (its header says what each means); the
// members and their credits come as RuleUsage, those with no credits left out.
type usageReply struct {
	nowMs, used, resetMs, inFlight, heavyInFlight, addon int64
	byRule                                               []RuleUsage
}

// decodeUsageReply reads usage.lua's reply, checking every type: the one place that knows
// its order.
func decodeUsageReply(reply []any) (usageReply, error) {
	if len(reply) != 3 {
		return usageReply{}, fmt.Errorf("script replied %d values, want 3", len(reply))
	}
	head, ok1 := reply[0].([]any)
	members, ok2 := reply[1].([]any)
	credits, ok3 := reply[2].([]any)
	if !ok1 || !ok2 || !ok3 || len(head) != 6 || len(members) != len(credits) {
		return usageReply{}, fmt.Errorf("unexpected script reply %v", reply)
	}
	var n [6]int64
	for i, v := range head {
		x, ok := v.(int64)
		if !ok {
			return usageReply{}, fmt.Errorf("unexpected script reply %v", reply)
		}
		n[i] = x
	}
	r := usageReply{nowMs: n[0], used: n[1], resetMs: n[2], inFlight: n[3], heavyInFlight: n[4], addon: n[5]}
	for i, m := range members {
		name, ok := m.(string)
		c, ok2 := credits[i].(int64)
		start, rule, ok3 := strings.Cut(name, ":")
		ms, err := strconv.ParseInt(start, 10, 64)
		if !ok || !ok2 || !ok3 || err != nil {
			return usageReply{}, fmt.Errorf("unexpected usage member %v", m)
		}
		if c > 0 {
			r.byRule = append(r.byRule, RuleUsage{Start: time.UnixMilli(ms), Rule: rule, Credits: c})
		}
	}
	return r, nil
}

// usageSlot is one memory-store usage record: a slot start (unix ms) and a rule.
type usageSlot struct {
	start int64
	rule  string
}

// record adds credits debited by rule in the bucket starting at b, as spend.lua does.
func (s *MemoryStore) record(w *memWindow, rule string, b, credits, now int64) {
	if rule == "" {
		return
	}
	start := b - b%s.slot
	if w.usage == nil {
		w.usage = make(map[usageSlot]int64)
	}
	k := usageSlot{start, rule}
	if _, ok := w.usage[k]; !ok {
		// A new member: trim the slots that ended a window ago, as spend.lua does.
		for old := range w.usage {
			if old.start <= now-s.window-s.slot {
				delete(w.usage, old)
			}
		}
	}
	w.usage[k] += credits
}

// unrecord takes refunded credits out of the slot and rule they were recorded under.
func (s *MemoryStore) unrecord(w *memWindow, rule string, b, credits int64) {
	if rule == "" {
		return
	}
	k := usageSlot{b - b%s.slot, rule}
	rec, ok := w.usage[k]
	switch {
	case !ok:
	case rec <= credits:
		delete(w.usage, k)
	default:
		w.usage[k] = rec - credits
	}
}

// Usage implements UsageReader.
func (s *MemoryStore) Usage(_ context.Context, key Key, now time.Time) (Usage, error) {
	if now.IsZero() {
		now = time.Now()
	}
	ms := now.UnixMilli()
	u := Usage{Now: time.UnixMilli(ms), Slot: time.Duration(s.slot) * time.Millisecond}
	s.mu.RLock()
	w := s.windows[key.Org] // never created by a read
	s.mu.RUnlock()
	if w == nil {
		return u, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	cutoff := ms - s.window - s.bucket
	first := true
	w.buckets.each(s.bucket, func(start, credits int64) bool {
		if start <= cutoff {
			return true
		}
		if first {
			u.Reset, first = time.Duration(start+s.bucket+s.window-ms)*time.Millisecond, false
		}
		u.Used += credits
		return true
	})
	u.Addon, u.AddonSet = w.addon, w.addonSet
	for _, exp := range w.leases {
		if exp > ms {
			u.InFlight++
		}
	}
	for _, exp := range w.heavy {
		if exp > ms {
			u.HeavyInFlight++
		}
	}
	for k, c := range w.usage {
		if k.start > ms-s.window-s.slot && c > 0 {
			u.ByRule = append(u.ByRule, RuleUsage{Start: time.UnixMilli(k.start), Rule: k.rule, Credits: c})
		}
	}
	sortRuleUsage(u.ByRule)
	return u, nil
}
