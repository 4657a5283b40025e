package limiter_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditgate/creditgate/internal/redistest"
	"github.com/creditgate/creditgate/limiter"
)

// bothStores returns a memory and a Redis store with the same options, for checks that the
// two agree where the conformance suite's timelines do not reach.
func bothStores(t *testing.T, opts limiter.Options) map[string]limiter.Store {
	t.Helper()
	m, r := storesOn(t, redistest.Start(t), opts)
	return map[string]limiter.Store{"memory": m, "redis": r}
}

// storesOn returns a memory store and a Redis store on srv, with the same options.
func storesOn(t *testing.T, srv *redistest.Server, opts limiter.Options) (*limiter.MemoryStore, *limiter.RedisStore) {
	t.Helper()
	m, err := limiter.NewMemoryStore(opts)
	if err != nil {
		t.Fatal(err)
	}
	r, err := limiter.NewRedisStore(srv.Client, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m, r
}

// meteredOn returns what m metered for org on day.
func meteredOn(t *testing.T, m limiter.Meter, org string, day int64) int64 {
	t.Helper()
	got, err := m.Metered(context.Background(), org, day, day)
	if err != nil {
		t.Fatal(err)
	}
	return got[day]
}

func mustSpend(t *testing.T, s limiter.Store, k limiter.Key, cost int64, at time.Time) limiter.Decision {
	t.Helper()
	d, err := s.Spend(context.Background(), k, cost, at)
	if err != nil || !d.Allowed {
		t.Fatalf("Spend(%d at %d) = %+v, %v", cost, at.UnixMilli(), d, err)
	}
	return d
}

// TestClockBackAfterNewestRefunded: a refund that empties the newest bucket moves the newest
// held bucket back, so a debit whose clock then runs back lands in its own bucket and frees
// by t + window + bucket, in both stores.
func TestClockBackAfterNewestRefunded(t *testing.T) {
	opts := limiter.Options{Window: 10 * time.Second, Bucket: time.Second}
	base := time.UnixMilli(1_767_225_600_000)
	at := func(ms int64) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	for name, s := range bothStores(t, opts) {
		t.Run(name, func(t *testing.T) {
			k := limiter.NewKey("clockback-"+name, 100)
			mustSpend(t, s, k, 1, at(100_000))
			d2 := mustSpend(t, s, k, 1, at(110_500))
			if err := s.Refund(context.Background(), k, d2); err != nil {
				t.Fatal(err)
			}
			d3 := mustSpend(t, s, k, 1, at(95_000)) // the clock ran back 15.5 s
			if d3.Bucket != at(95_000).UnixMilli() {
				t.Errorf("debit at +95s recorded in bucket +%dms, want +95000ms", d3.Bucket-base.UnixMilli())
			}
			if d := mustSpend(t, s, k, 0, at(106_000)); d.Used != 1 {
				t.Errorf("at +106s used = %d, want 1 (the +95s credit is free by t+window+bucket)", d.Used)
			}
		})
	}
}

// TestPeriodRefundFollowsCount: a monthly call taken back while a later call was metered as
// additional leaves the period within its monthly limit, so nothing is billed; taking back
// that call too un-meters nothing more.
func TestPeriodRefundFollowsCount(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 1, 20, 10, 0, 0, 0, time.UTC)
	for name, s := range bothStores(t, limiter.Options{}) {
		t.Run(name, func(t *testing.T) {
			ps, m := s.(limiter.PeriodStore), s.(limiter.Meter)
			k := limiter.PeriodKey{Org: "period-refund-" + name, Monthly: 1, Additional: 2, MaxAdditional: 2, AnchorDay: 1}
			metered := func() int64 { return meteredOn(t, m, k.Org, limiter.Day(at)) }
			a, err := ps.SpendCall(ctx, k, at, true) // the monthly call, in flight
			if err != nil {
				t.Fatal(err)
			}
			b, err := ps.SpendCall(ctx, k, at, true) // additional, metered
			if err != nil || b.Additional != 1 || metered() != 1 {
				t.Fatalf("second call: %+v, %v, metered %d", b, err, metered())
			}
			if err := ps.RefundCall(ctx, k, a); err != nil { // the first was never served
				t.Fatal(err)
			}
			if d, _ := ps.SpendCall(ctx, k, at, false); d.Used != 1 || metered() != 0 {
				t.Fatalf("after the monthly call's refund: used %d, metered %d; want 1 and 0", d.Used, metered())
			}
			if err := ps.RefundCall(ctx, k, b); err != nil {
				t.Fatal(err)
			}
			if d, _ := ps.SpendCall(ctx, k, at, false); d.Used != 0 || metered() != 0 {
				t.Fatalf("after both refunds: used %d, metered %d; want 0 and 0", d.Used, metered())
			}
			if err := ps.RefundCall(ctx, k, b); err != nil { // a refund of nothing changes nothing
				t.Fatal(err)
			}
			if d, _ := ps.SpendCall(ctx, k, at, false); d.Used != 0 {
				t.Fatalf("a third refund took the count to %d", d.Used)
			}
		})
	}
}

