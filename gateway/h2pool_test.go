package gateway

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// tlsUpstream is an httptest TLS upstream that counts its connections and records the
// protocol of each call.
type tlsUpstream struct {
	*httptest.Server
	conns  atomic.Int64
	mu     sync.Mutex
	protos []int // ProtoMajor of each call
}

func newTLSUpstream(t *testing.T, http2 bool, h http.HandlerFunc) *tlsUpstream {
	t.Helper()
	u := &tlsUpstream{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.protos = append(u.protos, r.ProtoMajor)
		u.mu.Unlock()
		h(w, r)
	}))
	u.EnableHTTP2 = http2
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	u.StartTLS()
	t.Cleanup(u.Close)
	return u
}

// protoCounts counts the calls the upstream saw by ProtoMajor.
func (u *tlsUpstream) protoCounts() map[int]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := map[int]int{}
	for _, p := range u.protos {
		m[p]++
	}
	return m
}

// trusting returns a TLS configuration that trusts cert only.
func trusting(cert *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{RootCAs: pool}
}

// TestHTTP2Upstream: an https:// upstream that offers HTTP/2 is spoken HTTP/2; calls are
// charged as over HTTP/1.1, bodies reach it, its answers stream back, and concurrent calls
// share a connection.
func TestHTTP2Upstream(t *testing.T) {
	release := make(chan struct{})
	up := newTLSUpstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST":
			b, _ := io.ReadAll(r.Body)
			_, _ = io.WriteString(w, strconv.Itoa(len(b)))
		case r.URL.Path == "/crm/v8/Leads/stream":
			// The second part is written only once the client has read the first through
			// the gateway: the answer is streamed, not buffered.
			_, _ = io.WriteString(w, "first;")
			w.(http.Flusher).Flush()
			<-release
			_, _ = io.WriteString(w, "second")
		default:
			_, _ = io.WriteString(w, "ok")
		}
	})
	f := newFixture(t, func(c *Config) {
		c.Upstream, _ = url.Parse(up.URL)
		c.UpstreamTLS = trusting(up.Certificate())
	})
	key := map[string]string{"X-Api-Key": "acme-key"}

	resp, body := do(t, "GET", f.url+"/crm/v8/Leads?cvid=1", key, "")
	if resp.StatusCode != 200 || body != "ok" || resp.Header.Get("X-Credits-Charged") != "3" {
		t.Fatalf("GET: %d %q charged %s; want 200 ok 3", resp.StatusCode, body, resp.Header.Get("X-Credits-Charged"))
	}
	if got := up.protoCounts(); got[2] != 1 || len(got) != 1 {
		t.Fatalf("upstream saw protocols %v, want one HTTP/2 call", got)
	}

	sent := records(25)
	resp, body = do(t, "POST", f.url+"/crm/v8/Leads", key, sent)
	if resp.StatusCode != 200 || body != strconv.Itoa(len(sent)) || resp.Header.Get("X-Credits-Charged") != "3" {
		t.Fatalf("POST 25 records: %d %q charged %s; want 200 %d 3", resp.StatusCode, body, resp.Header.Get("X-Credits-Charged"), len(sent))
	}

	req, _ := http.NewRequest("GET", f.url+"/crm/v8/Leads/stream", nil)
	req.Header.Set("X-Api-Key", "acme-key")
	sresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, len("first;"))
	if _, err := io.ReadFull(sresp.Body, first); err != nil || string(first) != "first;" {
		t.Fatalf("streamed answer: first part %q, %v", first, err)
	}
	close(release)
	rest, _ := io.ReadAll(sresp.Body)
	sresp.Body.Close()
	if string(rest) != "second" || sresp.StatusCode != 200 || sresp.Header.Get("X-Credits-Charged") != "1" {
		t.Fatalf("streamed answer: %d, rest %q, charged %s; want 200, second, 1", sresp.StatusCode, rest, sresp.Header.Get("X-Credits-Charged"))
	}

	const calls = 64
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", f.url+"/crm/v2/users", nil)
			req.Header.Set("X-Api-Key", "acme-key")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("concurrent call: %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if got := up.protoCounts(); got[2] != calls+3 {
		t.Errorf("upstream saw protocols %v, want %d HTTP/2 calls", got, calls+3)
	}
	// One connection takes 250 streams at once (the server's default): the calls share it.
	if n := up.conns.Load(); n > 2 {
		t.Errorf("%d connections for %d concurrent calls, want at most 2", n, calls)
	}
	// GET by id costs 1, as the calls to users do.
	if got := f.used(t, "acme", 1000); got != 3+3+1+calls {
		t.Errorf("window holds %d credits, want %d", got, 3+3+1+calls)
	}
}

