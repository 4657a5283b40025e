package main

// The gateway in front of go-httpbin: redirects, streams, upgrades, encodings, ranges, large
// bodies and preflights, as a client sees them through real HTTP.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	endian "encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mccutchen/go-httpbin/v2/httpbin"
)

// httpbinCosts prices go-httpbin's paths; every call costs at least a credit.
const httpbinCosts = `name: httpbin
rules:
  - name: bytes
    method: GET
    path: /bytes/{n}
    cost: 5
  - name: upload
    method: POST
    path: /anything
    cost: 3
default:
  name: other
  cost: 1
`

const (
	binKey    = "bin-key"
	binOrigin = "https://app.example"
)

// binUpstream is go-httpbin, plus /held (an answer that waits for the test) and a record of
// what reached it.
type binUpstream struct {
	*httptest.Server
	calls    atomic.Int64
	mu       sync.Mutex
	upload   [sha256.Size]byte // the hash of the last body POSTed to /anything, as httpbin read it
	uploaded int64
	held     http.HandlerFunc
}

func newBinUpstream(t *testing.T) *binUpstream {
	u := &binUpstream{}
	bin := httpbin.New(httpbin.WithMaxBodySize(8<<20), httpbin.WithMaxDuration(10*time.Second))
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		switch {
		case r.URL.Path == "/held":
			u.mu.Lock()
			h := u.held
			u.mu.Unlock()
			h(w, r)
		case r.Method == "POST" && r.URL.Path == "/anything":
			h := sha256.New()
			n := &countingReader{r: io.TeeReader(r.Body, h)}
			r.Body = io.NopCloser(n)
			bin.ServeHTTP(w, r)
			u.mu.Lock()
			copy(u.upload[:], h.Sum(nil))
			u.uploaded = n.n
			u.mu.Unlock()
		default:
			bin.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(u.Close)
	return u
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// startBinGateway runs the gateway in front of up with more settings.
func startBinGateway(t *testing.T, up *binUpstream, more map[string]string) *process {
	t.Helper()
	table := filepath.Join(t.TempDir(), "httpbin.yaml")
	if err := os.WriteFile(table, []byte(httpbinCosts), 0o644); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"CREDITGATE_UPSTREAM_URL":    up.URL,
		"CREDITGATE_ORGS":            "bin:limit=1000000,keys=" + binKey,
		"CREDITGATE_COST_TABLE_FILE": table,
		"CREDITGATE_CORS_ORIGINS":    binOrigin,
	}
	for k, v := range more {
		vars[k] = v
	}
	return startGateway(t, vars)
}

// used reads the org's used credits from the usage API (neither charged nor forwarded).
func used(t *testing.T, gw *process) int64 {
	t.Helper()
	req, _ := http.NewRequest("GET", gw.base+"/creditgate/v1/usage", nil)
	req.Header.Set("X-Api-Key", binKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var u struct {
		Used *int64 `json:"used_credits"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil || u.Used == nil {
		t.Fatalf("usage: %d %v", resp.StatusCode, err)
	}
	return *u.Used
}

// binGet sends a GET with the org's key through client and reads the body.
func binGet(t *testing.T, client *http.Client, target string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Api-Key", binKey)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestHTTPBin(t *testing.T) {
	up := newBinUpstream(t)
	gw := startBinGateway(t, up, nil)
	gwURL, _ := url.Parse(gw.base)

	// follow is a client that follows redirects and records every hop's host.
	follow := func(hops *[]string) *http.Client {
		return &http.Client{CheckRedirect: func(req *http.Request, via []*http.Request) error {
			*hops = append(*hops, req.URL.Host)
			return nil
		}}
	}
	redirects := []struct {
		name      string
		give      func(gw *process) string
		preserve  bool
		wantHops  int
		wantFinal string
	}{
		{"absolute-redirect", func(gw *process) string { return gw.base + "/absolute-redirect/3" }, false, 3, "/get"},
		{"absolute-redirect, host preserved", func(gw *process) string { return gw.base + "/absolute-redirect/3" }, true, 3, "/get"},
		{"redirect-to the upstream's own URL", func(gw *process) string {
			return gw.base + "/redirect-to?url=" + url.QueryEscape(up.URL+"/get?via=redirect-to")
		}, false, 1, "/get"},
		{"relative-redirect", func(gw *process) string { return gw.base + "/relative-redirect/3" }, false, 3, "/get"},
	}
	for _, tt := range redirects {
		t.Run(tt.name, func(t *testing.T) {
			gw := gw
			if tt.preserve {
				gw = startBinGateway(t, up, map[string]string{"CREDITGATE_PRESERVE_HOST": "true"})
			}
			host := strings.TrimPrefix(gw.base, "http://")
			var hops []string
			before, calls := used(t, gw), up.calls.Load()
			resp, body := binGet(t, follow(&hops), tt.give(gw))
			if resp.StatusCode != 200 || resp.Request.URL.Path != tt.wantFinal {
				t.Fatalf("ended at %s with %d: %s", resp.Request.URL, resp.StatusCode, body)
			}
			if len(hops) != tt.wantHops {
				t.Fatalf("%d redirects followed (%v), want %d", len(hops), hops, tt.wantHops)
			}
			for i, h := range hops {
				if h != host {
					t.Errorf("redirect %d went to %s, not the gateway %s", i+1, h, host)
				}
			}
			// Every hop went through the gateway, and each was charged a credit.
			if got := up.calls.Load() - calls; got != int64(tt.wantHops+1) {
				t.Errorf("upstream saw %d calls, want %d", got, tt.wantHops+1)
			}
			if got := used(t, gw) - before; got != int64(tt.wantHops+1) {
				t.Errorf("charged %d credits, want %d", got, tt.wantHops+1)
			}
			if got := resp.Header.Get("X-Credits-Charged"); got != "1" {
				t.Errorf("final hop X-Credits-Charged %q, want 1", got)
			}
		})
	}

	t.Run("sse", func(t *testing.T) {
		before := used(t, gw)
		req, _ := http.NewRequest("GET", gw.base+"/sse?count=3&duration=300ms", nil)
		req.Header.Set("X-Api-Key", binKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("%d %s", resp.StatusCode, ct)
		}
		events := 0
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() == "event: ping" {
				events++
			}
		}
		if err := sc.Err(); err != nil || events != 3 {
			t.Fatalf("%d events (%v), want 3", events, err)
		}
		if got := used(t, gw) - before; got != 1 || resp.Header.Get("X-Credits-Charged") != "1" {
			t.Errorf("charged %d (X-Credits-Charged %q), want 1", got, resp.Header.Get("X-Credits-Charged"))
		}
	})

	t.Run("websocket", func(t *testing.T) {
		before := used(t, gw)
		conn, br, resp := wsDial(t, gwURL.Host, "/websocket/echo")
		defer conn.Close()
		if resp.Header.Get("X-Credits-Charged") != "1" {
			t.Errorf("X-Credits-Charged %q, want 1", resp.Header.Get("X-Credits-Charged"))
		}
		for _, msg := range []string{"hello", strings.Repeat("x", 300)} {
			wsWriteText(t, conn, msg)
			if got := wsReadText(t, br); got != msg {
				t.Fatalf("echo %q, want %q", got, msg)
			}
		}
		if got := used(t, gw) - before; got != 1 {
			t.Errorf("charged %d, want 1", got)
		}
	})

	t.Run("gzip", func(t *testing.T) {
		// Go's client asks for gzip and decodes it.
		resp, body := binGet(t, http.DefaultClient, gw.base+"/gzip")
		var v struct{ Gzipped bool }
		if err := json.Unmarshal(body, &v); resp.StatusCode != 200 || !resp.Uncompressed || err != nil || !v.Gzipped {
			t.Fatalf("%d uncompressed=%v %v: %s", resp.StatusCode, resp.Uncompressed, err, body)
		}
		// Asked for explicitly, the encoded bytes come as the upstream sent them.
		resp, body = binGet(t, http.DefaultClient, gw.base+"/gzip", "Accept-Encoding", "gzip")
		if resp.Header.Get("Content-Encoding") != "gzip" || !bytes.HasPrefix(body, []byte{0x1f, 0x8b}) {
			t.Fatalf("Content-Encoding %q, body starts % x", resp.Header.Get("Content-Encoding"), body[:min(len(body), 4)])
		}
	})

	t.Run("range", func(t *testing.T) {
		_, all := binGet(t, http.DefaultClient, up.URL+"/range/1024")
		resp, body := binGet(t, http.DefaultClient, gw.base+"/range/1024", "Range", "bytes=100-199")
		if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != "bytes 100-199/1024" {
			t.Fatalf("%d Content-Range %q", resp.StatusCode, resp.Header.Get("Content-Range"))
		}
		if len(all) != 1024 || !bytes.Equal(body, all[100:200]) {
			t.Fatalf("bytes 100-199: %q, want %q", body, all[100:min(len(all), 200)])
		}
	})

	t.Run("5 MB download", func(t *testing.T) {
		const path = "/bytes/5242880?seed=1"
		before := used(t, gw)
		_, direct := binGet(t, http.DefaultClient, up.URL+path)
		resp, body := binGet(t, http.DefaultClient, gw.base+path)
		if resp.StatusCode != 200 || len(body) != 5<<20 || sha256.Sum256(body) != sha256.Sum256(direct) {
			t.Fatalf("%d: %d bytes, identical to the direct answer: %v", resp.StatusCode, len(body), bytes.Equal(body, direct))
		}
		if got := used(t, gw) - before; got != 5 || resp.Header.Get("X-Credits-Charged") != "5" {
			t.Errorf("charged %d (X-Credits-Charged %q), want 5", got, resp.Header.Get("X-Credits-Charged"))
		}
	})

	t.Run("5 MB upload", func(t *testing.T) {
		body := make([]byte, 5<<20)
		_, _ = rand.Read(body)
		before := used(t, gw)
		req, _ := http.NewRequest("POST", gw.base+"/anything", bytes.NewReader(body))
		req.Header.Set("X-Api-Key", binKey)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		up.mu.Lock()
		sum, n := up.upload, up.uploaded
		up.mu.Unlock()
		if resp.StatusCode != 200 || n != int64(len(body)) || sum != sha256.Sum256(body) {
			t.Fatalf("%d: the upstream read %d bytes, identical: %v", resp.StatusCode, n, sum == sha256.Sum256(body))
		}
		if got := used(t, gw) - before; got != 3 || resp.Header.Get("X-Credits-Charged") != "3" {
			t.Errorf("charged %d (X-Credits-Charged %q), want 3", got, resp.Header.Get("X-Credits-Charged"))
		}
	})

	t.Run("cors preflight", func(t *testing.T) {
		before, calls := used(t, gw), up.calls.Load()
		req, _ := http.NewRequest("OPTIONS", gw.base+"/anything", nil)
		req.Header.Set("Origin", binOrigin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "x-api-key, content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != binOrigin ||
			!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
			!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "x-api-key") {
			t.Fatalf("%d %v", resp.StatusCode, h)
		}
		if h.Get("X-Credits-Charged") != "0" || used(t, gw) != before {
			t.Errorf("preflight charged (X-Credits-Charged %q)", h.Get("X-Credits-Charged"))
		}
		if up.calls.Load() != calls {
			t.Error("the preflight was forwarded")
		}
	})

	t.Run("drip", func(t *testing.T) {
		// Bytes one at a time, each flushed by the upstream: the same bytes come through.
		const path = "/drip?duration=200ms&delay=0&numbytes=10"
		_, direct := binGet(t, http.DefaultClient, up.URL+path)
		resp, body := binGet(t, http.DefaultClient, gw.base+path)
		if resp.StatusCode != 200 || resp.ContentLength != 10 || !bytes.Equal(body, direct) || len(body) != 10 {
			t.Fatalf("%d (Content-Length %d) %q, direct %q", resp.StatusCode, resp.ContentLength, body, direct)
		}
	})

	t.Run("first bytes before the upstream is done", func(t *testing.T) {
		// The upstream declares its length, sends the first bytes and waits: the client must
		// have them before the upstream is let go. A gateway that held them would wait for
		// ever; the watchdog lets the upstream go late and fails the test.
		release := make(chan struct{})
		var once sync.Once
		var late atomic.Bool
		open := func() { once.Do(func() { close(release) }) }
		watchdog := time.AfterFunc(30*time.Second, func() { late.Store(true); open() })
		defer watchdog.Stop()
		defer open()
		up.mu.Lock()
		up.held = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "abc")
			http.NewResponseController(w).Flush()
			<-release
			_, _ = io.WriteString(w, "defghij")
		}
		up.mu.Unlock()
		req, _ := http.NewRequest("GET", gw.base+"/held", nil)
		req.Header.Set("X-Api-Key", binKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		head := make([]byte, 3)
		if _, err := io.ReadFull(resp.Body, head); err != nil {
			t.Fatal(err)
		}
		if late.Load() {
			t.Fatal("the first bytes came only after the upstream was let go")
		}
		open()
		rest, err := io.ReadAll(resp.Body)
		if err != nil || string(head)+string(rest) != "abcdefghij" {
			t.Fatalf("body %q %q (%v)", head, rest, err)
		}
	})
}

// wsDial opens a WebSocket on host by hand (RFC 6455 handshake) with the org's key.
func wsDial(t *testing.T, host, path string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	key := base64.StdEncoding.EncodeToString(nonce)
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\nX-Api-Key: " + binKey + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != 101 || resp.Header.Get("Sec-Websocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
	}
	return conn, br, resp
}

// wsWriteText sends msg as one masked text frame, as a client must.
func wsWriteText(t *testing.T, conn net.Conn, msg string) {
	t.Helper()
	frame := []byte{0x81} // FIN, text
	switch n := len(msg); {
	case n < 126:
		frame = append(frame, 0x80|byte(n))
	default:
		frame = append(frame, 0x80|126)
		frame = endian.BigEndian.AppendUint16(frame, uint16(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	frame = append(frame, mask[:]...)
	for i := range len(msg) {
		frame = append(frame, msg[i]^mask[i%4])
	}
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
}

// wsReadText reads one unfragmented, unmasked text frame.
func wsReadText(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		t.Fatal(err)
	}
	if hdr[0] != 0x81 || hdr[1]&0x80 != 0 {
		t.Fatalf("frame header % x", hdr)
	}
	n := int(hdr[1] & 0x7f)
	if n == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			t.Fatal(err)
		}
		n = int(endian.BigEndian.Uint16(ext[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		t.Fatal(err)
	}
	return string(p)
}
