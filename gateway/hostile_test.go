package gateway

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/creditgate/creditgate/orgs"
)

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}
func gaugeValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

// leadsBound is what an upstream written in Go binds from an insert body: encoding/json
// matches the key "data" in any case, and keeps the last of duplicates.
type leadsBound struct {
	Data []json.RawMessage `json:"data"`
}

func bound(t *testing.T, body string) int {
	t.Helper()
	var b leadsBound
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return len(b.Data)
}

// recordsKey is records(n) under another spelling of the key.
func recordsKey(key string, n int) string {
	return `{"` + key + `"` + strings.TrimPrefix(records(n), `{"data"`)
}

// TestRecordKeysCountedInAnyCase: an insert is charged for the records the upstream binds
// however the key is spelled, and for the larger reading of duplicates.
func TestRecordKeysCountedInAnyCase(t *testing.T) {
	f := newFixture(t, nil)
	one := records(1)
	tests := []struct {
		name string
		body string
		want int64
	}{
		{"upper case", recordsKey("DATA", 1000), 100},
		{"mixed case", recordsKey("Data", 55), 6},
		{"escaped upper case", recordsKey(`\u0044ATA`, 30), 3},
		{"small then large", one[:len(one)-1] + `,` + strings.TrimPrefix(recordsKey("DATA", 1000), "{"), 100},
		{"large then small", recordsKey("DATA", 1000)[:len(recordsKey("DATA", 1000))-1] + `,"data":[1]}`, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.used(t, "acme", 1000)
			resp, body := do(t, "POST", f.url+"/crm/v8/Leads", map[string]string{"X-Api-Key": "acme-key"}, tt.body)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			charged := f.used(t, "acme", 1000) - before
			if charged != tt.want || resp.Header.Get("X-Credits-Charged") != itoa(tt.want) {
				t.Errorf("charged %d (field %s), want %d", charged, resp.Header.Get("X-Credits-Charged"), tt.want)
			}
			if n := bound(t, tt.body); int64(n) > charged*10 {
				t.Errorf("encoding/json binds %d records; %d credits cover %d", n, charged, charged*10)
			}
		})
	}
}

// TestCompressedBodiesCounted: bodies sent with a content coding are decoded to count their
// records, forwarded as sent, and bounded when decoded.
func TestCompressedBodiesCounted(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.MaxInflateRatio, c.MaxBodyBytes, c.BodyBufferOrgBytes = 100, 4<<20, 12<<20
		c.LimitOf = func(*orgs.Org) int64 { return 1_000_000 }
	})
	plain := []byte(records(1000))
	encode := func(coding string, b []byte) []byte {
		var buf bytes.Buffer
		var w io.WriteCloser
		switch coding {
		case "gzip":
			w = gzip.NewWriter(&buf)
		case "deflate":
			w = zlib.NewWriter(&buf)
		case "raw-deflate":
			w, _ = flate.NewWriter(&buf, flate.BestSpeed)
		case "zstd":
			w, _ = zstd.NewWriter(&buf)
		}
		_, _ = w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	tests := []struct {
		name, header string
		body         []byte
		status       int
		want         int64
	}{
		{"gzip", "gzip", encode("gzip", plain), 200, 100},
		{"x-gzip upper case", "X-GZIP", encode("gzip", plain), 200, 100},
		{"deflate (zlib)", "deflate", encode("deflate", plain), 200, 100},
		{"deflate (raw)", "deflate", encode("raw-deflate", plain), 200, 100},
		{"zstd", "zstd", encode("zstd", plain), 200, 100},
		{"two codings", "gzip, zstd", encode("zstd", encode("gzip", plain)), 200, 100},
		{"identity", "identity", plain, 200, 100},
		{"small gzip", "gzip", encode("gzip", []byte(records(21))), 200, 3},
		{"not gzip at all", "gzip", plain, 200, 100}, // not decodable: read as sent, at least the rule's cost
		{"unknown coding", "br", []byte("\x1b\x00"), 200, 10},
		{"unknown coding over plain JSON", "br", plain, 200, 100}, // an upstream may ignore the coding
		{"made-up coding over plain JSON", "x-none", plain, 200, 100},
		{"three codings", "gzip, gzip, gzip", encode("gzip", encode("gzip", encode("gzip", plain))), 200, 10},
		{"bomb past the ratio", "gzip", encode("gzip", bytes.Repeat([]byte(" "), 3<<20)), 413, 0},
		{"decoded past the limit", "gzip", encode("gzip", append(append([]byte(`{"data":[`), bytes.Repeat([]byte(`{"Last_Name":"x`), 300_000)...), []byte(`"}]}`)...)), 413, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, arrived := f.used(t, "acme", 1_000_000), f.up.count()
			resp, body := do(t, "POST", f.url+"/crm/v8/Leads",
				map[string]string{"X-Api-Key": "acme-key", "Content-Encoding": tt.header, "Content-Type": "application/json"}, string(tt.body))
			if resp.StatusCode != tt.status {
				t.Fatalf("%d %s, want %d", resp.StatusCode, body, tt.status)
			}
			if got := f.used(t, "acme", 1_000_000) - before; got != tt.want {
				t.Errorf("charged %d, want %d", got, tt.want)
			}
			if tt.status != 200 {
				if f.up.count() != arrived || !strings.Contains(body, `"code":"REQUEST_ENTITY_TOO_LARGE"`) {
					t.Errorf("forwarded %d, body %s", f.up.count()-arrived, body)
				}
				return
			}
			f.up.mu.Lock()
			got, enc := f.up.bodies[len(f.up.bodies)-1], f.up.calls[len(f.up.calls)-1].Header.Get("Content-Encoding")
			f.up.mu.Unlock()
			if got != string(tt.body) || enc != tt.header {
				t.Errorf("upstream got %d bytes with Content-Encoding %q; sent %d with %q", len(got), enc, len(tt.body), tt.header)
			}
		})
	}
}

