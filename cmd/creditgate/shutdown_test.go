package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creditgate/creditgate/internal/redistest"
	"github.com/creditgate/creditgate/limiter"
)

// TestShutdownReleasesSlots: calls in flight on SIGTERM all finish with their answers, /readyz
// turns 503 while they drain, their concurrency slots in Redis are given back, and the last
// log line is written before the process exits.
func TestShutdownReleasesSlots(t *testing.T) {
	srv := redistest.Start(t)
	up := newCostUpstream(t, 1500*time.Millisecond)
	gw := startGateway(t, map[string]string{
		"CREDITGATE_UPSTREAM_URL": up.URL,
		"CREDITGATE_REDIS_URL":    srv.URL,
		"CREDITGATE_ORGS":         "acme:limit=1000,concurrency=5,keys=acme-key",
		"CREDITGATE_LOG_LEVEL":    "info",
	})
	const calls = 4
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses []int
		errs     []error
	)
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", gw.base+"/crm/v2/users", nil)
			req.Header.Set("X-Api-Key", "acme-key")
			resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses = append(statuses, resp.StatusCode)
		}()
	}
	inflight := limiter.NewRedisKeys("acme").InFlight
	waitFor(t, 10*time.Second, func() bool {
		n, _ := srv.Client.ZCard(context.Background(), inflight).Result()
		return n == calls
	})
	if err := gw.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// While the proxy drains, the admin listener still answers, and tells load balancers to stop.
	waitFor(t, 5*time.Second, func() bool {
		resp, err := http.Get(gw.admin + "/readyz")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 503 && strings.Contains(string(b), "shutting down")
	})
	wg.Wait()
	if len(errs) != 0 || len(statuses) != calls {
		t.Fatalf("calls in flight at SIGTERM: statuses %v, errors %v", statuses, errs)
	}
	for _, s := range statuses {
		if s != 200 {
			t.Fatalf("a call in flight at SIGTERM was answered %d", s)
		}
	}
	select {
	case err := <-gw.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
		gw.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not exit after SIGTERM")
	}
	if n, err := srv.Client.ZCard(context.Background(), inflight).Result(); err != nil || n != 0 {
		t.Errorf("%d concurrency slots still held after shutdown (err %v), want 0", n, err)
	}
	if up.calls.Load() != calls {
		t.Errorf("upstream answered %d calls, want %d", up.calls.Load(), calls)
	}
	if logs := gw.stderr.String(); !strings.Contains(logs, `"msg":"stopped"`) {
		t.Errorf("the final log line is missing:\n%s", logs)
	}
}
