package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOrgsFileReloadOnSIGHUP: orgs from CREDITGATE_ORGS_FILE are served, a SIGHUP adds a new
// org and changes a limit without forgetting what an org already spent, and a broken file is
// refused while the running orgs stay.
func TestOrgsFileReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "orgs.yaml")
	write := func(data string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("orgs:\n  - {id: acme, limit: 10, keys: [acme-key]}\n")
	up := newCostUpstream(t, 0)
	gw := startGateway(t, map[string]string{
		"CREDITGATE_UPSTREAM_URL": up.URL,
		"CREDITGATE_ORGS_FILE":    path,
		"CREDITGATE_LOG_LEVEL":    "info",
	})
	get := func(key string) *http.Response {
		t.Helper()
		resp, _ := call(t, http.DefaultClient, "GET", gw.base+"/crm/v2/users", key)
		return resp
	}
	for range 4 {
		if resp := get("acme-key"); resp.StatusCode != 200 {
			t.Fatalf("acme: status %d", resp.StatusCode)
		}
	}
	if resp := get("new-key"); resp.StatusCode != 401 {
		t.Fatalf("unknown org before reload: status %d, want 401", resp.StatusCode)
	}

	write("orgs:\n  - {id: acme, limit: 6, keys: [acme-key]}\n  - {id: newco, edition: crm-free, keys: [new-key]}\n")
	if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return get("new-key").StatusCode == 200 })
	// acme spent 4 under the old limit of 10; with 6 now it has 2 left: its window was kept.
	resp := get("acme-key")
	if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Limit") != "6" || resp.Header.Get("X-RateLimit-Remaining") != "1" {
		t.Fatalf("acme after reload: status %d limit %s remaining %s, want 200 6 1", resp.StatusCode,
			resp.Header.Get("X-RateLimit-Limit"), resp.Header.Get("X-RateLimit-Remaining"))
	}
	if resp := get("new-key"); resp.Header.Get("X-RateLimit-Limit") != "5000" {
		t.Errorf("newco limit %s, want crm-free's 5000", resp.Header.Get("X-RateLimit-Limit"))
	}

	// A broken file (a key given twice) is refused, naming the line; both orgs keep working.
	write("orgs:\n  - {id: acme, limit: 6, keys: [acme-key]}\n  - {id: other, limit: 5, keys: [acme-key]}\n")
	if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(gw.stderr.String(), "orgs or editions refused") })
	if resp := get("new-key"); resp.StatusCode != 200 {
		t.Errorf("newco after a refused reload: status %d, want 200", resp.StatusCode)
	}
	if strings.Contains(gw.stderr.String(), "acme-key") {
		t.Errorf("a key reached the log:\n%s", gw.stderr.String())
	}
}
