package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/creditgate/creditgate/limiter"
)

func settler(t *testing.T, s limiter.Store) limiter.Settler {
	t.Helper()
	st, ok := s.(limiter.Settler)
	if !ok {
		t.Fatalf("%T does not settle", s)
	}
	return st
}

func settle(t *testing.T, s limiter.Store, k limiter.Key, d limiter.Decision, cost int64, at time.Time) limiter.Settlement {
	t.Helper()
	got, err := settler(t, s).Settle(context.Background(), k, d, cost, at)
	if err != nil {
		t.Fatalf("Settle(%d at +%s): %v", cost, at.Sub(t0), err)
	}
	return got
}

// testSettle: a reservation settled lower gives the difference back, one settled higher takes
// more, both in the debit's bucket and under its rule; a settle sent again does nothing, and a
// refund after it gives back the settled cost.
func testSettle(t *testing.T, newStore NewStore) {
	opts := limiter.Options{Window: day, Bucket: minute, CallTTL: time.Hour}
	s := newStore(t, opts)
	k := limiter.NewKey(newOrg(), 100).WithRule("list")
	down := mustAllow(t, s, k, 20, t0)
	up := mustAllow(t, s, k, 5, t0.Add(time.Second))
	for i := range 3 {
		got := settle(t, s, k, down, 4, t0.Add(2*time.Second))
		if want := (limiter.Settlement{Applied: i == 0, Cost: 4, Moved: -16, Used: 9}); i == 0 && got != want {
			t.Fatalf("settle 20 -> 4 = %+v, want %+v", got, want)
		} else if i > 0 && (got.Applied || got.Moved != 0) {
			t.Fatalf("settle resent %d = %+v; want nothing done", i, got)
		}
	}
	if got := settle(t, s, k, up, 12, t0.Add(3*time.Second)); !got.Applied || got.Moved != 7 || got.Used != 16 {
		t.Fatalf("settle 5 -> 12 = %+v; want 7 more, used 16", got)
	}
	checkUsage(t, s, k, []ruleDebit{{bucketStart(t0), 4, "list"}, {bucketStart(t0.Add(time.Second)), 12, "list"}}, opts, t0.Add(4*time.Second))
	if err := s.Refund(context.Background(), k, up); err != nil {
		t.Fatal(err)
	}
	if got := used(t, s, k, t0.Add(5*time.Second)); got != 4 {
		t.Fatalf("used %d after refunding the settled call, want 4 (its 12 given back)", got)
	}
	if got := settle(t, s, k, up, 30, t0.Add(6*time.Second)); got.Applied || got.Cost != 0 {
		t.Fatalf("settle of a refunded call = %+v; want nothing", got)
	}
	if got := used(t, s, k, t0.Add(7*time.Second)); got != 4 {
		t.Fatalf("used %d, want 4", got)
	}
}

func bucketStart(at time.Time) int64 { return bucketEnd(at, minute).Add(-minute).UnixMilli() }

// testSettlePastLimit: an extra taken by a settle applies past the limit (the upstream did the
// work); the org is refused until enough frees up, and Retry-After says exactly when.
func testSettlePastLimit(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: time.Hour, Bucket: minute})
	k := limiter.NewKey(newOrg(), 10)
	d := mustAllow(t, s, k, 1, t0)
	mustAllow(t, s, k, 4, t0.Add(10*minute))
	if got := settle(t, s, k, d, 15, t0.Add(11*minute)); !got.Applied || got.Used != 19 {
		t.Fatalf("settle 1 -> 15 = %+v; want used 19", got)
	}
	// 10 credits must free up for one more: the first bucket's 15, at its end plus an hour.
	r := mustReject(t, s, k, 1, t0.Add(20*minute))
	if want := bucketEnd(t0, minute).Add(time.Hour).Sub(t0.Add(20 * minute)); r.Used != 19 || r.RetryAfter != want {
		t.Fatalf("refused %+v; want used 19, retry after %s", r, want)
	}
	mustAllow(t, s, k, 1, bucketEnd(t0, minute).Add(time.Hour))
}

