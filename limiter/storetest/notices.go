package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/creditgate/creditgate/limiter"
)

func noticeStore(t *testing.T, s limiter.Store) limiter.NoticeStore {
	t.Helper()
	n, ok := s.(limiter.NoticeStore)
	if !ok {
		t.Fatalf("%T does not implement limiter.NoticeStore", s)
	}
	return n
}

// spendNotice spends and indexes the org when the debit queued notices, as the gateway does;
// it returns how many it queued.
func spendNotice(t *testing.T, s limiter.Store, k limiter.Key, cost int64, at time.Time) int64 {
	t.Helper()
	d := mustAllow(t, s, k, cost, at)
	if d.Notices > 0 {
		if err := noticeStore(t, s).QueueNotices(context.Background(), k.Org, at); err != nil {
			t.Fatal(err)
		}
	}
	return d.Notices
}

// claim claims the events due at now for owner and returns those of org (a shared Redis may
// hold other tests' orgs).
func claim(t *testing.T, s limiter.Store, owner, org string, now time.Time) []limiter.Notice {
	t.Helper()
	all, err := noticeStore(t, s).ClaimNotices(context.Background(), owner, now, time.Minute, 10_000, 10)
	if err != nil {
		t.Fatal(err)
	}
	var out []limiter.Notice
	for _, n := range all {
		if n.Org == org {
			out = append(out, n)
		}
	}
	return out
}

func finish(t *testing.T, s limiter.Store, owner, org string, done []limiter.Notice, failed *limiter.Notice, retryAt, now time.Time) {
	t.Helper()
	if err := noticeStore(t, s).FinishNotices(context.Background(), owner, org, done, failed, retryAt, now); err != nil {
		t.Fatal(err)
	}
}

func thresholdsOf(ns []limiter.Notice) []int64 {
	var out []int64
	for _, n := range ns {
		out = append(out, n.Threshold)
	}
	return out
}

// testNoticesOncePerCrossing: an org with limit 100 and thresholds 50, 80, 100 driven to 55,
// 85 and 100 credits queues exactly one event per threshold, with distinct ids and the usage
// that crossed it; delivered, they leave the outbox.
func testNoticesOncePerCrossing(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	org := newOrg()
	k := limiter.NewKey(org, 100).WithNotices([]int64{50, 80, 100})
	var queued []int64
	for i, cost := range []int64{30, 25, 10, 20, 15} { // 30, 55, 65, 85, 100
		queued = append(queued, spendNotice(t, s, k, cost, t0.Add(time.Duration(i)*time.Second)))
	}
	mustReject(t, s, k, 1, t0.Add(10*time.Second))
	if want := []int64{0, 1, 0, 1, 1}; !slices.Equal(queued, want) {
		t.Fatalf("notices queued per debit %v, want %v", queued, want)
	}
	at := t0.Add(time.Minute)
	got := claim(t, s, "a", org, at)
	if th := thresholdsOf(got); !slices.Equal(th, []int64{50, 80, 100}) {
		t.Fatalf("events %+v, want thresholds 50, 80, 100", got)
	}
	ids := map[string]bool{}
	for i, n := range got {
		ids[n.ID] = true
		if want := []int64{55, 85, 100}[i]; n.Used != want || n.Limit != 100 || n.Attempts != 0 || n.Window != day {
			t.Errorf("event %d: %+v, want used %d of 100 over 24h, no attempts", i, n, want)
		}
		if !n.At.Equal(t0.Add([]time.Duration{1, 3, 4}[i] * time.Second)) {
			t.Errorf("event %d at %s, want the time of its debit", i, n.At)
		}
	}
	if len(ids) != 3 {
		t.Fatalf("ids %v are not distinct", ids)
	}
	st, err := noticeStore(t, s).Notices(context.Background(), org)
	if err != nil || !slices.Equal(st.Fired, []int64{50, 80, 100}) {
		t.Fatalf("fired %v, %v; want all three", st.Fired, err)
	}
	finish(t, s, "a", org, got, nil, time.Time{}, at)
	if again := claim(t, s, "b", org, at.Add(time.Hour)); len(again) != 0 {
		t.Fatalf("delivered events claimed again: %+v", again)
	}
}

