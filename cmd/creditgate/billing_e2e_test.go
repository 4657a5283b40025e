package main

// End-to-end tests of add-on credits and billing: the real binary, real listeners, real
// redis-server.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditgate/creditgate/internal/metricstest"
	"github.com/creditgate/creditgate/internal/redistest"
	"github.com/creditgate/creditgate/limiter"
)

const (
	e2eAdminToken  = "e2e-admin-token-4f1c"
	e2eViewerToken = "e2e-viewer-token-9b2d"
)

var reportRange = "from=" + time.Now().UTC().AddDate(0, 0, -2).Format("2006-01-02") +
	"&to=" + time.Now().UTC().AddDate(0, 0, 2).Format("2006-01-02")

// billingVars configures one org with a free allotment of free credits on an edition that
// sells add-ons, and admin tokens.
func billingVars(upstream, redisURL string, free int) map[string]string {
	return map[string]string{
		"CREDITGATE_UPSTREAM_URL":  upstream,
		"CREDITGATE_REDIS_URL":     redisURL,
		"CREDITGATE_ORGS":          "acme:edition=crm-professional,limit=" + strconv.Itoa(free) + ",keys=acme-key",
		"CREDITGATE_ADMIN_TOKENS":  "admin:" + e2eAdminToken + ";viewer:" + e2eViewerToken,
		"CREDITGATE_LOG_LEVEL":     "debug",
		"CREDITGATE_REDIS_TIMEOUT": "2s",
	}
}

func adminDo(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type e2eReport struct {
	Days []struct {
		Date         string `json:"date"`
		AddonCredits int64  `json:"addon_credits"`
		AmountMicros int64  `json:"amount_micros"`
	} `json:"days"`
	TotalAddonCredits int64 `json:"total_addon_credits"`
	TotalAmountMicros int64 `json:"total_amount_micros"`
}

// readReport reads acme's billing report for the days around now (a fixed range, so two reads
// compare equal across midnight).
func readReport(t *testing.T, p *process) (e2eReport, string) {
	t.Helper()
	status, body := adminDo(t, "GET", p.admin+"/admin/v1/orgs/acme/billing?"+reportRange, e2eViewerToken, "")
	if status != 200 {
		t.Fatalf("billing report: %d %s", status, body)
	}
	var rep e2eReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	return rep, body
}

// TestBillingTwoGatewaysRacing: two gateway processes share one Redis (a server, then a
// three-master Redis Cluster); an org consumes past its free allotment into add-on credits set
// through one gateway's admin API; the billing report (read through the other gateway) holds
// exactly the credits admitted above the free allotment, and the logs hold no token.
func TestBillingTwoGatewaysRacing(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		srv := redistest.Start(t)
		billingRace(t, srv.URL, func(k string) (int64, error) { return srv.Client.HGet(context.Background(), k, "used").Int64() })
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.StartCluster(t, 3)
		billingRace(t, c.URL, func(k string) (int64, error) { return c.Client.HGet(context.Background(), k, "used").Int64() })
	})
}