// TestWindowRefundFollowsFreeAllotment: a call given back while a later call was metered
// only because the first held free credits leaves the window within its free allotment, so
// nothing is billed; giving back the later call too un-meters nothing more; a call of its
// own above the allotment is un-metered in full. Both stores alike.
func TestWindowRefundFollowsFreeAllotment(t *testing.T) {
	ctx := context.Background()
	at := time.UnixMilli(1_767_225_600_000 + 37_123)
	for name, s := range bothStores(t, limiter.Options{Window: 24 * time.Hour, Bucket: time.Minute}) {
		t.Run(name, func(t *testing.T) {
			m := s.(limiter.Meter)
			k := limiter.NewKey("window-refund-"+name, 1).WithAddons(10, 100, 100)
			metered := func() int64 { return meteredOn(t, m, k.Org, limiter.Day(at)) }
			refund := func(d limiter.Decision) {
				if err := s.Refund(ctx, k, d); err != nil {
					t.Fatal(err)
				}
			}
			a := mustSpend(t, s, k, 10, at)
			b := mustSpend(t, s, k, 5, at)
			if b.Addon != 5 || metered() != 5 {
				t.Fatalf("second debit metered %d (meter %d), want 5", b.Addon, metered())
			}
			refund(a)
			if metered() != 0 {
				t.Fatalf("the window holds 5 of the free 10, yet %d add-on credits are billed", metered())
			}
			refund(b)
			if metered() != 0 {
				t.Fatalf("second refund: meter %d, want 0", metered())
			}
			c := mustSpend(t, s, k, 15, at) // 5 above the allotment
			keep := mustSpend(t, s, k, 2, at)
			if c.Addon != 5 || keep.Addon != 2 || metered() != 7 {
				t.Fatalf("metered %d and %d (meter %d), want 5 and 2", c.Addon, keep.Addon, metered())
			}
			refund(c)
			if metered() != 0 {
				t.Fatalf("after giving back the 15: meter %d, want 0 (2 of the 10 free held)", metered())
			}
		})
	}
}

// TestZeroFreeAllotment: add-ons with no free credits meter every credit, in both stores.
func TestZeroFreeAllotment(t *testing.T) {
	ctx := context.Background()
	at := time.UnixMilli(1_767_225_600_000 + 37_123)
	for name, s := range bothStores(t, limiter.Options{Window: 24 * time.Hour, Bucket: time.Minute}) {
		t.Run(name, func(t *testing.T) {
			m := s.(limiter.Meter)
			org := "payg-" + name
			if err := m.SetAddon(ctx, org, 50); err != nil {
				t.Fatal(err)
			}
			k := limiter.NewKey(org, 1).WithAddons(0, 100, 500)
			d := mustSpend(t, s, k, 5, at)
			got, _ := m.Metered(ctx, org, limiter.Day(at), limiter.Day(at))
			if d.Limit != 50 || d.Addon != 5 || got[limiter.Day(at)] != 5 {
				t.Fatalf("free 0: limit %d, addon %d, metered %d; want 50, 5, 5", d.Limit, d.Addon, got[limiter.Day(at)])
			}
		})
	}
}

