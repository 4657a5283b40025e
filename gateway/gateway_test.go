package gateway

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// t0 is the fake clock's instant; tests that need time to pass move clock.
var t0 = time.UnixMilli(1_767_225_600_000)

// upstream records what reached the API behind the gateway.
type upstream struct {
	*httptest.Server
	mu      sync.Mutex
	calls   []*http.Request
	bodies  []string
	handler http.HandlerFunc // optional override
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.calls = append(u.calls, r)
		u.bodies = append(u.bodies, string(b))
		h := u.handler
		u.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.calls)
}

func (u *upstream) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.calls) == 0 {
		return nil
	}
	return u.calls[len(u.calls)-1]
}

type fixture struct {
	gw    *Gateway
	url   string // the gateway's listener
	up    *upstream
	store *limiter.MemoryStore
	now   atomic.Int64 // unix ms of the fake clock
}

const orgsSpec = "acme:limit=1000,keys=acme-key|sha256:" // + sha256("hashed-key")

func hashedKeySpec() string {
	sum := sha256.Sum256([]byte("hashed-key"))
	return hex.EncodeToString(sum[:])
}

// newFixture runs a gateway over a memory store on a real loopback listener.
func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	f := &fixture{up: newUpstream(t)}
	f.now.Store(t0.UnixMilli())
	store, err := limiter.NewMemoryStore(limiter.Options{Window: 24 * time.Hour, Bucket: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f.store = store
	list, err := orgs.Parse(orgsSpec + hashedKeySpec() + ";tiny:limit=10,keys=tiny-key;pro:edition=crm-professional,users=2,keys=pro-key")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := orgs.NewDirectory(list)
	if err != nil {
		t.Fatal(err)
	}
	costs, err := costtable.Builtin("zoho-crm")
	if err != nil {
		t.Fatal(err)
	}
	up, _ := url.Parse(f.up.URL)
	cfg := Config{
		Upstream: up,
		Store:    store,
		Costs:    costs,
		Orgs:     dir,
		LimitOf: func(o *orgs.Org) int64 {
			if o.HasLimit {
				return o.Limit
			}
			return 11000
		},
		Clock: func() time.Time { return time.UnixMilli(f.now.Load()) },
	}
	if mod != nil {
		mod(&cfg)
	}
	f.gw, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f.gw)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *fixture) used(t *testing.T, org string, limit int64) int64 {
	t.Helper()
	d, err := f.store.Spend(context.Background(), limiter.NewKey(org, limit), 0, time.UnixMilli(f.now.Load()))
	if err != nil {
		t.Fatal(err)
	}
	return d.Used
}

func do(t *testing.T, method, target string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestIdentifyAPIKey(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name       string
		give       map[string]string
		wantStatus int
		wantCode   string
	}{
		{"bearer", map[string]string{"Authorization": "Bearer acme-key"}, 200, ""},
		{"bearer lower-case scheme", map[string]string{"Authorization": "bearer acme-key"}, 200, ""},
		{"zoho-oauthtoken", map[string]string{"Authorization": "Zoho-oauthtoken acme-key"}, 200, ""},
		{"x-api-key", map[string]string{"X-Api-Key": "acme-key"}, 200, ""},
		{"sha256-configured key", map[string]string{"X-Api-Key": "hashed-key"}, 200, ""},
		{"missing", nil, 401, "AUTHENTICATION_FAILURE"},
		{"basic auth is not a key", map[string]string{"Authorization": "Basic YWNtZTprZXk="}, 401, "AUTHENTICATION_FAILURE"},
		{"empty bearer", map[string]string{"Authorization": "Bearer "}, 401, "AUTHENTICATION_FAILURE"},
		{"unknown key", map[string]string{"Authorization": "Bearer nope"}, 401, "INVALID_TOKEN"},
		{"unknown x-api-key", map[string]string{"X-Api-Key": "nope"}, 401, "INVALID_TOKEN"},
		{"the digest itself is not a key", map[string]string{"X-Api-Key": hashedKeySpec()}, 401, "INVALID_TOKEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, usedBefore := f.up.count(), f.used(t, "acme", 1000)
			resp, body := do(t, "GET", f.url+"/crm/v2/users", tt.give, "")
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus == 401 {
				if !strings.Contains(body, `"code":"`+tt.wantCode+`"`) || !strings.Contains(body, `"status":"error"`) {
					t.Errorf("body %s, want code %s", body, tt.wantCode)
				}
				if f.up.count() != before {
					t.Error("a 401 call was forwarded")
				}
				if f.used(t, "acme", 1000) != usedBefore {
					t.Error("a 401 call was charged")
				}
				if resp.Header.Get("X-Credits-Charged") != "0" {
					t.Errorf("X-Credits-Charged = %q, want 0", resp.Header.Get("X-Credits-Charged"))
				}
				return
			}
			if f.up.count() != before+1 {
				t.Error("not forwarded")
			}
			// Credentials are forwarded unchanged by default.
			got := f.up.last().Header
			for k, v := range tt.give {
				if got.Get(k) != v {
					t.Errorf("upstream got %s %q, want %q", k, got.Get(k), v)
				}
			}
		})
	}
}