// TestHTTP2ClosedWithGateway: Gateway.Close closes the idle HTTP/2 connections of the
// transport it built.
func TestHTTP2ClosedWithGateway(t *testing.T) {
	closed := make(chan struct{}, 1)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	up.EnableHTTP2 = true
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	up.StartTLS()
	t.Cleanup(up.Close)
	f := newFixture(t, func(c *Config) {
		c.Upstream, _ = url.Parse(up.URL)
		c.UpstreamTLS = trusting(up.Certificate())
	})
	if resp, body := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, ""); body != "HTTP/2.0" {
		t.Fatalf("%d %q, want HTTP/2.0", resp.StatusCode, body)
	}
	f.gw.Close()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream connection is still open after Close")
	}
}

// TestHTTP1Upstreams: HTTP/1.1 where the upstream does not offer HTTP/2, and where the
// gateway is told not to speak it.
func TestHTTP1Upstreams(t *testing.T) {
	tests := []struct {
		name      string
		offersH2  bool
		http1Only bool
	}{
		{"upstream without HTTP/2", false, false},
		{"HTTP/2 turned off", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newTLSUpstream(t, tt.offersH2, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
			f := newFixture(t, func(c *Config) {
				c.Upstream, _ = url.Parse(up.URL)
				c.UpstreamTLS = trusting(up.Certificate())
				c.UpstreamHTTP1Only = tt.http1Only
			})
			for range 3 {
				resp, body := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
				if resp.StatusCode != 200 || body != "ok" || resp.Header.Get("X-Credits-Charged") != "1" {
					t.Fatalf("%d %q charged %s", resp.StatusCode, body, resp.Header.Get("X-Credits-Charged"))
				}
			}
			if got := up.protoCounts(); got[1] != 3 || len(got) != 1 {
				t.Errorf("upstream saw protocols %v, want 3 HTTP/1.1 calls", got)
			}
		})
	}
}

// h2Behaviour is what the raw HTTP/2 upstream does with a stream: it returns false to close
// the connection.
type h2Behaviour func(fr *http2.Framer, stream uint32, n int64) bool

// rawH2 is an HTTP/2 upstream written frame by frame, on a TLS listener that speaks h2 only.
// It counts the HEADERS frames (one per stream) and connections it receives.
type rawH2 struct {
	url            string
	cert           *x509.Certificate
	headers, conns atomic.Int64
}

func newRawH2(t *testing.T, behave h2Behaviour) *rawH2 {
	t.Helper()
	// httptest's certificate, for 127.0.0.1.
	ts := httptest.NewUnstartedServer(http.NotFoundHandler())
	ts.StartTLS()
	certs, leaf := ts.TLS.Certificates, ts.Certificate()
	ts.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: certs, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &rawH2{url: "https://" + ln.Addr().String(), cert: leaf}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go s.serve(c, behave)
		}
	}()
	return s
}

func (s *rawH2) serve(c net.Conn, behave h2Behaviour) {
	defer c.Close()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if fr.WriteSettings() != nil {
		return
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() && fr.WriteSettingsAck() != nil {
				return
			}
		case *http2.PingFrame:
			if !f.IsAck() && fr.WritePing(true, f.Data) != nil {
				return
			}
		case *http2.MetaHeadersFrame:
			if !behave(fr, f.StreamID, s.headers.Add(1)) {
				return
			}
		}
	}
}

