// Package storetest is the conformance suite every limiter.Store must pass. Each store's tests
// call Run with a factory; any behavioural difference between stores is a bug.
//
// Time is injected (a fixed instant plus offsets), so a whole 24-hour window is checked
// exactly and without sleeping.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditgate/creditgate/limiter"
)

// NewStore returns a store with the given options for one test. The store may be shared with
// other tests (e.g. one Redis server): the suite uses an org of its own in every test.
type NewStore func(t *testing.T, opts limiter.Options) limiter.Store

// t0 is deliberately not aligned to a minute, so bucket boundaries fall inside the tests.
var t0 = time.UnixMilli(1_767_225_600_000 + 37_123) // 2026-01-01T00:00:37.123Z

const (
	day    = 24 * time.Hour
	minute = time.Minute
)

var orgSeq atomic.Int64

// newOrg returns an org ID no other test uses, even across runs against one Redis.
func newOrg() string {
	return fmt.Sprintf("st%d-%d", time.Now().UnixNano(), orgSeq.Add(1))
}

// Run runs the suite against the stores newStore makes.
func Run(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newStore NewStore)
	}{
		{"FreedAfterWindowNeverEarlier", testFreedAfterWindow},
		{"RetryAfterIsExact", testRetryAfterExact},
		{"CostAboveLimit", testCostAboveLimit},
		{"RejectedWritesNothing", testRejectedWritesNothing},
		{"ZeroCostReads", testZeroCostReads},
		{"Refund", testRefund},
		{"RefundOldestMovesReset", testRefundOldest},
		{"IdleLongerThanWindow", testIdle},
		{"ManyBucketsThenFew", testManyBucketsThenFew},
		{"OrgsAreIndependent", testOrgsIndependent},
		{"NegativeCost", testNegativeCost},
		{"LimitChange", testLimitChange},
		{"MatchesModel", testMatchesModel},
		{"ConcurrentSpendsNeverOverAdmit", testConcurrent},
		{"ConcurrencyCap", testConcurrencyCap},
		{"HeavySubCap", testHeavySubCap},
		{"LeasesExpire", testLeasesExpire},
		{"LeasesRenewed", testLeasesRenewed},
		{"RefundAppliesOnce", testRefundOnce},
		{"CompensateBeforeDebit", testCompensateBefore},
		{"CompensateAfterDebit", testCompensateAfter},
		{"CallRecordsExpire", testCallRecordsExpire},
		{"ForcedDebit", testForcedDebit},
		{"RefundRetriedPastItsRecord", testRefundRetriedLate},
		{"CompensateReleasesLease", testCompensateReleasesLease},
		{"SpendResentDebitsOnce", testSpendResent},
		{"RacingLeasesNeverExceedCap", testRacingLeases},
		{"AddonLimitFromStore", testAddonLimit},
		{"AddonMetering", testAddonMetering},
		{"AddonMeterRetention", testAddonRetention},
		{"RacingAddonMeterExact", testAddonRacing},
		{"PeriodQuota", testPeriodQuota},
		{"PeriodCalendar", testPeriodCalendar},
		{"UsageMatchesWindow", testUsageMatchesWindow},
		{"UsageRefundUnrecords", testUsageRefund},
		{"UsageInFlight", testUsageInFlight},
		{"UsageReadsOnly", testUsageReadsOnly},
		{"NoticesOncePerCrossing", testNoticesOncePerCrossing},
		{"NoticesRearm", testNoticesRearm},
		{"NoticesRetryAndLease", testNoticesRetry},
		{"NoticeSettings", testNoticeSettings},
		{"NoticesAfterQuietDebits", testNoticesAfterQuietDebits},
		{"NoticesSettle", testNoticesSettle},
		{"Settle", testSettle},
		{"SettlePastLimit", testSettlePastLimit},
		{"SettleMeter", testSettleMeter},
		{"SettleOutsideWindow", testSettleOutsideWindow},
		{"SettlePastRecord", testSettlePastRecord},
		{"SettleRacing", testSettleRacing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore) })
	}
}

// spend calls Spend and fails the test on an error other than a rejection.
func spend(t *testing.T, s limiter.Store, k limiter.Key, cost int64, at time.Time) (limiter.Decision, error) {
	t.Helper()
	d, err := s.Spend(context.Background(), k, cost, at)
	if err != nil && !errors.Is(err, limiter.ErrOverLimit) && !errors.Is(err, limiter.ErrCostExceedsLimit) &&
		!errors.Is(err, limiter.ErrConcurrency) {
		t.Fatalf("Spend(%d at +%s): %v", cost, at.Sub(t0), err)
	}
	return d, err
}

func mustAllow(t *testing.T, s limiter.Store, k limiter.Key, cost int64, at time.Time) limiter.Decision {
	t.Helper()
	d, err := spend(t, s, k, cost, at)
	if err != nil || !d.Allowed {
		t.Fatalf("Spend(%d at +%s) = %+v, %v; want allowed", cost, at.Sub(t0), d, err)
	}
	return d
}

func mustReject(t *testing.T, s limiter.Store, k limiter.Key, cost int64, at time.Time) limiter.Decision {
	t.Helper()
	d, err := spend(t, s, k, cost, at)
	if !errors.Is(err, limiter.ErrOverLimit) || d.Allowed {
		t.Fatalf("Spend(%d at +%s) = %+v, %v; want ErrOverLimit", cost, at.Sub(t0), d, err)
	}
	return d
}