// TestLostReplyReleasesLease: a Spend whose reply never reaches its caller (Redis stalled
// past the caller's deadline) may still have run and taken a lease; the store releases it,
// so the org is not held at its cap for the lease's time to live. Both Redis-backed stores.
//
// Redis is stopped (SIGSTOP) before the Spend and resumed after its caller gave up, so the
// Spend times out whatever the machine's load, and its script runs on resume, before the
// release the store then sends. The test waits for that release (a hook sees it answered)
// rather than for a time: the reads that follow check what it left.
func TestLostReplyReleasesLease(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for _, pipelined := range []bool{false, true} {
		// A read timeout longer than any wait here: only the caller's deadline ends its Spend,
		// and a slow machine does not cut the release short.
		client, err := limiter.NewRedisClient(srv.URL + "?read_timeout=30s")
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		k := limiter.NewKey("lost-reply-"+strconv.FormatBool(pipelined), 1000).WithConcurrency(1, 0)
		released := make(chan struct{}, 1)
		client.AddHook(releaseSeen{keys: limiter.NewRedisKeys(k.Org), released: released})
		rs, err := limiter.NewRedisStore(client, limiter.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.LoadScripts(ctx); err != nil {
			t.Fatal(err)
		}
		var s limiter.Store = rs
		if pipelined {
			if s, err = limiter.NewPipelinedStore(t.Context(), rs, 16, 1); err != nil {
				t.Fatal(err)
			}
		}
		srv.Pause()
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err = s.Spend(short, k, 1, time.Time{})
		cancel()
		srv.Resume()
		if err == nil {
			t.Fatalf("pipelined %v: Spend answered by a stopped Redis", pipelined)
		}
		select {
		case <-released:
		case <-time.After(time.Minute): // a bound on a hang only, far above the release's 2s
			t.Fatalf("pipelined %v: the lost Spend's lease was never released", pipelined)
		}
		keys := limiter.NewRedisKeys(k.Org)
		if n, err := srv.Client.ZCard(ctx, keys.InFlight).Result(); err != nil || n != 0 {
			t.Fatalf("pipelined %v: %d leases held after the release (%v)", pipelined, n, err)
		}
		d, err := s.Spend(ctx, k, 1, time.Time{})
		if err != nil {
			t.Fatalf("pipelined %v: the org's only slot still held after the release: %+v, %v", pipelined, d, err)
		}
		if err := s.Release(ctx, k, d); err != nil {
			t.Fatal(err)
		}
	}
}

// releaseSeen is a go-redis hook that signals released when a release of a lease of keys
// (release.lua: the org's two lease keys) is answered.
type releaseSeen struct {
	keys     *limiter.RedisKeys
	released chan struct{}
}

func (h releaseSeen) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h releaseSeen) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		args := cmd.Args()
		if err == nil && len(args) > 4 && (cmd.Name() == "evalsha" || cmd.Name() == "eval") &&
			argString(args[3]) == h.keys.InFlight && argString(args[4]) == h.keys.Heavy {
			select {
			case h.released <- struct{}{}:
			default:
			}
		}
		return err
	}
}

// argString is a command's argument as go-redis writes it: the scripts' keys go in as *string.
func argString(a any) string {
	if p, ok := a.(*string); ok {
		return *p
	}
	return fmt.Sprint(a)
}

