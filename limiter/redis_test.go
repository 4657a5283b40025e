package limiter_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditgate/creditgate/internal/redistest"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/limiter/storetest"
)

func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t *testing.T, opts limiter.Options) limiter.Store {
		s, err := limiter.NewRedisStore(srv.Client, opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestRedisServerClock checks the production path: no time passed in, the script reads TIME.
func TestRedisServerClock(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	s, err := limiter.NewRedisStore(srv.Client, limiter.Options{Window: 4 * time.Second, Bucket: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	k := limiter.NewKey("clock", 3)
	d, err := s.Spend(ctx, k, 3, time.Time{})
	if err != nil || !d.Allowed {
		t.Fatalf("Spend = %+v, %v", d, err)
	}
	serverNow, err := srv.Client.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	bucketStart := time.UnixMilli(d.Bucket)
	if lag := serverNow.Sub(bucketStart); lag < 0 || lag > 2*time.Second {
		t.Fatalf("bucket %s is not the server's current second (%s)", bucketStart, serverNow)
	}
	d, err = s.Spend(ctx, k, 1, time.Time{})
	if !errors.Is(err, limiter.ErrOverLimit) || d.RetryAfter <= 0 || d.RetryAfter > 5*time.Second {
		t.Fatalf("Spend over limit = %+v, %v", d, err)
	}
	// Keys carry a TTL no longer than window+bucket, so idle orgs vanish. A light window is
	// the hash pos alone.
	for _, key := range []string{limiter.NewRedisKeys("clock").Pos} { // the window; no cap, so no lease keys
		ttl, err := srv.Client.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 || ttl > 5*time.Second {
			t.Errorf("PTTL %s = %s, want (0, 5s]", key, ttl)
		}
	}
}

// TestRedisKeysShareHashTag checks that every key of one org lands in one cluster slot.
func TestRedisKeysShareHashTag(t *testing.T) {
	for _, org := range []string{"acme", "a.b-c_d", "x"} {
		for _, k := range limiter.NewRedisKeys(org).All() {
			if !strings.Contains(k, "{"+org+"}") || strings.Count(k, "{") != 1 {
				t.Errorf("key %q does not carry exactly the hash tag {%s}", k, org)
			}
		}
	}
}

// TestRedisKeyNames pins the names: a server holding an org's keys must find them again after
// an upgrade.
func TestRedisKeyNames(t *testing.T) {
	got := strings.Join(limiter.NewRedisKeys("acme").All(), " ")
	want := "cg:{acme}:ring cg:{acme}:pos cg:{acme}:used cg:{acme}:inflight cg:{acme}:heavy cg:{acme}:addon " +
		"cg:{acme}:meter cg:{acme}:period cg:{acme}:use cg:{acme}:useidx cg:{acme}:calls " +
		"cg:{acme}:notify cg:{acme}:fired cg:{acme}:outbox cg:{acme}:outbox:lease cg:{acme}:outbox:tries"
	if got != want {
		t.Fatalf("keys of acme:\n got %s\nwant %s", got, want)
	}
}

// TestRedisMemoryBounded spends 100,000 times spread over two saturated 24h windows and
// checks the org's window keys stay at one ring of window/bucket+1 four-byte slots, at most
// 100 KB in all (MEMORY USAGE), and still agree with the credits held.
func TestRedisMemoryBounded(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	opts := limiter.Options{Window: 24 * time.Hour} // default bucket: one minute
	s, err := limiter.NewRedisStore(srv.Client, opts)
	if err != nil {
		t.Fatal(err)
	}
	const org = "memory-bound"
	k := limiter.NewKey(org, 1<<40)
	start := time.UnixMilli(1_767_225_600_000)
	const n = 100_000
	step := 2 * 24 * time.Hour / n // two windows, so buckets also expire
	for i := range n {
		if _, err := s.Spend(ctx, k, 1, start.Add(time.Duration(i)*step)); err != nil {
			t.Fatal(err)
		}
	}
	keys := limiter.NewRedisKeys(org).Window() // the window; no cap, so no lease keys
	if size, _ := srv.Client.StrLen(ctx, keys[0]).Result(); size != 1441*4 {
		t.Fatalf("ring is %d bytes, want 1441 slots of 4", size)
	}
	var total int64
	for _, key := range keys {
		b, err := srv.Client.MemoryUsage(ctx, key).Result()
		if err == redis.Nil {
			continue // Used: only a window written before the total moved into Pos
		}
		if err != nil {
			t.Fatal(err)
		}
		total += b
	}
	if total > 100_000 {
		t.Fatalf("MEMORY USAGE of the window's keys = %d bytes, want at most 100,000", total)
	}
	d, _ := s.Spend(ctx, k, 0, start.Add(time.Duration(n)*step))
	// A debit every 1.728s: one window holds 86,400,000/1,728 = 50,000 of them, give or take
	// the bucket at either edge.
	if d.Used < 50_000-40 || d.Used > 50_000+40 {
		t.Fatalf("used = %d after two windows of steady debits, want about 50,000", d.Used)
	}
	t.Logf("after %d debits over 48h: %d credits held, MEMORY USAGE of the org's window: %d bytes", n, d.Used, total)
}

func TestNewRedisClient(t *testing.T) {
	tests := []struct {
		give    string
		wantErr string
	}{
		{give: "redis://127.0.0.1:6379/0"},
		{give: "rediss://user:pw@127.0.0.1:6380"},
		{give: "redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001"},
		{give: "redis+sentinel://127.0.0.1:26379?master_name=mymaster"},
		{give: "unix:///run/redis.sock"},
		{give: "http://127.0.0.1:6379", wantErr: "unsupported scheme"},
		{give: "redis+sentinel://127.0.0.1:26379", wantErr: "master_name"},
		{give: "redis://", wantErr: "missing host"},
		{give: "redis://:secretpw@127.0.0.1:6379?bogus=1", wantErr: "bogus"},
		{give: "::nonsense", wantErr: "not a valid URL"},
	}
	for _, tt := range tests {
		c, err := limiter.NewRedisClient(tt.give)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("NewRedisClient(%q): %v", tt.give, err)
				continue
			}
			c.Close()
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("NewRedisClient(%q) error = %v, want it to mention %q", tt.give, err, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "secretpw") {
			t.Errorf("NewRedisClient(%q) error leaks the password: %v", tt.give, err)
		}
	}
}

func BenchmarkRedisSpend(b *testing.B) { benchRedisSpend(b, "") }

// BenchmarkRedisSpendByRule also records the credits by hour and rule, as the gateway does.
func BenchmarkRedisSpendByRule(b *testing.B) { benchRedisSpend(b, "users") }

func benchRedisSpend(b *testing.B, rule string) {
	srv := redistest.Start(b)
	s, err := limiter.NewRedisStore(srv.Client, limiter.Options{})
	if err != nil {
		b.Fatal(err)
	}
	k := limiter.NewKey("bench", 1<<62).WithRule(rule)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Spend(ctx, k, 1, time.Time{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRedisStallNeverDebitsTwice: when Redis stalls past the read timeout, the script still
// runs once Redis wakes up; the client must not run it a second time.
func TestRedisStallNeverDebitsTwice(t *testing.T) {
	srv := redistest.Start(t, "--enable-debug-command", "yes")
	s := productionStore(t, srv.URL) // production defaults: read timeout 500ms
	ctx := context.Background()
	stalled := make(chan error, 1)
	go func() { stalled <- srv.Client.Do(ctx, "DEBUG", "SLEEP", "0.7").Err() }()
	time.Sleep(50 * time.Millisecond)
	ctx1, cancel := context.WithTimeout(ctx, time.Second)
	_, err := s.Spend(ctx1, limiter.NewKey("stall", 1000), 10, time.Time{})
	cancel()
	if err == nil {
		t.Log("Spend succeeded despite the stall") // possible if the stall ended first
	}
	if err := <-stalled; err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	held, _ := srv.Client.HGet(ctx, limiter.NewRedisKeys("stall").Pos, "used").Int64()
	if held != 10 {
		t.Fatalf("one Spend(10) left %d credits held in Redis", held)
	}
}

// TestRedisContextDeadlineBoundsSpend: the caller's deadline bounds a call to a stalled Redis,
// even when the URL allows a longer read timeout.
func TestRedisContextDeadlineBoundsSpend(t *testing.T) {
	srv := redistest.Start(t, "--enable-debug-command", "yes")
	s := productionStore(t, srv.URL+"?read_timeout=3s")
	ctx := context.Background()
	stalled := make(chan error, 1)
	go func() { stalled <- srv.Client.Do(ctx, "DEBUG", "SLEEP", "2").Err() }()
	defer func() { <-stalled }()
	time.Sleep(50 * time.Millisecond)
	ctx1, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Spend(ctx1, limiter.NewKey("slow", 10), 1, time.Time{})
	// Generous bound: the point is 200ms-ish rather than the 2s stall or the 3s read timeout.
	if el := time.Since(start); err == nil || el > 1500*time.Millisecond {
		t.Fatalf("Spend with a 200ms deadline on a stalled Redis took %s, err %v", el, err)
	}
}

// TestRedisClusterStore runs the conformance suite on a real three-master Redis Cluster: every
// test uses orgs of its own, so they spread over slots and nodes.
func TestRedisClusterStore(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	client, err := limiter.NewRedisClient(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	s0, _ := limiter.NewRedisStore(client, limiter.Options{})
	if err := s0.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, func(t *testing.T, opts limiter.Options) limiter.Store {
		s, err := limiter.NewRedisStore(client, opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	t.Run("ScriptSentOnce", func(t *testing.T) { testClusterSendsScriptOnce(t, c) })
	t.Run("RedirectsFollowed", func(t *testing.T) { testClusterFollowsRedirects(t, c) })

	// One org's keys live in one slot; different orgs reach different masters.
	nodes := map[string]bool{}
	for i := range 30 {
		org := "spread-" + strconv.Itoa(i)
		if _, err := s0.Spend(ctx, limiter.NewKey(org, 10), 1, time.Time{}); err != nil {
			t.Fatal(err)
		}
		keys := limiter.NewRedisKeys(org)
		slot, err := c.Client.ClusterKeySlot(ctx, keys.Ring).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys.All() {
			if s, _ := c.Client.ClusterKeySlot(ctx, k).Result(); s != slot {
				t.Fatalf("%s is in slot %d, %s in %d", keys.Ring, slot, k, s)
			}
		}
		err = c.Client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			if n, _ := m.Exists(ctx, keys.Pos).Result(); n == 1 {
				nodes[m.Options().Addr] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(nodes) != 3 {
		t.Errorf("30 orgs landed on %d of 3 masters", len(nodes))
	}
}

// productionStore returns a RedisStore on a client built from rawURL as the gateway builds it.
func productionStore(t *testing.T, rawURL string) *limiter.RedisStore {
	t.Helper()
	client, err := limiter.NewRedisClient(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	s, err := limiter.NewRedisStore(client, limiter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.LoadScripts(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRedisLayoutChangeKeepsCredits: a new bucket (or window) makes the ring's slots mean
// other buckets. What the org holds stays held, and frees one new window after the change,
// never earlier than it would have.
func TestRedisLayoutChangeKeepsCredits(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	t0 := time.UnixMilli(1_767_225_600_000 + 37_123)
	k := limiter.NewKey("relayout", 10)
	before, err := limiter.NewRedisStore(srv.Client, limiter.Options{Window: 24 * time.Hour, Bucket: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := before.Spend(ctx, k, 10, t0); err != nil || !d.Allowed {
		t.Fatalf("Spend = %+v, %v", d, err)
	}
	after, err := limiter.NewRedisStore(srv.Client, limiter.Options{Window: 24 * time.Hour, Bucket: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	change := t0.Add(time.Hour)
	d, err := after.Spend(ctx, k, 1, change)
	if !errors.Is(err, limiter.ErrOverLimit) || d.Used != 10 {
		t.Fatalf("after the bucket changed: %+v, %v; want the 10 credits still held", d, err)
	}
	// Refunding a debit of the old layout gives nothing back.
	if err := after.Refund(ctx, k, limiter.Decision{Allowed: true, Cost: 10, Bucket: t0.UnixMilli() - t0.UnixMilli()%60_000}); err != nil {
		t.Fatal(err)
	}
	// Held until the change's bucket plus a window, then free.
	free := time.UnixMilli(change.UnixMilli() - change.UnixMilli()%30_000).Add(30*time.Second + 24*time.Hour)
	if _, err := after.Spend(ctx, k, 1, free.Add(-time.Millisecond)); !errors.Is(err, limiter.ErrOverLimit) {
		t.Fatalf("a millisecond before %s: %v, want still held", free.Sub(t0), err)
	}
	if d, err := after.Spend(ctx, k, 10, free); err != nil || d.Used != 10 {
		t.Fatalf("at %s: %+v, %v; want all 10 free again", free.Sub(t0), d, err)
	}
}

// TestRedisUsageBounded debits with five rules over three days and checks that the usage by
// rule holds at most (window/slot + 2) slots per rule, and that its keys expire.
func TestRedisUsageBounded(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	s, err := limiter.NewRedisStore(srv.Client, limiter.Options{Window: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const org = "usage-bound"
	k := limiter.NewKey(org, 1<<40)
	start := time.UnixMilli(1_767_225_600_000)
	rules := []string{"a", "b", "c", "d", "e"}
	const n = 5_000
	step := 3 * 24 * time.Hour / n
	for i := range n {
		if _, err := s.Spend(ctx, k.WithRule(rules[i%len(rules)]), 1, start.Add(time.Duration(i)*step)); err != nil {
			t.Fatal(err)
		}
	}
	keys := limiter.NewRedisKeys(org)
	hlen, _ := srv.Client.HLen(ctx, keys.Usage).Result()
	zcard, _ := srv.Client.ZCard(ctx, keys.UsageIndex).Result()
	if max := int64(26 * len(rules)); hlen != zcard || hlen > max || hlen < int64(24*len(rules)) {
		t.Fatalf("HLEN %d, ZCARD %d; want equal, between %d and %d", hlen, zcard, 24*len(rules), max)
	}
	var bytes int64
	for _, key := range []string{keys.Usage, keys.UsageIndex} {
		ttl, _ := srv.Client.PTTL(ctx, key).Result()
		if ttl <= 0 || ttl > 25*time.Hour {
			t.Errorf("PTTL %s = %s, want (0, 25h]", key, ttl)
		}
		b, _ := srv.Client.MemoryUsage(ctx, key).Result()
		bytes += b
	}
	t.Logf("usage by rule after %d debits of %d rules over 72h: %d members, MEMORY USAGE %d bytes", n, len(rules), hlen, bytes)
}

// BenchmarkRedisUsage reads a saturated window (1,440 buckets, 25 hours of five rules).
func BenchmarkRedisUsage(b *testing.B) {
	srv := redistest.Start(b)
	s, err := limiter.NewRedisStore(srv.Client, limiter.Options{Window: 24 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	k := limiter.NewKey("bench-usage", 1<<40)
	start := time.UnixMilli(1_767_225_600_000)
	rules := []string{"a", "b", "c", "d", "e"}
	for i := range 1440 * 5 {
		if _, err := s.Spend(ctx, k.WithRule(rules[i%5]), 1, start.Add(time.Duration(i)*12*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	now := start.Add(24 * time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		u, err := s.Usage(ctx, k, now)
		if err != nil || u.Used == 0 {
			b.Fatal(u, err)
		}
	}
}

// TestRedisLayoutChangeFreesExpiredCredits: expiry is lazy, so the running total can still
// count buckets the old layout has expired. A layout change carries over only the live ones,
// and Usage reports what the next Spend will see.
func TestRedisLayoutChangeFreesExpiredCredits(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	t0 := time.UnixMilli(1_767_225_600_000 + 37_123)
	k := limiter.NewKey("relayout-expired", 10)
	before, err := limiter.NewRedisStore(srv.Client, limiter.Options{Window: time.Hour, Bucket: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// 6 credits at t0 (expired by t0+62m), 3 at t0+30m (still live then).
	for _, step := range []struct {
		at   time.Duration
		cost int64
	}{{0, 6}, {30 * time.Minute, 3}} {
		if d, err := before.Spend(ctx, k, step.cost, t0.Add(step.at)); err != nil || !d.Allowed {
			t.Fatalf("Spend(%d at +%s) = %+v, %v", step.cost, step.at, d, err)
		}
	}
	after, err := limiter.NewRedisStore(srv.Client, limiter.Options{Window: time.Hour, Bucket: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	change := t0.Add(62 * time.Minute)
	u, err := after.Usage(ctx, k, change)
	if err != nil || u.Used != 3 {
		t.Fatalf("Usage after the change = %+v, %v; want 3 used (the 6 of t0 expired)", u, err)
	}
	d, err := after.Spend(ctx, k, 7, change)
	if err != nil || !d.Allowed || d.Used != 10 {
		t.Fatalf("Spend(7) after the change = %+v, %v; want allowed with 10 used", d, err)
	}
	if d, err := after.Spend(ctx, k, 1, change); !errors.Is(err, limiter.ErrOverLimit) || d.Used != 10 {
		t.Fatalf("Spend(1) at the limit = %+v, %v; want rejected", d, err)
	}
}

// TestRedisNoticeSweep: events queued by a Spend whose gateway never indexed the org (it died
// between the script and QueueNotices) are found by the sweep, on a server and on every
// master of a cluster, and then claimed.
func TestRedisNoticeSweep(t *testing.T) {
	t.Run("server", func(t *testing.T) { testNoticeSweep(t, redistest.Start(t).URL) })
	t.Run("cluster", func(t *testing.T) { testNoticeSweep(t, redistest.StartCluster(t, 3).URL) })
}

func testNoticeSweep(t *testing.T, url string) {
	s := productionStore(t, url)
	ctx := context.Background()
	now := time.Now()
	orgs := map[string]bool{}
	for i := range 12 { // spread over the masters
		org := "sweep-" + strconv.Itoa(i)
		orgs[org] = true
		d, err := s.Spend(ctx, limiter.NewKey(org, 10).WithNotices([]int64{50}), 6, time.Time{})
		if err != nil || d.Notices != 1 {
			t.Fatalf("spend %s: %+v, %v; want one notice", org, d, err)
		}
	}
	if got, err := s.ClaimNotices(ctx, "a", now, time.Minute, 100, 10); err != nil || len(got) != 0 {
		t.Fatalf("claimed %+v, %v before any index", got, err)
	}
	// A page of SCAN may hold none of them: bounded, sweeps go on where they ended.
	for i := 0; i < 50 && len(orgs) > 0; i++ {
		if err := s.SweepNotices(ctx, now); err != nil {
			t.Fatal(err)
		}
		got, err := s.ClaimNotices(ctx, "a", now, time.Minute, 100, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range got {
			if n.Threshold != 50 || n.Used != 6 {
				t.Errorf("event %+v", n)
			}
			delete(orgs, n.Org)
		}
	}
	if len(orgs) > 0 {
		t.Fatalf("the sweep never found %v", orgs)
	}
}

// TestRedisNoticeFinishKeepsNewEvents: an event queued and indexed by another gateway while
// this one finishes delivering the org's earlier events (after its claim ended, before it
// takes the org off the index) keeps the org indexed: it is claimed next, not left to the
// sweep.
func TestRedisNoticeFinishKeepsNewEvents(t *testing.T) {
	srv := redistest.Start(t)
	other := productionStore(t, srv.URL) // the other gateway
	client, err := limiter.NewRedisClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()
	now := time.Now()
	const org = "finish-race"
	k := limiter.NewKey(org, 100).WithNotices([]int64{50, 80})
	var once sync.Once
	client.AddHook(beforeCommand{name: "zscore", run: func() {
		once.Do(func() {
			// Its debit crosses 80 %, and it indexes the org.
			if d, err := other.Spend(ctx, k, 25, time.Time{}); err != nil || d.Notices != 1 {
				t.Errorf("second spend: %+v, %v; want one notice", d, err)
			}
			if err := other.QueueNotices(ctx, org, now); err != nil {
				t.Error(err)
			}
		})
	}})
	s, err := limiter.NewRedisStore(client, limiter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := s.Spend(ctx, k, 60, time.Time{}); err != nil || d.Notices != 1 {
		t.Fatalf("spend: %+v, %v; want one notice", d, err)
	}
	if err := s.QueueNotices(ctx, org, now); err != nil {
		t.Fatal(err)
	}
	got, err := s.ClaimNotices(ctx, "a", now, time.Minute, 100, 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("claimed %+v, %v; want the 50 %% event", got, err)
	}
	if err := s.FinishNotices(ctx, "a", org, got, nil, time.Time{}, now); err != nil {
		t.Fatal(err)
	}
	next, err := other.ClaimNotices(ctx, "b", now.Add(time.Second), time.Minute, 100, 10)
	if err != nil || len(next) != 1 || next[0].Threshold != 80 {
		t.Fatalf("claimed %+v, %v after the finish; want the 80 %% event", next, err)
	}
}

// beforeCommand runs run before each command of the given name.
type beforeCommand struct {
	name string
	run  func()
}

func (h beforeCommand) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h beforeCommand) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == h.name {
			h.run()
		}
		return next(ctx, cmd)
	}
}

func (h beforeCommand) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