// answerOK writes a 200 "ok" on stream.
func answerOK(fr *http2.Framer, stream uint32) bool {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	_ = enc.WriteField(hpack.HeaderField{Name: "content-length", Value: "2"})
	if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: b.Bytes(), EndHeaders: true}) != nil {
		return false
	}
	return fr.WriteData(stream, true, []byte("ok")) == nil
}

// TestHTTP2OneAttemptPerCall: an HTTP/2 upstream that resets each stream with PROTOCOL_ERROR
// (which Go's HTTP/2 transport would resend), or drops the connection after reading the
// HEADERS, receives each admitted call once; the call is answered 502 and refunded.
func TestHTTP2OneAttemptPerCall(t *testing.T) {
	tests := []struct {
		name   string
		behave h2Behaviour
	}{
		{"RST_STREAM PROTOCOL_ERROR", func(fr *http2.Framer, stream uint32, _ int64) bool {
			return fr.WriteRSTStream(stream, http2.ErrCodeProtocol) == nil
		}},
		{"connection closed after HEADERS", func(*http2.Framer, uint32, int64) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newRawH2(t, tt.behave)
			f := newFixture(t, func(c *Config) {
				c.Upstream, _ = url.Parse(up.url)
				c.UpstreamTLS = trusting(up.cert)
			})
			calls := []struct {
				method, path string
				header       map[string]string
				body         string
			}{
				{"GET", "/crm/v8/Leads?cvid=1", nil, ""},
				{"HEAD", "/crm/v8/Leads?cvid=1", nil, ""},
				{"POST", "/crm/bulk/v8/read", map[string]string{"Idempotency-Key": "k1"}, ""},
				{"DELETE", "/crm/v8/Leads/1", map[string]string{"X-Idempotency-Key": "k2"}, ""},
				{"OPTIONS", "/crm/v8/users", nil, ""},
				{"POST", "/crm/v8/Leads", nil, records(25)},
			}
			for _, tt := range calls {
				before := up.headers.Load()
				hdr := map[string]string{"X-Api-Key": "acme-key"}
				for k, v := range tt.header {
					hdr[k] = v
				}
				resp, body := do(t, tt.method, f.url+tt.path, hdr, tt.body)
				if got := up.headers.Load() - before; got != 1 {
					t.Errorf("%s %s: the upstream received the call %d times, want once", tt.method, tt.path, got)
				}
				if resp.StatusCode != 502 || resp.Header.Get("X-Credits-Charged") != "0" {
					t.Errorf("%s %s: %d, charged %s; want 502, refunded (%s)", tt.method, tt.path, resp.StatusCode, resp.Header.Get("X-Credits-Charged"), body)
				}
			}
			if got := f.used(t, "acme", 1000); got != 0 {
				t.Errorf("window holds %d credits after refunds, want 0", got)
			}
		})
	}
}

// TestHTTP2ResponseHeaderTimeout: an HTTP/2 upstream that takes the call and never answers
// is given UpstreamTimeout; the call is answered 504, sent once and refunded.
func TestHTTP2ResponseHeaderTimeout(t *testing.T) {
	up := newRawH2(t, func(*http2.Framer, uint32, int64) bool { return true })
	f := newFixture(t, func(c *Config) {
		c.Upstream, _ = url.Parse(up.url)
		c.UpstreamTLS = trusting(up.cert)
		c.UpstreamTimeout = 100 * time.Millisecond
	})
	resp, body := do(t, "GET", f.url+"/crm/v8/Leads?cvid=1", map[string]string{"X-Api-Key": "acme-key"}, "")
	if resp.StatusCode != 504 || resp.Header.Get("X-Credits-Charged") != "0" || up.headers.Load() != 1 || f.used(t, "acme", 1000) != 0 {
		t.Errorf("%d charged %s, sent %d times, window %d; want 504, 0, once, 0 (%s)",
			resp.StatusCode, resp.Header.Get("X-Credits-Charged"), up.headers.Load(), f.used(t, "acme", 1000), body)
	}
}