func TestIdentifyHeaderMode(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Mode = OrgModeHeader; c.OrgHeader = "X-Tenant" })
	tests := []struct {
		give       map[string]string
		wantStatus int
	}{
		{map[string]string{"X-Tenant": "acme"}, 200},
		{map[string]string{"X-Tenant": "nobody"}, 401},
		{map[string]string{"X-Org-Id": "acme"}, 401},
		{map[string]string{"Authorization": "Bearer acme-key"}, 401}, // keys do not count in header mode
		{nil, 401},
	}
	for _, tt := range tests {
		resp, body := do(t, "GET", f.url+"/crm/v2/users", tt.give, "")
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("%v: status %d, want %d (%s)", tt.give, resp.StatusCode, tt.wantStatus, body)
		}
	}
	if f.used(t, "acme", 1000) != 1 {
		t.Errorf("used = %d, want 1", f.used(t, "acme", 1000))
	}
}

func TestCostsCharged(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		method, path string
		want         string
	}{
		{"GET", "/crm/v2/users", "1"},
		{"GET", "/crm/v8/settings/modules", "1"},
		{"GET", "/crm/v3/Leads/deleted", "2"},
		{"GET", "/crm/v5/Leads?cvid=1234", "3"},
		{"POST", "/crm/v2.1/Leads/77/actions/convert", "5"},
		{"POST", "/crm/bulk/v2/read", "50"},
		{"POST", "/crm/bulk/v8/write", "500"},
		{"GET", "/anything/else", "1"},
	}
	var total int64
	for _, tt := range tests {
		resp, body := do(t, tt.method, f.url+tt.path, map[string]string{"X-Api-Key": "acme-key"}, "")
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", tt.method, tt.path, resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Credits-Charged"); got != tt.want {
			t.Errorf("%s %s: X-Credits-Charged %s, want %s", tt.method, tt.path, got, tt.want)
		}
		var n int64
		for _, c := range tt.want {
			n = n*10 + int64(c-'0')
		}
		total += n
		if got := resp.Header.Get("X-Ratelimit-Remaining"); got != itoa(1000-total) {
			t.Errorf("%s %s: X-RateLimit-Remaining %s, want %d", tt.method, tt.path, got, 1000-total)
		}
	}
	if got := f.used(t, "acme", 1000); got != total {
		t.Fatalf("window holds %d, charged %d", got, total)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestTooManyRequests(t *testing.T) {
	f := newFixture(t, nil)
	key := map[string]string{"Authorization": "Bearer tiny-key"}
	for range 10 {
		if resp, _ := do(t, "GET", f.url+"/crm/v2/users", key, ""); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	f.now.Add((90 * time.Minute).Milliseconds())
	forwarded := f.up.count()
	resp, body := do(t, "GET", f.url+"/crm/v2/users", key, "")
	if resp.StatusCode != 429 {
		t.Fatalf("status %d, want 429", resp.StatusCode)
	}
	const want = `{"code":"TOO_MANY_REQUESTS","details":{},"message":"Many requests fired than the allowed limit for the past 24 hours.","status":"error"}`
	if body != want { // byte for byte, as the README shows it
		t.Fatalf("body\n%s\nwant\n%s", body, want)
	}
	if f.up.count() != forwarded {
		t.Error("a rejected call was forwarded")
	}
	// Credits spent at t0 (bucket [00:00, 00:01)) free at 00:01 next day; now is 01:30.
	wantWait := t0.Truncate(time.Minute).Add(time.Minute + 24*time.Hour).Sub(t0.Add(90 * time.Minute))
	wantSecs := itoa(int64(wantWait / time.Second))
	h := resp.Header
	for k, v := range map[string]string{
		"Retry-After":           wantSecs,
		"X-Ratelimit-Limit":     "10",
		"X-Ratelimit-Remaining": "0",
		"X-Ratelimit-Reset":     wantSecs,
		"X-Credits-Charged":     "0",
		"Ratelimit-Policy":      `"credits";q=10;w=86400`,
		"Ratelimit":             `"credits";r=0;t=` + wantSecs,
		"Content-Type":          "application/json; charset=utf-8",
	} {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// Waiting exactly Retry-After is enough.
	f.now.Add(wantWait.Milliseconds())
	if resp, _ := do(t, "GET", f.url+"/crm/v2/users", key, ""); resp.StatusCode != 200 {
		t.Fatalf("after Retry-After: status %d", resp.StatusCode)
	}
}

func TestCostExceedsWholeLimit(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := do(t, "POST", f.url+"/crm/bulk/v2/read", map[string]string{"Authorization": "Bearer tiny-key"}, "")
	if resp.StatusCode != 422 || !strings.Contains(body, `"code":"COST_EXCEEDS_LIMIT"`) ||
		!strings.Contains(body, `"cost":50`) || !strings.Contains(body, `"limit":10`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Retry-After") != "" {
		t.Error("Retry-After on a call that can never succeed")
	}
	if f.up.count() != 0 || f.used(t, "tiny", 10) != 0 {
		t.Error("forwarded or charged")
	}
}

func TestRefundWhenUpstreamUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	f := newFixture(t, func(c *Config) { c.Upstream, _ = url.Parse(dead) })
	resp, body := do(t, "POST", f.url+"/crm/bulk/v2/read", map[string]string{"X-Api-Key": "acme-key"}, "")
	if resp.StatusCode != 502 || !strings.Contains(body, `"code":"BAD_GATEWAY"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if got := f.used(t, "acme", 1000); got != 0 {
		t.Fatalf("used %d after a 502 of the gateway, want 0 (refunded)", got)
	}
	if resp.Header.Get("X-Credits-Charged") != "0" || resp.Header.Get("X-Ratelimit-Remaining") != "1000" {
		t.Errorf("headers after refund: charged %s remaining %s", resp.Header.Get("X-Credits-Charged"), resp.Header.Get("X-Ratelimit-Remaining"))
	}
}

func TestRefundWhenUpstreamTimesOut(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.UpstreamTimeout = 100 * time.Millisecond })
	release := make(chan struct{})
	defer close(release)
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
	resp, body := do(t, "POST", f.url+"/crm/bulk/v2/read", map[string]string{"X-Api-Key": "acme-key"}, "")
	if resp.StatusCode != 504 || !strings.Contains(body, `"code":"GATEWAY_TIMEOUT"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if got := f.used(t, "acme", 1000); got != 0 {
		t.Fatalf("used %d after a 504, want 0", got)
	}
}

func TestUpstreamErrorsKeepTheCharge(t *testing.T) {
	f := newFixture(t, nil)
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-RateLimit-Remaining", "999999") // the upstream's own idea
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(503)
	}
	resp, _ := do(t, "POST", f.url+"/crm/bulk/v2/read", map[string]string{"X-Api-Key": "acme-key"}, "")
	if resp.StatusCode != 503 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := f.used(t, "acme", 1000); got != 50 {
		t.Fatalf("used %d, want 50: an upstream answer keeps the charge", got)
	}
	if v := resp.Header.Values("X-Ratelimit-Remaining"); len(v) != 1 || v[0] != "950" {
		t.Errorf("X-RateLimit-Remaining = %v, want only the gateway's 950", v)
	}
	if resp.Header.Get("Retry-After") != "7" {
		t.Errorf("the upstream's Retry-After was dropped")
	}
}

func TestShadowNeverRejects(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Shadow = true })
	key := map[string]string{"X-Api-Key": "tiny-key"}
	for i := range 15 {
		resp, _ := do(t, "GET", f.url+"/crm/v2/users", key, "")
		if resp.StatusCode != 200 {
			t.Fatalf("call %d: status %d in shadow mode", i, resp.StatusCode)
		}
		wantCharged := "1"
		if i >= 10 {
			wantCharged = "0"
		}
		if got := resp.Header.Get("X-Credits-Charged"); got != wantCharged {
			t.Errorf("call %d: X-Credits-Charged %s, want %s", i, got, wantCharged)
		}
	}
	if f.up.count() != 15 {
		t.Errorf("forwarded %d of 15", f.up.count())
	}
	if got := f.used(t, "tiny", 10); got != 10 {
		t.Errorf("used %d, want 10 (shadow counts what enforcement would admit)", got)
	}
}

