package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditgate/creditgate/limiter"
)

// flakyStore is a MemoryStore that can be taken down: then every call fails, as a dead Redis.
type flakyStore struct {
	*limiter.MemoryStore
	down      atomic.Bool
	loseForce atomic.Bool  // a forced debit runs, but its reply is lost
	alive     atomic.Int64 // gateways the heartbeat reports
}

var errDown = errors.New("store down")

func (s *flakyStore) Spend(ctx context.Context, k limiter.Key, cost int64, now time.Time) (limiter.Decision, error) {
	if s.down.Load() {
		return limiter.Decision{}, errDown
	}
	d, err := s.MemoryStore.Spend(ctx, k, cost, now)
	if k.Force && s.loseForce.Load() {
		return limiter.Decision{Call: d.Call}, errDown
	}
	return d, err
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
	f, fs := localFixture(t, 2)
	key := map[string]string{"X-Api-Key": "acme-key"}
	// acme has 1000: 300 used, 700 left; the heartbeat says two gateways.
	for range 6 {
		if resp, body := do(t, "POST", f.url+"/crm/bulk/v2/read", key, ""); resp.StatusCode != 200 { // 50
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
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

// localFixture is a gateway in fail mode local over a flakyStore reporting alive gateways.
func localFixture(t *testing.T, alive int64) (*fixture, *flakyStore) {
	var fs *flakyStore
	f := newFixture(t, func(c *Config) {
		m := c.Store.(*limiter.MemoryStore)
		fs = &flakyStore{MemoryStore: m}
		fs.alive.Store(alive)
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
	waitUntil(t, func() bool { return f.gw.local.live.Load() == alive })
	return f, fs
}

// TestFailModeLocalSecondOutage: what a gateway wrote into the store after an outage is what
// the org has left for the next one: it is not granted the same share again.
func TestFailModeLocalSecondOutage(t *testing.T) {
	f, fs := localFixture(t, 1)
	key := map[string]string{"X-Api-Key": "acme-key"}
	admit := func() (n int64) {
		for range 30 {
			if resp, _ := do(t, "POST", f.url+"/crm/bulk/v2/read", key, ""); resp.StatusCode == 200 {
				n += 50
			}
		}
		return n
	}
	do(t, "POST", f.url+"/crm/bulk/v2/read", key, "") // 50: the store's word, 950 left
	fs.down.Store(true)
	if got := admit(); got != 950 {
		t.Fatalf("first outage admitted %d, want 950", got)
	}
	fs.down.Store(false)
	waitUntil(t, func() bool { return f.gw.local.pending() == 0 })
	fs.down.Store(true)
	if got := admit(); got != 0 {
		t.Fatalf("second outage admitted %d more with the window full", got)
	}
	fs.down.Store(false)
	waitUntil(t, func() bool { return f.gw.local.pending() == 0 })
	if got := f.used(t, "acme", 1_000_000); got != 1000 {
		t.Fatalf("window %d, want 1000", got)
	}
}

// TestFailModeLocalRefusalIsRetryable: a share too small for a call refuses it with a 429 to
// retry soon (the store decides again when it is back), never "can never succeed", and the
// fields show the org's limit.
func TestFailModeLocalRefusalIsRetryable(t *testing.T) {
	f, fs := localFixture(t, 40) // acme's 1000 / 40 gateways: a share of 25
	do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
	fs.down.Store(true)
	resp, body := do(t, "POST", f.url+"/crm/bulk/v2/read", map[string]string{"X-Api-Key": "acme-key"}, "") // 50
	if resp.StatusCode != 429 || !strings.Contains(body, `"code":"TOO_MANY_REQUESTS"`) || resp.Header.Get("Retry-After") != "1" ||
		resp.Header.Get("X-Ratelimit-Limit") != "1000" {
		t.Fatalf("%d Retry-After %q Limit %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("X-Ratelimit-Limit"), body)
	}
}

// TestFailModeLocalLostWriteThenRefund: a call admitted on the gateway's own, whose write into
// the store landed with its reply lost, and which the upstream then fails, is taken back in
// the store too.
func TestFailModeLocalLostWriteThenRefund(t *testing.T) {
	f, fs := localFixture(t, 1)
	key := map[string]string{"X-Api-Key": "acme-key"}
	do(t, "GET", f.url+"/crm/v2/users", key, "")
	before := f.used(t, "acme", 1_000_000)
	release := make(chan struct{})
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		<-release
		hj, _ := w.(http.Hijacker)
		c, _, _ := hj.Hijack()
		c.Close() // no answer: the gateway answers 502 and refunds
	}
	fs.down.Store(true)
	done := make(chan int)
	go func() {
		resp, _ := do(t, "POST", f.url+"/crm/bulk/v2/read", key, "")
		done <- resp.StatusCode
	}()
	waitUntil(t, func() bool { return f.gw.local.pending() == 1 && f.up.count() == 2 })
	fs.loseForce.Store(true)
	fs.down.Store(false)
	f.gw.reconcile() // the write lands, its reply is lost
	if got := f.used(t, "acme", 1_000_000); got != before+50 {
		t.Fatalf("window %d after the lost write, want %d", got, before+50)
	}
	close(release)
	if s := <-done; s != 502 {
		t.Fatalf("status %d, want 502", s)
	}
	fs.loseForce.Store(false)
	do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "tiny-key"}, "") // the store answers again
	waitUntil(t, func() bool { return f.used(t, "acme", 1_000_000) == before })
	f.gw.reconcile() // a retry of the write does nothing now
	if got := f.used(t, "acme", 1_000_000); got != before {
		t.Fatalf("window %d after the refund, want %d", got, before)
	}
}
