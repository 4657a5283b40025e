package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// An admitted call reaches the upstream at most once.
//
// http.Transport sends a request again on another pooled connection when the one it used
// fails before a response (the upstream closed it, or reset it, after reading the request),
// if the request is "replayable": no body, and GET, HEAD, OPTIONS, TRACE or an
// Idempotency-Key header. An upstream that drops connections would then receive one paid
// call once per pooled connection, and the call would still be refunded as a 502. So the
// gateway watches each replayable call's attempts (httptrace GotConn): the connection of a
// second attempt refuses every write, so not a byte of it leaves, and the call's context is
// cancelled, so the transport stops trying. The call is answered 502 and refunded, as any
// call whose connection failed. HTTP/2 connections are left alone: their transport sends a
// request again only when the server said it had not processed it (REFUSED_STREAM, GOAWAY).

// errRetryRefused is what a connection answers to the writes of a second attempt.
var errRetryRefused = errors.New("gateway: second upstream attempt refused")

// upstreamConn is a connection to the upstream that can be made to refuse all writes.
type upstreamConn struct {
	net.Conn
	refuse atomic.Bool
}

func (c *upstreamConn) Write(p []byte) (int, error) {
	if c.refuse.Load() {
		return 0, errRetryRefused
	}
	return c.Conn.Write(p)
}

// NewTransport returns the upstream transport: pooled keep-alive connections sized for a
// gateway (the default keeps only 2 idle connections per host), bounded waits, and
// connections the gateway can stop a second attempt on.
func NewTransport(responseHeaderTimeout time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	dial := (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &upstreamConn{Conn: c}, nil
	}
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 512
	t.ResponseHeaderTimeout = responseHeaderTimeout
	t.Proxy = nil // the upstream is addressed directly, never through HTTP_PROXY
	return t
}

// attempts follows the upstream attempts of one call. It lives in the pooled callWriter,
// with its trace built once.
type attempts struct {
	trace   httptrace.ClientTrace
	n       int
	cancel  context.CancelFunc
	stopped bool // a second attempt was stopped
}

func (a *attempts) init() { a.trace.GotConn = a.gotConn }

func (a *attempts) gotConn(info httptrace.GotConnInfo) {
	c := info.Conn
	if tc, ok := c.(*tls.Conn); ok {
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			return
		}
		c = tc.NetConn()
	}
	if a.n++; a.n == 1 {
		return
	}
	if uc, ok := c.(*upstreamConn); ok {
		uc.refuse.Store(true)
	}
	a.stopped = true
	a.cancel()
}

// replayable reports whether http.Transport may send r again after a failed attempt
// (net/http's Request.isReplayable, for the request ReverseProxy builds from r: a body of
// length 0 is dropped).
func replayable(r *http.Request) bool {
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		return false
	}
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := r.Header["Idempotency-Key"]
	_, b := r.Header["X-Idempotency-Key"]
	return a || b
}