// brokenStore fails every call, like an unreachable Redis.
type brokenStore struct{ windowOnly }

func (brokenStore) Spend(context.Context, limiter.Key, int64, time.Time) (limiter.Decision, error) {
	return limiter.Decision{}, errors.New("dial tcp 127.0.0.1:1: connection refused")
}
func (brokenStore) Refund(context.Context, limiter.Key, limiter.Decision) error  { return nil }
func (brokenStore) Release(context.Context, limiter.Key, limiter.Decision) error { return nil }

func TestFailModes(t *testing.T) {
	tests := []struct {
		name       string
		failOpen   bool
		wantStatus int
		forwarded  int
	}{
		{"open", true, 200, 1},
		{"closed", false, 503, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.Store, c.StoreLacks = brokenStore{}, lacksAll; c.FailOpen = tt.failOpen })
			resp, body := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
			if resp.StatusCode != tt.wantStatus || f.up.count() != tt.forwarded {
				t.Fatalf("status %d forwarded %d; want %d, %d (%s)", resp.StatusCode, f.up.count(), tt.wantStatus, tt.forwarded, body)
			}
			if resp.Header.Get("X-Credits-Charged") != "0" {
				t.Error("X-Credits-Charged should be 0 when the store could not decide")
			}
			// The policy is known even when the window is not.
			if resp.Header.Get("X-Ratelimit-Limit") != "1000" || resp.Header.Get("Ratelimit-Policy") != `"credits";q=1000;w=86400` {
				t.Errorf("policy fields missing: %v", resp.Header)
			}
			if !tt.failOpen && (!strings.Contains(body, `"code":"SERVICE_UNAVAILABLE"`) || resp.Header.Get("Retry-After") == "") {
				t.Errorf("fail closed: %s", body)
			}
			if strings.Contains(body, "127.0.0.1") {
				t.Errorf("the store error leaked into the body: %s", body)
			}
		})
	}
}