// TestMethodOverridePriced: a call that names another method in an override header costs
// the dearer of the two; in strip mode the headers are removed.
func TestMethodOverridePriced(t *testing.T) {
	tests := []struct {
		name    string
		mode    MethodOverride
		method  string
		path    string
		headers map[string]string
		body    string
		want    int64
	}{
		{"override to a bulk write", "", "GET", "/crm/bulk/v8/write", map[string]string{"X-HTTP-Method-Override": "POST"}, "", 500},
		{"X-HTTP-Method", "", "GET", "/crm/bulk/v8/write", map[string]string{"X-HTTP-Method": "post"}, "", 500},
		{"X-Method-Override", "", "GET", "/crm/bulk/v8/write", map[string]string{"X-Method-Override": " POST "}, "", 500},
		{"override to a cheaper method", "", "POST", "/crm/bulk/v8/write", map[string]string{"X-HTTP-Method-Override": "GET"}, "", 500},
		{"override to an insert counts the body", "", "GET", "/crm/v8/Leads", map[string]string{"X-HTTP-Method-Override": "POST"}, records(21), 3},
		{"underscore alias", "", "GET", "/crm/bulk/v8/write", map[string]string{"X_HTTP_Method_Override": "POST"}, "", 500},
		{"strip an underscore alias", MethodOverrideStrip, "GET", "/crm/bulk/v8/write", map[string]string{"X_Http_Method": "POST"}, "", 1},
		{"two names", "", "GET", "/crm/bulk/v8/write", map[string]string{"X-HTTP-Method-Override": "PUT, POST"}, "", 500},
		{"strip", MethodOverrideStrip, "GET", "/crm/bulk/v8/write", map[string]string{"X-HTTP-Method-Override": "POST", "X-Method-Override": "POST"}, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.MethodOverride = tt.mode })
			hdr := map[string]string{"X-Api-Key": "acme-key"}
			for k, v := range tt.headers {
				hdr[k] = v
			}
			resp, body := do(t, tt.method, f.url+tt.path, hdr, tt.body)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if got := f.used(t, "acme", 1000); got != tt.want {
				t.Errorf("charged %d, want %d", got, tt.want)
			}
			last := f.up.last()
			for k := range tt.headers {
				if got, strip := last.Header.Get(k), tt.mode == MethodOverrideStrip; (got == "") != strip {
					t.Errorf("upstream saw %s: %q (strip %v)", k, got, strip)
				}
			}
		})
	}
	f := newFixture(t, nil)
	resp, body := do(t, "GET", f.url+"/crm/v8/users", map[string]string{"X-Api-Key": "acme-key", "X-HTTP-Method-Override": "A,B,C,D,E"}, "")
	if resp.StatusCode != 400 || f.up.count() != 0 || f.used(t, "acme", 1000) != 0 {
		t.Errorf("five override methods: %d %s, forwarded %d", resp.StatusCode, body, f.up.count())
	}
}

