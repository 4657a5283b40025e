package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"

	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditgate/creditgate/internal/metricstest"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// failingTransport fails the calls to /unreachable, as a dead upstream would.
type failingTransport struct{ next http.RoundTripper }

func (ft failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasPrefix(r.URL.Path, "/unreachable") {
		return nil, errors.New("dial tcp 127.0.0.1:1: connection refused")
	}
	return ft.next.RoundTrip(r)
}

// TestMetricsAfterMixedWorkload drives a known mix of calls through a real listener and
// finds every counter on the admin listener's /metrics equal to what was done.
func TestMetricsAfterMixedWorkload(t *testing.T) {
	m := NewMetrics(MetricsOptions{MaxOrgs: 2}) // acme and tiny get labels; pro is "other"
	f := newFixture(t, func(c *Config) {
		c.Metrics = m
		c.Transport = failingTransport{NewTransport(5 * time.Second)}
		c.MaxBodyBytes = 64
		c.ConcurrencyOf = func(o *orgs.Org) int64 {
			if o.ID == "pro" {
				return 1
			}
			return 0
		}
	})
	admin := httptest.NewServer(NewAdminHandler(AdminConfig{Gateway: f.gw, Metrics: m}))
	defer admin.Close()

	acme := map[string]string{"X-Api-Key": "acme-key"}
	tiny := map[string]string{"X-Api-Key": "tiny-key"}
	pro := map[string]string{"X-Api-Key": "pro-key"}
	status := func(method, path string, hdr map[string]string, body string, want int) {
		t.Helper()
		if resp, b := do(t, method, f.url+path, hdr, body); resp.StatusCode != want {
			t.Fatalf("%s %s: status %d, want %d (%s)", method, path, resp.StatusCode, want, b)
		}
	}
	for range 5 {
		status("GET", "/crm/v2/users", acme, "", 200) // 5 × 1 credit
	}
	status("GET", "/crm/v3/Leads/deleted", acme, "", 200) // 2 credits
	status("POST", "/crm/bulk/v2/write", acme, "", 200)   // 500 credits: 507 used of 1000
	status("POST", "/crm/bulk/v2/write", acme, "", 429)   // credits
	status("GET", "/unreachable", acme, "", 502)          // 1 credit debited, then refunded
	status("POST", "/crm/bulk/v2/read", tiny, "", 422)    // 50 > 10: cost exceeds the limit
	status("GET", "/crm/v2/users", nil, "", 401)          // no key
	status("GET", "/crm/v2/users", map[string]string{"X-Api-Key": "nope"}, "", 401)
	status("POST", "/crm/v2/Leads", acme, `{"data":[`+strings.Repeat(`{"a":1},`, 20)+`{}]}`, 413)

	// pro has a cap of 1 call in flight: hold one at the upstream, the next is refused.
	release, arrived := make(chan struct{}), make(chan struct{}, 1)
	f.up.handler = func(w http.ResponseWriter, r *http.Request) { arrived <- struct{}{}; <-release }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); do(t, "GET", f.url+"/crm/v2/users", pro, "") }()
	<-arrived
	status("GET", "/crm/v2/users", pro, "", 429) // concurrency
	close(release)
	wg.Wait()
	f.up.handler = nil

	fams := metricstest.Scrape(t, admin.URL+"/metrics")
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"creditgate_requests_total", []string{"org", "acme", "edition", "custom", "outcome", "allowed"}, 8},
		{"creditgate_requests_total", []string{"org", "acme", "edition", "custom", "outcome", "rejected"}, 1},
		{"creditgate_requests_total", []string{"org", "acme", "edition", "custom", "outcome", "bad_request"}, 1},
		{"creditgate_requests_total", []string{"org", "acme", "edition", "custom", "outcome", "fail_open"}, 0},
		{"creditgate_requests_total", []string{"org", "tiny", "edition", "custom", "outcome", "rejected"}, 1},
		{"creditgate_requests_total", []string{"org", "other", "edition", "crm-professional", "outcome", "allowed"}, 1},
		{"creditgate_requests_total", []string{"org", "other", "edition", "crm-professional", "outcome", "rejected"}, 1},
		{"creditgate_requests_total", []string{"org", "unknown", "edition", "unknown", "outcome", "unauthorized"}, 2},
		{"creditgate_rejections_total", []string{"org", "acme", "edition", "custom", "reason", "credits"}, 1},
		{"creditgate_rejections_total", []string{"org", "tiny", "edition", "custom", "reason", "cost_exceeds_limit"}, 1},
		{"creditgate_rejections_total", []string{"org", "other", "edition", "crm-professional", "reason", "concurrency"}, 1},
		{"creditgate_rejections_total", []string{"org", "acme", "edition", "custom", "reason", "monthly_quota"}, 0},
		{"creditgate_credits_debited_total", []string{"org", "acme", "edition", "custom"}, 5 + 2 + 500 + 1},
		{"creditgate_credits_debited_total", []string{"org", "other", "edition", "crm-professional"}, 1},
		{"creditgate_credits_refunded_total", []string{"org", "acme", "edition", "custom"}, 1},
		{"creditgate_addon_credits_total", []string{"org", "acme", "edition", "custom"}, 0},
		{"creditgate_rule_requests_total", []string{"rule", "users", "outcome", "allowed"}, 6},
		{"creditgate_rule_requests_total", []string{"rule", "bulk_write_initialize", "outcome", "rejected"}, 1},
		{"creditgate_rule_credits_total", []string{"rule", "users"}, 6},
		{"creditgate_rule_credits_total", []string{"rule", "bulk_write_initialize"}, 500},
		{"creditgate_rule_credits_total", []string{"rule", "deleted_records"}, 2},
		{"creditgate_upstream_duration_seconds", []string{"rule", "users", "code", "2xx"}, 6},
		{"creditgate_upstream_duration_seconds", []string{"rule", "default", "code", "error"}, 1},
		// 8 + 1 + 1 + 1 + 1 calls reached the store (the 413 and 401s did not).
		{"creditgate_limiter_duration_seconds", []string{"op", "spend", "result", "ok"}, 9},
		{"creditgate_limiter_duration_seconds", []string{"op", "spend", "result", "rejected"}, 3},
		{"creditgate_limiter_duration_seconds", []string{"op", "refund", "result", "ok"}, 1},
		{"creditgate_limiter_duration_seconds", []string{"op", "release", "result", "ok"}, 1},
		{"creditgate_redis_errors_total", []string{"op", "spend"}, 0},
		{"creditgate_breaker_state", nil, 0},
		{"creditgate_in_flight_requests", nil, 0},
	}
	for _, tt := range tests {
		got, ok := fams.Value(tt.name, tt.labels...)
		if !ok || got != tt.want {
			t.Errorf("%s%v = %v (present %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	if _, ok := fams.Value("creditgate_requests_total", "org", "pro", "edition", "crm-professional", "outcome", "allowed"); ok {
		t.Error("pro has a series of its own past MaxOrgs")
	}
}

// TestAddAddonCredits: the billing code's counter lands on the org's series.
func TestAddAddonCredits(t *testing.T) {
	m := NewMetrics(MetricsOptions{MaxOrgs: 10})
	newFixture(t, func(c *Config) { c.Metrics = m })
	m.AddAddonCredits("acme", 40)
	m.AddAddonCredits("acme", 2)
	m.AddAddonCredits("nobody", 7)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	if got, _ := metricstest.Scrape(t, srv.URL+"/metrics").Value("creditgate_addon_credits_total", "org", "acme", "edition", "custom"); got != 42 {
		t.Errorf("add-on credits %v, want 42", got)
	}
}

// countingStore fails while down is set and counts the calls that reached it.
type countingStore struct {
	windowOnly
	down  atomic.Bool
	calls atomic.Int64
	next  limiter.Store
}

func (s *countingStore) Spend(ctx context.Context, k limiter.Key, cost int64, now time.Time) (limiter.Decision, error) {
	s.calls.Add(1)
	if s.down.Load() {
		return limiter.Decision{}, errors.New("dial tcp 127.0.0.1:1: connection refused")
	}
	return s.next.Spend(ctx, k, cost, now)
}
func (s *countingStore) Refund(ctx context.Context, k limiter.Key, d limiter.Decision) error {
	return s.next.Refund(ctx, k, d)
}
func (s *countingStore) Release(ctx context.Context, k limiter.Key, d limiter.Decision) error {
	return s.next.Release(ctx, k, d)
}

// TestBreaker: after BreakerFailures failures in a row the store is no longer called, the
// fail mode answers, /readyz says so, and a successful probe brings the store back.
func TestBreaker(t *testing.T) {
	for _, failOpen := range []bool{true, false} {
		name := map[bool]string{true: "open", false: "closed"}[failOpen]
		t.Run(name, func(t *testing.T) {
			store := &countingStore{}
			var probeOK atomic.Bool
			m := NewMetrics(MetricsOptions{MaxOrgs: 10})
			f := newFixture(t, func(c *Config) {
				store.next = c.Store
				c.Store, c.StoreLacks = store, lacksAll
				c.FailOpen = failOpen
				c.Metrics = m
				c.BreakerFailures = 3
				c.BreakerCooldown = 20 * time.Millisecond
				c.Probe = func(context.Context) error {
					if probeOK.Load() {
						return nil
					}
					return errors.New("still down")
				}
			})
			t.Cleanup(f.gw.Close)
			admin := httptest.NewServer(NewAdminHandler(AdminConfig{Gateway: f.gw, Metrics: m, Ready: f.gw.cfg.Probe}))
			defer admin.Close()
			acme := map[string]string{"X-Api-Key": "acme-key"}
			wantStatus := map[bool]int{true: 200, false: 503}[failOpen]

			store.down.Store(true)
			for i := range 10 {
				resp, body := do(t, "GET", f.url+"/crm/v2/users", acme, "")
				if resp.StatusCode != wantStatus || resp.Header.Get("X-Credits-Charged") != "0" {
					t.Fatalf("call %d on a dead store: %d %s", i, resp.StatusCode, body)
				}
			}
			if got := store.calls.Load(); got != 3 {
				t.Errorf("the dead store was called %d times, want 3 (then the breaker opened)", got)
			}
			if !f.gw.BreakerOpen() {
				t.Fatal("breaker not open")
			}
			resp, body := do(t, "GET", admin.URL+"/readyz", nil, "")
			if want := map[bool]int{true: 200, false: 503}[failOpen]; resp.StatusCode != want || !strings.Contains(body, "credit store unavailable") {
				t.Errorf("/readyz with the breaker open: %d %q", resp.StatusCode, body)
			}

			// The store comes back: the prober half-opens the breaker, the next call closes it.
			store.down.Store(false)
			probeOK.Store(true)
			waitUntil(t, func() bool { return !f.gw.BreakerOpen() })
			resp, body = do(t, "GET", f.url+"/crm/v2/users", acme, "")
			if resp.StatusCode != 200 || resp.Header.Get("X-Credits-Charged") != "1" {
				t.Fatalf("after recovery: %d %s charged %q", resp.StatusCode, body, resp.Header.Get("X-Credits-Charged"))
			}
			if resp, body := do(t, "GET", admin.URL+"/readyz", nil, ""); resp.StatusCode != 200 || body != "ready\n" {
				t.Errorf("/readyz after recovery: %d %q", resp.StatusCode, body)
			}
			fams := metricstest.Scrape(t, admin.URL+"/metrics")
			outcome := map[bool]string{true: "fail_open", false: "fail_closed"}[failOpen]
			for _, c := range []struct {
				name   string
				labels []string
				want   float64
			}{
				{"creditgate_requests_total", []string{"org", "acme", "edition", "custom", "outcome", outcome}, 10},
				{"creditgate_redis_errors_total", []string{"op", "spend"}, 3},
				{"creditgate_breaker_transitions_total", []string{"state", "open"}, 1},
				{"creditgate_breaker_transitions_total", []string{"state", "half_open"}, 1},
				{"creditgate_breaker_transitions_total", []string{"state", "closed"}, 1},
				{"creditgate_breaker_state", nil, 0},
			} {
				if got, _ := fams.Value(c.name, c.labels...); got != c.want {
					t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
				}
			}
		})
	}
}

// TestBreakerWithoutProbe: with no probe function, one call per cooldown tries the store.
func TestBreakerWithoutProbe(t *testing.T) {
	store := &countingStore{}
	f := newFixture(t, func(c *Config) {
		store.next = c.Store
		c.Store, c.StoreLacks = store, lacksAll
		c.FailOpen = true
		c.BreakerFailures = 1
		c.BreakerCooldown = time.Hour
	})
	acme := map[string]string{"X-Api-Key": "acme-key"}
	store.down.Store(true)
	for range 5 {
		do(t, "GET", f.url+"/crm/v2/users", acme, "")
	}
	if got := store.calls.Load(); got != 1 {
		t.Fatalf("store called %d times, want 1", got)
	}
	// Let the next call probe at once.
	f.gw.breaker.nextProbe.Store(0)
	store.down.Store(false)
	if resp, _ := do(t, "GET", f.url+"/crm/v2/users", acme, ""); resp.Header.Get("X-Credits-Charged") != "1" || f.gw.BreakerOpen() {
		t.Fatalf("the probing call was not charged (%q) or the breaker stayed open", resp.Header.Get("X-Credits-Charged"))
	}
}

// TestReadyzDraining: once the gateway drains, /readyz answers 503.
func TestReadyzDraining(t *testing.T) {
	f := newFixture(t, nil)
	admin := httptest.NewServer(NewAdminHandler(AdminConfig{Gateway: f.gw}))
	defer admin.Close()
	if resp, _ := do(t, "GET", admin.URL+"/readyz", nil, ""); resp.StatusCode != 200 {
		t.Fatalf("status %d before draining", resp.StatusCode)
	}
	f.gw.Drain()
	if resp, body := do(t, "GET", admin.URL+"/readyz", nil, ""); resp.StatusCode != 503 || !strings.Contains(body, "shutting down") {
		t.Fatalf("draining: %d %q", resp.StatusCode, body)
	}
}

// TestCountingAllocatesNothing: what the request path records on an allowed call (the
// outcome, the store and upstream timings, the in-flight gauge) allocates nothing.
func TestCountingAllocatesNothing(t *testing.T) {
	m := NewMetrics(MetricsOptions{MaxOrgs: 10})
	f := newFixture(t, func(c *Config) { c.Metrics = m })
	tn := f.gw.state(f.gw.orgs.Load(), 0)
	start := time.Now()
	allocs := testing.AllocsPerRun(1000, func() {
		m.inFlight.Inc()
		rs := m.rule("users")
		m.observeStore(opSpend, resultOK, start)
		m.count(tn.m, rs, outAllowed, 0, 3)
		rs.observeUpstream(200, start)
		m.inFlight.Dec()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per call, want 0", allocs)
	}
}

// TestMetricsShadow: in shadow mode a call over the limit is forwarded, and counted both as
// shadow_rejected and as a rejection with its reason.
func TestMetricsShadow(t *testing.T) {
	m := NewMetrics(MetricsOptions{MaxOrgs: 10})
	f := newFixture(t, func(c *Config) { c.Metrics = m; c.Shadow = true })
	admin := httptest.NewServer(NewAdminHandler(AdminConfig{Metrics: m}))
	defer admin.Close()
	for range 12 {
		if resp, _ := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "tiny-key"}, ""); resp.StatusCode != 200 {
			t.Fatalf("shadow mode answered %d", resp.StatusCode)
		}
	}
	fams := metricstest.Scrape(t, admin.URL+"/metrics")
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"creditgate_requests_total", []string{"org", "tiny", "edition", "custom", "outcome", "allowed"}, 10},
		{"creditgate_requests_total", []string{"org", "tiny", "edition", "custom", "outcome", "shadow_rejected"}, 2},
		{"creditgate_rejections_total", []string{"org", "tiny", "edition", "custom", "reason", "credits"}, 2},
		{"creditgate_credits_debited_total", []string{"org", "tiny", "edition", "custom"}, 10},
	} {
		if got, _ := fams.Value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// blipStore is a memory store that can be made unreachable, like a Redis that blips.
type blipStore struct {
	*limiter.MemoryStore
	down atomic.Bool
}

var errBlip = errors.New("dial tcp 127.0.0.1:6379: connection refused")

func (s *blipStore) Spend(ctx context.Context, k limiter.Key, cost int64, now time.Time) (limiter.Decision, error) {
	if s.down.Load() {
		return limiter.Decision{}, errBlip
	}
	return s.MemoryStore.Spend(ctx, k, cost, now)
}

func (s *blipStore) Release(ctx context.Context, k limiter.Key, d limiter.Decision) error {
	if s.down.Load() {
		return errBlip
	}
	return s.MemoryStore.Release(ctx, k, d)
}

// TestLeaseReleasedAfterBreakerCloses: a call that ends while the breaker is open cannot
// release its lease then; it is released once the breaker closes, not left to hold the org
// at its cap for the lease's whole time to live.
func TestLeaseReleasedAfterBreakerCloses(t *testing.T) {
	var store *blipStore
	f := newFixture(t, func(c *Config) {
		store = &blipStore{MemoryStore: c.Store.(*limiter.MemoryStore)}
		c.Store = store
		c.ConcurrencyOf = func(*orgs.Org) int64 { return 1 }
		c.BreakerFailures = 3
		c.BreakerCooldown = 100 * time.Millisecond
		c.Probe = func(context.Context) error {
			if store.down.Load() {
				return errBlip
			}
			return nil
		}
	})
	finish, arrived := make(chan struct{}), make(chan struct{}, 1)
	f.up.handler = func(w http.ResponseWriter, r *http.Request) { arrived <- struct{}{}; <-finish }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
	}()
	<-arrived
	f.up.handler = nil
	store.down.Store(true)
	for range 3 {
		do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "tiny-key"}, "")
	}
	if !f.gw.BreakerOpen() {
		t.Fatal("breaker did not open")
	}
	close(finish) // the held call ends while the breaker is open: its release waits
	wg.Wait()
	store.down.Store(false)
	// The probe half-opens the breaker; the next call's success closes it.
	waitUntil(t, func() bool {
		do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "tiny-key"}, "")
		return !f.gw.BreakerOpen()
	})
	waitUntil(t, func() bool {
		resp, _ := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
		return resp.StatusCode == 200
	})
}

