package gateway

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// TestConcurrencyCap: with a cap of 2 (heavy sub-cap 1), a third call in flight is refused
// with its own 429, nothing is charged for it, and slots come back when calls end.
func TestConcurrencyCap(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.ConcurrencyOf = func(o *orgs.Org) int64 { return 2 }
		c.HeavyConcurrency = 1
	})
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}
	key := map[string]string{"X-Api-Key": "acme-key"}

	var wg sync.WaitGroup
	start := func(method, path string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(t, method, f.url+path, key, "")
		}()
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("call did not reach the upstream")
		}
	}
	start("POST", "/crm/bulk/v2/read") // heavy, 50 credits
	// A second heavy call: the heavy sub-cap (1) refuses it.
	resp, body := do(t, "POST", f.url+"/crm/bulk/v2/write", key, "")
	if resp.StatusCode != 429 || !strings.Contains(body, `"scope":"heavy"`) || !strings.Contains(body, `"concurrency_limit":1`) {
		t.Fatalf("second heavy call: %d %s", resp.StatusCode, body)
	}
	start("GET", "/crm/v2/users") // light: fits the org's cap of 2
	resp, body = do(t, "GET", f.url+"/crm/v2/users", key, "")
	if resp.StatusCode != 429 || !strings.Contains(body, `"scope":"org"`) || !strings.Contains(body, "at most 2 concurrent requests") {
		t.Fatalf("third call: %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Retry-After") != "1" || resp.Header.Get("X-Credits-Charged") != "0" ||
		!strings.Contains(resp.Header.Get("Ratelimit-Policy"), `"concurrency";q=2;qu="concurrent-requests"`) {
		t.Errorf("headers %v", resp.Header)
	}
	if got := f.used(t, "acme", 1000); got != 51 {
		t.Errorf("used %d, want 51: refused calls are not charged", got)
	}
	close(release)
	wg.Wait()
	// Both slots are free again.
	f.up.handler = nil
	for range 3 {
		if resp, _ := do(t, "POST", f.url+"/crm/bulk/v2/read", key, ""); resp.StatusCode != 200 {
			t.Fatalf("after release: %d", resp.StatusCode)
		}
	}
}

// TestConcurrencyReleasedWhenClientLeaves: a client that hangs up frees its slot.
func TestConcurrencyReleasedWhenClientLeaves(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.ConcurrencyOf = func(o *orgs.Org) int64 { return 1 } })
	arrived := make(chan struct{}, 1)
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
	}
	client := &http.Client{Timeout: 300 * time.Millisecond}
	req, _ := http.NewRequest("GET", f.url+"/crm/v2/users", nil)
	req.Header.Set("X-Api-Key", "acme-key")
	if _, err := client.Do(req); err == nil {
		t.Fatal("expected the client to time out")
	}
	<-arrived
	f.up.handler = nil
	waitUntil(t, func() bool {
		resp, _ := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
		return resp.StatusCode == 200
	})
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}

// resendingStore sends every Spend twice under one call id, as a retry layer between the
// gateway and its store would after losing the first reply, and answers the second.
type resendingStore struct{ *limiter.MemoryStore }

func (s resendingStore) Spend(ctx context.Context, key limiter.Key, cost int64, now time.Time) (limiter.Decision, error) {
	if key.Call == "" && cost > 0 {
		key = key.WithCall(limiter.NewCallID())
	}
	_, _ = s.MemoryStore.Spend(ctx, key, cost, now) // its reply lost
	return s.MemoryStore.Spend(ctx, key, cost, now)
}

// TestResentSpendChargedOnce: a debit that reached the store twice (its first reply lost and
// the call resent below the gateway) is answered as the debit it is: the call is forwarded,
// charged once, and its one slot is freed when it ends.
func TestResentSpendChargedOnce(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.ConcurrencyOf = func(o *orgs.Org) int64 { return 1 }
		c.Store = resendingStore{c.Store.(*limiter.MemoryStore)}
	})
	key := map[string]string{"X-Api-Key": "acme-key"}
	for i := range 2 {
		resp, body := do(t, "GET", f.url+"/crm/v2/users", key, "")
		if resp.StatusCode != 200 || resp.Header.Get("X-Credits-Charged") != "1" {
			t.Fatalf("call %d: %d, charged %q: %s", i, resp.StatusCode, resp.Header.Get("X-Credits-Charged"), body)
		}
	}
	if f.up.count() != 2 {
		t.Errorf("forwarded %d of 2", f.up.count())
	}
	if got := f.used(t, "acme", 1000); got != 2 {
		t.Errorf("used %d, want 2: each call charged once", got)
	}
}