func used(t *testing.T, s limiter.Store, k limiter.Key, at time.Time) int64 {
	t.Helper()
	return mustAllow(t, s, k, 0, at).Used
}

func bucketEnd(at time.Time, bucket time.Duration) time.Time {
	ms := at.UnixMilli()
	return time.UnixMilli(ms - ms%bucket.Milliseconds()).Add(bucket)
}

func testFreedAfterWindow(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	k := limiter.NewKey(newOrg(), 10)

	d := mustAllow(t, s, k, 10, t0)
	if d.Used != 10 || d.Remaining != 0 || d.Limit != 10 || d.Cost != 10 {
		t.Fatalf("after spending all: %+v", d)
	}
	if want := bucketEnd(t0, minute).Add(day).Sub(t0); d.Reset != want {
		t.Errorf("Reset = %s, want %s", d.Reset, want)
	}
	// Still consumed a millisecond before t0+window.
	mustReject(t, s, k, 1, t0.Add(day-time.Millisecond))
	// Exactly: free at the end of t0's bucket plus the window, not a millisecond earlier.
	free := bucketEnd(t0, minute).Add(day)
	mustReject(t, s, k, 1, free.Add(-time.Millisecond))
	if got := used(t, s, k, free); got != 0 {
		t.Fatalf("used at free time = %d, want 0", got)
	}
	// And by t0+window+bucket at the latest.
	if !free.After(t0.Add(day + minute)) {
		mustAllow(t, s, k, 10, t0.Add(day+minute))
	} else {
		t.Fatalf("free time %s is later than t0+window+bucket", free.Sub(t0))
	}
}

func testRetryAfterExact(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	k := limiter.NewKey(newOrg(), 10)

	mustAllow(t, s, k, 3, t0)
	mustAllow(t, s, k, 4, t0.Add(time.Hour))
	mustAllow(t, s, k, 3, t0.Add(2*time.Hour))
	now := t0.Add(3 * time.Hour)

	// 5 credits need the first two debits (3, then 4) to free up.
	d := mustReject(t, s, k, 5, now)
	want := bucketEnd(t0.Add(time.Hour), minute).Add(day).Sub(now)
	if d.RetryAfter != want {
		t.Fatalf("RetryAfter = %s, want %s", d.RetryAfter, want)
	}
	if d.Used != 10 || d.Remaining != 0 || d.Cost != 0 {
		t.Fatalf("rejected decision = %+v", d)
	}
	// 2 credits need only the first debit.
	if d2 := mustReject(t, s, k, 2, now); d2.RetryAfter != bucketEnd(t0, minute).Add(day).Sub(now) {
		t.Fatalf("RetryAfter(2) = %s", d2.RetryAfter)
	}
	mustReject(t, s, k, 5, now.Add(d.RetryAfter-time.Millisecond))
	mustAllow(t, s, k, 5, now.Add(d.RetryAfter))
}

func testCostAboveLimit(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	k := limiter.NewKey(newOrg(), 10)

	d, err := spend(t, s, k, 11, t0)
	if !errors.Is(err, limiter.ErrCostExceedsLimit) || errors.Is(err, limiter.ErrOverLimit) || d.Allowed {
		t.Fatalf("Spend(11 of 10) = %+v, %v; want ErrCostExceedsLimit only", d, err)
	}
	if d.RetryAfter != 0 || d.Limit != 10 || d.Remaining != 10 {
		t.Fatalf("decision = %+v; want no retry-after and the window untouched", d)
	}
	// Also when the window is empty and the limit is zero.
	if _, err := spend(t, s, limiter.NewKey(newOrg(), 0), 1, t0); !errors.Is(err, limiter.ErrCostExceedsLimit) {
		t.Fatalf("Spend(1 of 0) error = %v, want ErrCostExceedsLimit", err)
	}
	if got := used(t, s, k, t0); got != 0 {
		t.Fatalf("used = %d after an impossible cost, want 0", got)
	}
}

func testRejectedWritesNothing(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	k := limiter.NewKey(newOrg(), 100)

	mustAllow(t, s, k, 100, t0)
	// A client hammering all day long...
	for i := range 500 {
		mustReject(t, s, k, 1, t0.Add(time.Duration(i)*day/500))
	}
	// ...recovers as soon as the first debit frees up.
	free := bucketEnd(t0, minute).Add(day)
	if got := used(t, s, k, free); got != 0 {
		t.Fatalf("used = %d after the window, want 0 (rejections must not be recorded)", got)
	}
	mustAllow(t, s, k, 100, free)
}

func testZeroCostReads(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	k := limiter.NewKey(newOrg(), 10)

	d := mustAllow(t, s, k, 0, t0)
	if d.Used != 0 || d.Remaining != 10 || d.Reset != 0 || d.Cost != 0 {
		t.Fatalf("empty window read = %+v", d)
	}
	mustAllow(t, s, k, 10, t0)
	// Reading a full window is allowed and changes nothing.
	for range 3 {
		if d := mustAllow(t, s, k, 0, t0.Add(time.Second)); d.Used != 10 || d.Remaining != 0 {
			t.Fatalf("full window read = %+v", d)
		}
	}
}