// newDeadStoreGateway is a gateway whose breaker never closes by itself (its probe fails,
// once an hour): tests open and close it by hand.
func newDeadStoreGateway(t *testing.T) *Gateway {
	f := newFixture(t, func(c *Config) {
		c.Probe = func(context.Context) error { return errors.New("down") }
		c.BreakerCooldown = time.Hour
	})
	t.Cleanup(f.gw.Close)
	return f.gw
}

// TestDeferredCallNotStrandedByClose: a release queued while the breaker closes (after the
// queue's run began) still runs.
func TestDeferredCallNotStrandedByClose(t *testing.T) {
	g := newDeadStoreGateway(t)
	for i := range 2000 {
		g.breaker.set(breakerOpen, errors.New("down"))
		var ran atomic.Int32
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			_ = g.storeCall(context.Background(), opRelease, true, func(context.Context) error { ran.Add(1); return nil })
		}()
		go func() { defer wg.Done(); <-start; g.breaker.done(nil) }()
		close(start)
		wg.Wait()
		for w := 0; ran.Load() == 0 && w < 500; w++ {
			time.Sleep(time.Millisecond)
		}
		if ran.Load() != 1 {
			t.Fatalf("iteration %d: breaker closed, the release ran %d times (%d queued)", i, ran.Load(), g.deferred.len())
		}
	}
}

