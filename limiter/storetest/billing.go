package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditgate/creditgate/limiter"
)

// meter returns s as a limiter.Meter, failing the test when it is not one: every store must
// hold add-on limits and meter add-on credits.
func meter(t *testing.T, s limiter.Store) limiter.Meter {
	t.Helper()
	m, ok := s.(limiter.Meter)
	if !ok {
		t.Fatalf("%T does not implement limiter.Meter", s)
	}
	return m
}

func metered(t *testing.T, m limiter.Meter, org string, from, to int64) map[int64]int64 {
	t.Helper()
	got, err := m.Metered(context.Background(), org, from, to)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// testAddonLimit: the limit is the free allotment plus the add-on limit the store holds (the
// key's until one is set); 0 switches add-ons off; a plain key ignores stored add-ons.
func testAddonLimit(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	m := meter(t, s)
	ctx := context.Background()
	org := newOrg()
	k := limiter.NewKey(org, 1).WithAddons(100, 50, 1000)

	if _, set, err := m.Addon(ctx, org); err != nil || set {
		t.Fatalf("Addon of a new org = set %v, %v; want none", set, err)
	}
	if d := mustAllow(t, s, k, 0, t0); d.Limit != 150 || d.Remaining != 150 {
		t.Fatalf("configured add-on: limit %d remaining %d, want 150", d.Limit, d.Remaining)
	}
	if err := m.SetAddon(ctx, org, 0); err != nil {
		t.Fatal(err)
	}
	if got, set, _ := m.Addon(ctx, org); got != 0 || !set {
		t.Fatalf("Addon after SetAddon(0) = %d, %v", got, set)
	}
	mustAllow(t, s, k, 100, t0)
	if d := mustReject(t, s, k, 1, t0); d.Limit != 100 {
		t.Fatalf("add-ons off: limit %d, want the free 100", d.Limit)
	}
	if _, err := s.Spend(ctx, k, 101, t0); !errors.Is(err, limiter.ErrCostExceedsLimit) {
		t.Fatalf("cost 101 with add-ons off: %v, want ErrCostExceedsLimit", err)
	}
	if err := m.SetAddon(ctx, org, 200); err != nil {
		t.Fatal(err)
	}
	if d := mustAllow(t, s, k, 200, t0); d.Limit != 300 || d.Used != 300 || d.Addon != 200 {
		t.Fatalf("add-on 200: %+v, want limit 300, used 300, addon 200", d)
	}
	if err := m.SetAddon(ctx, org, -1); err == nil {
		t.Fatal("SetAddon(-1) succeeded")
	}
	// A stored limit above the key's cap (lowered since, say by a new edition) counts as the cap.
	if err := m.SetAddon(ctx, org, 5000); err != nil {
		t.Fatal(err)
	}
	if d := mustAllow(t, s, k, 0, t0); d.Limit != 1100 {
		t.Fatalf("stored add-on 5000 over the cap 1000: limit %d, want 1100", d.Limit)
	}
	if d, _ := spend(t, s, limiter.NewKey(org, 1).WithAddons(100, 7, 7), 0, t0); d.Limit != 107 {
		t.Fatalf("cap 7: limit %d, want 107", d.Limit)
	}

	plain := limiter.NewKey(org+"-plain", 10)
	if err := m.SetAddon(ctx, plain.Org, 1000); err != nil {
		t.Fatal(err)
	}
	if d := mustAllow(t, s, plain, 10, t0); d.Limit != 10 || d.Addon != 0 {
		t.Fatalf("plain key: %+v, want limit 10 and nothing metered", d)
	}
	if got := metered(t, m, plain.Org, 0, 1<<40); len(got) != 0 {
		t.Fatalf("plain key metered %v", got)
	}
}

// testAddonMetering: exactly the credits above the free allotment are metered, on the UTC day
// of the debit; a refund un-meters what its debit metered.
func testAddonMetering(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	m := meter(t, s)
	ctx := context.Background()
	org := newOrg()
	k := limiter.NewKey(org, 1).WithAddons(100, 1000, 1000)
	d0 := limiter.Day(t0)

	steps := []struct {
		cost, wantAddon int64
	}{
		{80, 0},  // 80 of the free 100
		{40, 20}, // crosses: 20 free, 20 add-on
		{10, 10}, // all add-on
	}
	var last limiter.Decision
	for _, st := range steps {
		last = mustAllow(t, s, k, st.cost, t0)
		if last.Addon != st.wantAddon {
			t.Fatalf("Spend(%d): addon %d, want %d", st.cost, last.Addon, st.wantAddon)
		}
	}
	if got := metered(t, m, org, d0, d0); got[d0] != 30 {
		t.Fatalf("metered %v, want %d on day %d", got, 30, d0)
	}
	if err := s.Refund(ctx, k, last); err != nil {
		t.Fatal(err)
	}
	if got := metered(t, m, org, d0, d0); got[d0] != 20 {
		t.Fatalf("after refunding a 10-credit add-on debit: %v, want 20", got)
	}
	crossing := mustAllow(t, s, k, 5, t0)
	if err := s.Refund(ctx, k, crossing); err != nil {
		t.Fatal(err)
	}
	if got := metered(t, m, org, d0, d0); got[d0] != 20 {
		t.Fatalf("after a debit and its refund: %v, want 20", got)
	}
	// A rejected call meters nothing.
	if _, err := s.Spend(ctx, k, 1000, t0); !errors.Is(err, limiter.ErrOverLimit) {
		t.Fatalf("Spend(1000) = %v, want ErrOverLimit", err)
	}

	// The next UTC day gets its own record; the window still holds yesterday's credits.
	next := time.UnixMilli((d0 + 1) * 24 * int64(time.Hour/time.Millisecond)).Add(10 * time.Second) // t0 + 23h59m33s
	if d := mustAllow(t, s, k, 7, next); d.Addon != 7 {
		t.Fatalf("next day: addon %d, want 7", d.Addon)
	}
	got := metered(t, m, org, d0-5, d0+5)
	if len(got) != 2 || got[d0] != 20 || got[d0+1] != 7 {
		t.Fatalf("metered %v, want {%d:20 %d:7}", got, d0, d0+1)
	}
	if got := metered(t, m, org, d0+1, d0+1); len(got) != 1 || got[d0+1] != 7 {
		t.Fatalf("one day asked: %v", got)
	}
}

// testAddonRetention: at least limiter.MeterDays days of records are kept; older ones go when
// a new day is metered.
func testAddonRetention(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: time.Hour, Bucket: minute})
	m := meter(t, s)
	org := newOrg()
	k := limiter.NewKey(org, 1).WithAddons(1, 10, 10)
	d0 := limiter.Day(t0)
	at := func(d int64) time.Time {
		return time.UnixMilli(d * 24 * int64(time.Hour/time.Millisecond)).Add(time.Hour)
	}
	for _, d := range []int64{d0, d0 + 1, d0 + limiter.MeterDays - 1, d0 + limiter.MeterDays} {
		mustAllow(t, s, k, 3, at(d)) // 1 free (the window is empty every time), 2 add-on
	}
	got := metered(t, m, org, d0-1, d0+2*limiter.MeterDays)
	want := map[int64]int64{d0 + 1: 2, d0 + limiter.MeterDays - 1: 2, d0 + limiter.MeterDays: 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("metered %v, want %v (day %d is %d days old)", got, want, d0, limiter.MeterDays)
	}
	if limiter.MeterDays < 92 {
		t.Fatalf("MeterDays %d: three months (92 days) must be kept", limiter.MeterDays)
	}
}