func TestStripCredentials(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.StripCredentials = true })
	do(t, "GET", f.url+"/crm/v2/users", map[string]string{"Authorization": "Bearer acme-key", "X-Other": "kept"}, "")
	do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
	// An alias that PHP or WSGI would read as X-Api-Key goes too.
	do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key", "X_API_KEY": "acme-key"}, "")
	f.up.mu.Lock()
	defer f.up.mu.Unlock()
	if len(f.up.calls) != 3 {
		t.Fatalf("forwarded %d calls, want 3", len(f.up.calls))
	}
	for _, r := range f.up.calls {
		if r.Header.Get("Authorization") != "" || r.Header.Get("X-Api-Key") != "" || r.Header.Get("X_api_key") != "" {
			t.Errorf("credential forwarded: %v", r.Header)
		}
	}
	if f.up.calls[0].Header.Get("X-Other") != "kept" {
		t.Error("other headers must be forwarded")
	}
}

func TestBodyAndPathForwarded(t *testing.T) {
	f := newFixture(t, nil)
	body := `{"data":[{"Last_Name":"Ünïcødé"}]}`
	resp, _ := do(t, "POST", f.url+"/crm/v2/Leads?trigger=workflow", map[string]string{"X-Api-Key": "acme-key", "Content-Type": "application/json"}, body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r := f.up.last()
	if r.URL.Path != "/crm/v2/Leads" || r.URL.RawQuery != "trigger=workflow" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("upstream got %s %s %v", r.URL.Path, r.URL.RawQuery, r.Header)
	}
	if r.Header.Get("X-Forwarded-For") == "" {
		t.Error("no X-Forwarded-For")
	}
	f.up.mu.Lock()
	got := f.up.bodies[len(f.up.bodies)-1]
	f.up.mu.Unlock()
	if got != body {
		t.Errorf("upstream body %q, want %q", got, body)
	}
}

