package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HTTP/2 to the upstream, one attempt per call.
//
// Transport.NewClientConn (net/http, Go 1.26) dials one connection with the transport's
// dialer, TLS configuration and timeouts, and negotiates HTTP/2 or HTTP/1.1 by ALPN. Its
// RoundTrip sends the request on that connection once: the resending loop of HTTP/2 lives in
// the transport's RoundTrip (shouldRetryRequest, canRetryError), which this path never
// calls. golang.org/x/net/http2's Transport.NewClientConn would do the same with a second
// copy of the HTTP/2 client in the binary, and would leave TLS, ALPN and the response-header
// timeout to this package; the standard library's takes them from the http.Transport
// NewTransport already builds, so both protocols share one set of settings.
//
// h2Pool keeps a few such connections per upstream address and sends each call on one
// that can take another stream (ClientConn.Reserve), dialing a new one, shared by the calls
// waiting for it, when none can. An upstream that answers the handshake with http/1.1 has
// its calls sent by the HTTP/1.1 one-attempt transport instead, and is asked again after
// h1Recheck.
//
// A call is sent a second time, on another connection, in one case only: it has no body,
// and the upstream provably did not process it (RFC 9113 §8.7). That is a connection found
// unusable before the call's stream was opened (nothing was written), a REFUSED_STREAM
// reset, or a GOAWAY whose last stream ID is below the call's stream. A call with a body is
// never sent again: the failed attempt closed its body. The standard library does not export
// these errors, so they are told by their text: should it change, such calls are not sent
// again but answered 502 and refunded (TestHTTP2RefusedStreamSentAgain notices). A
// PROTOCOL_ERROR reset, a connection lost after the call's headers were written, or any
// other failure is never followed by a second attempt: the call is answered 502 and
// refunded.

// h1Recheck is how long an upstream that chose HTTP/1.1 is sent HTTP/1.1 before the next
// handshake asks it again.
const h1Recheck = 5 * time.Minute

// UpstreamTransport sends each call to the upstream at most once: HTTP/2 to https://
// upstreams that offer it by ALPN, HTTP/1.1 otherwise (plain http:// upstreams always).
// Build it with NewUpstreamTransport; Close it when done.
type UpstreamTransport struct {
	h1 *http.Transport // HTTP/1.1 only, one attempt per call (oneAttempt)
	h2 *h2Pool         // nil: HTTP/1.1 only
}

// NewUpstreamTransport returns a transport to upstreams with responseHeaderTimeout as the
// longest wait for a response's headers (zero: no bound), tlsConfig for https:// upstreams
// (nil: the system's roots, no client certificate; it is cloned, not changed) and HTTP/2
// offered to https:// upstreams when http2 is true.
func NewUpstreamTransport(responseHeaderTimeout time.Duration, tlsConfig *tls.Config, http2 bool) *UpstreamTransport {
	t := NewTransport(responseHeaderTimeout)
	t.TLSClientConfig = tlsConfig.Clone()
	u := &UpstreamTransport{h1: oneAttempt(t)}
	if http2 {
		d := NewTransport(responseHeaderTimeout)
		d.TLSClientConfig = tlsConfig.Clone()
		if d.TLSClientConfig == nil {
			d.TLSClientConfig = &tls.Config{}
		}
		d.TLSClientConfig.NextProtos = []string{"h2", "http/1.1"}
		d.Protocols = new(http.Protocols)
		d.Protocols.SetHTTP1(true)
		d.Protocols.SetHTTP2(true)
		// A connection that has gone silent (no FIN, no RST) is found by a ping and closed,
		// rather than taking new calls until each times out.
		d.HTTP2 = &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second}
		u.h2 = &h2Pool{dialer: d, hosts: make(map[string]*h2Host)}
	}
	return u
}

// RoundTrip sends r once.
func (u *UpstreamTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if u.h2 == nil || r.URL.Scheme != "https" {
		return u.h1.RoundTrip(r)
	}
	resp, err := u.h2.roundTrip(r)
	if err == errSpeaksHTTP1 {
		return u.h1.RoundTrip(r)
	}
	return resp, err
}

// CloseIdleConnections closes the connections that carry no call.
func (u *UpstreamTransport) CloseIdleConnections() {
	u.h1.CloseIdleConnections()
	if u.h2 != nil {
		u.h2.closeIdle(false)
	}
}

// Close closes the idle connections, and every other one as soon as its calls are done.
// Calls in flight are not affected; calls made after Close still work, on connections
// closed after them.
func (u *UpstreamTransport) Close() {
	u.h1.CloseIdleConnections()
	if u.h2 != nil {
		u.h2.closeIdle(true)
	}
}

// h2Pool holds the HTTP/2 connections to https:// upstreams, by address.
type h2Pool struct {
	dialer *http.Transport // only for NewClientConn: its own RoundTrip is never called
	closed atomic.Bool     // connections are closed once they carry no call
	mu     sync.Mutex
	hosts  map[string]*h2Host
}