// TestHTTP2RefusedStreamSentAgain: a call the upstream provably did not process
// (REFUSED_STREAM, or a GOAWAY whose last stream is below it) is sent once more on another
// connection, if it has no body; never a third time, and never with a body.
func TestHTTP2RefusedStreamSentAgain(t *testing.T) {
	refuse := func(fr *http2.Framer, stream uint32, _ int64) bool {
		return fr.WriteRSTStream(stream, http2.ErrCodeRefusedStream) == nil
	}
	goAway := func(fr *http2.Framer, stream uint32, _ int64) bool {
		_ = fr.WriteGoAway(stream-1, http2.ErrCodeNo, nil)
		return true
	}
	firstOnly := func(b h2Behaviour) h2Behaviour {
		return func(fr *http2.Framer, stream uint32, n int64) bool {
			if n == 1 {
				return b(fr, stream, n)
			}
			return answerOK(fr, stream)
		}
	}
	tests := []struct {
		name       string
		behave     h2Behaviour
		body       string
		wantStatus int
		wantSent   int64
		wantUsed   int64
	}{
		{"refused once", firstOnly(refuse), "", 200, 2, 3},
		{"GOAWAY once", firstOnly(goAway), "", 200, 2, 3},
		{"refused always", refuse, "", 502, 2, 0},
		{"refused, with a body", firstOnly(refuse), records(25), 502, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newRawH2(t, tt.behave)
			f := newFixture(t, func(c *Config) {
				c.Upstream, _ = url.Parse(up.url)
				c.UpstreamTLS = trusting(up.cert)
			})
			method, path := "GET", "/crm/v8/Leads?cvid=1"
			if tt.body != "" {
				method, path = "POST", "/crm/v8/Leads"
			}
			resp, body := do(t, method, f.url+path, map[string]string{"X-Api-Key": "acme-key"}, tt.body)
			if resp.StatusCode != tt.wantStatus || up.headers.Load() != tt.wantSent || f.used(t, "acme", 1000) != tt.wantUsed {
				t.Errorf("%d %q, sent %d times, window %d; want %d, %d, %d",
					resp.StatusCode, body, up.headers.Load(), f.used(t, "acme", 1000), tt.wantStatus, tt.wantSent, tt.wantUsed)
			}
			if tt.wantSent == 2 && up.conns.Load() != 2 {
				t.Errorf("sent again on %d connections, want 2 (another one)", up.conns.Load())
			}
		})
	}
}

// BenchmarkUpstreamProtocols is an allowed call through the gateway to a TLS upstream on
// loopback, over each protocol. Allocations count the upstream server's too (same process).
func BenchmarkUpstreamProtocols(b *testing.B) {
	for _, http1Only := range []bool{true, false} {
		name := "HTTP2"
		if http1Only {
			name = "HTTP1"
		}
		b.Run(name, func(b *testing.B) {
			up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, `{"ok":true}`)
			}))
			up.EnableHTTP2 = true
			up.StartTLS()
			defer up.Close()
			u, _ := url.Parse(up.URL)
			store, _ := limiter.NewMemoryStore(limiter.Options{})
			list, _ := orgs.Parse("bench:limit=1000000000000,keys=bench-key")
			dir, _ := orgs.NewDirectory(list)
			costs, _ := costtable.Builtin("zoho-crm")
			gw, err := New(Config{
				Upstream: u, UpstreamTLS: trusting(up.Certificate()), UpstreamHTTP1Only: http1Only,
				Store: store, Costs: costs, Orgs: dir, LimitOf: func(o *orgs.Org) int64 { return o.Limit }, Clock: time.Now,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer gw.Close()
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("GET", "/crm/v2/users", nil)
				req.Header.Set("X-Api-Key", "bench-key")
				w := httptest.NewRecorder()
				gw.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
