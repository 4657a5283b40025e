package storetest

import (
	"context"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/creditgate/creditgate/limiter"
)

func usageOf(t *testing.T, s limiter.Store, k limiter.Key, at time.Time) limiter.Usage {
	t.Helper()
	ur, ok := s.(limiter.UsageReader)
	if !ok {
		t.Fatalf("%T does not implement limiter.UsageReader", s)
	}
	u, err := ur.Usage(context.Background(), k, at)
	if err != nil {
		t.Fatalf("Usage(+%s): %v", at.Sub(t0), err)
	}
	return u
}

// ruleDebit is one allowed debit of the usage model.
type ruleDebit struct {
	bucket int64 // bucket start, unix ms
	cost   int64
	rule   string
}

// wantUsage computes, from the allowed debits, what Usage at now must say.
func wantUsage(debits []ruleDebit, window, bucket, slot time.Duration, now time.Time) (used int64, reset time.Duration, byRule []limiter.RuleUsage) {
	ms := now.UnixMilli()
	w, b, sl := window.Milliseconds(), bucket.Milliseconds(), slot.Milliseconds()
	oldest := int64(-1)
	per := map[limiter.RuleUsage]int64{}
	for _, d := range debits {
		if d.bucket > ms-w-b {
			used += d.cost
			if oldest < 0 || d.bucket < oldest {
				oldest = d.bucket
			}
		}
		if start := d.bucket - d.bucket%sl; start > ms-w-sl && d.rule != "" {
			per[limiter.RuleUsage{Start: time.UnixMilli(start), Rule: d.rule}] += d.cost
		}
	}
	if oldest >= 0 {
		reset = time.Duration(oldest+b+w-ms) * time.Millisecond
	}
	for k, c := range per {
		k.Credits = c
		byRule = append(byRule, k)
	}
	sort.Slice(byRule, func(i, j int) bool {
		if !byRule[i].Start.Equal(byRule[j].Start) {
			return byRule[i].Start.Before(byRule[j].Start)
		}
		return byRule[i].Rule < byRule[j].Rule
	})
	return used, reset, byRule
}

func checkUsage(t *testing.T, s limiter.Store, k limiter.Key, debits []ruleDebit, opts limiter.Options, at time.Time) limiter.Usage {
	t.Helper()
	u := usageOf(t, s, k, at)
	slot := limiter.UsageSlot(opts.Window)
	wantUsed, wantReset, wantRules := wantUsage(debits, opts.Window, opts.Bucket, slot, at)
	if u.Used != wantUsed || u.Reset != wantReset || !u.Now.Equal(at) || u.Slot != slot {
		t.Fatalf("Usage(+%s) = used %d, reset %s, now %s, slot %s; want %d, %s, %s, %s",
			at.Sub(t0), u.Used, u.Reset, u.Now, u.Slot, wantUsed, wantReset, at, slot)
	}
	// Whatever Spend reads agrees with Usage.
	if d := mustAllow(t, s, k, 0, at); d.Used != u.Used || d.Reset != u.Reset {
		t.Fatalf("Spend(0 at +%s) used %d reset %s; Usage used %d reset %s", at.Sub(t0), d.Used, d.Reset, u.Used, u.Reset)
	}
	for i := range u.ByRule {
		u.ByRule[i].Start = time.UnixMilli(u.ByRule[i].Start.UnixMilli()) // compare instants only
	}
	if len(wantRules) == 0 {
		wantRules = nil
	}
	if !reflect.DeepEqual(u.ByRule, wantRules) {
		t.Fatalf("Usage(+%s).ByRule =\n%v\nwant\n%v", at.Sub(t0), u.ByRule, wantRules)
	}
	return u
}