func testRefund(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	ctx := context.Background()
	k := limiter.NewKey(newOrg(), 10)

	a := mustAllow(t, s, k, 4, t0)
	b := mustAllow(t, s, k, 5, t0)
	if err := s.Refund(ctx, k, b); err != nil {
		t.Fatal(err)
	}
	if got := used(t, s, k, t0); got != 4 {
		t.Fatalf("used after refund = %d, want 4", got)
	}
	if err := s.Refund(ctx, k, a); err != nil {
		t.Fatal(err)
	}
	if d := mustAllow(t, s, k, 0, t0); d.Used != 0 || d.Reset != 0 {
		t.Fatalf("after refunding everything: %+v", d)
	}
	// Refunding a rejected decision or one whose bucket expired changes nothing.
	c := mustAllow(t, s, k, 10, t0)
	r := mustReject(t, s, k, 1, t0)
	if err := s.Refund(ctx, k, r); err != nil {
		t.Fatal(err)
	}
	later := bucketEnd(t0, minute).Add(day)
	mustAllow(t, s, k, 7, later)
	if err := s.Refund(ctx, k, c); err != nil {
		t.Fatal(err)
	}
	if got := used(t, s, k, later); got != 7 {
		t.Fatalf("used after refunding an expired debit = %d, want 7", got)
	}
}

// testRefundOldest: refunding the oldest debit makes the next one the oldest, for Reset and
// RetryAfter alike.
func testRefundOldest(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	k := limiter.NewKey(newOrg(), 10)
	a := mustAllow(t, s, k, 3, t0)
	mustAllow(t, s, k, 4, t0.Add(time.Hour))
	mustAllow(t, s, k, 3, t0.Add(5*time.Hour))
	if err := s.Refund(context.Background(), k, a); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(6 * time.Hour)
	d := mustAllow(t, s, k, 0, now)
	if want := bucketEnd(t0.Add(time.Hour), minute).Add(day).Sub(now); d.Used != 7 || d.Reset != want {
		t.Fatalf("after refunding the oldest debit: %+v; want used 7, reset %s", d, want)
	}
	d = mustReject(t, s, k, 8, now) // needs the +1h and the +5h debits to free up
	if want := bucketEnd(t0.Add(5*time.Hour), minute).Add(day).Sub(now); d.RetryAfter != want {
		t.Fatalf("RetryAfter = %s, want %s", d.RetryAfter, want)
	}
}

// testManyBucketsThenFew: an org that debits in most buckets of its window, then in few,
// then in many again reads the same all along (a store may lay out a busy window otherwise
// than a quiet one): used, reset, retry-after, and refunds of the oldest, newest and a
// middle bucket, with a window of 20 buckets.
func testManyBucketsThenFew(t *testing.T, newStore NewStore) {
	const window, bucket = 20 * time.Second, time.Second
	s := newStore(t, limiter.Options{Window: window, Bucket: bucket})
	k := limiter.NewKey(newOrg(), 20)
	b0 := bucketEnd(t0, bucket)
	at := func(i int) time.Time { return b0.Add(time.Duration(i)*bucket + 500*time.Millisecond) } // in bucket i
	freed := func(i int) time.Time { return b0.Add(time.Duration(i)*bucket + bucket + window) }   // bucket i's credits
	refund := func(d limiter.Decision) {
		t.Helper()
		if err := s.Refund(context.Background(), k, d); err != nil {
			t.Fatal(err)
		}
	}
	check := func(at time.Time, used int64, reset time.Duration) {
		t.Helper()
		if d := mustAllow(t, s, k, 0, at); d.Used != used || d.Reset != reset {
			t.Fatalf("at +%s: used %d, reset %s; want %d, %s", at.Sub(b0), d.Used, d.Reset, used, reset)
		}
	}

	var ds []limiter.Decision
	for i := range 15 { // buckets 0…14
		ds = append(ds, mustAllow(t, s, k, 1, at(i)))
	}
	check(at(14), 15, freed(0).Sub(at(14)))
	refund(ds[0])  // the oldest
	refund(ds[14]) // the newest
	refund(ds[7])  // one in the middle
	check(at(14), 12, freed(1).Sub(at(14)))
	// 12 held, 10 more needs 2 freed: buckets 1 and 2.
	if d := mustReject(t, s, k, 10, at(14)); d.RetryAfter != freed(2).Sub(at(14)) {
		t.Fatalf("retry after %s, want %s", d.RetryAfter, freed(2).Sub(at(14)))
	}

	// At +33.5 s buckets up to 12 have expired: only bucket 13 is left.
	check(at(33), 1, freed(13).Sub(at(33)))
	ds = ds[:0]
	for i := 34; i < 46; i++ { // 12 buckets again (bucket 13 expires meanwhile)
		ds = append(ds, mustAllow(t, s, k, 1, at(i)))
	}
	check(at(45), 12, freed(34).Sub(at(45)))
	refund(ds[0]) // bucket 34, the oldest
	refund(ds[6]) // bucket 40
	check(at(45), 10, freed(35).Sub(at(45)))
	if d := mustReject(t, s, k, 15, at(45)); d.RetryAfter != freed(39).Sub(at(45)) { // 35…39, 41
		t.Fatalf("retry after %s, want %s", d.RetryAfter, freed(39).Sub(at(45)))
	}
	check(at(80), 0, 0)
	mustAllow(t, s, k, 20, at(80))
}

