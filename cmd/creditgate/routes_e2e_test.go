package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestRoutesFile: two routes to two upstreams with their own cost tables share one org's
// window; usage reads by route; a reload that moves a route to another upstream and changes
// its table, under traffic, fails no call, and a broken file is refused.
func TestRoutesFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p+".tmp", []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			t.Fatal(err)
		}
	}
	crm, reports, reports2 := newCostUpstream(t, 0), newCostUpstream(t, 0), newCostUpstream(t, 0)
	write("crm.yaml", "name: crm\nrules:\n  - {name: things, method: GET, path: /crm/things, cost: 2}\n")
	write("reports.yaml", "name: reports\nrules:\n  - {name: daily, method: GET, path: /daily, cost: 3}\n")
	routes := func(reportsURL, reportsTable string) string {
		return "routes:\n" +
			"  - {name: crm, path_prefix: /crm, upstream: " + crm.URL + ", cost_table_file: crm.yaml}\n" +
			"  - {name: reports, path_prefix: /r, strip_prefix: true, upstream: " + reportsURL + ", cost_table_file: " + reportsTable + "}\n"
	}
	write("routes.yaml", routes(reports.URL, "reports.yaml"))
	gw := startGateway(t, map[string]string{
		"CREDITGATE_ROUTES_FILE":  filepath.Join(dir, "routes.yaml"),
		"CREDITGATE_ORGS":         "acme:limit=1000000,keys=acme-key",
		"CREDITGATE_ADMIN_TOKENS": "viewer:" + e2eViewerToken,
		"CREDITGATE_LOG_LEVEL":    "info",
	})

	var charged, crmCharged atomic.Int64
	get := func(client *http.Client, path string) (int, string, error) {
		req, _ := http.NewRequest("GET", gw.base+path, nil)
		req.Header.Set("X-Api-Key", "acme-key")
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c := resp.Header.Get("X-Credits-Charged")
		n, _ := strconv.ParseInt(c, 10, 64)
		charged.Add(n)
		if strings.HasPrefix(path, "/crm") {
			crmCharged.Add(n)
		}
		return resp.StatusCode, c, nil
	}
	for _, c := range []struct{ path, want string }{{"/crm/things", "2"}, {"/r/daily", "3"}} {
		if code, got, err := get(http.DefaultClient, c.path); err != nil || code != 200 || got != c.want {
			t.Fatalf("%s: %d charged %s (%v), want 200 charged %s", c.path, code, got, err, c.want)
		}
	}
	if code, got, _ := get(http.DefaultClient, "/elsewhere"); code != 404 || got != "0" {
		t.Fatalf("no route: %d charged %s, want 404 uncharged", code, got)
	}

	// Traffic on both routes from four clients while the reports route moves (bounded: 10s).
	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		failures atomic.Int64
		sent     atomic.Int64
	)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			path := []string{"/crm/things", "/r/daily"}[i%2]
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
				select {
				case <-stop:
					return
				default:
				}
				code, _, err := get(client, path)
				sent.Add(1)
				if err != nil || code != 200 {
					failures.Add(1)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	write("reports2.yaml", "name: reports2\nrules:\n  - {name: daily, method: GET, path: /daily, cost: 4}\n")
	write("routes.yaml", routes(reports2.URL, "reports2.yaml"))
	if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return reports2.calls.Load() > 0 })
	if _, got, _ := get(http.DefaultClient, "/r/daily"); got != "4" {
		t.Errorf("charged %s after the reload, want the new table's 4", got)
	}

	// A broken routes file is refused, the running routes stay.
	write("routes.yaml", routes(reports.URL, "missing.yaml"))
	if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(gw.stderr.String(), "routes refused") })
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d calls failed across the reloads", failures.Load(), sent.Load())
	}
	before := reports2.calls.Load()
	if _, got, _ := get(http.DefaultClient, "/r/daily"); got != "4" || reports2.calls.Load() != before+1 {
		t.Errorf("after a refused file: charged %s, upstream calls %d → %d", got, before, reports2.calls.Load())
	}
	if !strings.Contains(gw.stderr.String(), `line 3: routes[1] \"reports\": cost_table_file`) {
		t.Errorf("the refusal does not name the line:\n%s", gw.stderr.String())
	}

	// One window: everything charged on either route, and the usage by route adds up.
	var u struct {
		Used int64 `json:"used_credits"`
	}
	getJSON(t, gw.admin+"/admin/v1/orgs/acme/usage", &u)
	var h struct {
		ByRoute map[string]int64 `json:"by_route"`
	}
	getJSON(t, gw.admin+"/admin/v1/orgs/acme/usage/hours", &h)
	if u.Used != charged.Load() || h.ByRoute["crm"] != crmCharged.Load() || h.ByRoute["reports"] != charged.Load()-crmCharged.Load() {
		t.Errorf("window %d, by route %v; charged %d (crm %d)", u.Used, h.ByRoute, charged.Load(), crmCharged.Load())
	}
	if got := crm.credits.Load() + reports.credits.Load() + reports2.credits.Load(); got == 0 {
		t.Error("no upstream counted a call")
	}
	t.Logf("%d calls across two reloads, none failed; %d credits in one window, by route %v", sent.Load(), u.Used, h.ByRoute)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+e2eViewerToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