// TestDotSegmentsPricedAsForwarded: a path that resolves to a bulk write is priced and
// forwarded as one.
func TestDotSegmentsPricedAsForwarded(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := doRaw(t, f.url, "POST /crm/v2/Leads/../../bulk/v2/write HTTP/1.1\r\nHost: x\r\nX-Api-Key: acme-key\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	if !strings.Contains(resp, "200 OK") || !strings.Contains(resp, "X-Credits-Charged: 500") {
		t.Fatalf("response:\n%s%s", resp, body)
	}
	if p := f.up.last().URL.Path; p != "/crm/bulk/v2/write" {
		t.Errorf("upstream path %q", p)
	}
}

// TestOddRequestsDoNotPanic sends requests a client library would not produce.
func TestOddRequestsDoNotPanic(t *testing.T) {
	f := newFixture(t, nil)
	for _, raw := range []string{
		"OPTIONS * HTTP/1.1\r\nHost: x\r\nX-Api-Key: acme-key\r\nConnection: close\r\n\r\n",
		"GET http://other.example/crm/v2/users HTTP/1.1\r\nHost: x\r\nX-Api-Key: acme-key\r\nConnection: close\r\n\r\n",
		"GET /%2e%2e/%2e%2e/crm HTTP/1.1\r\nHost: x\r\nX-Api-Key: acme-key\r\nConnection: close\r\n\r\n",
		"GET /////// HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\nConnection: close\r\n\r\n",
		"GET /crm/v2/users?cvid=%zz HTTP/1.1\r\nHost: x\r\nAuthorization: Zoho-oauthtoken  acme-key \r\nConnection: close\r\n\r\n",
		"BREW /pot HTTP/1.1\r\nHost: x\r\nX-Api-Key: acme-key\r\nConnection: close\r\n\r\n",
	} {
		resp, _ := doRaw(t, f.url, raw)
		if !strings.HasPrefix(resp, "HTTP/1.1 ") {
			t.Errorf("%q: no HTTP answer: %q", raw, resp)
		}
	}
	// The gateway still serves.
	if resp, _ := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, ""); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func doRaw(t *testing.T, base, raw string) (head, body string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(conn)
	h, bd, _ := strings.Cut(string(b), "\r\n\r\n")
	return h, bd
}

func TestShadowFailsOpenOnStoreErrors(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Store, c.StoreLacks = brokenStore{}, lacksAll; c.Shadow = true; c.FailOpen = false })
	resp, _ := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
	if resp.StatusCode != 200 || f.up.count() != 1 {
		t.Fatalf("shadow mode with a broken store: status %d, forwarded %d", resp.StatusCode, f.up.count())
	}
}

// TestEscapedQueryNamePriced: the upstream decodes "c%76id" to "cvid"; so does the pricing.
func TestEscapedQueryNamePriced(t *testing.T) {
	f := newFixture(t, nil)
	resp, _ := do(t, "GET", f.url+"/crm/v5/Leads?c%76id=1234", map[string]string{"X-Api-Key": "acme-key"}, "")
	if got := f.up.last().URL.Query().Get("cvid"); got != "1234" {
		t.Fatalf("upstream cvid = %q", got)
	}
	if got := resp.Header.Get("X-Credits-Charged"); got != "3" {
		t.Errorf("charged %s credits for a cvid call, want 3", got)
	}
}

// TestBrokenClientBodyKeepsCharge: a client whose chunked body breaks off is not refunded as
// if the upstream were down (the upstream already had the headers and may have acted).
func TestBrokenClientBodyKeepsCharge(t *testing.T) {
	f := newFixture(t, nil)
	head, body := doRaw(t, f.url, "POST /crm/bulk/v2/read HTTP/1.1\r\nHost: x\r\nX-Api-Key: acme-key\r\n"+
		"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 400 ") || !strings.Contains(body, `"code":"INVALID_REQUEST"`) {
		t.Fatalf("response:\n%s\n\n%s", head, body)
	}
	if got := f.used(t, "acme", 1000); got != 50 {
		t.Errorf("used %d, want the 50 credits kept", got)
	}
}