// testIdle: an org idle for longer than a window starts afresh, and one idle for less keeps
// what it still holds.
func testIdle(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	k := limiter.NewKey(newOrg(), 10)
	mustAllow(t, s, k, 6, t0)
	mustAllow(t, s, k, 4, t0.Add(23*time.Hour))
	later := t0.Add(30 * time.Hour)
	if d := mustAllow(t, s, k, 6, later); d.Used != 10 {
		t.Fatalf("after 7h idle: %+v; want the 4 credits of +23h still held", d)
	}
	much := later.Add(3 * day)
	if d := mustAllow(t, s, k, 10, much); d.Used != 10 || d.Reset != bucketEnd(much, minute).Add(day).Sub(much) {
		t.Fatalf("after 3 idle windows: %+v; want a fresh window", d)
	}
	mustReject(t, s, k, 1, much.Add(day-time.Millisecond))
}

func testOrgsIndependent(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	a, b := limiter.NewKey(newOrg(), 5), limiter.NewKey(newOrg(), 5)
	mustAllow(t, s, a, 5, t0)
	mustReject(t, s, a, 1, t0)
	mustAllow(t, s, b, 5, t0)
}

func testNegativeCost(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	k := limiter.NewKey(newOrg(), 5)
	_, err := s.Spend(context.Background(), k, -1, t0)
	if err == nil || errors.Is(err, limiter.ErrOverLimit) || errors.Is(err, limiter.ErrCostExceedsLimit) {
		t.Fatalf("Spend(-1) error = %v, want a plain error", err)
	}
	if got := used(t, s, k, t0); got != 0 {
		t.Fatalf("used = %d", got)
	}
}

func testLimitChange(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	k := limiter.NewKey(newOrg(), 10)
	mustAllow(t, s, k, 8, t0)
	// Lowering the limit below what is used: remaining is 0, not negative.
	d := mustReject(t, s, k.WithLimit(5), 1, t0)
	if d.Remaining != 0 || d.Used != 8 || d.Limit != 5 {
		t.Fatalf("after lowering the limit: %+v", d)
	}
	mustAllow(t, s, k.WithLimit(20), 12, t0)
}

// debit is one admitted call in the reference model.
type debit struct {
	at   time.Time
	cost int64
}

// model is an independent statement of the semantics: a debit at t is held until
// bucketStart(t)+bucket+window.
type model struct {
	window, bucket time.Duration
	debits         []debit
}

func (m *model) freeAt(d debit) time.Time { return bucketEnd(d.at, m.bucket).Add(m.window) }

func (m *model) used(now time.Time) int64 {
	var n int64
	for _, d := range m.debits {
		if now.Before(m.freeAt(d)) {
			n += d.cost
		}
	}
	return n
}

// spend returns allowed, used after, retry-after, reset.
func (m *model) spend(now time.Time, cost, limit int64) (bool, int64, time.Duration, time.Duration) {
	used := m.used(now)
	var live []debit
	for _, d := range m.debits {
		if now.Before(m.freeAt(d)) {
			live = append(live, d)
		}
	}
	sort.SliceStable(live, func(i, j int) bool { return m.freeAt(live[i]).Before(m.freeAt(live[j])) })
	reset := func() time.Duration {
		if len(live) == 0 {
			return 0
		}
		return m.freeAt(live[0]).Sub(now)
	}
	if cost > limit {
		return false, used, 0, reset()
	}
	if used+cost > limit {
		var got int64
		for _, d := range live {
			got += d.cost
			if used-got+cost <= limit {
				return false, used, m.freeAt(d).Sub(now), reset()
			}
		}
		panic("model: unreachable")
	}
	if cost > 0 {
		d := debit{now, cost}
		m.debits = append(m.debits, d)
		if len(live) == 0 {
			live = append(live, d)
		}
	}
	return true, used + cost, 0, reset()
}

// testMatchesModel drives a store and the model with the same random workload over three
// windows, with a short bucket so many buckets expire, and compares every decision.
func testMatchesModel(t *testing.T, newStore NewStore) {
	for _, opts := range []limiter.Options{
		{Window: day, Bucket: minute},
		{Window: 4 * time.Second, Bucket: time.Second},
		{Window: 10 * time.Second, Bucket: 3 * time.Millisecond},
	} {
		t.Run(opts.Window.String()+"/"+opts.Bucket.String(), func(t *testing.T) {
			s := newStore(t, opts)
			m := &model{window: opts.Window, bucket: opts.Bucket}
			const limit = 200
			k := limiter.NewKey(newOrg(), limit)
			rng := rand.New(rand.NewPCG(1, uint64(opts.Bucket)))
			now := t0
			step := opts.Window / 300
			for i := range 1000 {
				now = now.Add(time.Duration(rng.Int64N(int64(step) * 2)).Truncate(time.Millisecond)) // stores count in ms
				cost := rng.Int64N(12)
				if rng.IntN(50) == 0 {
					cost = limit + 1
				}
				ok, wantUsed, wantRetry, wantReset := m.spend(now, cost, limit)
				d, _ := spend(t, s, k, cost, now)
				if d.Allowed != ok || d.Used != wantUsed || d.RetryAfter != wantRetry || d.Reset != wantReset {
					t.Fatalf("step %d: Spend(%d at +%s) = allowed %v used %d retry %s reset %s; model: %v %d %s %s",
						i, cost, now.Sub(t0), d.Allowed, d.Used, d.RetryAfter, d.Reset, ok, wantUsed, wantRetry, wantReset)
				}
			}
		})
	}
}