// testNoticesRearm: a threshold re-arms when usage falls below it, by a refund or as the
// window frees credits, and the next crossing queues a new event with a new id.
func testNoticesRearm(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	org := newOrg()
	k := limiter.NewKey(org, 100).WithNotices([]int64{50})
	if n := spendNotice(t, s, k, 40, t0); n != 0 {
		t.Fatalf("40 of 100 queued %d", n)
	}
	d := mustAllow(t, s, k, 20, t0.Add(time.Second)) // 60: crosses 50
	if d.Notices != 1 {
		t.Fatalf("60 of 100 queued %d, want 1", d.Notices)
	}
	if err := s.Refund(context.Background(), k, d); err != nil { // back to 40: re-armed
		t.Fatal(err)
	}
	if st, _ := noticeStore(t, s).Notices(context.Background(), org); len(st.Fired) != 0 {
		t.Fatalf("after the refund fired %v, want none", st.Fired)
	}
	if n := spendNotice(t, s, k, 20, t0.Add(2*time.Second)); n != 1 {
		t.Fatalf("crossing again after a refund queued %d, want 1", n)
	}
	if n := spendNotice(t, s, k, 10, t0.Add(3*time.Second)); n != 0 {
		t.Fatalf("above the fired threshold queued %d, want 0", n)
	}
	// The window frees everything; 55 crosses 50 again.
	later := t0.Add(day + time.Hour)
	if n := spendNotice(t, s, k, 55, later); n != 1 {
		t.Fatalf("crossing again in a new window queued %d, want 1", n)
	}
	got := claim(t, s, "a", org, later)
	if len(got) != 3 {
		t.Fatalf("events %+v, want 3", got)
	}
	if got[0].ID == got[1].ID || got[1].ID == got[2].ID || got[2].Used != 55 {
		t.Fatalf("events %+v: want distinct ids, the last at 55", got)
	}
}

// testNoticesRetry: a failed attempt keeps the event, under the same id, counted, and the
// org's events wait for the backoff; a claim held by one owner is not given to another until
// its lease ends.
func testNoticesRetry(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	org := newOrg()
	k := limiter.NewKey(org, 10).WithNotices([]int64{100})
	spendNotice(t, s, k, 10, t0)
	first := claim(t, s, "a", org, t0)
	if len(first) != 1 {
		t.Fatalf("claimed %+v, want one event", first)
	}
	if other := claim(t, s, "b", org, t0.Add(30*time.Second)); len(other) != 0 {
		t.Fatalf("another owner claimed %+v during the lease", other)
	}
	// Owner a died: b claims it once the lease (a minute) is over.
	taken := claim(t, s, "b", org, t0.Add(61*time.Second))
	if len(taken) != 1 || taken[0].ID != first[0].ID {
		t.Fatalf("after the lease claimed %+v, want %s", taken, first[0].ID)
	}
	retry := t0.Add(2 * time.Minute)
	finish(t, s, "b", org, nil, &taken[0], retry, t0.Add(62*time.Second))
	if early := claim(t, s, "a", org, retry.Add(-time.Second)); len(early) != 0 {
		t.Fatalf("claimed %+v before its retry time", early)
	}
	again := claim(t, s, "a", org, retry)
	if len(again) != 1 || again[0].ID != first[0].ID || again[0].Attempts != 1 {
		t.Fatalf("retry claimed %+v, want %s after 1 attempt", again, first[0].ID)
	}
	finish(t, s, "a", org, again, nil, time.Time{}, retry)
	if left := claim(t, s, "a", org, retry.Add(time.Hour)); len(left) != 0 {
		t.Fatalf("left %+v", left)
	}
}

