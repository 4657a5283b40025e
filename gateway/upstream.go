package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// An admitted call reaches the upstream at most once.
//
// http.Transport sends a request again on another pooled connection when the one it used
// fails before a response (the upstream closed it, or reset it, after reading the request),
// if the request is "replayable": no body, and GET, HEAD, OPTIONS, TRACE or an
// Idempotency-Key header. An upstream that drops connections would then receive one paid
// call once per pooled connection, and the call would still be refunded as a 502. The
// transport asks its Proxy function which proxy to use before every attempt, before it takes
// a connection: the gateway's transports count the attempts of each call there, and refuse a
// second one, so not a byte of it is written. The call is answered 502 and refunded, as any
// call whose connection failed.
//
// HTTP/2 is not spoken through http.Transport: its HTTP/2 transport resends requests on its
// own, in a loop the Proxy function never sees (after a GOAWAY, a REFUSED_STREAM, and also an
// RST_STREAM PROTOCOL_ERROR from the peer, which can come after the upstream did the work).
// UpstreamTransport speaks HTTP/2 to https:// upstreams through connections of its own (see
// h2pool.go), where each RoundTrip is one attempt.

// errRetryRefused fails a second upstream attempt of a call, before it takes a connection.
var errRetryRefused = errors.New("gateway: the upstream connection failed; the call is not sent twice")

// attemptsKey is the context key of a call's *attempts.
type attemptsKey struct{}

// attempts counts the upstream attempts of one call. It lives in the pooled callWriter.
type attempts struct{ n int }

// oneAttempt makes t refuse a second attempt of a call that carries attempts in its context,
// and speak HTTP/1.1 only. t's own Proxy, if any, still chooses the proxy.
func oneAttempt(t *http.Transport) *http.Transport {
	t = t.Clone()
	next := t.Proxy
	t.Proxy = func(r *http.Request) (*url.URL, error) {
		if a, ok := r.Context().Value(attemptsKey{}).(*attempts); ok {
			if a.n++; a.n > 1 {
				return nil, errRetryRefused
			}
		}
		if next == nil {
			return nil, nil
		}
		return next(r)
	}
	t.ForceAttemptHTTP2 = false
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP1(true)
	// Clone set up HTTP/2 on the original first, adding h2 to the TLS configuration's ALPN
	// list, and the clone copies that list: offered h2, an upstream would choose it and
	// receive HTTP/1.1 on an HTTP/2 connection.
	if c := t.TLSClientConfig; c != nil {
		c.NextProtos = slices.DeleteFunc(slices.Clone(c.NextProtos), func(p string) bool { return p == "h2" })
	}
	return t
}

// NewTransport returns the upstream transport: pooled keep-alive connections sized for a
// gateway (the default keeps only 2 idle connections per host) and bounded waits.
func NewTransport(responseHeaderTimeout time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 512
	t.ResponseHeaderTimeout = responseHeaderTimeout
	t.Proxy = nil // the upstream is addressed directly, never through HTTP_PROXY
	return t
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

// withAttempts returns r carrying a, for oneAttempt to count.
func withAttempts(r *http.Request, a *attempts) *http.Request {
	a.n = 0
	return r.WithContext(context.WithValue(r.Context(), attemptsKey{}, a))
}