// testConcurrent races goroutines on one org at one instant: never more than the limit is
// admitted, and the window holds exactly the sum of admitted costs.
func testConcurrent(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	const limit = 1000
	k := limiter.NewKey(newOrg(), limit)

	var (
		admitted atomic.Int64
		wg       sync.WaitGroup
		errs     = make(chan error, 64)
	)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 40 {
				cost := 1 + rng.Int64N(7)
				d, err := s.Spend(context.Background(), k, cost, t0.Add(time.Duration(rng.IntN(1000))*time.Millisecond))
				switch {
				case err == nil && d.Allowed:
					admitted.Add(cost)
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
	got := admitted.Load()
	if got > limit {
		t.Fatalf("admitted %d credits, limit %d", got, limit)
	}
	if got < limit-7 {
		t.Fatalf("admitted only %d of %d credits with 32×40 calls of at most 7", got, limit)
	}
	if u := used(t, s, k, t0.Add(time.Second)); u != got {
		t.Fatalf("window holds %d credits, admitted %d", u, got)
	}
}

func mustConcurrency(t *testing.T, s limiter.Store, k limiter.Key, cost int64, at time.Time) limiter.Decision {
	t.Helper()
	d, err := spend(t, s, k, cost, at)
	if !errors.Is(err, limiter.ErrConcurrency) || d.Allowed {
		t.Fatalf("Spend(%d at +%s) = %+v, %v; want ErrConcurrency", cost, at.Sub(t0), d, err)
	}
	return d
}

// testConcurrencyCap: at most Concurrency calls hold leases; a call refused for it is not
// debited; a release frees a slot.
func testConcurrencyCap(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	ctx := context.Background()
	k := limiter.NewKey(newOrg(), 100).WithConcurrency(3, 0)

	var held []limiter.Decision
	for i := range 3 {
		d := mustAllow(t, s, k, 2, t0)
		if d.Lease == "" || d.InFlight != int64(i+1) || d.ConcurrencyLimit != 3 {
			t.Fatalf("call %d: %+v; want a lease, %d in flight of 3", i, d, i+1)
		}
		held = append(held, d)
	}
	if held[0].Lease == held[1].Lease {
		t.Fatal("two calls share a lease id")
	}
	d := mustConcurrency(t, s, k, 2, t0)
	if d.InFlight != 3 || d.ConcurrencyLimit != 3 || d.Cost != 0 {
		t.Fatalf("refused decision %+v", d)
	}
	if got := used(t, s, k, t0); got != 6 {
		t.Fatalf("used %d after a refusal for concurrency, want 6 (nothing debited)", got)
	}
	// Reading (cost 0) takes no lease and is never refused for concurrency.
	if d := mustAllow(t, s, k, 0, t0); d.Lease != "" {
		t.Fatalf("a read took a lease: %+v", d)
	}
	if err := s.Release(ctx, k, held[1]); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, k, held[1]); err != nil { // twice is harmless
		t.Fatal(err)
	}
	mustAllow(t, s, k, 2, t0)
	mustConcurrency(t, s, k, 2, t0)
	// A call refused for credits takes no lease either.
	for _, d := range append(held[:1], held[2:]...) {
		if err := s.Release(ctx, k, d); err != nil {
			t.Fatal(err)
		}
	}
	mustReject(t, s, k, 100, t0)
	mustAllow(t, s, k, 1, t0)
	mustAllow(t, s, k, 1, t0)
	mustConcurrency(t, s, k, 1, t0)
}

// testHeavySubCap: heavy calls share a smaller cap inside the org's.
func testHeavySubCap(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	ctx := context.Background()
	org := newOrg()
	light := limiter.NewKey(org, 100).WithConcurrency(4, 0)
	heavy := light.WithConcurrency(4, 2)

	h1 := mustAllow(t, s, heavy, 10, t0)
	mustAllow(t, s, heavy, 10, t0)
	d := mustConcurrency(t, s, heavy, 10, t0)
	if d.ConcurrencyLimit != 2 || d.InFlight != 2 {
		t.Fatalf("heavy refusal %+v; want the heavy cap 2 named", d)
	}
	mustAllow(t, s, light, 1, t0) // a light call still fits the org's cap
	if err := s.Release(ctx, heavy, h1); err != nil {
		t.Fatal(err)
	}
	mustAllow(t, s, heavy, 10, t0)
	mustAllow(t, s, light, 1, t0)
	// Now 4 in flight (2 heavy, 2 light): the org's cap refuses even a light call.
	if d := mustConcurrency(t, s, light, 1, t0); d.ConcurrencyLimit != 4 {
		t.Fatalf("org refusal %+v; want the org cap 4 named", d)
	}
}

// testLeasesExpire: leases never released (a replica died) free up after the lease TTL.
func testLeasesExpire(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute, LeaseTTL: 30 * time.Second})
	k := limiter.NewKey(newOrg(), 100).WithConcurrency(2, 0)
	mustAllow(t, s, k, 1, t0)
	mustAllow(t, s, k, 1, t0.Add(10*time.Second))
	mustConcurrency(t, s, k, 1, t0.Add(30*time.Second-time.Millisecond))
	d := mustAllow(t, s, k, 1, t0.Add(30*time.Second)) // the first lease expired
	if d.InFlight != 2 {
		t.Fatalf("in flight %d, want 2", d.InFlight)
	}
	mustConcurrency(t, s, k, 1, t0.Add(39*time.Second))
	mustAllow(t, s, k, 1, t0.Add(60*time.Second)) // both older leases gone
}

