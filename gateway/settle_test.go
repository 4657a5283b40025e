package gateway

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/internal/metricstest"
	"github.com/creditgate/creditgate/limiter"
)

// settleTable prices the calls of the settle tests.
const settleTable = `rules:
  - {name: list_leads, method: GET, path: /list, cost: 1, response: {count: data, per: 200, max: 20}}
  - {name: chat, method: POST, path: /chat, cost: 100, response: {number: usage.total_tokens, per: 1000}}
  - {name: report, method: GET, path: /report, cost: 5, response: {header: X-Credits-Cost}}
`

// listBody is a list response of n records.
func listBody(n int) string {
	var b strings.Builder
	b.WriteString(`{"data":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"Last_Name":"Lead %d"}`, i, i)
	}
	b.WriteString(`],"info":{"more_records":false}}`)
	return b.String()
}

// settleUpstream answers /list?n=… with n records (chunked unless len=1), /chat with
// usage.total_tokens=tokens, /report with the header X-Credits-Cost=cost.
func settleUpstream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch r.URL.Path {
	case "/list":
		n, _ := strconv.Atoi(q.Get("n"))
		body := listBody(n)
		w.Header().Set("Content-Type", "application/json")
		if q.Get("len") == "1" {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		if q.Get("gzip") == "1" {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = io.WriteString(zw, body)
			_ = zw.Close()
			return
		}
		if q.Get("lie") == "1" {
			w.Header().Set("Content-Encoding", "gzip") // but plain JSON
		}
		_, _ = io.WriteString(w, body)
	case "/chat":
		if q.Get("sse") == "1" {
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"w%d\"}}],\"usage\":null}\n\n", i)
				w.(http.Flusher).Flush()
			}
			fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"total_tokens\":%s}}\n\ndata: [DONE]\n\n", q.Get("tokens"))
			return
		}
		fmt.Fprintf(w, `{"id":"c1","usage":{"prompt_tokens":12,"total_tokens":%s}}`, q.Get("tokens"))
	case "/report":
		if v := q.Get("cost"); v != "" {
			w.Header().Set("X-Credits-Cost", v)
		}
		_, _ = io.WriteString(w, `{"report":"done"}`)
	}
}

func newSettleFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	costs, err := costtable.Parse("settle", []byte(settleTable))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *Config) {
		c.Costs = costs
		c.Metrics = NewMetrics(MetricsOptions{MaxOrgs: 10})
		if mod != nil {
			mod(c)
		}
	})
	f.up.handler = settleUpstream
	return f
}

// TestSettleFromTheAnswer: list, LLM, event-stream and header-priced calls settle to what
// their answers say, in the window and the usage by rule; the client gets the upstream's
// bytes unchanged, never sees a header rule's header, and, where the answer is chunked, finds
// the settled cost in a trailer.
func TestSettleFromTheAnswer(t *testing.T) {
	f := newSettleFixture(t, nil)
	acme := map[string]string{"Authorization": "Bearer acme-key"}
	tests := []struct {
		method, path string
		reserved     int64 // X-Credits-Charged
		want         int64 // the settled cost
		trailer      bool  // the settled cost also comes in a trailer
	}{
		{"GET", "/list?n=0", 1, 1, false}, // short: the upstream sends a Content-Length
		{"GET", "/list?n=1&len=1", 1, 1, false},
		{"GET", "/list?n=200", 1, 1, true},
		{"GET", "/list?n=201", 1, 2, true},
		{"GET", "/list?n=5000", 1, 20, true},
		{"GET", "/list?n=5000&len=1", 1, 20, false},
		{"GET", "/list?n=1000&gzip=1", 1, 5, true},
		{"POST", "/chat?tokens=12345", 100, 13, false},
		{"POST", "/chat?tokens=12345&sse=1", 100, 13, true},
		{"GET", "/report?cost=7", 7, 7, false},
	}
	used := int64(0)
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, f.url+tt.path, nil)
		req.Header.Set("Authorization", "Bearer acme-key")
		req.Header.Set("Accept-Encoding", "gzip") // so the client sees what the upstream sent
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		used += tt.want
		if got := f.used(t, "acme", 1000); got != used {
			t.Errorf("%s %s: used %d, want %d", tt.method, tt.path, got, used)
		}
		if got := resp.Header.Get("X-Credits-Charged"); got != strconv.FormatInt(tt.reserved, 10) {
			t.Errorf("%s %s: X-Credits-Charged %q, want %d", tt.method, tt.path, got, tt.reserved)
		}
		if got := resp.Trailer.Get("X-Credits-Charged"); (got != "") != tt.trailer || tt.trailer && got != strconv.FormatInt(tt.want, 10) {
			t.Errorf("%s %s: trailer X-Credits-Charged %q, want %v (%d)", tt.method, tt.path, got, tt.trailer, tt.want)
		}
		if _, ok := resp.Header["X-Credits-Cost"]; ok {
			t.Errorf("%s %s: the client saw the upstream's cost header", tt.method, tt.path)
		}
		if strings.Contains(tt.path, "gzip") {
			zr, err := gzip.NewReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("the gzip answer was changed: %v", err)
			}
			if plain, _ := io.ReadAll(zr); string(plain) != listBody(1000) {
				t.Errorf("the gzip answer decodes to %d bytes, want the upstream's", len(plain))
			}
		}
	}
	// Usage by rule shows the settled costs.
	_, body := do(t, "GET", f.url+ownUsageHoursPath, acme, "")
	for _, want := range []string{`"list_leads":50`, `"chat":26`, `"report":7`} {
		if !strings.Contains(body, want) {
			t.Errorf("usage %s lacks %s", body, want)
		}
	}
}