// TestCostExceedsLimitDoesNotInviteRetry: t must not be 0 for a call that can never succeed
// while the window holds credits.
func TestCostExceedsLimitDoesNotInviteRetry(t *testing.T) {
	f := newFixture(t, nil)
	do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "tiny-key"}, "")
	resp, _ := do(t, "POST", f.url+"/crm/bulk/v2/read", map[string]string{"X-Api-Key": "tiny-key"}, "")
	if resp.StatusCode != 422 || resp.Header.Get("X-Ratelimit-Reset") == "0" || resp.Header.Get("Retry-After") != "" {
		t.Fatalf("status %d, reset %q, retry-after %q", resp.StatusCode, resp.Header.Get("X-Ratelimit-Reset"), resp.Header.Get("Retry-After"))
	}
}

// TestSetOrgs: a new set of orgs takes effect for new calls; an org that stays keeps its window.
func TestSetOrgs(t *testing.T) {
	f := newFixture(t, nil)
	do(t, "POST", f.url+"/crm/bulk/v2/read", map[string]string{"X-Api-Key": "acme-key"}, "") // 50 of 1000
	list, err := orgs.Parse("acme:limit=60,keys=acme-key2;newco:limit=5,keys=new-key")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := orgs.NewDirectory(list)
	if err != nil {
		t.Fatal(err)
	}
	f.gw.SetOrgs(dir)
	if resp, _ := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, ""); resp.StatusCode != 401 {
		t.Errorf("old key: status %d, want 401", resp.StatusCode)
	}
	resp, _ := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key2"}, "")
	if resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Limit") != "60" || resp.Header.Get("X-Ratelimit-Remaining") != "9" {
		t.Errorf("acme after reload: %d limit %s remaining %s; want 200, 60, 9 (its 51 credits kept)",
			resp.StatusCode, resp.Header.Get("X-Ratelimit-Limit"), resp.Header.Get("X-Ratelimit-Remaining"))
	}
	if resp, _ := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "new-key"}, ""); resp.StatusCode != 200 {
		t.Errorf("new org: status %d", resp.StatusCode)
	}
}

// TestOrgStatePreparedOnFirstCall: an org's state is prepared by its first call, not when the
// orgs are loaded (a million orgs must start in seconds), and a reload prepares again only the
// orgs in use, each keeping the store's last word on what it has left.
func TestOrgStatePreparedOnFirstCall(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.FailLocal = true }) // which keeps what orgs have left
	ros := f.gw.orgs.Load()
	for _, id := range []string{"acme", "tiny", "pro"} {
		if ros.prepared(id) != nil {
			t.Fatalf("%s prepared before any call", id)
		}
	}
	do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
	acme := ros.prepared("acme")
	if acme == nil || acme.remaining.Load() != 999 {
		t.Fatalf("acme after a call: %v", acme)
	}
	if ros.prepared("tiny") != nil {
		t.Fatal("tiny prepared by acme's call")
	}
	if again, _ := f.gw.stateByID(ros, "acme"); again != acme {
		t.Fatal("acme prepared twice")
	}

	list, err := orgs.Parse("tiny:limit=10,keys=tiny-key;acme:limit=60,keys=acme-key")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := orgs.NewDirectory(list)
	if err != nil {
		t.Fatal(err)
	}
	f.gw.SetOrgs(dir)
	next := f.gw.orgs.Load()
	if next.prepared("tiny") != nil {
		t.Error("tiny prepared by the reload")
	}
	if t2 := next.prepared("acme"); t2 == nil || t2 == acme || t2.remaining.Load() != 999 || t2.key.Limit != 60 {
		t.Errorf("acme after the reload: %+v, want a new state with limit 60 and 999 left", t2)
	}
}

// TestInterimResponseKeepsLimitFields: an upstream that answers 100 Continue before its final
// response (as most do for Expect: 100-continue) must not take the rate-limit fields away
// from the final response: ReverseProxy sends the header map with the 1xx and clears it.
func TestInterimResponseKeepsLimitFields(t *testing.T) {
	up := rawUpstream(t, "HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Ratelimit-Limit: 7\r\n\r\nok", false)
	f := newFixture(t, func(c *Config) { c.Upstream, _ = url.Parse(up) })
	for _, method := range []string{"GET", "POST"} {
		resp, body := do(t, method, f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key", "Expect": "100-continue"}, "x")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("%s: %d %q", method, resp.StatusCode, body)
		}
		for _, k := range []string{"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset", "Ratelimit-Policy", "Ratelimit", "X-Credits-Charged"} {
			if resp.Header.Get(k) == "" {
				t.Errorf("%s: the final response has no %s: %v", method, k, resp.Header)
			}
		}
		if got := resp.Header.Get("X-Ratelimit-Limit"); got != "1000" {
			t.Errorf("%s: X-Ratelimit-Limit %q, want the gateway's 1000, not the upstream's", method, got)
		}
	}
}

