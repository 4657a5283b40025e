package gateway

import (
	"net/http"
	"strconv"
	"sync"
)

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