func billingRace(t *testing.T, redisURL string, held func(key string) (int64, error)) {
	up := newCostUpstream(t, 0)
	const free, addon = 400, 600
	vars := billingVars(up.URL, redisURL, free)
	gws := []*process{startGateway(t, vars), startGateway(t, vars)}

	if s, body := adminDo(t, "PUT", gws[0].admin+"/admin/v1/orgs/acme/addon", e2eViewerToken, `{"limit":600}`); s != 403 {
		t.Fatalf("viewer PUT: %d %s, want 403", s, body)
	}
	if s, body := adminDo(t, "PUT", gws[0].admin+"/admin/v1/orgs/acme/addon", e2eAdminToken, `{"limit":600}`); s != 200 ||
		!strings.Contains(body, `"overall_credits":1000`) {
		t.Fatalf("admin PUT: %d %s", s, body)
	}

	paths := make([]string, 0, len(testCosts))
	for k := range testCosts {
		paths = append(paths, k)
	}
	var (
		admitted, rejected atomic.Int64
		wg                 sync.WaitGroup
		failures           = make(chan string, 16)
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 60 && ctx.Err() == nil; i++ { // bounded: 12×60 calls at most
				method, path, _ := strings.Cut(paths[(w+i)%len(paths)], " ")
				req, _ := http.NewRequestWithContext(ctx, method, gws[(w+i)%2].base+path, nil)
				req.Header.Set("X-Api-Key", "acme-key")
				resp, err := client.Do(req)
				if err != nil {
					failures <- err.Error()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					n, _ := strconv.ParseInt(resp.Header.Get("X-Credits-Charged"), 10, 64)
					admitted.Add(n)
					if l := resp.Header.Get("X-Ratelimit-Limit"); l != "1000" {
						failures <- "X-RateLimit-Limit " + l + ", want 1000 on both gateways"
						return
					}
				case 429:
					rejected.Add(1)
				default:
					failures <- fmt.Sprintf("%s %s: status %d", method, path, resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Fatal(f)
	}
	a := admitted.Load()
	h, err := held(limiter.NewRedisKeys("acme").Pos)
	if err != nil {
		t.Fatal(err)
	}
	rep, _ := readReport(t, gws[1])
	t.Logf("admitted %d credits (free %d, add-on %d), %d calls refused; Redis holds %d; billed %d add-on credits, %d micro-dollars",
		a, free, addon, rejected.Load(), h, rep.TotalAddonCredits, rep.TotalAmountMicros)
	if a > free+addon || a < free+addon-50 || rejected.Load() == 0 {
		t.Fatalf("admitted %d credits with %d refused; want the limit %d reached, never passed", a, rejected.Load(), free+addon)
	}
	if h != a || up.credits.Load() != a {
		t.Fatalf("admitted %d, Redis holds %d, upstream received %d", a, h, up.credits.Load())
	}
	if rep.TotalAddonCredits != a-free {
		t.Fatalf("billed %d add-on credits, admitted %d above the free %d", rep.TotalAddonCredits, a-free, free)
	}
	if want := (a - free) * 140; rep.TotalAmountMicros != want { // all within the first slab, $0.14 per 1,000
		t.Fatalf("billed %d micro-dollars, want %d", rep.TotalAmountMicros, want)
	}
	// The metrics of the two gateways agree with the bill.
	var addonMetric float64
	for _, p := range gws {
		addonMetric += metricstest.Scrape(t, p.admin+"/metrics").Sum("creditgate_addon_credits_total")
	}
	if int64(addonMetric) != rep.TotalAddonCredits {
		t.Fatalf("creditgate_addon_credits_total sums to %v over both gateways, billed %d", addonMetric, rep.TotalAddonCredits)
	}
	for _, p := range gws {
		for _, tok := range []string{e2eAdminToken, e2eViewerToken, "acme-key"} {
			if strings.Contains(p.stderr.String(), tok) || strings.Contains(p.stdout.String(), tok) {
				t.Errorf("a token or key reached the log")
			}
		}
	}
}

// TestBillingSurvivesRedisRestart: with AOF persistence (appendfsync always), a Redis crash
// and restart between the traffic and the billing read loses no billing record, and the
// add-on limit set through the admin API stays in force.
func TestBillingSurvivesRedisRestart(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	up := newCostUpstream(t, 0)
	vars := billingVars(up.URL, srv.URL, 100)
	// An fsync per write can take longer than the default 500ms read timeout on a loaded CI
	// disk; a call that timed out would then be forwarded uncharged (fail open) and the count
	// below would be off by its credits. Wait longer, and never admit a call uncharged.
	vars["CREDITGATE_REDIS_URL"] = srv.URL + "?read_timeout=5s&write_timeout=5s"
	vars["CREDITGATE_REDIS_TIMEOUT"] = "10s"
	vars["CREDITGATE_FAIL_MODE"] = "closed"
	gw := startGateway(t, vars)
	if s, body := adminDo(t, "PUT", gw.admin+"/admin/v1/orgs/acme/addon", e2eAdminToken, `{"limit":200}`); s != 200 {
		t.Fatalf("PUT: %d %s", s, body)
	}
	var admitted int64
	for i := 0; i < 80; i++ { // 80 calls of 5 credits: 400 asked, 300 admitted
		resp, _ := call(t, http.DefaultClient, "POST", gw.base+"/crm/v2/Leads/1/actions/convert", "acme-key")
		if resp.StatusCode == 200 {
			admitted += 5
		}
	}
	if admitted != 300 {
		t.Fatalf("admitted %d credits, want 300 (100 free + 200 add-on)", admitted)
	}
	before, beforeBody := readReport(t, gw)
	if before.TotalAddonCredits != 200 || before.TotalAmountMicros != 200*140 {
		t.Fatalf("before the restart: %s", beforeBody)
	}

	srv.Kill() // SIGKILL: a crash, no shutdown save
	srv.Restart()

	var afterBody string
	waitFor(t, 10*time.Second, func() bool { // the gateway's pool reconnects on its own
		s, body := adminDo(t, "GET", gw.admin+"/admin/v1/orgs/acme/billing?"+reportRange, e2eViewerToken, "")
		afterBody = body
		return s == 200
	})
	if afterBody != beforeBody {
		t.Fatalf("billing report changed over a Redis restart:\nbefore %s\nafter  %s", beforeBody, afterBody)
	}
	resp, body := call(t, http.DefaultClient, "GET", gw.base+"/crm/v2/users", "acme-key")
	if resp.StatusCode != 429 || resp.Header.Get("X-Ratelimit-Limit") != "300" {
		t.Fatalf("after the restart: %d limit %s %s; want 429 at 300 (window and add-on limit kept)",
			resp.StatusCode, resp.Header.Get("X-Ratelimit-Limit"), body)
	}
}

// TestMonthlyPlanOnRedis: a monthly plan configured from the environment, on a real
// redis-server: its monthly calls, its additional calls, its own 429, and the additional calls
// billed at the non-commercial price.
func TestMonthlyPlanOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	up := newCostUpstream(t, 0)
	gw := startGateway(t, map[string]string{
		"CREDITGATE_UPSTREAM_URL":       up.URL,
		"CREDITGATE_REDIS_URL":          srv.URL,
		"CREDITGATE_ORGS":               "docs:edition=monthly,monthly_limit=2,additional=1,commercial=false,keys=docs-key",
		"CREDITGATE_ADMIN_TOKENS":       "admin:" + e2eAdminToken + ";viewer:" + e2eViewerToken,
		"CREDITGATE_BILLING_ANCHOR_DAY": "28",
	})
	for i := range 3 {
		if resp, body := call(t, http.DefaultClient, "GET", gw.base+"/crm/v2/users", "docs-key"); resp.StatusCode != 200 {
			t.Fatalf("call %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	resp, body := call(t, http.DefaultClient, "GET", gw.base+"/crm/v2/users", "docs-key")
	if resp.StatusCode != 429 || !strings.Contains(body, `"additional_calls":1,"monthly_limit":2,"period_end":"`) ||
		!strings.Contains(body, "subscription period are used up") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("4th call: %d %s", resp.StatusCode, body)
	}
	if up.calls.Load() != 3 {
		t.Fatalf("upstream saw %d calls, want 3", up.calls.Load())
	}
	status, report := adminDo(t, "GET", gw.admin+"/admin/v1/orgs/docs/billing?format=csv", e2eViewerToken, "")
	if status != 200 || !strings.Contains(report, ",1,20000,20000\n") || !strings.HasSuffix(report, "total,1,,20000\n") {
		t.Fatalf("billing CSV: %d\n%s", status, report)
	}
	if s, body := adminDo(t, "PUT", gw.admin+"/admin/v1/orgs/docs/addon", e2eAdminToken, `{"limit":4}`); s != 200 ||
		!strings.Contains(body, `"monthly_limit":2,"additional_calls":4,"additional_cap":4,"period_used":3`) {
		t.Fatalf("PUT additional calls: %d %s", s, body)
	}
	if resp, body := call(t, http.DefaultClient, "GET", gw.base+"/crm/v2/users", "docs-key"); resp.StatusCode != 200 {
		t.Fatalf("after raising the additional calls: %d %s", resp.StatusCode, body)
	}
}
