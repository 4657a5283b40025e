package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/creditgate/creditgate/limiter"
)

// RateLimitFields says which rate-limit fields answers carry (CREDITGATE_RATELIMIT_FIELDS).
type RateLimitFields string

const (
	// FieldsDraft: the structured RateLimit and RateLimit-Policy of the current IETF draft
	// (draft-ietf-httpapi-ratelimit-headers-08 and later: "credits";r=…;t=…), plus X-RateLimit-*.
	FieldsDraft RateLimitFields = "draft"
	// FieldsDraft7: the combined form of draft 7 (RateLimit: limit=…, remaining=…, reset=…;
	// RateLimit-Policy: <limit>;w=<window>), which express-rate-limit's parser reads, plus
	// X-RateLimit-*.
	FieldsDraft7 RateLimitFields = "draft7"
	// FieldsX: X-RateLimit-Limit, -Remaining and -Reset only.
	FieldsX RateLimitFields = "x"
)

// setPolicyFields writes what is known of the rate-limit fields of t when the window was not
// read (the store could not decide, or the call was answered before it): the policy, and
// nothing charged. Remaining and reset are unknown, so they are not sent.
func setPolicyFields(h http.Header, t *tenant) {
	h.Set("X-Ratelimit-Limit", t.limit)
	if t.policy != "" {
		h.Set("Ratelimit-Policy", t.policy)
	}
	h.Set("X-Credits-Charged", "0")
}

// setLimitFields writes the rate-limit fields (README "Response fields") for decision d. It allocates twice
// whatever the decision: one string holding every number (the values are slices of it) and
// one array behind the six header values. The names are already canonical.
func setLimitFields(h http.Header, t *tenant, d limiter.Decision) {
	wait := d.Reset
	if !d.Allowed && d.RetryAfter > 0 {
		wait = d.RetryAfter // 0 for a cost above the whole limit: waiting never helps, show the reset
	}
	limit, policy := t.limit, t.policy
	if d.Limit != t.key.Limit { // an add-on limit changed at run time (rare: allocates)
		limit = strconv.FormatInt(d.Limit, 10)
		policy = t.policyFor(limit)
	}
	var buf [200]byte // room for every number at its longest
	b := strconv.AppendInt(buf[:0], d.Remaining, 10)
	nRemaining := len(b)
	b = strconv.AppendInt(b, ceilSeconds(wait), 10)
	nSecs := len(b)
	switch t.fields {
	case FieldsDraft7:
		b = append(b, "limit="...)
		b = append(b, limit...)
		b = append(b, ", remaining="...)
		b = append(b, b[:nRemaining]...)
		b = append(b, ", reset="...)
		b = append(b, b[nRemaining:nSecs]...)
	case FieldsDraft:
		b = append(b, `"credits";r=`...)
		b = append(b, b[:nRemaining]...)
		b = append(b, ";t="...)
		b = append(b, b[nRemaining:nSecs]...)
		if c := d.ConcurrencyLimit; c > 0 && c == t.key.Concurrency {
			// The org's cap on calls in flight: what is left of it, and when it refused the
			// call, the wait it asks for (Retry-After: 1).
			b = append(b, `, "concurrency";r=`...)
			b = strconv.AppendInt(b, max(c-d.InFlight, 0), 10)
			if !d.Allowed {
				b = append(b, ";t=1"...)
			}
		}
	}
	nField := len(b)
	b = strconv.AppendInt(b, d.Cost, 10)
	s := string(b)

	v := make([]string, 6)
	v[0], v[1], v[2] = limit, s[:nRemaining], s[nRemaining:nSecs]
	v[3], v[4], v[5] = policy, s[nSecs:nField], s[nField:]
	h["X-Ratelimit-Limit"] = v[0:1:1]
	h["X-Ratelimit-Remaining"] = v[1:2:2]
	h["X-Ratelimit-Reset"] = v[2:3:3]
	if t.fields != FieldsX {
		h["Ratelimit-Policy"] = v[3:4:4]
		h["Ratelimit"] = v[4:5:5]
	}
	h["X-Credits-Charged"] = v[5:6:6]
}

// policyFor is t's RateLimit-Policy with limit credits ("" when the fields have none).
func (t *tenant) policyFor(limit string) string {
	switch t.fields {
	case FieldsDraft7:
		return limit + t.policyTail
	case FieldsX:
		return ""
	}
	return `"credits";q=` + limit + t.policyTail
}

// setRemaining rewrites the fields of an answer after its credits were given back (a refund):
// remaining is raised, the rest stays as it was.
func setRemaining(h http.Header, t *tenant, limit, remaining int64) {
	r := strconv.FormatInt(min(remaining, limit), 10)
	h.Set("X-Ratelimit-Remaining", r)
	switch t.fields {
	case FieldsDraft7:
		h.Set("Ratelimit", "limit="+strconv.FormatInt(limit, 10)+", remaining="+r+", reset="+h.Get("X-Ratelimit-Reset"))
	case FieldsDraft:
		_, rest, _ := strings.Cut(h.Get("Ratelimit"), ", ") // other items (concurrency) stay as they were
		if rest != "" {
			rest = ", " + rest
		}
		h.Set("Ratelimit", `"credits";r=`+r+";t="+h.Get("X-Ratelimit-Reset")+rest)
	}
}

