package main

// Fault tests: a real redis-server that the test kills and restarts under a running gateway.

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creditgate/creditgate/internal/metricstest"
	"github.com/creditgate/creditgate/internal/redistest"
)

// probe is one kind of call a measurement makes: GET url, with key when set; check sees
// every response.
type probe struct {
	url, key string
	check    func(*http.Response, string)
}

// latencies makes n rounds of calls, one of each probe per round (interleaved, so that both
// see the same load on a shared machine), sequential on kept-alive connections, and returns
// each probe's times sorted.
func latencies(t *testing.T, client *http.Client, n int, probes ...probe) [][]time.Duration {
	t.Helper()
	out := make([][]time.Duration, len(probes))
	for range n {
		for i, p := range probes {
			req, _ := http.NewRequest("GET", p.url, nil)
			if p.key != "" {
				req.Header.Set("X-Api-Key", p.key)
			}
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			out[i] = append(out[i], time.Since(start))
			if p.check != nil {
				p.check(resp, string(b))
			}
		}
	}
	for _, l := range out {
		slices.Sort(l)
	}
	return out
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// TestRedisDiesAndReturns takes the gateway's redis-server away under traffic and brings it
// back: killed (connections refused) in both fail modes, and hung (SIGSTOP: connections open,
// nothing answered, so every call would wait for CREDITGATE_REDIS_TIMEOUT). Calls are
// answered as configured without waiting on the dead Redis once the breaker is open, /readyz
// and the metrics say so, the breaker logs each change once, and traffic is charged again
// within seconds of Redis returning.
func TestRedisDiesAndReturns(t *testing.T) {
	tests := []struct {
		name, mode string
		hang       bool
	}{
		{"killed/open", "open", false},
		{"killed/closed", "closed", false},
		{"hung/open", "open", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mode := tt.mode
			srv := redistest.Start(t, "--appendonly", "no") // extra args: always a process of our own to kill
			up := newCostUpstream(t, 0)
			gw := startGateway(t, map[string]string{
				"CREDITGATE_UPSTREAM_URL":     up.URL,
				"CREDITGATE_REDIS_URL":        srv.URL,
				"CREDITGATE_ORGS":             "acme:limit=1000000,keys=acme-key",
				"CREDITGATE_FAIL_MODE":        mode,
				"CREDITGATE_REDIS_TIMEOUT":    "200ms",
				"CREDITGATE_BREAKER_COOLDOWN": "200ms",
				"CREDITGATE_LOG_LEVEL":        "info",
			})
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			const n = 400 // calls per measurement, sequential: bounded in count
			target := gw.base + "/crm/v2/users"

			direct := probe{url: up.URL + "/crm/v2/users"}
			before := latencies(t, client, n, direct, probe{target, "acme-key", func(resp *http.Response, body string) {
				if resp.StatusCode != 200 || resp.Header.Get("X-Credits-Charged") != "1" {
					t.Fatalf("healthy Redis: %d charged %q %s", resp.StatusCode, resp.Header.Get("X-Credits-Charged"), body)
				}
			}})
			directUp, healthy := before[0], before[1]

			if tt.hang {
				srv.Pause()
			} else {
				srv.Kill()
			}
			killed := time.Now()
			wantStatus := map[string]int{"open": 200, "closed": 503}[mode]
			deadCheck := func(resp *http.Response, body string) {
				if resp.StatusCode != wantStatus || resp.Header.Get("X-Credits-Charged") != "0" {
					t.Fatalf("dead Redis, fail mode %s: status %d charged %q %s", mode, resp.StatusCode, resp.Header.Get("X-Credits-Charged"), body)
				}
				if mode == "closed" && (!strings.Contains(body, `"code":"SERVICE_UNAVAILABLE"`) || resp.Header.Get("Retry-After") == "") {
					t.Fatalf("fail closed answered %s", body)
				}
			}
			// The first calls meet the dead Redis and open the breaker (3 failures in a row).
			tripping := latencies(t, client, 3, probe{target, "acme-key", deadCheck})[0]
			m := metricstest.Scrape(t, gw.admin+"/metrics")
			if st, _ := m.Value("creditgate_breaker_state"); st != 2 {
				t.Fatalf("breaker state %v after 3 failed calls, want 2 (open)", st)
			}
			spendsBefore := m.Sum("creditgate_limiter_duration_seconds")

			during := latencies(t, client, n, direct, probe{target, "acme-key", deadCheck})
			directDead, open := during[0], during[1]

			m = metricstest.Scrape(t, gw.admin+"/metrics")
			if got := m.Sum("creditgate_limiter_duration_seconds"); got != spendsBefore {
				t.Errorf("%v store calls were made with the breaker open, want none", got-spendsBefore)
			}
			outcome := map[string]string{"open": "fail_open", "closed": "fail_closed"}[mode]
			if got, _ := m.Value("creditgate_requests_total", "org", "acme", "edition", "custom", "outcome", outcome); got != n+3 {
				t.Errorf("requests %s = %v, want %d", outcome, got, n+3)
			}
			if got, _ := m.Value("creditgate_redis_errors_total", "op", "spend"); got != 3 {
				t.Errorf("redis errors %v, want 3", got)
			}
			resp, body := call(t, client, "GET", gw.admin+"/readyz", "")
			wantReady := map[string]int{"open": 200, "closed": 503}[mode]
			if resp.StatusCode != wantReady || !strings.Contains(body, "credit store unavailable") {
				t.Errorf("/readyz on a dead Redis: %d %q", resp.StatusCode, body)
			}
			if mode == "open" && up.calls.Load() != int64(4*n+3) { // 2n direct, n healthy, n+3 on a dead Redis
				t.Errorf("upstream received %d calls, want %d (fail open forwards)", up.calls.Load(), 4*n+3)
			}

			if tt.hang {
				srv.Resume()
			} else {
				srv.Restart()
			}
			restarted := time.Now()
			var back time.Duration
			for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				resp, _ := call(t, client, "GET", target, "acme-key")
				if resp.StatusCode == 200 && resp.Header.Get("X-Credits-Charged") == "1" {
					back = time.Since(restarted)
					break
				}
			}
			if back == 0 {
				t.Fatal("calls not charged again within 15s of Redis returning")
			}
			if resp, body := call(t, client, "GET", gw.admin+"/readyz", ""); resp.StatusCode != 200 || body != "ready\n" {
				t.Errorf("/readyz after Redis returned: %d %q", resp.StatusCode, body)
			}
			logs := gw.stderr.String()
			for _, line := range []string{"credit store breaker opened", "credit store breaker half-open", "credit store breaker closed"} {
				if c := strings.Count(logs, line); c != 1 {
					t.Errorf("%q logged %d times, want once", line, c)
				}
			}
			if c := strings.Count(logs, `"credit store error"`); c > 3 {
				t.Errorf("%d per-call store error lines, want at most the 3 before the breaker opened", c)
			}
			// go-redis's own dial failures: at most one per call before the breaker opened, none
			// for the probes while it was open.
			if c := strings.Count(logs, `"logger":"redis"`); c > 3 {
				t.Errorf("%d go-redis log lines, want at most 3", c)
			}

			t.Logf("the 3 calls that opened the breaker took %s to %s", tripping[0].Round(time.Microsecond), tripping[2].Round(time.Microsecond))
			t.Logf("fail mode %s, %d calls each, interleaved with as many direct to the upstream: Redis up: p50/p99 %s/%s through the gateway, %s/%s direct",
				mode, n, pct(healthy, .5), pct(healthy, .99), pct(directUp, .5), pct(directUp, .99))
			t.Logf("breaker open: p50/p99 %s/%s through the gateway, %s/%s direct: the gateway adds %s at p50, %s at p99",
				pct(open, .5), pct(open, .99), pct(directDead, .5), pct(directDead, .99),
				pct(open, .5)-pct(directDead, .5), pct(open, .99)-pct(directDead, .99))
			t.Logf("Redis away for %s; calls charged again %s after it returned", restarted.Sub(killed).Round(time.Millisecond), back.Round(time.Millisecond))
		})
	}
}
