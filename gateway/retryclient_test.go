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