// testAddonRacing: many concurrent debits; the metered total is exactly the credits admitted
// above the free allotment, and equals the sum of the decisions' Addon.
func testAddonRacing(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	m := meter(t, s)
	const free, addon = 300, 400
	org := newOrg()
	k := limiter.NewKey(org, 1).WithAddons(free, addon, addon)
	var (
		admitted, addons atomic.Int64
		wg               sync.WaitGroup
		errs             = make(chan error, 32)
	)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			for range 40 {
				cost := 1 + rng.Int64N(9)
				d, err := s.Spend(context.Background(), k, cost, t0.Add(time.Duration(rng.IntN(1000))*time.Millisecond))
				switch {
				case err == nil:
					admitted.Add(cost)
					addons.Add(d.Addon)
				case errors.Is(err, limiter.ErrOverLimit):
				default:
					errs <- fmt.Errorf("Spend: %+v, %v", d, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	a := admitted.Load()
	if a > free+addon || a < free+addon-9 {
		t.Fatalf("admitted %d credits, limit %d", a, free+addon)
	}
	got := metered(t, m, org, 0, 1<<40)[limiter.Day(t0)]
	if got != a-free || addons.Load() != got {
		t.Fatalf("admitted %d (free %d): metered %d, decisions' add-on parts %d; want %d", a, free, got, addons.Load(), a-free)
	}
}