func (h releaseSeen) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestMeterOnDebitDay: add-on credits are metered on the UTC day of the debit, also when the
// bucket (17.5 s for a 7 h window) started before midnight; a refund finds that day again.
func TestMeterOnDebitDay(t *testing.T) {
	day := int64(20455) // 2026-01-02: midnight falls inside a 17.5 s bucket
	midnight := time.UnixMilli(day * 86_400_000).UTC()
	for name, s := range bothStores(t, limiter.Options{Window: 7 * time.Hour}) {
		t.Run(name, func(t *testing.T) {
			m := s.(limiter.Meter)
			k := limiter.NewKey("meterday-"+name, 1).WithAddons(1, 100, 100)
			d := mustSpend(t, s, k, 3, midnight.Add(2*time.Second))
			got, _ := m.Metered(context.Background(), k.Org, day-1, day)
			if d.Day != day || d.Addon != 2 || got[day] != 2 || got[day-1] != 0 {
				t.Fatalf("debit 2 s after midnight: day %d, addon %d, metered %v; want 2 on day %d", d.Day, d.Addon, got, day)
			}
			if err := s.Refund(context.Background(), k, d); err != nil {
				t.Fatal(err)
			}
			if got, _ := m.Metered(context.Background(), k.Org, day-1, day); len(got) != 0 {
				t.Fatalf("after the refund: metered %v, want nothing", got)
			}
		})
	}
}