// testNoticeSettings: thresholds stored for the org win over the key's; deleted, the key's
// apply again.
func testNoticeSettings(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	ns := noticeStore(t, s)
	ctx := context.Background()
	org := newOrg()
	k := limiter.NewKey(org, 100).WithNotices([]int64{50})
	url := "https://hooks.example/x"
	if err := ns.SetNotices(ctx, org, &limiter.NoticeSettings{Thresholds: &[]int64{90}, URL: &url}); err != nil {
		t.Fatal(err)
	}
	st, err := ns.Notices(ctx, org)
	if err != nil || st.Settings.Thresholds == nil || !slices.Equal(*st.Settings.Thresholds, []int64{90}) ||
		st.Settings.URL == nil || *st.Settings.URL != url || st.Settings.Secret != nil {
		t.Fatalf("settings %+v, %v", st.Settings, err)
	}
	if n := spendNotice(t, s, k, 60, t0); n != 0 {
		t.Fatalf("60 queued %d with the stored threshold 90", n)
	}
	if n := spendNotice(t, s, k, 30, t0.Add(time.Second)); n != 1 {
		t.Fatalf("90 queued %d, want 1", n)
	}
	if err := ns.SetNotices(ctx, org, &limiter.NoticeSettings{Thresholds: &[]int64{}}); err != nil {
		t.Fatal(err)
	}
	if st, _ := ns.Notices(ctx, org); st.Settings.URL != nil || st.Settings.Thresholds == nil || len(*st.Settings.Thresholds) != 0 {
		t.Fatalf("settings replaced: %+v", st.Settings)
	}
	if err := ns.SetNotices(ctx, org, nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := ns.Notices(ctx, org); st.Settings.Thresholds != nil || !slices.Equal(st.Fired, []int64{90}) {
		t.Fatalf("after delete: %+v", st)
	}
}

// testNoticesAfterQuietDebits: debits of an org with no thresholds anywhere cost the notices
// nothing in Redis, but thresholds set later, through the settings or the key, apply from
// the next debit on.
func testNoticesAfterQuietDebits(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute})
	ns := noticeStore(t, s)
	ctx := context.Background()
	org := newOrg()
	k := limiter.NewKey(org, 100)
	for i, cost := range []int64{20, 10, 10} {
		if n := spendNotice(t, s, k, cost, t0.Add(time.Duration(i)*time.Second)); n != 0 {
			t.Fatalf("debit %d queued %d with no thresholds", i, n)
		}
	}
	if err := ns.SetNotices(ctx, org, &limiter.NoticeSettings{Thresholds: &[]int64{50}}); err != nil {
		t.Fatal(err)
	}
	if n := spendNotice(t, s, k, 20, t0.Add(5*time.Second)); n != 1 {
		t.Fatalf("crossing the stored 50%% queued %d, want 1", n)
	}
	if err := ns.SetNotices(ctx, org, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // none stored now, 50 still fired
		if n := spendNotice(t, s, k, 1, t0.Add(time.Duration(6+i)*time.Second)); n != 0 {
			t.Fatalf("debit queued %d with the settings gone", n)
		}
	}
	if n := spendNotice(t, s, k.WithNotices([]int64{80}), 20, t0.Add(10*time.Second)); n != 1 {
		t.Fatalf("crossing the key's 80%% queued %d, want 1", n)
	}
	if st, err := ns.Notices(ctx, org); err != nil || !slices.Equal(st.Fired, []int64{50, 80}) {
		t.Fatalf("fired %v, %v; want [50 80]", st.Fired, err)
	}
}

// testNoticesSettle: a settle moves the window's total like a debit or a refund, so the
// notices follow it: an extra debit that crosses a threshold queues its event, once however
// often the settle is sent, and a give-back below it re-arms it.
func testNoticesSettle(t *testing.T, newStore NewStore) {
	s := newStore(t, limiter.Options{Window: day, Bucket: minute, CallTTL: time.Hour})
	org := newOrg()
	k := limiter.NewKey(org, 100).WithNotices([]int64{50, 80})
	d := mustAllow(t, s, k, 10, t0) // reserved 10 of 100
	for i := range 2 {
		got := settle(t, s, k, d, 85, t0.Add(time.Second)) // settled to 85: crosses 50 and 80
		if want := []int64{2, 0}[i]; got.Notices != want {
			t.Fatalf("settle %d of 10 -> 85 queued %d notices, want %d", i+1, got.Notices, want)
		}
	}
	if err := noticeStore(t, s).QueueNotices(context.Background(), org, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	got := claim(t, s, "a", org, t0.Add(2*time.Second))
	if th := thresholdsOf(got); !slices.Equal(th, []int64{50, 80}) || got[0].Used != 85 || got[1].Used != 85 {
		t.Fatalf("events %+v, want thresholds 50 and 80 at 85 credits", got)
	}
	finish(t, s, "a", org, got, nil, time.Time{}, t0.Add(2*time.Second))

	// A second call, reserved high and settled low: back under 80, which re-arms.
	d2 := mustAllow(t, s, k, 10, t0.Add(3*time.Second)) // 95
	if got := settle(t, s, k, d2, 0, t0.Add(4*time.Second)); got.Moved != -10 || got.Notices != 0 {
		t.Fatalf("settle 10 -> 0 = %+v; want 10 given back, nothing queued", got)
	}
	if err := s.Refund(context.Background(), k, d); err != nil { // 85 given back: 0 held
		t.Fatal(err)
	}
	if st, err := noticeStore(t, s).Notices(context.Background(), org); err != nil || len(st.Fired) != 0 {
		t.Fatalf("fired %v, %v after usage fell to 0; want none", st.Fired, err)
	}
}