// TestQueryForwardedAsPriced: ReverseProxy drops query parameters it cannot parse (with ';'
// or bad escapes) before Rewrite; the gateway prices them (';' separates, as many servers
// read it), so it must forward the query as the client sent it, after the upstream URL's own.
func TestQueryForwardedAsPriced(t *testing.T) {
	tests := []struct {
		upstreamQuery, give, want string
	}{
		{"", "a=1;b=2&c=3&cvid=5", "a=1;b=2&c=3&cvid=5"},
		{"", "x=%zz&cvid=1", "x=%zz&cvid=1"},
		{"", "", ""},
		{"tenant=7", "ids=1,2;ids=3", "tenant=7&ids=1,2;ids=3"},
		{"tenant=7", "", "tenant=7"},
	}
	for _, tt := range tests {
		f := newFixture(t, func(c *Config) { c.Upstream.RawQuery = tt.upstreamQuery })
		target := f.url + "/crm/v2/Leads"
		if tt.give != "" {
			target += "?" + tt.give
		}
		resp, body := do(t, "GET", target, map[string]string{"X-Api-Key": "acme-key"}, "")
		if resp.StatusCode != 200 {
			t.Fatalf("%q: %d %s", tt.give, resp.StatusCode, body)
		}
		if got := f.up.last().URL.RawQuery; got != tt.want {
			t.Errorf("upstream query %q ?%q: got %q, want %q", tt.upstreamQuery, tt.give, got, tt.want)
		}
	}
}

// TestSlowBodyTimesOut: a client that declares a body to count and sends it too slowly is
// answered 400 once BodyTimeout passes, uncharged and not forwarded, with the policy fields.
func TestSlowBodyTimesOut(t *testing.T) {
	for _, declared := range []int{10_000_000, 100_000} { // the server drains a small rest before answering
		slowBody(t, declared)
	}
}

func slowBody(t *testing.T, declared int) {
	f := newFixture(t, func(c *Config) { c.BodyTimeout = 200 * time.Millisecond })
	c, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("POST /crm/v2/Leads HTTP/1.1\r\nHost: x\r\nX-Api-Key: acme-key\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(declared) + "\r\n\r\n{\"data\":["))
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("declared %d: no answer 3s after a 200ms body timeout: %v", declared, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(body), `"code":"INVALID_REQUEST"`) {
		t.Fatalf("slow body: %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Credits-Charged") != "0" || resp.Header.Get("Ratelimit-Policy") == "" {
		t.Errorf("fields: %v", resp.Header)
	}
	if f.up.count() != 0 || f.used(t, "acme", 1000) != 0 {
		t.Errorf("forwarded %d, used %d; want neither", f.up.count(), f.used(t, "acme", 1000))
	}
}

// TestHalfClosedBodyAnswered400: a client that half-closes its socket mid-body (its request
// context ends) still reads the answer: 400, not an empty 200.
func TestHalfClosedBodyAnswered400(t *testing.T) {
	f := newFixture(t, nil)
	f.up.handler = func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }
	c, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("POST /crm/v2/Leads/1/actions/convert HTTP/1.1\r\nHost: x\r\nX-Api-Key: acme-key\r\nContent-Length: 1000\r\n\r\n{\"data\":[{}]"))
	time.Sleep(50 * time.Millisecond) // the call is on its way upstream
	_ = c.(*net.TCPConn).CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(body), `"code":"INVALID_REQUEST"`) {
		t.Fatalf("half-closed body: %d %q", resp.StatusCode, body)
	}
}