// testRacingLeases: goroutines acquire and release; the calls holding a lease at once never
// exceed the cap, and every allowed call held one.
func testRacingLeases(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	const capacity = 4
	k := limiter.NewKey(newOrg(), 1<<40).WithConcurrency(capacity, 0)
	var (
		holding, peak, allowed atomic.Int64
		wg                     sync.WaitGroup
		errs                   = make(chan error, 16)
	)
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 30 {
				d, err := s.Spend(context.Background(), k, 1, t0)
				if errors.Is(err, limiter.ErrConcurrency) {
					continue
				}
				if err != nil || d.Lease == "" {
					errs <- fmt.Errorf("Spend: %+v, %v", d, err)
					return
				}
				allowed.Add(1)
				n := holding.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(time.Millisecond)
				holding.Add(-1)
				if err := s.Release(context.Background(), k, d); err != nil {
					errs <- err
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
	if peak.Load() > capacity || allowed.Load() == 0 {
		t.Fatalf("peak %d calls holding leases with a cap of %d (%d allowed)", peak.Load(), capacity, allowed.Load())
	}
	// Everything was released: a full set of slots is free.
	for range capacity {
		mustAllow(t, s, k, 1, t0)
	}
}

// testLeasesRenewed: a renewed lease outlives its first time to live, on the heavy cap too;
// a released or expired lease is not brought back.
func testLeasesRenewed(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute, LeaseTTL: 15 * time.Second})
	r, ok := s.(limiter.LeaseRenewer)
	if !ok {
		t.Fatalf("%T does not renew leases", s)
	}
	ctx := context.Background()
	k := limiter.NewKey(newOrg(), 100).WithConcurrency(2, 1) // a heavy call: both caps
	long := mustAllow(t, s, k, 1, t0)
	short := mustAllow(t, s, k.WithConcurrency(2, 0), 1, t0)
	renew := func(at time.Time, want int64, leases ...string) {
		t.Helper()
		n, err := r.Renew(ctx, k, leases, at)
		if err != nil || n != want {
			t.Fatalf("Renew at +%s = %d, %v; want %d", at.Sub(t0), n, err, want)
		}
	}
	renew(t0.Add(5*time.Second), 2, long.Lease, short.Lease)
	if err := s.Release(ctx, k, short); err != nil {
		t.Fatal(err)
	}
	renew(t0.Add(10*time.Second), 1, long.Lease, short.Lease) // the released one stays gone
	// At +20s the long call's lease (renewed to +25s) still holds its heavy slot and one of
	// the org's two; without the renewals it would have expired at +15s.
	mustConcurrency(t, s, k, 1, t0.Add(20*time.Second))
	other := mustAllow(t, s, k.WithConcurrency(2, 0), 1, t0.Add(20*time.Second))
	mustConcurrency(t, s, k.WithConcurrency(2, 0), 1, t0.Add(20*time.Second))
	// Not renewed again: both expire, and renewing then brings neither back.
	renew(t0.Add(40*time.Second), 0, long.Lease, other.Lease)
	mustAllow(t, s, k, 1, t0.Add(40*time.Second))
	renew(t0.Add(40*time.Second), 0)
}

func compensator(t *testing.T, s limiter.Store) limiter.Compensator {
	t.Helper()
	c, ok := s.(limiter.Compensator)
	if !ok {
		t.Fatalf("%T does not compensate", s)
	}
	return c
}

// addonKey is a key with add-ons from its first credit on, so every debit is metered.
func addonKey(org string) limiter.Key {
	return limiter.NewKey(org, 100).WithAddons(0, 100, 1000)
}

