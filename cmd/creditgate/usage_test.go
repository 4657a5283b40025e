package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/creditgate/creditgate/internal/redistest"
)

// TestUsageEndpoints runs the binary on Redis: the org reads its own usage on the proxy
// listener, an operator reads the same on the admin listener, and /ui/ serves the page.
func TestUsageEndpoints(t *testing.T) {
	up := newCostUpstream(t, 0)
	gw := startGateway(t, map[string]string{
		"CREDITGATE_UPSTREAM_URL": up.URL,
		"CREDITGATE_REDIS_URL":    redistest.Start(t).URL,
		"CREDITGATE_ORGS":         "acme:edition=crm-professional,users=20,addon=2000,keys=acme-key",
		"CREDITGATE_ADMIN_TOKENS": "viewer:view-token",
	})
	var charged int64
	for path, cost := range testCosts {
		method, target, _ := strings.Cut(path, " ")
		if resp, body := call(t, http.DefaultClient, method, gw.base+target, "acme-key"); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		charged += cost
	}
	resp, own := call(t, http.DefaultClient, "GET", gw.base+"/creditgate/v1/usage", "acme-key")
	if resp.StatusCode != 200 || resp.Header.Get("X-Credits-Charged") != "0" {
		t.Fatalf("own usage: %d %s", resp.StatusCode, own)
	}
	req, _ := http.NewRequest("GET", gw.admin+"/admin/v1/orgs/acme/usage", nil)
	req.Header.Set("Authorization", "Bearer view-token")
	aresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer aresp.Body.Close()
	var u map[string]any
	if err := json.NewDecoder(aresp.Body).Decode(&u); err != nil {
		t.Fatal(err)
	}
	var mine map[string]any
	if err := json.Unmarshal([]byte(own), &mine); err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]any{
		"org": "acme", "edition": "crm-professional", "daily_free_limit": 20000.0, "additional_credits": 2000.0,
		"overall_credits": 22000.0, "used_credits": float64(charged), "unused_credits": float64(22000 - charged),
		"concurrency_limit": 15.0, "window_seconds": 86400.0,
	} {
		if u[field] != want || mine[field] != want {
			t.Errorf("%s: admin %v, own %v; want %v", field, u[field], mine[field], want)
		}
	}
	if up.calls.Load() != int64(len(testCosts)) {
		t.Errorf("upstream got %d calls, want %d: the usage read was forwarded", up.calls.Load(), len(testCosts))
	}
	resp, page := call(t, http.DefaultClient, "GET", gw.admin+"/ui/", "")
	if resp.StatusCode != 200 || !strings.Contains(page, `<script src="app.js"`) {
		t.Fatalf("/ui/: %d %.200s", resp.StatusCode, page)
	}
}
