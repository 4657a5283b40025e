package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// nodeParser installs express-rate-limit's ratelimit-header-parser (the version the lockfile
// in testdata/ratelimit-parser pins) into a temporary directory and returns a function that
// parses a response's headers with it. Without node and npm it skips, except under CI=true.
func nodeParser(t *testing.T) func(h map[string]string) map[string]any {
	t.Helper()
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found, and CI requires the client check: apt-get install -y nodejs npm", bin)
			}
			t.Skipf("%s not found: skipping the check with ratelimit-header-parser (apt-get install -y nodejs npm)", bin)
		}
	}
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", "parse.mjs"} {
		b, err := os.ReadFile(filepath.Join("testdata", "ratelimit-parser", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	return func(h map[string]string) map[string]any {
		t.Helper()
		in, _ := json.Marshal(h)
		cmd := exec.Command("node", "parse.mjs")
		cmd.Dir, cmd.Stdin = dir, bytes.NewReader(in)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node parse.mjs: %v", err)
		}
		var v map[string]any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("parser output %q: %v", out, err)
		}
		return v
	}
}

// TestRateLimitFieldsParsedByNodeClient: express-rate-limit's ratelimit-header-parser reads
// limit, remaining and reset from the draft7 and x modes' answers.
func TestRateLimitFieldsParsedByNodeClient(t *testing.T) {
	if testing.Short() {
		t.Skip("installs an npm package")
	}
	parse := nodeParser(t)
	for _, mode := range []RateLimitFields{FieldsDraft7, FieldsX} {
		f := newFixture(t, func(c *Config) { c.RateLimitFields = mode })
		resp, _ := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
		h := map[string]string{}
		for k := range resp.Header {
			h[k] = resp.Header.Get(k)
		}
		got := parse(h)
		if got["limit"] != float64(1000) || got["remaining"] != float64(999) || got["reset"] == nil {
			t.Errorf("%s: the parser read %v from %v", mode, got, h)
		}
	}
}