func meterTotal(t *testing.T, s limiter.Store, org string) int64 {
	t.Helper()
	m, err := s.(limiter.Meter).Metered(context.Background(), org, limiter.Day(t0)-1, limiter.Day(t0)+1)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// testRefundOnce: a refund retried (its reply lost, say) gives the credits back, and
// un-meters them, once.
func testRefundOnce(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	org := newOrg()
	k := addonKey(org)
	ctx := context.Background()
	mustAllow(t, s, k, 10, t0)
	d := mustAllow(t, s, k, 5, t0.Add(time.Second))
	if d.Call == "" {
		t.Fatal("a debit without a call id")
	}
	for range 3 {
		if err := s.Refund(ctx, k, d); err != nil {
			t.Fatal(err)
		}
	}
	if got := used(t, s, k, t0.Add(2*time.Second)); got != 10 {
		t.Fatalf("used %d after one refund retried, want 10", got)
	}
	if got := meterTotal(t, s, org); got != 10 {
		t.Fatalf("metered %d after one refund retried, want 10", got)
	}
}

// testCompensateBefore: a compensation that reaches the store before its debit (the debit was
// still on the wire when its caller gave up) makes the debit do nothing; more of it change
// nothing.
func testCompensateBefore(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute, CallTTL: time.Minute})
	c := compensator(t, s)
	org := newOrg()
	k := addonKey(org).WithConcurrency(1, 0)
	call := limiter.NewCallID()
	ctx := context.Background()
	for range 2 {
		if err := c.Compensate(ctx, k, call, t0); err != nil {
			t.Fatal(err)
		}
	}
	d, err := s.Spend(ctx, k.WithCall(call), 7, t0.Add(time.Second))
	if !errors.Is(err, limiter.ErrCompensated) || d.Allowed || d.Lease != "" {
		t.Fatalf("Spend after its compensation = %+v, %v; want ErrCompensated and nothing taken", d, err)
	}
	if got := used(t, s, k, t0.Add(2*time.Second)); got != 0 {
		t.Fatalf("used %d, want 0", got)
	}
	if got := meterTotal(t, s, org); got != 0 {
		t.Fatalf("metered %d, want 0", got)
	}
	mustAllow(t, s, k, 3, t0.Add(2*time.Second)) // the lease was not taken
}

// testCompensateAfter: a compensation of a debit that ran gives it back once, with its add-on
// part; a refund of it after that does nothing.
func testCompensateAfter(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute, CallTTL: time.Minute})
	c := compensator(t, s)
	org := newOrg()
	k := addonKey(org)
	ctx := context.Background()
	mustAllow(t, s, k, 4, t0)
	call := limiter.NewCallID()
	d := mustAllow(t, s, k.WithCall(call), 6, t0.Add(time.Second))
	if d.Call != call {
		t.Fatalf("decision names call %q, want %q", d.Call, call)
	}
	for range 2 {
		if err := c.Compensate(ctx, k, call, t0.Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Refund(ctx, k, d); err != nil {
		t.Fatal(err)
	}
	if got := used(t, s, k, t0.Add(3*time.Second)); got != 4 {
		t.Fatalf("used %d after compensating the second debit, want 4", got)
	}
	if got := meterTotal(t, s, org); got != 4 {
		t.Fatalf("metered %d, want 4", got)
	}
	if _, err := s.Spend(ctx, k.WithCall(call), 6, t0.Add(4*time.Second)); !errors.Is(err, limiter.ErrCompensated) {
		t.Fatalf("the same call debited again: %v", err)
	}
}

// testCallRecordsExpire: past CallTTL a debit's record is gone: a compensation then cannot
// find it (and does nothing to the window), and a new call may reuse nothing of it.
func testCallRecordsExpire(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute, CallTTL: time.Minute})
	c := compensator(t, s)
	k := limiter.NewKey(newOrg(), 100)
	call := limiter.NewCallID()
	mustAllow(t, s, k.WithCall(call), 5, t0)
	if err := c.Compensate(context.Background(), k, call, t0.Add(time.Minute+time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := used(t, s, k, t0.Add(2*time.Minute)); got != 5 {
		t.Fatalf("used %d after a compensation past the record's life, want 5 (too late to apply)", got)
	}
	// The compensation's own mark lasts a CallTTL too.
	if _, err := s.Spend(context.Background(), k.WithCall(call), 1, t0.Add(2*time.Minute)); !errors.Is(err, limiter.ErrCompensated) {
		t.Fatalf("a call marked compensated was debited: %v", err)
	}
	mustAllow(t, s, k.WithCall(call), 1, t0.Add(3*time.Minute))
}

// testForcedDebit: a forced debit (credits a gateway admitted while it could not reach the
// store) is recorded past the limit, at its own time, and metered; the org is then refused
// until enough frees up; the same forced call twice is recorded once.
func testForcedDebit(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: time.Hour, Bucket: time.Minute})
	org := newOrg()
	k := limiter.NewKey(org, 100).WithAddons(50, 50, 1000).WithConcurrency(1, 0)
	mustAllow(t, s, k, 90, t0)
	call := limiter.NewCallID()
	f := k.WithForce().WithCall(call)
	d, err := s.Spend(context.Background(), f, 30, t0.Add(10*time.Minute))
	if err != nil || !d.Allowed || d.Used != 120 || d.Lease != "" || d.Addon != 30 {
		t.Fatalf("forced debit = %+v, %v; want allowed, used 120, no lease, 30 add-on", d, err)
	}
	if _, err := s.Spend(context.Background(), f, 30, t0.Add(11*time.Minute)); !errors.Is(err, limiter.ErrCompensated) {
		t.Fatalf("the same forced call again: %v, want ErrCompensated", err)
	}
	r := mustReject(t, s, k, 1, t0.Add(20*time.Minute))
	// 21 credits must free up: the first 90 do at +61m (their bucket ends an hour after it began).
	if r.Used != 120 || r.RetryAfter != bucketEnd(t0, time.Minute).Add(time.Hour).Sub(t0.Add(20*time.Minute)) {
		t.Fatalf("refused %+v", r)
	}
	if got := meterTotal(t, s, org); got != 70 {
		t.Fatalf("metered %d, want 70 (40 of the first debit, 30 forced)", got)
	}
}

