package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/creditgate/creditgate/limiter"
)

func periods(t *testing.T, s limiter.Store) limiter.PeriodStore {
	t.Helper()
	p, ok := s.(limiter.PeriodStore)
	if !ok {
		t.Fatalf("%T does not implement limiter.PeriodStore", s)
	}
	return p
}

func utc(y int, m time.Month, d, h, min int) time.Time {
	return time.Date(y, m, d, h, min, 0, 0, time.UTC)
}

// testPeriodQuota: the monthly calls come first, then the additional calls (metered per day);
// then calls are refused until the next period, which starts from zero (nothing rolls over).
// The additional limit set in the store wins over the key's; refunds give a call back.
func testPeriodQuota(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{})
	ps, m := periods(t, s), meter(t, s)
	ctx := context.Background()
	k := limiter.PeriodKey{Org: newOrg(), Monthly: 3, Additional: 2, MaxAdditional: 6, AnchorDay: 15}
	at := utc(2026, 1, 20, 10, 0)
	count := func(at time.Time) (limiter.PeriodDecision, error) {
		t.Helper()
		d, err := ps.SpendCall(ctx, k, at, true)
		if err != nil && !errors.Is(err, limiter.ErrPeriodExhausted) {
			t.Fatal(err)
		}
		return d, err
	}
	var last limiter.PeriodDecision
	for i, wantExtra := range []int64{0, 0, 0, 1, 1} {
		d, err := count(at)
		if err != nil || d.Additional != wantExtra || d.Used != int64(i+1) || d.Limit != 5 {
			t.Fatalf("call %d: %+v, %v; want used %d, additional %d", i+1, d, err, i+1, wantExtra)
		}
		last = d
	}
	d, err := count(at)
	if !errors.Is(err, limiter.ErrPeriodExhausted) || d.Allowed || d.Used != 5 {
		t.Fatalf("6th call: %+v, %v; want ErrPeriodExhausted", d, err)
	}
	if !d.Start.Equal(utc(2026, 1, 15, 0, 0)) || !d.End.Equal(utc(2026, 2, 15, 0, 0)) {
		t.Fatalf("period %s..%s, want 2026-01-15..2026-02-15", d.Start, d.End)
	}
	day := limiter.Day(at)
	if got := metered(t, m, k.Org, day, day); got[day] != 2 {
		t.Fatalf("metered %v, want 2 additional calls on day %d", got, day)
	}
	if err := ps.RefundCall(ctx, k, last); err != nil {
		t.Fatal(err)
	}
	if got := metered(t, m, k.Org, day, day); got[day] != 1 {
		t.Fatalf("after a refund: metered %v, want 1", got)
	}
	if d, _ := ps.SpendCall(ctx, k, at, false); d.Used != 4 {
		t.Fatalf("read after refund: used %d, want 4", d.Used)
	}
	if err := m.SetAddon(ctx, k.Org, 0); err != nil { // additional calls switched off
		t.Fatal(err)
	}
	if _, err := count(at); !errors.Is(err, limiter.ErrPeriodExhausted) {
		t.Fatalf("additional calls off: %v, want ErrPeriodExhausted", err)
	}
	if err := m.SetAddon(ctx, k.Org, 60); err != nil { // counts as twice the monthly limit, 6
		t.Fatal(err)
	}
	if d, err := count(at.Add(24 * time.Hour)); err != nil || d.Additional != 1 || d.Limit != 9 {
		t.Fatalf("additional calls raised to 6: %+v, %v", d, err)
	}
	// The last minute of the period, then the next period: a fresh count, no rollover.
	if d, _ := ps.SpendCall(ctx, k, utc(2026, 2, 14, 23, 59), false); d.Used != 5 || !d.End.Equal(utc(2026, 2, 15, 0, 0)) {
		t.Fatalf("last minute of the period: %+v", d)
	}
	d, err = count(utc(2026, 2, 15, 0, 0))
	if err != nil || d.Used != 1 || d.Additional != 0 || !d.Start.Equal(utc(2026, 2, 15, 0, 0)) {
		t.Fatalf("first call of the next period: %+v, %v", d, err)
	}
}

// testPeriodCalendar: the store's periods agree with limiter.PeriodOf across month ends, year
// ends and leap days, for several anchor days.
func testPeriodCalendar(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{})
	ps := periods(t, s)
	ctx := context.Background()
	for _, anchor := range []int{1, 15, 28} {
		k := limiter.PeriodKey{Org: newOrg(), Monthly: 1, AnchorDay: anchor}
		for at := utc(2027, 12, 20, 0, 0); at.Before(utc(2028, 3, 31, 0, 0)); at = at.Add(23*time.Hour + 7*time.Minute) {
			d, err := ps.SpendCall(ctx, k, at, false)
			if err != nil {
				t.Fatal(err)
			}
			start, end := limiter.PeriodOf(at, anchor)
			if !d.Start.Equal(start) || !d.End.Equal(end) || d.Day != limiter.Day(at) {
				t.Fatalf("anchor %d at %s: store %s..%s day %d, want %s..%s", anchor, at, d.Start, d.End, d.Day, start, end)
			}
		}
	}
	if _, err := ps.SpendCall(ctx, limiter.PeriodKey{Org: newOrg(), Monthly: 1, AnchorDay: 29}, t0, true); err == nil {
		t.Fatal("anchor day 29 accepted")
	}
}
