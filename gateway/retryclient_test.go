package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// TestRetryClientLeavesCostExceedsLimitAlone: go-retryablehttp's default policy retries every
// 429; a call that costs more than the whole limit can never succeed, so it is answered with a
// status that policy does not retry, and the client sends it once.
func TestRetryClientLeavesCostExceedsLimitAlone(t *testing.T) {
	f := newFixture(t, nil)
	var calls atomic.Int64
	counted := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		f.gw.ServeHTTP(w, r)
	}))
	t.Cleanup(counted.Close)
	c := retryablehttp.NewClient()
	c.RetryMax, c.RetryWaitMin, c.RetryWaitMax, c.Logger = 3, time.Millisecond, 10*time.Millisecond, nil
	req, _ := retryablehttp.NewRequest("POST", counted.URL+"/crm/bulk/v2/read", nil) // 50 > tiny's 10
	req.Header.Set("X-Api-Key", "tiny-key")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 422 || calls.Load() != 1 {
		t.Fatalf("status %d after %d calls; want 422 after 1", resp.StatusCode, calls.Load())
	}
}

// TestTooManyRequestsNamesTheWindow: the 429's message says the window in force; for 24
// hours it is the exact body the README shows.
func TestTooManyRequestsNamesTheWindow(t *testing.T) {
	tests := []struct {
		give time.Duration
		want string
	}{
		{24 * time.Hour, "the past 24 hours."},
		{time.Hour, "the past 1 hour."},
		{10 * time.Minute, "the past 10 minutes."},
		{90 * time.Second, "the past 90 seconds."},
		{1500 * time.Millisecond, "the past 1500 milliseconds."},
	}
	for _, tt := range tests {
		f := newFixture(t, func(c *Config) { c.Window = tt.give })
		for range 3 {
			do(t, "POST", f.url+"/crm/v2/Leads/1/actions/convert", map[string]string{"X-Api-Key": "tiny-key"}, "")
		}
		resp, body := do(t, "POST", f.url+"/crm/v2/Leads/1/actions/convert", map[string]string{"X-Api-Key": "tiny-key"}, "")
		if resp.StatusCode != 429 || !strings.HasSuffix(body, tt.want+`","status":"error"}`) {
			t.Errorf("window %s: %d %s", tt.give, resp.StatusCode, body)
		}
		if tt.give == 24*time.Hour && body != string(tooManyRequestsBody) {
			t.Errorf("24h body %s", body)
		}
	}
}

// TestForwardedKept: an RFC 7239 Forwarded field from a proxy in front reaches the upstream,
// with this hop's element appended, as X-Forwarded-For does.
func TestForwardedKept(t *testing.T) {
	f := newFixture(t, nil)
	do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key", "Forwarded": "for=192.0.2.60;proto=https"}, "")
	got := f.up.last().Header["Forwarded"]
	host := strings.TrimPrefix(f.url, "http://")
	want := []string{"for=192.0.2.60;proto=https", `for="127.0.0.1";host="` + host + `";proto=http`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("Forwarded upstream %q, want %q", got, want)
	}
	do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
	if got := f.up.last().Header["Forwarded"]; got != nil {
		t.Fatalf("Forwarded %q added to a call that had none", got)
	}
}

// TestRedirectsStayOnTheGateway: an upstream's absolute redirect to its own address is
// pointed back at the gateway, so a client following it stays there and is charged; other
// hosts' URLs are left alone; with PreserveHost the upstream sees the client's Host.
func TestRedirectsStayOnTheGateway(t *testing.T) {
	var upURL string
	f := newFixture(t, nil)
	upURL = f.up.URL
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/crm/v2/users":
			w.Header().Set("Content-Location", upURL+"/crm/v2/users?x=1")
			w.Header().Set("Refresh", "5; url="+upURL+"/crm/v2/org")
			http.Redirect(w, r, upURL+"/crm/v2/settings/modules?page=2", http.StatusFound)
		case "/crm/v2/settings/roles":
			http.Redirect(w, r, "https://elsewhere.example/x", http.StatusFound)
		default:
			_, _ = w.Write([]byte("ok"))
		}
	}
	resp, _ := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
	// do follows redirects with the same headers on the same host: two calls, both charged.
	if resp.StatusCode != 200 || resp.Request.URL.String() != f.url+"/crm/v2/settings/modules?page=2" {
		t.Fatalf("followed to %s (%d)", resp.Request.URL, resp.StatusCode)
	}
	if got := f.used(t, "acme", 1000); got != 2 {
		t.Fatalf("charged %d, want 2 (the redirect and where it led)", got)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", f.url+"/crm/v2/users", nil)
	req.Header.Set("X-Api-Key", "acme-key")
	r2, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.Header.Get("Content-Location") != f.url+"/crm/v2/users?x=1" || r2.Header.Get("Refresh") != "5; url="+f.url+"/crm/v2/org" {
		t.Errorf("Content-Location %q, Refresh %q", r2.Header.Get("Content-Location"), r2.Header.Get("Refresh"))
	}
	req, _ = http.NewRequest("GET", f.url+"/crm/v2/settings/roles", nil)
	req.Header.Set("X-Api-Key", "acme-key")
	r3, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r3.Body.Close()
	if r3.Header.Get("Location") != "https://elsewhere.example/x" {
		t.Errorf("another host's Location rewritten: %q", r3.Header.Get("Location"))
	}

	p := newFixture(t, func(c *Config) { c.PreserveHost = true })
	do(t, "GET", p.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
	if got := p.up.last().Host; got != strings.TrimPrefix(p.url, "http://") {
		t.Errorf("upstream saw Host %q with PreserveHost", got)
	}
}