// TestRefundScanBounded: a refund that empties the newest bucket after an idle day finds the
// next newest in reads of 64 buckets, not one command per bucket (86,400 with 1 s buckets,
// all while Redis serves nobody else). Counted in commands, not timed.
func TestRefundScanBounded(t *testing.T) {
	srv := redistest.Start(t)
	s, err := limiter.NewRedisStore(srv.Client, limiter.Options{Window: 24 * time.Hour, Bucket: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	base := time.UnixMilli(1_767_225_600_000)
	k := limiter.NewKey("scan", 1000)
	mustSpend(t, s, k, 1, base)
	d := mustSpend(t, s, k, 1, base.Add(23*time.Hour+59*time.Minute))
	if err := srv.Client.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Refund(ctx, k, d); err != nil {
		t.Fatal(err)
	}
	info, err := srv.Client.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var calls int64
	for _, line := range strings.Split(info, "\n") {
		if strings.HasPrefix(line, "cmdstat_getrange:") || strings.HasPrefix(line, "cmdstat_bitfield:") {
			_, rest, _ := strings.Cut(line, "calls=")
			n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			calls += n
		}
	}
	if calls > 2000 {
		t.Fatalf("one refund ran %d GETRANGE/BITFIELD commands, want at most 2,000 (64 buckets a read)", calls)
	}
	// Still exact: the credit of base is held, and frees at base + window + bucket.
	if d := mustSpend(t, s, k, 0, base.Add(24*time.Hour)); d.Used != 1 {
		t.Fatalf("used %d after the refund, want 1", d.Used)
	}
	if d := mustSpend(t, s, k, 0, base.Add(24*time.Hour+time.Second)); d.Used != 0 {
		t.Fatalf("used %d a window and a bucket later, want 0", d.Used)
	}
}

// TestRefundAcrossMidnight: a debit just before midnight, a later call metered just after it
// only because the first held free credits, then the first refunded: nothing stays billed,
// on either day.
func TestRefundAcrossMidnight(t *testing.T) {
	day := int64(20455)
	midnight := time.UnixMilli(day * 86_400_000).UTC()
	ctx := context.Background()
	for name, s := range bothStores(t, limiter.Options{Window: 24 * time.Hour, Bucket: time.Minute}) {
		t.Run(name, func(t *testing.T) {
			m := s.(limiter.Meter)
			k := limiter.NewKey("midnight-"+name, 1).WithAddons(10, 100, 100)
			a := mustSpend(t, s, k, 10, midnight.Add(-10*time.Second))
			b := mustSpend(t, s, k, 5, midnight.Add(5*time.Second))
			if a.Addon != 0 || b.Addon != 5 {
				t.Fatalf("addon a %d b %d, want 0 and 5", a.Addon, b.Addon)
			}
			if err := s.Refund(ctx, k, a); err != nil {
				t.Fatal(err)
			}
			if got, _ := m.Metered(ctx, k.Org, day-1, day); len(got) != 0 {
				t.Errorf("after the refund: metered %v; without the refunded call b would have been free", got)
			}
		})
	}
}

// TestStoresAgreeOnRandomTimelines: random timelines of debits (some with the clock running
// back) and refunds (mostly of the newest and oldest debits, which move the ring's head and
// tail), run on both stores call by call: every Decision and the meter must agree.
func TestStoresAgreeOnRandomTimelines(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	configs := []struct {
		window, bucket time.Duration
		addons, back   bool
	}{
		{10 * time.Second, time.Second, false, false},
		{10 * time.Second, time.Second, true, true},
		{7 * time.Second, 2 * time.Second, true, true},
		{24 * time.Hour, time.Hour, true, true},
		{300 * time.Second, time.Second, true, true}, // rings over 64 buckets: chunked scans
		{65 * time.Second, time.Second, false, true},
	}
	for ci, c := range configs {
		// Records of debits outlive the timeline, so a refund retried finds its record in
		// both stores (CallRecordsExpire in the conformance suite covers their end).
		m, r := storesOn(t, srv, limiter.Options{Window: c.window, Bucket: c.bucket, CallTTL: 365 * 24 * time.Hour})
		for seed := range int64(15) {
			rng := rand.New(rand.NewSource(seed*100 + int64(ci)))
			org := fmt.Sprintf("agree-%d-%d", ci, seed)
			k := limiter.NewKey(org, 30)
			if c.addons {
				k = k.WithAddons(10, 20, 20)
			}
			base := int64(20455)*86_400_000 - c.window.Milliseconds()/2 // crosses a midnight
			now, bms := base, c.bucket.Milliseconds()
			var debits [][2]limiter.Decision // memory's and Redis's, of each allowed debit
			var steps []string
			for step := range 150 {
				if op := rng.Intn(10); op < 6 || len(debits) == 0 {
					adv := int64(rng.Intn(int(bms * 3)))
					if rng.Intn(6) == 0 {
						adv = int64(rng.Intn(int(c.window.Milliseconds()/2 + 1)))
					}
					if c.back && rng.Intn(8) == 0 {
						adv = -int64(rng.Intn(int(c.window.Milliseconds() + 3*bms)))
					}
					now += adv
					cost := int64(rng.Intn(8))
					kc := k.WithCall(limiter.NewCallID()) // one call, the same id in both stores
					dm, em := m.Spend(ctx, kc, cost, time.UnixMilli(now))
					dr, er := r.Spend(ctx, kc, cost, time.UnixMilli(now))
					steps = append(steps, fmt.Sprintf("spend %d at %+d", cost, now-base))
					if (em == nil) != (er == nil) || dm != dr {
						t.Fatalf("config %d seed %d step %d: spend differs\nmemory %+v %v\nredis  %+v %v\nsteps %v", ci, seed, step, dm, em, dr, er, steps)
					}
					if dm.Allowed && cost > 0 {
						debits = append(debits, [2]limiter.Decision{dm, dr})
					}
				} else {
					i := rng.Intn(len(debits))
					if rng.Intn(2) == 0 {
						i = len(debits) - 1 - rng.Intn(min(len(debits), 2))
					} else if rng.Intn(3) == 0 {
						i = rng.Intn(min(len(debits), 3))
					}
					if err := m.Refund(ctx, k, debits[i][0]); err != nil {
						t.Fatal(err)
					}
					if err := r.Refund(ctx, k, debits[i][1]); err != nil {
						t.Fatal(err)
					}
					steps = append(steps, fmt.Sprintf("refund #%d", i))
				}
				if c.addons {
					mm, _ := m.Metered(ctx, org, 0, 1<<40)
					mr, _ := r.Metered(ctx, org, 0, 1<<40)
					if !maps.Equal(mm, mr) {
						t.Fatalf("config %d seed %d step %d: meter differs\nmemory %v\nredis  %v\nsteps %v", ci, seed, step, mm, mr, steps)
					}
				}
			}
		}
	}
}