// testUsageMatchesWindow runs a mixed-cost workload with several rules over 36 hours, with
// rejections and expiries, and checks Usage against a model of the allowed debits throughout.
func testUsageMatchesWindow(t *testing.T, newStore NewStore) {
	opts := limiter.Options{Window: day, Bucket: minute}
	s := newStore(t, opts)
	k := limiter.NewKey(newOrg(), 700)
	rng := rand.New(rand.NewPCG(7, 7))
	rules := []struct {
		name string
		cost int64
	}{{"users", 1}, {"deleted_records", 2}, {"records_cvid", 3}, {"convert_lead", 5}, {"bulk_read_initialize", 50}, {"", 4}}
	var debits []ruleDebit
	at := t0
	for i := range 600 {
		at = at.Add(time.Duration(rng.Int64N(7*60_000)) * time.Millisecond)
		r := rules[rng.IntN(len(rules))]
		d, err := spend(t, s, k.WithRule(r.name), r.cost, at)
		if err == nil && d.Allowed {
			debits = append(debits, ruleDebit{bucket: d.Bucket, cost: r.cost, rule: r.name})
		}
		if i%50 == 0 {
			checkUsage(t, s, k, debits, opts, at)
		}
	}
	checkUsage(t, s, k, debits, opts, at)
	checkUsage(t, s, k, debits, opts, at.Add(day/2))
	u := checkUsage(t, s, k, debits, opts, at.Add(day+2*time.Hour))
	if u.Used != 0 || len(u.ByRule) != 0 {
		t.Fatalf("a window and a slot after the last debit: %+v, want empty", u)
	}
}

func testUsageRefund(t *testing.T, newStore NewStore) {
	opts := limiter.Options{Window: day, Bucket: minute}
	s := newStore(t, opts)
	k := limiter.NewKey(newOrg(), 100)
	ctx := context.Background()

	d1 := mustAllow(t, s, k.WithRule("a"), 5, t0)
	d2 := mustAllow(t, s, k.WithRule("a"), 3, t0)
	d3 := mustAllow(t, s, k.WithRule("b"), 7, t0.Add(time.Second))
	for _, tt := range []struct {
		rule string
		d    limiter.Decision
	}{{"a", d1}, {"b", d3}} {
		if err := s.Refund(ctx, k.WithRule(tt.rule), tt.d); err != nil {
			t.Fatal(err)
		}
	}
	debits := []ruleDebit{{bucket: d2.Bucket, cost: 3, rule: "a"}}
	checkUsage(t, s, k, debits, opts, t0.Add(time.Minute))
}

func testUsageInFlight(t *testing.T, newStore NewStore) {
	opts := limiter.Options{Window: day, Bucket: minute, LeaseTTL: time.Minute}
	s := newStore(t, opts)
	k := limiter.NewKey(newOrg(), 100).WithConcurrency(3, 0)
	heavy := k.WithConcurrency(3, 2)
	ctx := context.Background()

	d1 := mustAllow(t, s, k, 1, t0)
	mustAllow(t, s, heavy, 1, t0)
	if u := usageOf(t, s, k, t0); u.InFlight != 2 || u.HeavyInFlight != 1 {
		t.Fatalf("in flight %d, heavy %d; want 2, 1", u.InFlight, u.HeavyInFlight)
	}
	if err := s.Release(ctx, k, d1); err != nil {
		t.Fatal(err)
	}
	if u := usageOf(t, s, k, t0); u.InFlight != 1 || u.HeavyInFlight != 1 {
		t.Fatalf("after a release: in flight %d, heavy %d; want 1, 1", u.InFlight, u.HeavyInFlight)
	}
	// The unreleased lease expires after its TTL.
	if u := usageOf(t, s, k, t0.Add(time.Minute)); u.InFlight != 0 || u.HeavyInFlight != 0 {
		t.Fatalf("after the lease TTL: in flight %d, heavy %d; want 0", u.InFlight, u.HeavyInFlight)
	}
}

// testUsageReadsOnly checks that reading usage writes nothing: an org never seen reads empty,
// and a read far in the future does not expire what a read at an earlier instant still sees.
func testUsageReadsOnly(t *testing.T, newStore NewStore) {
	opts := limiter.Options{Window: day, Bucket: minute}
	s := newStore(t, opts)
	k := limiter.NewKey(newOrg(), 100)

	if u := usageOf(t, s, k, t0); u.Used != 0 || u.Reset != 0 || u.InFlight != 0 || len(u.ByRule) != 0 {
		t.Fatalf("unknown org: %+v, want empty", u)
	}
	mustAllow(t, s, k.WithRule("r"), 5, t0)
	if u := usageOf(t, s, k, t0.Add(3*day)); u.Used != 0 || len(u.ByRule) != 0 {
		t.Fatalf("three days later: %+v, want empty", u)
	}
	checkUsage(t, s, k, []ruleDebit{{bucket: t0.UnixMilli() - t0.UnixMilli()%minute.Milliseconds(), cost: 5, rule: "r"}}, opts, t0.Add(time.Hour))
	// The store's own clock: a read without an instant is stamped with it.
	if u := usageOf(t, s, k, time.Time{}); u.Now.IsZero() {
		t.Fatal("Usage on the store's clock has no Now")
	}
}