// TestTwoCredentialsRefused: a call naming two different keys (or org ids) is refused, since
// the upstream may read the other one; the same key twice is fine.
func TestTwoCredentialsRefused(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name   string
		header http.Header
		status int
	}{
		{"bearer and another X-Api-Key", http.Header{"Authorization": {"Bearer acme-key"}, "X-Api-Key": {"tiny-key"}}, 401},
		{"two Authorization values", http.Header{"Authorization": {"Bearer acme-key", "Bearer tiny-key"}}, 401},
		{"Authorization of two schemes", http.Header{"Authorization": {"Bearer acme-key", "Basic dXNlcjpwYXNz"}}, 401},
		{"two X-Api-Key values", http.Header{"X-Api-Key": {"acme-key", "tiny-key"}}, 401},
		{"X_Api_Key beside X-Api-Key", http.Header{"X-Api-Key": {"acme-key"}, "X_api_key": {"tiny-key"}}, 401},
		{"the same key twice", http.Header{"Authorization": {"Bearer acme-key"}, "X-Api-Key": {"acme-key"}}, 200},
		{"the same Authorization twice", http.Header{"Authorization": {"Zoho-oauthtoken acme-key", "Zoho-oauthtoken acme-key"}}, 200},
		{"Basic beside X-Api-Key", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}, "X-Api-Key": {"acme-key"}}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.up.count()
			req, _ := http.NewRequest("GET", f.url+"/crm/v8/users", nil)
			for k, vs := range tt.header {
				req.Header[k] = vs
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("%d %s, want %d", resp.StatusCode, b, tt.status)
			}
			if tt.status == 401 && (!strings.Contains(string(b), `"code":"INVALID_TOKEN"`) || !strings.Contains(string(b), "more than one API key") || f.up.count() != before) {
				t.Errorf("body %s, forwarded %d", b, f.up.count()-before)
			}
		})
	}
	if got := f.used(t, "tiny", 10); got != 0 {
		t.Errorf("tiny charged %d", got)
	}

	h := newFixture(t, func(c *Config) { c.Mode = OrgModeHeader })
	req, _ := http.NewRequest("GET", h.url+"/crm/v8/users", nil)
	req.Header["X-Org-Id"] = []string{"tiny", "acme"}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || h.up.count() != 0 {
		t.Errorf("two org ids in header mode: %d, forwarded %d", resp.StatusCode, h.up.count())
	}
}

// droppingUpstream answers normally (after delay) until drop is set; then it reads each
// request, counts its arrival, and closes the connection without an answer.
type droppingUpstream struct {
	url      string
	drop     atomic.Bool
	arrivals atomic.Int64 // requests read while dropping
	delay    time.Duration
}