// testSettleMeter: the add-on meter follows the settled cost exactly: the part of the
// window's total above the free allotment, as Spend meters it.
func testSettleMeter(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	org := newOrg()
	k := limiter.NewKey(org, 1).WithAddons(50, 100, 1000) // 50 free, then add-on credits
	a := mustAllow(t, s, k, 45, t0)                       // all free
	if got := settle(t, s, k, a, 60, t0.Add(time.Second)); got.Metered != 10 || got.Used != 60 {
		t.Fatalf("settle 45 -> 60 = %+v; want 10 metered", got)
	}
	b := mustAllow(t, s, k, 20, t0.Add(2*time.Second)) // all add-on: 30 metered
	if got := meterTotal(t, s, org); got != 30 {
		t.Fatalf("metered %d, want 30", got)
	}
	if got := settle(t, s, k, b, 5, t0.Add(3*time.Second)); got.Metered != -15 || got.Used != 65 {
		t.Fatalf("settle 20 -> 5 = %+v; want 15 off the meter", got)
	}
	if got := settle(t, s, k, a, 30, t0.Add(4*time.Second)); got.Applied {
		t.Fatalf("a second settle of a settled call (other cost) = %+v; want nothing: it applies once", got)
	}
	if got := meterTotal(t, s, org); got != 15 {
		t.Fatalf("metered %d, want 15: the window holds 65, 50 free", got)
	}
	if err := s.Refund(context.Background(), k, b); err != nil {
		t.Fatal(err)
	}
	if got, u := meterTotal(t, s, org), used(t, s, k, t0.Add(5*time.Second)); got != 10 || u != 60 {
		t.Fatalf("after refunding the call settled to 5: metered %d used %d, want 10 and 60", got, u)
	}
}

// testSettleOutsideWindow: a call settled after its bucket left the window settles the meter
// only: the reservation's free credits stay free, the rest is add-on.
func testSettleOutsideWindow(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: time.Hour, Bucket: minute, CallTTL: 3 * time.Hour})
	org := newOrg()
	k := limiter.NewKey(org, 1).WithAddons(10, 100, 1000)
	d := mustAllow(t, s, k, 12, t0) // 10 free, 2 add-on
	got := settle(t, s, k, d, 20, t0.Add(2*time.Hour))
	if !got.Applied || got.Moved != 0 || got.Metered != 8 || got.Used != 0 {
		t.Fatalf("settle 12 -> 20 two hours on = %+v; want the meter only, 8 more", got)
	}
	if got := meterTotal(t, s, org); got != 10 {
		t.Fatalf("metered %d, want 10", got)
	}
	if u := used(t, s, k, t0.Add(2*time.Hour)); u != 0 {
		t.Fatalf("used %d, want 0", u)
	}
}

// testSettlePastRecord: a call that outlived its debit's record settles by its Decision's
// values, once.
func testSettlePastRecord(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute, CallTTL: time.Minute})
	k := limiter.NewKey(newOrg(), 100)
	d := mustAllow(t, s, k, 10, t0)
	mustAllow(t, s, k, 1, t0.Add(5*minute)) // sweeps the expired record
	for i := range 2 {
		got := settle(t, s, k, d, 3, t0.Add(6*minute))
		if got.Applied != (i == 0) || got.Cost != 3 {
			t.Fatalf("settle %d past the record = %+v", i, got)
		}
	}
	if u := used(t, s, k, t0.Add(7*minute)); u != 4 {
		t.Fatalf("used %d, want 4", u)
	}
}

// testSettleRacing: settles racing debits of one org keep the window and the meter exact.
func testSettleRacing(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	org := newOrg()
	k := limiter.NewKey(org, 1).WithAddons(100, 100000, 100000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sum int64
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				d, err := s.Spend(context.Background(), k, 5, t0)
				if err != nil {
					t.Error(err)
					return
				}
				cost := int64(1 + (g*25+i)%9)
				if _, err := settler(t, s).Settle(context.Background(), k, d, cost, t0); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				sum += cost
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if u := used(t, s, k, t0); u != sum {
		t.Fatalf("used %d, want the sum of settled costs %d", u, sum)
	}
	if got := meterTotal(t, s, org); got != sum-100 {
		t.Fatalf("metered %d, want %d (all above the 100 free)", got, sum-100)
	}
}