// rawServer accepts loopback connections and calls handle for each request read from them;
// the connection is closed when handle returns false. It returns the server's URL.
func rawServer(t *testing.T, handle func(c net.Conn, req *http.Request) (keepOpen bool)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil || !handle(c, req) {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// rawUpstream answers every request as written: interim, then (once it has read the request
// body) final, closing the connection after them if closeAfter.
func rawUpstream(t *testing.T, interim, final string, closeAfter bool) string {
	t.Helper()
	return rawServer(t, func(c net.Conn, req *http.Request) bool {
		_, _ = c.Write([]byte(interim))
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = c.Write([]byte(final))
		return !closeAfter
	})
}

// TestRefundAfterInterimKeepsRefundFields: an upstream that sends a 103 and then drops the
// connection is refunded, and the 502 says so; the held fields must not overwrite that.
func TestRefundAfterInterimKeepsRefundFields(t *testing.T) {
	up := rawUpstream(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", "", true)
	f := newFixture(t, func(c *Config) { c.Upstream, _ = url.Parse(up) })
	resp, body := do(t, "POST", f.url+"/crm/bulk/v2/read", map[string]string{"X-Api-Key": "acme-key"}, "")
	if resp.StatusCode != 502 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if got := f.used(t, "acme", 1000); got != 0 {
		t.Fatalf("used %d, want 0 (refunded)", got)
	}
	if c, r := resp.Header.Values("X-Credits-Charged"), resp.Header.Get("X-Ratelimit-Remaining"); len(c) != 1 || c[0] != "0" || r != "1000" {
		t.Errorf("refunded 502 after a 103: X-Credits-Charged %q, X-Ratelimit-Remaining %q; want [0] and 1000", c, r)
	}
}

// TestUpstreamInterimLimitFieldsDropped: the upstream's own limit fields on a 1xx never reach
// the final response beside the gateway's.
func TestUpstreamInterimLimitFieldsDropped(t *testing.T) {
	up := rawUpstream(t, "HTTP/1.1 103 Early Hints\r\nX-Credits-Charged: 99\r\nX-Ratelimit-Remaining: 7\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)
	f := newFixture(t, func(c *Config) { c.Upstream, _ = url.Parse(up) })
	resp, body := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	for k, want := range map[string]string{"X-Credits-Charged": "1", "X-Ratelimit-Remaining": "999"} {
		if v := resp.Header.Values(k); len(v) != 1 || v[0] != want {
			t.Errorf("final response %s = %q, want [%s]", k, v, want)
		}
	}
}

// TestUpgradeAfterInterimCarriesLimitFields: a 101 (written through a hijack, not
// WriteHeader) after a 103 carries the gateway's fields.
func TestUpgradeAfterInterimCarriesLimitFields(t *testing.T) {
	up := rawUpstream(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", false)
	f := newFixture(t, func(c *Config) { c.Upstream, _ = url.Parse(up) })
	c, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("GET /crm/v2/users HTTP/1.1\r\nHost: x\r\nX-Api-Key: acme-key\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 103 {
			continue
		}
		if resp.StatusCode != 101 || resp.Header.Get("X-Credits-Charged") != "1" || resp.Header.Get("Ratelimit-Policy") == "" {
			t.Fatalf("final %d without the rate-limit fields: %v", resp.StatusCode, resp.Header)
		}
		return
	}
}

// TestStalledOversizeBodyAnswered413: a body over MaxBodyBytes (declared, or found so while
// chunked) from a client that then stalls is answered 413 at once, the connection closed.
func TestStalledOversizeBodyAnswered413(t *testing.T) {
	const head = "POST /crm/v2/Leads HTTP/1.1\r\nHost: x\r\nX-Api-Key: acme-key\r\nContent-Type: application/json\r\n"
	chunk := `{"data":[` + strings.Repeat(`{"a":1},`, 150)
	for name, req := range map[string]string{
		"declared": head + "Content-Length: 2000\r\n\r\n{\"data\":[",
		"chunked":  head + "Transfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(len(chunk)), 16) + "\r\n" + chunk + "\r\n",
	} {
		f := newFixture(t, func(c *Config) { c.BodyTimeout = time.Minute; c.MaxBodyBytes = 1000 })
		c, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte(req)) // ...then nothing more
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("%s: no answer 3s after a body over MaxBodyBytes: %v", name, err)
		}
		if resp.StatusCode != 413 {
			t.Fatalf("%s: status %d, want 413", name, resp.StatusCode)
		}
	}
}