// TestSettleKeepsReservation: answers that cannot be read keep the reserved cost, each
// counted by its reason.
func TestSettleKeepsReservation(t *testing.T) {
	f := newSettleFixture(t, nil)
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("case") {
		case "truncated":
			w.Header().Set("Content-Length", "100000")
			_, _ = io.WriteString(w, `{"data":[1,2,3`)
			w.(http.Flusher).Flush()
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
		case "500":
			w.WriteHeader(500)
			_, _ = io.WriteString(w, `{"data":[1,2,3]}`)
		case "html":
			_, _ = io.WriteString(w, `<html>`)
		case "nodata":
			_, _ = io.WriteString(w, `{"items":[1]}`)
		case "zip":
			w.Header().Set("Content-Encoding", "br")
			_, _ = io.WriteString(w, `{"data":[1]}`)
		default:
			settleUpstream(w, r)
		}
	}
	tests := []struct {
		method, path, reason string
		cost                 int64
	}{
		{"GET", "/list?n=5000&lie=1", "encoding", 1},
		{"GET", "/list?case=zip", "encoding", 1},
		{"GET", "/list?case=truncated", "truncated", 1},
		{"GET", "/list?case=500", "status", 1},
		{"GET", "/list?case=html", "not_json", 1},
		{"GET", "/list?case=nodata", "missing", 1},
		{"HEAD", "/list?n=5000", "no_body", 1},
		{"GET", "/report", "header", 5},
		{"GET", "/report?cost=-3", "header", 5},
		{"GET", "/report?cost=2.5", "header", 5},
	}
	used := int64(0)
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, f.url+tt.path, nil)
		req.Header.Set("Authorization", "Bearer acme-key")
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		used += tt.cost
		if got := f.used(t, "acme", 1000); got != used {
			t.Errorf("%s %s: used %d, want %d (the reservation)", tt.method, tt.path, got, used)
		}
	}
	fams := metricstest.Scrape(t, httptest.NewServer(f.gw.cfg.Metrics.Handler()).URL)
	for reason, want := range map[string]float64{"encoding": 2, "truncated": 1, "status": 1, "not_json": 1, "missing": 1, "no_body": 1, "header": 3} {
		if got, _ := fams.Value("creditgate_settle_unread_total", "reason", reason); got != want {
			t.Errorf("creditgate_settle_unread_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	if got, _ := fams.Value("creditgate_credits_debited_total", "org", "acme", "edition", "custom"); got != float64(used) {
		t.Errorf("credits debited %v, want %d", got, used)
	}
}

// TestSettleClientGone: a client that leaves mid-answer is charged what the whole answer
// settles on: the gateway reads the rest of the upstream's body.
func TestSettleClientGone(t *testing.T) {
	f := newSettleFixture(t, nil)
	release := make(chan struct{})
	var served atomic.Bool
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"data":[`+strings.Repeat(`{"id":1,"pad":"`+strings.Repeat("x", 1000)+`"},`, 400))
		w.(http.Flusher).Flush()
		<-release // the client has left by now
		_, _ = io.WriteString(w, strings.Repeat(`{"id":2},`, 1600)+`{"id":3}]}`)
		served.Store(true)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /list HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer acme-key\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	close(release)
	waitUntil(t, func() bool { return served.Load() && f.used(t, "acme", 1000) == 11 })
}

// settleDownStore fails Settle while down is set.
type settleDownStore struct {
	*limiter.MemoryStore
	down    atomic.Bool
	settles atomic.Int64
}

func (s *settleDownStore) Settle(ctx context.Context, k limiter.Key, d limiter.Decision, cost int64, now time.Time) (limiter.Settlement, error) {
	s.settles.Add(1)
	if s.down.Load() {
		return limiter.Settlement{}, errors.New("dial tcp 127.0.0.1:1: i/o timeout")
	}
	return s.MemoryStore.Settle(ctx, k, d, cost, now)
}

// TestSettleQueuedWhileStoreFails: a settle the store cannot take waits in the retry queue
// and applies once when it answers again.
func TestSettleQueuedWhileStoreFails(t *testing.T) {
	var store *settleDownStore
	f := newSettleFixture(t, func(c *Config) {
		store = &settleDownStore{MemoryStore: c.Store.(*limiter.MemoryStore)}
		store.down.Store(true)
		c.Store = store
	})
	acme := map[string]string{"Authorization": "Bearer acme-key"}
	if resp, _ := do(t, "GET", f.url+"/list?n=5000", acme, ""); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := f.used(t, "acme", 1000); got != 1 {
		t.Fatalf("used %d while the settle waits, want the reservation 1", got)
	}
	store.down.Store(false)
	do(t, "GET", f.url+"/report?cost=1", acme, "") // the store answers again
	f.gw.runDeferred()
	f.gw.runDeferred()
	if got := f.used(t, "acme", 1000); got != 21 {
		t.Fatalf("used %d after the queued settle ran, want 20 + 1", got)
	}
}

// TestSettleExplain: explain shows the reservation and the response rule.
func TestSettleExplain(t *testing.T) {
	f := newSettleFixture(t, nil)
	tokens, err := ParseAdminTokens("viewer:view-token")
	if err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(NewAdminHandler(AdminConfig{Gateway: f.gw, Tokens: tokens}))
	t.Cleanup(admin.Close)
	_, body := do(t, "POST", admin.URL+"/admin/v1/explain", map[string]string{"Authorization": "Bearer view-token"}, `{"method":"GET","path":"/list"}`)
	if want := `"cost":1,"rule":"list_leads","heavy":false,"response":{"count":"data","per":200,"max":20}`; !strings.Contains(body, want) {
		t.Errorf("explain = %s, want %s", body, want)
	}
}

// TestSettleFailModeLocal: a call admitted on the gateway's own while the store is down is
// settled in its ledger, and written into the store, once it answers, at the settled cost.
func TestSettleFailModeLocal(t *testing.T) {
	f, fs := localFixture(t, 1)
	costs, err := costtable.Parse("settle", []byte(settleTable))
	if err != nil {
		t.Fatal(err)
	}
	f.gw.SetCosts(costs)
	f.up.handler = settleUpstream
	fs.down.Store(true)
	acme := map[string]string{"Authorization": "Bearer acme-key"}
	if resp, body := do(t, "GET", f.url+"/list?n=5000", acme, ""); resp.StatusCode != 200 {
		t.Fatalf("store down, fail mode local: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, "GET", f.url+"/report?cost=3", acme, ""); resp.Header.Get("X-Credits-Charged") != "3" {
		t.Fatalf("header-priced call admitted locally: X-Credits-Charged %q, want 3", resp.Header.Get("X-Credits-Charged"))
	}
	fs.down.Store(false)
	waitUntil(t, func() bool {
		f.gw.reconcile()
		return f.gw.local.pending() == 0
	})
	if got := f.used(t, "acme", 1000); got != 23 {
		t.Fatalf("used %d once the ledger is written, want the settled 20 + 3", got)
	}
}

// TestSettleAsksOnlyForReadableCodings: a client that accepts only codings the gateway cannot
// decode for counting (br) does not get an unreadable answer that keeps the reservation: the
// upstream is asked for what the gateway reads, and the call settles.
func TestSettleAsksOnlyForReadableCodings(t *testing.T) {
	f := newSettleFixture(t, nil)
	var asked atomic.Value
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		asked.Store(strings.Join(r.Header.Values("Accept-Encoding"), "|"))
		if strings.Contains(r.Header.Get("Accept-Encoding"), "br") {
			w.Header().Set("Content-Encoding", "br")
			_, _ = io.WriteString(w, "\x0b\x01\x80{}\x03") // not counted: the gateway decodes no br
			return
		}
		settleUpstream(w, r)
	}
	used := int64(0)
	for _, tt := range []struct{ accept, sent string }{
		{"br", ""}, // none left: the transport asks for gzip itself
		{"br, gzip;q=0.5", "gzip;q=0.5"},
		{"BR;q=1, *;q=0.1, zstd", "zstd"},
		{"gzip, deflate, br, zstd", "gzip, deflate, zstd"},
	} {
		req, _ := http.NewRequest("GET", f.url+"/list?n=5000", nil)
		req.Header.Set("Authorization", "Bearer acme-key")
		req.Header.Set("Accept-Encoding", tt.accept)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got, _ := asked.Load().(string)
		if tt.sent == "" && got != "gzip" || tt.sent != "" && got != tt.sent {
			t.Errorf("Accept-Encoding %q went upstream as %q, want %q", tt.accept, got, tt.sent)
		}
		used += 20
		if u := f.used(t, "acme", 1000); u != used {
			t.Errorf("Accept-Encoding %q: used %d, want %d (5000 records settle to 20)", tt.accept, u, used)
		}
	}
	// A call that is not counted keeps the client's codings as sent.
	req, _ := http.NewRequest("GET", f.url+"/report?cost=3", nil)
	req.Header.Set("Authorization", "Bearer acme-key")
	req.Header.Set("Accept-Encoding", "br")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, _ := asked.Load().(string); got != "br" {
		t.Errorf("a header-priced call's Accept-Encoding went upstream as %q, want br", got)
	}
}

// TestSettleAnswersWhole: a counted call asking for a range of its answer gets it whole, and
// pays for all of it: parts would each keep only the reservation.
func TestSettleAnswersWhole(t *testing.T) {
	f := newSettleFixture(t, nil)
	body := listBody(5000)
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		http.ServeContent(w, r, "list.json", time.Time{}, strings.NewReader(body))
	}
	req, _ := http.NewRequest("GET", f.url+"/list", nil)
	req.Header.Set("Authorization", "Bearer acme-key")
	req.Header.Set("Range", "bytes=0-99")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(got) != len(body) {
		t.Errorf("a ranged counted call answered %d with %d bytes, want 200 with all %d", resp.StatusCode, len(got), len(body))
	}
	if u := f.used(t, "acme", 1000); u != 20 {
		t.Errorf("used %d, want 20 (5000 records)", u)
	}
}

// TestSettleFailModeLocalAfterLostWrite: a call admitted on the gateway's own, whose write
// into the store landed with its reservation but lost its reply, and whose answer settled
// after that, is settled in the store when the next write finds the first one there.
func TestSettleFailModeLocalAfterLostWrite(t *testing.T) {
	f, fs := localFixture(t, 1)
	costs, err := costtable.Parse("settle", []byte(settleTable))
	if err != nil {
		t.Fatal(err)
	}
	f.gw.SetCosts(costs)
	release := make(chan struct{})
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		<-release
		settleUpstream(w, r)
	}
	fs.down.Store(true)
	status := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", f.url+"/list?n=5000", nil)
		req.Header.Set("Authorization", "Bearer acme-key")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			status <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	waitUntil(t, func() bool { return f.gw.local.pending() == 1 })
	fs.down.Store(false)
	fs.loseForce.Store(true)
	f.gw.reconcile() // the write lands with the reservation; its reply is lost
	if n := f.gw.local.pending(); n != 1 {
		t.Fatalf("%d calls pending after a write whose reply was lost, want 1", n)
	}
	if got := f.used(t, "acme", 1000); got != 1 {
		t.Fatalf("the store holds %d, want the reservation, 1", got)
	}
	close(release)
	if s := <-status; s != 200 {
		t.Fatalf("status %d", s)
	}
	fs.loseForce.Store(false)
	waitUntil(t, func() bool {
		f.gw.reconcile()
		return f.gw.local.pending() == 0 && f.used(t, "acme", 1000) == 20
	})
}

// TestDecodableMatchesDecoder: the codings a counted call may ask the upstream for are the
// ones the gateway decodes.
func TestDecodableMatchesDecoder(t *testing.T) {
	for _, c := range []string{"gzip", "x-gzip", "deflate", "zstd", "br", "compress", "identity", "*"} {
		_, _, err := decoder(c, strings.NewReader(""))
		known := err == nil || !strings.Contains(err.Error(), "unknown content coding")
		if got := decodable(c); got != (known || c == "identity") {
			t.Errorf("decodable(%q) = %v, decoder knows it: %v", c, got, known)
		}
	}
}