// callWriter carries a proxied call's state to the proxy's error hook. ReverseProxy hands
// its ResponseWriter to ErrorHandler unchanged, so the state rides there: no copy of the
// request (WithContext) and no context value per call. Pooled: a call without a body
// allocates nothing for it. Unwrap lets http.ResponseController reach the server's writer
// (flush, hijack for upgrades).
type callWriter struct {
	http.ResponseWriter
	st callState
	// held is the gateway's rate-limit fields as set before the call went upstream. An
	// upstream's interim (1xx) response would take them: ReverseProxy writes the header map
	// with each 1xx (adding the upstream's own fields) and then clears it. So interim answers
	// go out without them, and restore puts them back for the final one.
	held     [len(limitFields)][]string
	heldCORS [len(corsFields)][]string // with a CORS policy
	interim  bool                      // a 1xx went out since the fields were last restored
	att      attempts                  // the call's upstream attempts, for replayable calls
	// left is what the final response's Content-Length says is still to be written; 0 when
	// it declared none (see Write).
	left int64
}

// hold records the gateway's rate-limit fields before the call goes upstream.
func (c *callWriter) hold() {
	h := c.ResponseWriter.Header()
	for i, k := range limitFields {
		c.held[i] = h[k]
	}
	for i, k := range corsFields {
		c.heldCORS[i] = h[k]
	}
}

// restore puts the held fields back after interim responses, dropping any the upstream's
// 1xx left; without a 1xx it does nothing.
func (c *callWriter) restore() {
	if !c.interim {
		return
	}
	c.interim = false
	h := c.ResponseWriter.Header()
	for i, k := range limitFields {
		if c.held[i] != nil {
			h[k] = c.held[i]
		} else {
			delete(h, k)
		}
	}
	for i, k := range corsFields {
		if c.heldCORS[i] != nil {
			h[k] = c.heldCORS[i]
		}
	}
}

// Unwrap lets http.ResponseController reach the server's writer; a hijack for an upgrade
// (101) goes this way rather than through WriteHeader, so the fields are restored first.
func (c *callWriter) Unwrap() http.ResponseWriter {
	c.restore()
	return c.ResponseWriter
}

// WriteHeader records the upstream's latency to its response headers: ReverseProxy writes
// the header of the upstream's final response right after reading it (1xx are interim). The
// rate-limit fields go with the final response, not with an interim one.
func (c *callWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		h := c.ResponseWriter.Header()
		for _, k := range limitFields {
			delete(h, k)
		}
		c.interim = true
		c.ResponseWriter.WriteHeader(code)
		return
	}
	c.restore()
	if flushPolicy {
		c.left = declaredLength(c.ResponseWriter.Header())
	}
	if st := &c.st; st.rs != nil && !st.observed {
		st.observed = true
		st.rs.observeUpstream(code, st.sent)
	}
	c.ResponseWriter.WriteHeader(code)
}

// Write passes p on, and flushes it to the client when the upstream seems to have paused: the
// flush policy. ReverseProxy flushes at once only the bodies of unknown length and event
// streams; a body with a Content-Length stays in the server's buffers (4 KiB) until they
// fill or the call ends, so an upstream that sends a few bytes and then takes its time (a
// progress stream, a long computation after the first rows) has its client wait for all of
// it. The proxy writes what each read of the upstream's body returned, through a 32 KiB
// buffer: a write shorter than that came from a read that took all the upstream had sent,
// so the next read is likely to wait, and what was written goes out now. A full write (more
// is likely there already) and the write that completes the body (the server sends it when
// the call ends, in the same packet as ever) are not flushed. So a response read in one go,
// the common case, costs nothing more: no allocation, no extra system call, and HTTP/2
// still ends its stream with the last data frame. The cost falls on bodies that arrive in
// pieces, one flush per piece. What it does not cover: headers sent before any of the body,
// which wait for its first bytes.
func (c *callWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	if c.left > 0 {
		c.left -= int64(n)
		if c.left > 0 && len(p) < len(copyBuffer{}) && err == nil {
			flushClient(c.ResponseWriter)
		}
	}
	return n, err
}

// flushPolicy turns the flush policy of callWriter.Write on; BenchmarkFlushPolicy measures
// the gateway without it.
var flushPolicy = true

// declaredLength is the Content-Length in h, or 0 without a valid one.
func declaredLength(h http.Header) int64 {
	v := h["Content-Length"]
	if len(v) != 1 {
		return 0
	}
	n, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// flushClient sends what w holds to the client, as http.ResponseController would, without
// allocating one. A failure shows in the next write.
func flushClient(w http.ResponseWriter) {
	for {
		switch f := w.(type) {
		case interface{ FlushError() error }:
			_ = f.FlushError()
			return
		case http.Flusher:
			f.Flush()
			return
		case interface{ Unwrap() http.ResponseWriter }:
			w = f.Unwrap()
		default:
			return
		}
	}
}

var callWriters = sync.Pool{New: func() any { return new(callWriter) }}

// stateOf returns the state of the call w belongs to, or nil.
func stateOf(w http.ResponseWriter) *callState {
	if c, ok := w.(*callWriter); ok {
		return &c.st
	}
	return nil
}

// bufferPool lends the proxy its 32 KiB copy buffers instead of allocating one per response.
// It stores array pointers, which fit in an interface without an allocation.
type bufferPool struct{ p sync.Pool }

type copyBuffer [32 << 10]byte

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new(copyBuffer) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*copyBuffer)[:] }

// Put returns buf to the pool; ReverseProxy only puts back what Get gave it.
func (b *bufferPool) Put(buf []byte) {
	if len(buf) == len(copyBuffer{}) {
		b.p.Put((*copyBuffer)(buf))
	}
}

// noCancel is the cancel func of a context that has none.
func noCancel() {}

// spendContext bounds a Spend by StoreTimeout. The in-memory store never waits, so its calls
// skip the timer (four allocations and a timer-heap update per call).
func (g *Gateway) spendContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if g.storeLocal {
		return ctx, noCancel
	}
	return context.WithTimeout(ctx, g.cfg.StoreTimeout)
}
