package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditgate/creditgate/internal/metricstest"
	"github.com/creditgate/creditgate/internal/redistest"
)

// TestLedgerExactThroughRedisFaults: two gateways failing closed on one Redis (AOF, fsync
// always) serve an add-on org from concurrent clients while Redis is stopped (SIGSTOP) for
// 2 s twice, then killed (SIGKILL) and restarted on its data. Scripts that waited on a
// stopped server's socket run after the gateways gave up on them, and a killed server loses
// the ones not yet on disk; the gateways undo by call id every debit whose reply they did not
// get. Afterwards the window holds exactly the credits of the calls the upstream served, and
// the bill exactly the part of them above the free allotment.
func TestLedgerExactThroughRedisFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault run of about 15 s")
	}
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	up := newCostUpstream(t, 0)
	const free = 500
	vars := billingVars(up.URL, srv.URL, free)
	vars["CREDITGATE_FAIL_MODE"] = "closed"
	vars["CREDITGATE_REDIS_TIMEOUT"] = "300ms"
	vars["CREDITGATE_LOG_LEVEL"] = "warn"
	a, b := startGateway(t, vars), startGateway(t, vars)
	if s, body := adminDo(t, "PUT", a.admin+"/admin/v1/orgs/acme/addon", e2eAdminToken, `{"limit":200000}`); s != 200 {
		t.Fatalf("PUT addon: %d %s", s, body)
	}

	var (
		stop            atomic.Bool
		served, refused atomic.Int64
		other           atomic.Int64
		wg              sync.WaitGroup
		client          = &http.Client{Timeout: 10 * time.Second}
		convert         = "/crm/v2/Leads/1/actions/convert" // 5 credits
		convertCost     = int64(5)
		statuses        sync.Map
	)
	for i := range 6 { // within the org's concurrency cap of 15
		gw := []*process{a, b}[i%2]
		wg.Go(func() {
			for n := 0; !stop.Load() && n < 20_000; n++ {
				req, _ := http.NewRequest("POST", gw.base+convert, nil)
				req.Header.Set("Authorization", "Bearer acme-key")
				resp, err := client.Do(req)
				if err != nil {
					other.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				resp.Body.Close()
				v, _ := statuses.LoadOrStore(resp.StatusCode, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
				switch resp.StatusCode {
				case 200:
					served.Add(1)
				case 503:
					refused.Add(1)
					time.Sleep(20 * time.Millisecond)
				default:
					other.Add(1)
				}
			}
		})
	}
	phase := func(name string, d time.Duration) {
		time.Sleep(d)
		t.Logf("%s: %d served, %d refused (503) so far", name, served.Load(), refused.Load())
	}
	phase("traffic", 2*time.Second)
	for i := range 2 {
		srv.Pause()
		phase("Redis stopped", 2*time.Second)
		srv.Resume()
		phase("Redis resumed", 2*time.Second)
		_ = i
	}
	srv.Kill()
	srv.Restart()
	phase("Redis killed and restarted", 3*time.Second)
	stop.Store(true)
	wg.Wait()

	// Compensations and refunds queued during the faults run once Redis answers.
	for _, gw := range []*process{a, b} {
		waitFor(t, 20*time.Second, func() bool {
			v, ok := metricstest.Scrape(t, gw.admin+"/metrics").Value("creditgate_store_calls_queued")
			return ok && v == 0
		})
	}
	var compensations, dropped float64
	for _, gw := range []*process{a, b} {
		fams := metricstest.Scrape(t, gw.admin+"/metrics")
		c, _ := fams.Value("creditgate_compensations_total")
		compensations += c
		for _, op := range []string{"refund", "compensate", "release"} {
			for _, why := range []string{"queue_full", "expired"} {
				d, _ := fams.Value("creditgate_store_calls_dropped_total", "op", op, "reason", why)
				dropped += d
			}
		}
	}

	servedCredits := up.credits.Load()
	if servedCredits != served.Load()*convertCost {
		t.Fatalf("the upstream served %d credits, the clients saw %d calls of %d answered 200", servedCredits, served.Load(), convertCost)
	}
	s, body := adminDo(t, "GET", a.admin+"/admin/v1/orgs/acme/usage", e2eViewerToken, "")
	if s != 200 {
		t.Fatalf("usage: %d %s", s, body)
	}
	var usage struct {
		Used int64 `json:"used_credits"`
	}
	if err := json.Unmarshal([]byte(body), &usage); err != nil {
		t.Fatal(err)
	}
	rep, repBody := readReport(t, b)
	var codes []string
	statuses.Range(func(k, v any) bool {
		codes = append(codes, http.StatusText(k.(int))+"="+itoaE2E(v.(*atomic.Int64).Load()))
		return true
	})
	t.Logf("served %d calls (%d credits, free allotment %d); answers: %s; other errors %d; compensations queued %v, store calls dropped %v",
		served.Load(), servedCredits, free, strings.Join(codes, " "), other.Load(), compensations, dropped)
	t.Logf("window holds %d credits; billed %d add-on credits", usage.Used, rep.TotalAddonCredits)
	if compensations == 0 {
		t.Error("no debit lost its reply: the faults did not bite (the test proves nothing)")
	}
	if dropped != 0 {
		t.Errorf("%v store calls dropped", dropped)
	}
	if usage.Used != servedCredits {
		t.Errorf("the window holds %d credits; the upstream served %d", usage.Used, servedCredits)
	}
	if want := max(0, servedCredits-free); rep.TotalAddonCredits != want {
		t.Errorf("billed %d add-on credits, want %d (served %d - free %d): %s", rep.TotalAddonCredits, want, servedCredits, free, repBody)
	}
}

func itoaE2E(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
