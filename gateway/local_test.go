package gateway

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditgate/creditgate/limiter"
)

// flakyStore is a MemoryStore that can be taken down: then every call fails, as a dead Redis.
type flakyStore struct {
	*limiter.MemoryStore
	down  atomic.Bool
	alive atomic.Int64 // gateways the heartbeat reports
}

var errDown = errors.New("store down")

func (s *flakyStore) Spend(ctx context.Context, k limiter.Key, cost int64, now time.Time) (limiter.Decision, error) {
	if s.down.Load() {
		return limiter.Decision{}, errDown
	}
	return s.MemoryStore.Spend(ctx, k, cost, now)
}

func (s *flakyStore) Refund(ctx context.Context, k limiter.Key, d limiter.Decision) error {
	if s.down.Load() {
		return errDown
	}
	return s.MemoryStore.Refund(ctx, k, d)
}

func (s *flakyStore) Compensate(ctx context.Context, k limiter.Key, call string, now time.Time) error {
	if s.down.Load() {
		return errDown
	}
	return s.MemoryStore.Compensate(ctx, k, call, now)
}

func (s *flakyStore) Heartbeat(context.Context, string, time.Duration) (int64, error) {
	if s.down.Load() {
		return 0, errDown
	}
	return s.alive.Load(), nil
}

// TestFailModeLocal: while the store is down, a gateway in fail mode local admits its share of
// what the org had left at the store's last answer (half of it, with two gateways alive), and
// refuses past it; once the store is back, what it admitted is in the org's window, and the
// org is refused until credits free up.
func TestFailModeLocal(t *testing.T) {
	var fs *flakyStore
	f := newFixture(t, func(c *Config) {
		m := c.Store.(*limiter.MemoryStore)
		fs = &flakyStore{MemoryStore: m}
		fs.alive.Store(2)
		c.Store, c.FailLocal = fs, true
		c.BreakerCooldown = 50 * time.Millisecond
		c.Probe = func(context.Context) error {
			if fs.down.Load() {
				return errDown
			}
			return nil
		}
	})
	t.Cleanup(f.gw.Close)
	key := map[string]string{"X-Api-Key": "acme-key"}
	// acme has 1000: 300 used, 700 left; the heartbeat says two gateways.
	for range 6 {
		if resp, body := do(t, "POST", f.url+"/crm/bulk/v2/read", key, ""); resp.StatusCode != 200 { // 50
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	waitUntil(t, func() bool { return f.gw.local.live.Load() == 2 })
	fs.down.Store(true)
	admitted := 0
	for range 20 {
		resp, _ := do(t, "POST", f.url+"/crm/bulk/v2/read", key, "")
		switch resp.StatusCode {
		case 200:
			admitted += 50
		case 429:
		default:
			t.Fatalf("store down, fail mode local: %d", resp.StatusCode)
		}
	}
	if admitted != 350 {
		t.Fatalf("admitted %d credits on its own, want 350 (half of the 700 left)", admitted)
	}
	if f.up.count() != 13 {
		t.Fatalf("upstream served %d calls, want 13", f.up.count())
	}
	if f.gw.local.pending() != 7 {
		t.Fatalf("%d calls in the ledger, want 7", f.gw.local.pending())
	}
	fs.down.Store(false)
	waitUntil(t, func() bool { return f.gw.local.pending() == 0 })
	if got := f.used(t, "acme", 1000); got != 650 {
		t.Fatalf("the window holds %d credits after the store came back, want 650 (300 + 350)", got)
	}
	// Writing it again changes nothing (each call under its own id), and the org goes on
	// from the store's word.
	f.gw.reconcile()
	if got := f.used(t, "acme", 1000); got != 650 {
		t.Fatalf("the window holds %d after a second reconcile", got)
	}
	if resp, body := do(t, "POST", f.url+"/crm/bulk/v2/read", key, ""); resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Remaining") != "300" {
		t.Fatalf("after the outage: %d remaining %s %s", resp.StatusCode, resp.Header.Get("X-Ratelimit-Remaining"), body)
	}
}