// TestDeferredRunFails: queued store calls the store fails are retried (by the retry loop,
// not at once, which would itself reopen the breaker) when they apply once (a refund or
// compensation by call id, a release); one that would apply twice (a monthly plan's call
// taken back) is not run again.
func TestDeferredRunFails(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Probe = func(context.Context) error { return errors.New("down") }
		c.BreakerCooldown = time.Hour
		c.BreakerFailures = 10 // three failures in a row must not reopen it here
	})
	t.Cleanup(f.gw.Close)
	g := f.gw
	var releases, refunds, uncounts atomic.Int32
	g.breaker.set(breakerOpen, errors.New("down"))
	failFirst := func(n *atomic.Int32) func(context.Context) error {
		return func(context.Context) error {
			if n.Add(1) == 1 {
				return errors.New("connection reset")
			}
			return nil
		}
	}
	for _, c := range []struct {
		op    int
		retry bool
		n     *atomic.Int32
	}{{opRelease, true, &releases}, {opRefund, true, &refunds}, {opRefund, false, &uncounts}} {
		if err := g.storeCall(context.Background(), c.op, c.retry, failFirst(c.n)); err != nil {
			t.Fatal(err)
		}
	}
	g.breaker.done(nil) // one close: each runs once and fails
	waitUntil(t, func() bool { return releases.Load() == 1 && refunds.Load() == 1 && uncounts.Load() == 1 })
	if g.breaker.open() {
		t.Fatal("the breaker reopened")
	}
	// They wait for the store to answer another call (not to be sent at a hung store again
	// and again), then the retry loop runs them within a second or two.
	time.Sleep(1200 * time.Millisecond)
	if releases.Load() != 1 || refunds.Load() != 1 {
		t.Fatalf("retried before the store answered anything: release %d, refund %d", releases.Load(), refunds.Load())
	}
	g.breaker.done(nil) // another call answered
	waitUntil(t, func() bool { return releases.Load() == 2 && refunds.Load() == 2 })
	time.Sleep(100 * time.Millisecond)
	if uncounts.Load() != 1 || g.deferred.len() != 0 {
		t.Fatalf("the call that applies twice ran %d times, %d queued; want 1, 0", uncounts.Load(), g.deferred.len())
	}
}