func newDroppingUpstream(t *testing.T, delay time.Duration) *droppingUpstream {
	t.Helper()
	u := &droppingUpstream{delay: delay}
	u.url = rawServer(t, func(c net.Conn, req *http.Request) bool {
		_, _ = io.Copy(io.Discard, req.Body)
		if u.drop.Load() {
			u.arrivals.Add(1)
			return false
		}
		time.Sleep(u.delay)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	return u
}

// TestOneUpstreamAttemptPerCall: an upstream that closes every connection after reading the
// request receives each admitted call once, whatever the transport would retry; the call is
// answered 502 and refunded.
func TestOneUpstreamAttemptPerCall(t *testing.T) {
	t.Run("default transport", func(t *testing.T) { sendOnce(t, nil) })
	// An *http.Transport of the operator's own is held to one attempt too.
	t.Run("custom transport", func(t *testing.T) { sendOnce(t, &http.Transport{MaxIdleConnsPerHost: 32}) })
}

func sendOnce(t *testing.T, tr http.RoundTripper) {
	up := newDroppingUpstream(t, 200*time.Millisecond)
	f := newFixture(t, func(c *Config) { c.Upstream, _ = url.Parse(up.url); c.Transport = tr })
	// Fill the transport's pool with idle connections: each would take a retry.
	const pool = 16
	var wg sync.WaitGroup
	for range pool {
		wg.Go(func() {
			resp, body := do(t, "GET", f.url+"/crm/v8/settings/modules", map[string]string{"X-Api-Key": "acme-key"}, "")
			if resp.StatusCode != 200 {
				t.Errorf("warm-up: %d %s", resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
	up.drop.Store(true)
	warm := f.used(t, "acme", 1000)
	tests := []struct {
		method, path string
		header       map[string]string
		cost         int64
	}{
		{"GET", "/crm/v8/Leads?cvid=1", nil, 3},
		{"HEAD", "/crm/v8/Leads?cvid=1", nil, 3},
		{"POST", "/crm/bulk/v8/read", map[string]string{"Idempotency-Key": "k1"}, 50},
		{"DELETE", "/crm/v8/Leads/1", map[string]string{"X-Idempotency-Key": "k2"}, 1},
		{"OPTIONS", "/crm/v8/users", nil, 1},
	}
	for _, tt := range tests {
		before := up.arrivals.Load()
		hdr := map[string]string{"X-Api-Key": "acme-key"}
		for k, v := range tt.header {
			hdr[k] = v
		}
		resp, body := do(t, tt.method, f.url+tt.path, hdr, "")
		if got := up.arrivals.Load() - before; got != 1 {
			t.Errorf("%s %s: the upstream received the call %d times, want once", tt.method, tt.path, got)
		}
		if resp.StatusCode != 502 || resp.Header.Get("X-Credits-Charged") != "0" {
			t.Errorf("%s %s: %d, charged %s; want 502, refunded (%s)", tt.method, tt.path, resp.StatusCode, resp.Header.Get("X-Credits-Charged"), body)
		}
	}
	if got := f.used(t, "acme", 1000) - warm; got != 0 {
		t.Errorf("window holds %d credits more after refunds, want 0", got)
	}
	if n := counterValue(t, f.gw.metrics.retries); n < 1 {
		t.Errorf("upstream_retries_prevented_total = %v, want at least 1", n)
	}
}

// TestLargeBodyAdmittedBeforeRead: a large or unknown-length body to count is read only once
// the org has shown it has a concurrency slot and the rule's smallest cost; otherwise it is
// refused before a byte of it is read.
func TestLargeBodyAdmittedBeforeRead(t *testing.T) {
	f := newFixture(t, nil)
	// tiny has 10 credits: spend them.
	if resp, body := do(t, "POST", f.url+"/crm/v8/Leads", map[string]string{"X-Api-Key": "tiny-key"}, records(100)); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	for _, declared := range []string{"Content-Length: 10485760", "Transfer-Encoding: chunked"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Headers only: the body never comes. The answer must not wait for it.
		fmt.Fprintf(c, "POST /crm/v8/Leads HTTP/1.1\r\nHost: x\r\nX-Api-Key: tiny-key\r\n%s\r\n\r\n", declared)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: no answer before the body: %v", declared, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: %d, want 429 with Retry-After", declared, resp.StatusCode)
		}
		// And the connection is closed at once: the server must not wait for the body.
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("%s: after the 429 the connection read %d bytes, %v; want EOF", declared, n, err)
		}
	}
	if f.up.count() != 1 {
		t.Errorf("forwarded %d calls, want 1", f.up.count())
	}

	// A large body within the credits: the smallest cost first, then the rest.
	big := records(2000) // > 64 KiB: read after admission
	resp := postLeads(t, f.url, big, true)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Credits-Charged") != "200" || f.used(t, "acme", 1000) != 200 {
		t.Errorf("2000 records: %d, charged %s, window %d; want 200, 200, 200", resp.StatusCode, resp.Header.Get("X-Credits-Charged"), f.used(t, "acme", 1000))
	}
	// More records than the credits left: refused after counting, nothing kept.
	resp = postLeads(t, f.url, records(9000), false)
	resp.Body.Close()
	if resp.StatusCode != 429 || f.used(t, "acme", 1000) != 200 {
		t.Errorf("9000 records with 800 credits left: %d, window %d; want 429, 200", resp.StatusCode, f.used(t, "acme", 1000))
	}
}

// TestLargeBodyNeedsConcurrencySlot: an org at its concurrency cap is refused before its
// large body is read.
func TestLargeBodyNeedsConcurrencySlot(t *testing.T) {
	release := make(chan struct{})
	f := newFixture(t, func(c *Config) { c.ConcurrencyOf = func(*orgs.Org) int64 { return 1 } })
	f.up.handler = func(w http.ResponseWriter, r *http.Request) { <-release }
	go func() {
		resp, _ := do(t, "GET", f.url+"/crm/v8/users", map[string]string{"X-Api-Key": "acme-key"}, "")
		_ = resp
	}()
	waitUntil(t, func() bool { return f.up.count() == 1 })
	c, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /crm/v8/Leads HTTP/1.1\r\nHost: x\r\nX-Api-Key: acme-key\r\nContent-Length: 5000000\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	close(release)
	if err != nil {
		t.Fatalf("no answer before the body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("%d, Retry-After %q; want 429, 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if got := f.used(t, "acme", 1000); got != 1 {
		t.Errorf("window %d, want 1 (the call in flight)", got)
	}
}

// TestBodyBudget: the bytes held for counting never pass the budget, nor one org's share;
// a call that finds no room is answered 503 BODY_BUFFER_FULL, uncharged, and other orgs'
// calls go on.
func TestBodyBudget(t *testing.T) {
	const max = 256 << 10
	f := newFixture(t, func(c *Config) {
		c.MaxBodyBytes, c.BodyBufferBytes, c.BodyBufferOrgBytes = max, 2<<20, 1<<20
		c.LimitOf = func(*orgs.Org) int64 { return 1_000_000 }
	})
	// Slow uploads from acme: each sends its headers and half its body, then stalls.
	const uploads = 12
	var conns []net.Conn
	statuses := make(chan int, uploads)
	for range uploads {
		c, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST /crm/v8/Leads HTTP/1.1\r\nHost: x\r\nX-Api-Key: acme-key\r\nContent-Length: %d\r\n\r\n%s", max, strings.Repeat(" ", max/2))
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				statuses <- 0
				return
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode == 503 && (!strings.Contains(string(b), `"code":"BODY_BUFFER_FULL"`) || resp.Header.Get("Retry-After") != "1") {
				t.Errorf("503 without its code or Retry-After: %s", b)
			}
			statuses <- resp.StatusCode
		}()
	}
	// acme's share holds 4 bodies; the other 8 are refused after waiting a second.
	refused := 0
	for range uploads - 4 {
		select {
		case s := <-statuses:
			if s != 503 {
				t.Fatalf("status %d, want 503", s)
			}
			refused++
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of the uploads past acme's share refused, want 8", refused)
		}
	}
	// Another org still gets room, and small calls go on.
	resp := postLeadsAs(t, f.url, "tiny-key", records(3000))
	resp.Body.Close()
	if resp.StatusCode != 429 && resp.StatusCode != 200 {
		t.Errorf("tiny's large insert: %d", resp.StatusCode)
	}
	if resp, body := do(t, "GET", f.url+"/crm/v8/users", map[string]string{"X-Api-Key": "tiny-key"}, ""); resp.StatusCode != 200 {
		t.Errorf("tiny's small call: %d %s", resp.StatusCode, body)
	}
	peak := gaugeValue(t, f.gw.metrics.bodyPeak)
	if peak > 2<<20 {
		t.Errorf("peak bytes held %v, over the budget %d", peak, 2<<20)
	}
	for _, c := range conns {
		c.Close()
	}
	waitUntil(t, func() bool { return gaugeValue(t, f.gw.metrics.bodyHeld) == 0 })
	if got := f.used(t, "acme", 1_000_000); got != 0 {
		t.Errorf("acme charged %d for uploads never finished", got)
	}
	if n := counterValue(t, f.gw.metrics.bodyRefused.WithLabelValues("org")); n != 8 {
		t.Errorf("refusals by org share %v, want 8", n)
	}
}

func postLeadsAs(t *testing.T, base, key, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/crm/v8/Leads", strings.NewReader(body))
	req.Header.Set("X-Api-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestShadowForwardsBomb: shadow mode never refuses, not even a body that decodes past the
// bounds: it goes upstream as sent, uncharged.
func TestShadowForwardsBomb(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Shadow = true; c.MaxInflateRatio = 100 })
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(bytes.Repeat([]byte(" "), 3<<20))
	zw.Close()
	resp, body := do(t, "POST", f.url+"/crm/v8/Leads", map[string]string{"X-Api-Key": "acme-key", "Content-Encoding": "gzip"}, buf.String())
	if resp.StatusCode != 200 || f.up.count() != 1 || f.used(t, "acme", 1000) != 0 {
		t.Fatalf("%d %s, forwarded %d, charged %d; want 200, 1, 0", resp.StatusCode, body, f.up.count(), f.used(t, "acme", 1000))
	}
	f.up.mu.Lock()
	defer f.up.mu.Unlock()
	if f.up.bodies[0] != buf.String() {
		t.Error("the body did not reach the upstream as sent")
	}
}

// TestBodyAtTheLimitFitsTheOrgShare: an org share of three bodies of MaxBodyBytes holds a
// body of exactly that size, chunked, and a compressed one with its decoded copy.
func TestBodyAtTheLimitFitsTheOrgShare(t *testing.T) {
	const max = 1 << 20
	f := newFixture(t, func(c *Config) {
		c.MaxBodyBytes, c.BodyBufferOrgBytes, c.BodyBufferBytes, c.MaxInflateRatio = max, 3*max, 3*max, 0
	})
	body := []byte(records(1))
	body = append(body[:len(body)-2], bytes.Repeat([]byte(" "), max-len(body))...)
	body = append(body, "]}"...)
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.NoCompression)
	_, _ = zw.Write(body[:max-64<<10])
	_, _ = zw.Write([]byte("]}"))
	zw.Close()
	if len(body) != max {
		t.Fatalf("body of %d bytes", len(body))
	}
	resp := postLeads(t, f.url, string(body), true)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("chunked body of exactly MaxBodyBytes: %d", resp.StatusCode)
	}
	r2, b2 := do(t, "POST", f.url+"/crm/v2/Leads", map[string]string{"X-Api-Key": "acme-key", "Content-Encoding": "gzip"}, gz.String())
	if r2.StatusCode != 200 {
		t.Errorf("stored gzip near MaxBodyBytes: %d %s", r2.StatusCode, b2)
	}
}

// TestLargeBodyCostOverWholeLimit: a large body whose cost is one more than the org's whole
// limit is refused as one that can never succeed (422), not as a 429 to retry, and nothing
// stays charged.
func TestLargeBodyCostOverWholeLimit(t *testing.T) {
	f := newFixture(t, nil)
	req, _ := http.NewRequest("POST", f.url+"/crm/v8/Leads", strings.NewReader(records(105))) // 11 credits; tiny has 10
	req.Header.Set("X-Api-Key", "tiny-key")
	req.ContentLength = -1 // chunked: the smallest cost is taken before the body is read
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 422 || !strings.Contains(string(b), `"code":"COST_EXCEEDS_LIMIT"`) || resp.Header.Get("Retry-After") != "" {
		t.Fatalf("%d %s Retry-After %q; want 422 COST_EXCEEDS_LIMIT", resp.StatusCode, b, resp.Header.Get("Retry-After"))
	}
	if got := f.used(t, "tiny", 10); got != 0 || f.up.count() != 0 {
		t.Fatalf("window %d, forwarded %d; want nothing", got, f.up.count())
	}
}
