package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/creditgate/creditgate/orgs"
)

func preflightReq(t *testing.T, base, origin string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("OPTIONS", base+"/crm/v8/Leads", strings.NewReader("ignored body"))
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestCORSPolicy: with a policy the gateway answers preflights itself (no credentials, nothing
// charged or forwarded), and every answer to an allowed origin, its own 401 and 429 included,
// carries the fields a browser needs to read it; the upstream's CORS fields give way.
func TestCORSPolicy(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.CORS = &CORSPolicy{Origins: []string{"https://app.example.com"}} })
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write([]byte("ok"))
	}
	resp := preflightReq(t, f.url, "https://app.example.com")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") ||
		resp.Header.Get("Access-Control-Max-Age") != "600" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := preflightReq(t, f.url, "https://evil.example"); resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %d %v", resp.StatusCode, resp.Header)
	}
	if f.up.count() != 0 {
		t.Fatalf("preflights forwarded: %d", f.up.count())
	}
	origin := map[string]string{"Origin": "https://app.example.com"}
	resp, _ = do(t, "GET", f.url+"/crm/v8/users", origin, "") // no key: the gateway's 401
	if resp.StatusCode != 401 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("401: %v", resp.Header)
	}
	origin["X-Api-Key"] = "acme-key"
	resp, _ = do(t, "GET", f.url+"/crm/v8/users", origin, "")
	if acao := resp.Header.Values("Access-Control-Allow-Origin"); resp.StatusCode != 200 || len(acao) != 1 || acao[0] != "https://app.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Ratelimit-Remaining") {
		t.Fatalf("proxied answer: %d %v", resp.StatusCode, resp.Header)
	}
	if got := f.used(t, "acme", 1000); got != 1 {
		t.Fatalf("charged %d, want 1 (the one proxied call)", got)
	}

	// After an upstream's 1xx the final answer still carries them.
	up := rawUpstream(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)
	g := newFixture(t, func(c *Config) {
		c.Upstream, _ = url.Parse(up)
		c.CORS = &CORSPolicy{Origins: []string{"*"}}
	})
	resp, _ = do(t, "GET", g.url+"/crm/v8/users", map[string]string{"X-Api-Key": "acme-key", "Origin": "https://b.example"}, "")
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://b.example" {
		t.Fatalf("after a 103: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestPreflightWithoutPolicy: without a policy a preflight goes upstream uncharged and without
// its body, at most 100 a second (200 at once) for the process: past it, 429.
func TestPreflightWithoutPolicy(t *testing.T) {
	f := newFixture(t, nil)
	forwarded, refused := 0, 0
	for range 260 {
		switch resp := preflightReq(t, f.url, "https://app.example.com"); resp.StatusCode {
		case 200:
			forwarded++
		case 429:
			refused++
		default:
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if forwarded < 200 || refused == 0 || forwarded != f.up.count() {
		t.Fatalf("forwarded %d (upstream saw %d), refused %d; want 200 and a few more, then 429", forwarded, f.up.count(), refused)
	}
	f.up.mu.Lock()
	body := f.up.bodies[0]
	f.up.mu.Unlock()
	if body != "" {
		t.Fatalf("a preflight's body went upstream: %q", body)
	}
	if got := f.used(t, "acme", 1000); got != 0 {
		t.Fatalf("charged %d", got)
	}
}

// TestOwnUsageFieldsMatchPolicy: the usage answer's RateLimit field has an item for every
// policy RateLimit-Policy lists, the concurrency cap's included.
func TestOwnUsageFieldsMatchPolicy(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.ConcurrencyOf = func(*orgs.Org) int64 { return 4 } })
	resp, body := do(t, "GET", f.url+"/creditgate/v1/usage", map[string]string{"X-Api-Key": "acme-key"}, "")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if !strings.Contains(resp.Header.Get("Ratelimit-Policy"), `"concurrency";q=4`) || !strings.Contains(resp.Header.Get("Ratelimit"), `"concurrency";r=4`) {
		t.Fatalf("RateLimit-Policy %q, RateLimit %q", resp.Header.Get("Ratelimit-Policy"), resp.Header.Get("Ratelimit"))
	}
}

// TestRateLimitFieldModes: draft 7's combined fields, or X-RateLimit-* only, instead of the
// current draft's structured ones; a refund rewrites them in the same form.
func TestRateLimitFieldModes(t *testing.T) {
	for _, tt := range []struct {
		mode          RateLimitFields
		policy, field string // of the first call; "" when absent
	}{
		{FieldsDraft, `"credits";q=1000;w=86400`, `"credits";r=999;t=`},
		{FieldsDraft7, `1000;w=86400`, `limit=1000, remaining=999, reset=`},
		{FieldsX, ``, ``},
	} {
		t.Run(string(tt.mode), func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.RateLimitFields = tt.mode })
			resp, _ := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
			if resp.Header.Get("Ratelimit-Policy") != tt.policy || !strings.HasPrefix(resp.Header.Get("Ratelimit"), tt.field) ||
				(tt.field == "") != (resp.Header.Get("Ratelimit") == "") {
				t.Errorf("policy %q, field %q", resp.Header.Get("Ratelimit-Policy"), resp.Header.Get("Ratelimit"))
			}
			if resp.Header.Get("X-Ratelimit-Limit") != "1000" || resp.Header.Get("X-Ratelimit-Remaining") != "999" {
				t.Errorf("X-RateLimit-Limit %q, -Remaining %q", resp.Header.Get("X-Ratelimit-Limit"), resp.Header.Get("X-Ratelimit-Remaining"))
			}
			// A refund (the upstream unreachable) gives the credit back in the same form.
			f.up.Close()
			resp, _ = do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
			want := map[RateLimitFields]string{FieldsDraft: `"credits";r=999;t=`, FieldsDraft7: `limit=1000, remaining=999, reset=`}[tt.mode]
			if resp.StatusCode != 502 || !strings.HasPrefix(resp.Header.Get("Ratelimit"), want) || (want == "") != (resp.Header.Get("Ratelimit") == "") {
				t.Errorf("after a refund: %d %q", resp.StatusCode, resp.Header.Get("Ratelimit"))
			}
		})
	}
}
