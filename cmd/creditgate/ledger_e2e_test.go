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
		t.Skip("fault runs of about 15 s")
	}
	// closed: calls refused while Redis is away; local: admitted on each gateway's own
	// share, and written into Redis when it answers again.
	for _, mode := range []string{"closed", "local"} {
		t.Run(mode, func(t *testing.T) { ledgerThroughFaults(t, mode) })
	}
}

func ledgerThroughFaults(t *testing.T, mode string) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	up := newCostUpstream(t, 0)
	const free = 500
	vars := billingVars(up.URL, srv.URL, free)
	vars["CREDITGATE_FAIL_MODE"] = mode
	vars["CREDITGATE_REDIS_TIMEOUT"] = "300ms"
	vars["CREDITGATE_LOG_LEVEL"] = "warn"
	a, b := startGateway(t, vars), startGateway(t, vars)
	// With a 300 ms store timeout and every write synced to disk, a loaded machine can make
	// the first write time out (503): it is tried again, a bounded number of times.
	for try := 1; ; try++ {
		s, body := adminDo(t, "PUT", a.admin+"/admin/v1/orgs/acme/addon", e2eAdminToken, `{"limit":200000}`)
		if s == 200 {
			break
		}
		if s != 503 || try == 20 {
			t.Fatalf("PUT addon: %d %s", s, body)
		}
		time.Sleep(100 * time.Millisecond)
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

	// Compensations and refunds queued during the faults run once Redis answers, and what
	// was admitted on a gateway's own is written in. The write-back goes at the retry
	// queue's pace, which on a loaded machine can take well beyond its usual few seconds.
	for _, gw := range []*process{a, b} {
		waitFor(t, time.Minute, func() bool {
			fams := metricstest.Scrape(t, gw.admin+"/metrics")
			q, ok := fams.Value("creditgate_store_calls_queued")
			l, _ := fams.Value("creditgate_local_ledger_calls")
			return ok && q == 0 && l == 0
		})
	}
	var compensations, dropped, local float64
	for _, gw := range []*process{a, b} {
		fams := metricstest.Scrape(t, gw.admin+"/metrics")
		c, _ := fams.Value("creditgate_compensations_total")
		compensations += c
		l, _ := fams.Value("creditgate_local_admitted_total")
		local += l
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
	usage := struct{ Used int64 }{usedCredits(t, a.base, "acme-key")}
	rep, repBody := readReport(t, b)
	var codes []string
	statuses.Range(func(k, v any) bool {
		codes = append(codes, http.StatusText(k.(int))+"="+itoaE2E(v.(*atomic.Int64).Load()))
		return true
	})
	t.Logf("served %d calls (%d credits, free allotment %d); answers: %s; other errors %d; compensations queued %v, admitted on a gateway's own %v, store calls dropped %v",
		served.Load(), servedCredits, free, strings.Join(codes, " "), other.Load(), compensations, local, dropped)
	t.Logf("window holds %d credits; billed %d add-on credits", usage.Used, rep.TotalAddonCredits)
	// In closed mode a debit that lost its reply is compensated; in local mode its call goes
	// on on the gateway's own, under the same call id.
	if (mode == "closed" && compensations == 0) || (mode == "local" && local == 0) {
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

// TestFailModeLocalThreeGateways: three gateways in fail mode local, Redis stopped for 10 s
// under load. While it is away the gateways together admit no more than what the org had left
// when it stopped (each its third, plus at most one call's cost each); afterwards the window
// and the bill hold every credit served, and the org, at its limit, is refused until credits
// free up.
func TestFailModeLocalThreeGateways(t *testing.T) {
	if testing.Short() {
		t.Skip("fault run of about 15 s")
	}
	srv := redistest.Start(t)
	up := newCostUpstream(t, 0)
	const free, addon, cost = 1000, 2000, 50 // a bulk read initialize costs 50
	vars := billingVars(up.URL, srv.URL, free)
	vars["CREDITGATE_FAIL_MODE"] = "local"
	vars["CREDITGATE_REDIS_TIMEOUT"] = "300ms"
	vars["CREDITGATE_LOG_LEVEL"] = "warn"
	gws := []*process{startGateway(t, vars), startGateway(t, vars), startGateway(t, vars)}
	if s, body := adminDo(t, "PUT", gws[0].admin+"/admin/v1/orgs/acme/addon", e2eAdminToken, `{"limit":2000}`); s != 200 {
		t.Fatalf("PUT addon: %d %s", s, body)
	}
	read := "/crm/bulk/v2/read"
	for i := range 30 { // 1,500 credits, through every gateway: each knows what is left
		if resp, body := call(t, http.DefaultClient, "POST", gws[i%3].base+read, "acme-key"); resp.StatusCode != 200 {
			t.Fatalf("before the outage: %d %s", resp.StatusCode, body)
		}
	}
	for _, gw := range gws { // the heartbeat has counted three
		waitFor(t, 5*time.Second, func() bool {
			v, _ := metricstest.Scrape(t, gw.admin+"/metrics").Value("creditgate_gateways_alive")
			return v == 3
		})
	}
	// Each gateway's last answer for acme must be the current one: one more call each.
	for _, gw := range gws {
		if resp, body := call(t, http.DefaultClient, "GET", gw.base+"/crm/v2/users", "acme-key"); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	before := up.credits.Load()
	left := int64(free + addon - before)

	srv.Pause()
	var (
		wg         sync.WaitGroup
		stop       atomic.Bool
		ok, no     atomic.Int64
		unexpected atomic.Int64
	)
	for i := range 6 {
		gw := gws[i%3]
		wg.Go(func() {
			for n := 0; !stop.Load() && n < 5000; n++ {
				resp, _ := call(t, http.DefaultClient, "POST", gw.base+read, "acme-key")
				switch resp.StatusCode {
				case 200:
					ok.Add(1)
				case 429:
					no.Add(1)
					time.Sleep(20 * time.Millisecond)
				default:
					unexpected.Add(1)
				}
			}
		})
	}
	time.Sleep(10 * time.Second)
	stop.Store(true)
	wg.Wait()
	during := up.credits.Load() - before
	srv.Resume()

	for _, gw := range gws {
		waitFor(t, 20*time.Second, func() bool {
			fams := metricstest.Scrape(t, gw.admin+"/metrics")
			q, ok1 := fams.Value("creditgate_store_calls_queued")
			l, ok2 := fams.Value("creditgate_local_ledger_calls")
			return ok1 && ok2 && q == 0 && l == 0
		})
	}
	usage := struct{ Used int64 }{usedCredits(t, gws[1].base, "acme-key")}
	rep, repBody := readReport(t, gws[2])
	served := up.credits.Load()
	t.Logf("Redis stopped 10 s with %d credits left: the three gateways admitted %d credits on their own (%d calls, %d refused 429, %d other); window %d, served %d, billed %d add-on credits",
		left, during, ok.Load(), no.Load(), unexpected.Load(), usage.Used, served, rep.TotalAddonCredits)
	if during > left+3*cost {
		t.Errorf("admitted %d credits during the outage, more than the %d left plus one call per gateway", during, left)
	}
	if during == 0 || unexpected.Load() != 0 {
		t.Errorf("admitted %d credits, %d unexpected answers", during, unexpected.Load())
	}
	if usage.Used != served {
		t.Errorf("the window holds %d credits, the upstream served %d", usage.Used, served)
	}
	if want := max(0, served-free); rep.TotalAddonCredits != want {
		t.Errorf("billed %d add-on credits, want %d: %s", rep.TotalAddonCredits, want, repBody)
	}
	resp, _ := call(t, http.DefaultClient, "POST", gws[0].base+read, "acme-key")
	if served+cost > free+addon && (resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "") {
		t.Errorf("after the outage, at %d of %d credits: %d, Retry-After %q; want 429 until credits free up",
			served, free+addon, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