// testRefundRetriedLate: a refund retried after its debit's own record would have expired
// still applies once: the refund's mark lasts a CallTTL from the refund.
func testRefundRetriedLate(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute, CallTTL: time.Minute})
	org := newOrg()
	k := addonKey(org)
	ctx := context.Background()
	mustAllow(t, s, k, 10, t0)
	d := mustAllow(t, s, k, 5, t0)
	if err := s.Refund(ctx, k, d); err != nil {
		t.Fatal(err)
	}
	mustAllow(t, s, k, 1, t0.Add(2*time.Minute)) // drops records that expired by then
	if err := s.Refund(ctx, k, d); err != nil {
		t.Fatal(err)
	}
	if got := used(t, s, k, t0.Add(3*time.Minute)); got != 11 {
		t.Fatalf("used %d after a refund retried late, want 11 (applied once)", got)
	}
	if got := meterTotal(t, s, org); got != 11 {
		t.Fatalf("metered %d, want 11", got)
	}
}

// testCompensateReleasesLease: a compensated call gives back its concurrency slot too.
func testCompensateReleasesLease(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute, CallTTL: time.Minute})
	k := limiter.NewKey(newOrg(), 100).WithConcurrency(1, 0)
	call := limiter.NewCallID()
	mustAllow(t, s, k.WithCall(call), 5, t0)
	mustConcurrency(t, s, k, 1, t0.Add(time.Second))
	if err := compensator(t, s).Compensate(context.Background(), k, call, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if d := mustAllow(t, s, k, 1, t0.Add(3*time.Second)); d.Used != 1 {
		t.Fatalf("after the compensation: %+v; want its credits and its slot back", d)
	}
}

// testSpendResent: a Spend sent again under its call id (a client library's retry after the
// first attempt's reply was lost, a proxy's replay) answers as the debit that ran, allowed,
// with its bucket, add-on part and lease, and debits nothing more: not refused for the credits
// or the slot the debit itself holds. Compensated, the call then answers ErrCompensated; a
// forced debit of a call debited already does nothing.
func testSpendResent(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute, CallTTL: time.Hour, LeaseTTL: time.Hour})
	c := compensator(t, s)
	org := newOrg()
	k := addonKey(org).WithConcurrency(1, 0) // limit 100, every credit metered, one slot
	ctx := context.Background()
	call := limiter.NewCallID()
	first := mustAllow(t, s, k.WithCall(call), 60, t0)
	for i, at := range []time.Time{t0, t0.Add(2 * time.Minute)} {
		again, err := s.Spend(ctx, k.WithCall(call), 60, at)
		if err != nil || !again.Allowed || again.Cost != 60 || again.Bucket != first.Bucket ||
			again.Addon != first.Addon || again.Day != first.Day || again.Lease != first.Lease ||
			again.Lease == "" || again.Call != call || again.Used != 60 || again.Remaining != 40 {
			t.Fatalf("resend %d = %+v, %v; want the first debit %+v again, used 60", i, again, err, first)
		}
	}
	mustConcurrency(t, s, k, 1, t0.Add(3*time.Minute)) // one lease: the call's
	if got := used(t, s, k, t0.Add(3*time.Minute)); got != 60 {
		t.Fatalf("used %d after a debit sent three times, want 60", got)
	}
	if got := meterTotal(t, s, org); got != 60 {
		t.Fatalf("metered %d, want 60", got)
	}

	// Compensated (the caller gave up on it): credits and slot come back, and the call's
	// id now answers ErrCompensated, taking nothing.
	if err := c.Compensate(ctx, k, call, t0.Add(4*time.Minute)); err != nil {
		t.Fatal(err)
	}
	d, err := s.Spend(ctx, k.WithCall(call), 60, t0.Add(5*time.Minute))
	if !errors.Is(err, limiter.ErrCompensated) || d.Allowed || d.Lease != "" {
		t.Fatalf("resend after the compensation = %+v, %v; want ErrCompensated and nothing taken", d, err)
	}
	other := mustAllow(t, s, k, 100, t0.Add(5*time.Minute)) // all credits and the slot free
	if err := s.Release(ctx, k, other); err != nil {
		t.Fatal(err)
	}

	// A forced debit never replays: a call debited already answers ErrCompensated. (A forced
	// debit's record lives by the store's own clock, so this debit is at the store's time.)
	k2 := limiter.NewKey(newOrg(), 100)
	call2 := limiter.NewCallID()
	if d, err := s.Spend(ctx, k2.WithCall(call2), 10, time.Time{}); err != nil || !d.Allowed {
		t.Fatalf("Spend(10 now) = %+v, %v; want allowed", d, err)
	}
	d, err = s.Spend(ctx, k2.WithForce().WithCall(call2), 10, time.Time{})
	if !errors.Is(err, limiter.ErrCompensated) {
		t.Fatalf("forced debit of a call debited already: %+v, %v; want ErrCompensated", d, err)
	}
	if d, err := s.Spend(ctx, k2, 0, time.Time{}); err != nil || d.Used != 10 {
		t.Fatalf("after the forced debit: %+v, %v; want used 10", d, err)
	}
}