// h2Host is one upstream address: its connections, a dial under way, what it speaks.
type h2Host struct {
	conns   []*http.ClientConn
	dial    *h2Dial   // nil: none under way
	h1Until time.Time // the upstream chose HTTP/1.1: until then its calls go by HTTP/1.1
}

// h2Dial is a connection being made; done is closed when err is set, or the connection is in
// the pool.
type h2Dial struct {
	done chan struct{}
	err  error
}

// errSpeaksHTTP1 tells UpstreamTransport to send the call by HTTP/1.1: the upstream chose it.
var errSpeaksHTTP1 = errors.New("gateway: the upstream speaks HTTP/1.1")

// roundTrip sends r on a pooled connection, or returns errSpeaksHTTP1 without sending it.
func (p *h2Pool) roundTrip(r *http.Request) (*http.Response, error) {
	addr := r.URL.Host
	if r.URL.Port() == "" {
		addr = net.JoinHostPort(r.URL.Hostname(), "443")
	}
	var failed *http.ClientConn
	for {
		cc, err := p.get(r.Context(), addr, failed)
		if err != nil {
			return nil, err
		}
		resp, err := cc.RoundTrip(r)
		if err == nil || failed != nil || !unprocessed(r, err) {
			return resp, err
		}
		failed = cc // once more, on another connection
	}
}

// unprocessed reports whether err says the upstream did not process r, a call without a
// body, so that sending it again cannot do the work twice (see the comment at the top of this
// file). A call with a body is never sent again: the failed attempt closed the body.
func unprocessed(r *http.Request, err error) bool {
	if r.Body != nil && r.Body != http.NoBody {
		return false
	}
	switch msg := err.Error(); {
	case msg == "http2: client conn not usable": // the stream was never opened
		return true
	case msg == "http2: Transport received Server's graceful shutdown GOAWAY":
		return true // the GOAWAY's last stream ID is below the call's stream
	default:
		return strings.HasPrefix(msg, "stream error: ") && strings.HasSuffix(msg, "; REFUSED_STREAM; received from peer")
	}
}

// get returns a connection to addr with a stream reserved for one call, other than avoid,
// dialing one if none can take the call; errSpeaksHTTP1 if addr chose HTTP/1.1.
func (p *h2Pool) get(ctx context.Context, addr string, avoid *http.ClientConn) (*http.ClientConn, error) {
	for {
		p.mu.Lock()
		h := p.hosts[addr]
		if h == nil {
			h = &h2Host{}
			p.hosts[addr] = h
		}
		if !h.h1Until.IsZero() && time.Now().Before(h.h1Until) {
			p.mu.Unlock()
			return nil, errSpeaksHTTP1
		}
		live := h.conns[:0]
		for _, c := range h.conns {
			if c.Err() == nil {
				live = append(live, c)
			}
		}
		clear(h.conns[len(live):])
		h.conns = live
		for _, c := range h.conns {
			if c != avoid && c.Reserve() == nil {
				p.mu.Unlock()
				return c, nil
			}
		}
		d := h.dial
		if d == nil {
			d = &h2Dial{done: make(chan struct{})}
			h.dial = d
			go p.dial(addr, h, d)
		}
		p.mu.Unlock()
		select {
		case <-d.done:
			if d.err != nil {
				return nil, d.err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// dial makes a connection to addr for the calls waiting on d. It runs on its own, bounded by
// the dialer's dial and TLS handshake timeouts, so that a caller that leaves does not fail
// the dial for the others.
func (p *h2Pool) dial(addr string, h *h2Host, d *h2Dial) {
	var proto string
	trace := &httptrace.ClientTrace{TLSHandshakeDone: func(cs tls.ConnectionState, _ error) {
		proto = cs.NegotiatedProtocol
	}}
	cc, err := p.dialer.NewClientConn(httptrace.WithClientTrace(context.Background(), trace), "https", addr)
	if err == nil && proto != "h2" {
		_ = cc.Close()
		cc = nil
	}
	if cc != nil {
		cc.SetStateHook(p.stateChanged)
	}
	p.mu.Lock()
	h.dial = nil
	switch {
	case err != nil:
		d.err = err
	case cc == nil:
		h.h1Until = time.Now().Add(h1Recheck)
	default:
		h.h1Until = time.Time{}
		h.conns = append(h.conns, cc)
	}
	p.mu.Unlock()
	close(d.done)
}

// stateChanged runs when a connection's calls finish, its stream limit rises, or it fails.
// It may run inside Reserve, with p.mu held, so it must not take p.mu: closed connections are
// dropped from the pool by get.
func (p *h2Pool) stateChanged(cc *http.ClientConn) {
	if p.closed.Load() && cc.InFlight() == 0 {
		_ = cc.Close()
	}
}

// closeIdle closes the connections that carry no call; with closing, the others are closed
// as their calls finish.
func (p *h2Pool) closeIdle(closing bool) {
	if closing {
		p.closed.Store(true)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.hosts {
		for _, c := range h.conns {
			if c.InFlight() == 0 {
				_ = c.Close()
			}
		}
	}
}
