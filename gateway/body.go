package gateway

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Bodies whose records are counted are held in memory until the call ends. bodyBudget
// bounds how many bytes are held at once, in all and per org, so callers cannot exhaust
// the gateway's memory with large or slow uploads: a call that would pass a bound waits up
// to bodyBudgetWait for bytes to be given back, and is then answered 503, uncharged.

// bodyBudgetWait is how long a call waits for room in the body budget before it is refused.
const bodyBudgetWait = time.Second

// prefetchLimit is the largest declared body that is read before the call is admitted:
// smaller ones arrive with their headers in practice, and hold little of the budget while
// the store decides. A body larger than this, or of unknown length, is read only once the
// call holds its concurrency slot and the smallest cost of its rule.
const prefetchLimit = 64 << 10

// errBodyBudget is a body refused because the gateway holds as many body bytes as it may.
var errBodyBudget = errors.New("body buffer budget exhausted")

// bodyBudget counts the bytes held for counting: in all (at most total) and by org (at most
// perOrg each). The zero value is not usable; see newBodyBudget.
type bodyBudget struct {
	total, perOrg int64

	mu    sync.Mutex
	held  int64
	peak  int64
	orgs  map[string]int64
	freed chan struct{} // closed (and replaced) whenever bytes are given back

	heldG, peakG prometheus.Gauge
	refused      [2]prometheus.Counter // by scope: total, org
}

const (
	budgetScopeTotal = iota
	budgetScopeOrg
)

func newBodyBudget(total, perOrg int64, m *Metrics) *bodyBudget {
	b := &bodyBudget{
		total: total, perOrg: perOrg,
		orgs:  make(map[string]int64),
		freed: make(chan struct{}),
		heldG: m.bodyHeld, peakG: m.bodyPeak,
	}
	b.refused[budgetScopeTotal] = m.bodyRefused.WithLabelValues("total")
	b.refused[budgetScopeOrg] = m.bodyRefused.WithLabelValues("org")
	m.bodyLimit.Set(float64(total))
	return b
}

// acquire takes n bytes of the budget for org, waiting up to bodyBudgetWait (or until ctx
// ends) for room. It fails with errBodyBudget.
func (b *bodyBudget) acquire(ctx context.Context, org string, n int64) error {
	if n <= 0 {
		return nil
	}
	var timer *time.Timer
	for {
		b.mu.Lock()
		scope := -1
		switch {
		case b.orgs[org]+n > b.perOrg:
			scope = budgetScopeOrg
		case b.held+n > b.total:
			scope = budgetScopeTotal
		}
		if scope < 0 {
			b.held += n
			b.orgs[org] += n
			b.peak = max(b.peak, b.held)
			b.heldG.Set(float64(b.held))
			b.peakG.Set(float64(b.peak))
			b.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		freed := b.freed
		b.mu.Unlock()
		if n > b.perOrg || n > b.total {
			b.refused[scope].Inc() // can never fit (not reached: config keeps a body below both)
			return errBodyBudget
		}
		if timer == nil {
			timer = time.NewTimer(bodyBudgetWait)
		}
		select {
		case <-freed:
		case <-timer.C:
			b.refused[scope].Inc()
			return errBodyBudget
		case <-ctx.Done():
			timer.Stop()
			return errBodyBudget
		}
	}
}

// release gives back n bytes that org held.
func (b *bodyBudget) release(org string, n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.held -= n
	if left := b.orgs[org] - n; left > 0 {
		b.orgs[org] = left
	} else {
		delete(b.orgs, org)
	}
	b.heldG.Set(float64(b.held))
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// heldBody is a body buffered for counting, and what it holds of the budget until done.
type heldBody struct {
	raw     []byte // as sent, forwarded byte for byte
	decoded []byte // raw with its Content-Encoding removed, for counting; raw if none
	// countable is false when the body's encoding could not be removed (unknown coding, or
	// bytes that are not what it says): its records are not countable.
	countable bool
	org       string
	held      int64 // budget taken for raw
	// decodedHeld is the budget taken for decoded, when it is not raw.
	decodedHeld int64
}

// dropDecoded lets go of the decoded copy once the records are counted.
func (hb *heldBody) dropDecoded(b *bodyBudget) {
	if hb.decodedHeld > 0 {
		b.release(hb.org, hb.decodedHeld)
		hb.decodedHeld = 0
	}
	hb.decoded = nil
}

// buffer holds bytes as they arrive, growing within the budget up to a limit: at most
// limit bytes are held, and one byte past it (over) says the source is longer.
type buffer struct {
	b     *bodyBudget
	ctx   context.Context
	org   string
	buf   []byte
	held  int64 // capacity taken from the budget
	limit int64
	// exact: the size is known (limit is the declared Content-Length), so the buffer is
	// allocated once, at that size.
	exact bool
	// over is the first byte past limit, when the source was longer.
	over []byte
}

// grow makes room for at least one more byte, doubling the capacity up to the limit. While
// it copies, the old and the new buffers are both taken from the budget: at most 1.5 times
// the limit.
func (x *buffer) grow() error {
	c := min(max(int64(cap(x.buf))*2, 32<<10), x.limit)
	if x.exact {
		c = x.limit
	}
	if err := x.b.acquire(x.ctx, x.org, c); err != nil {
		return err
	}
	nb := make([]byte, len(x.buf), c)
	copy(nb, x.buf)
	x.b.release(x.org, x.held)
	x.buf, x.held = nb, c
	return nil
}

// readFrom reads r to its end into x, and reports whether r held more than the limit.
func (x *buffer) readFrom(r io.Reader) (over bool, err error) {
	for {
		if int64(len(x.buf)) == x.limit {
			// Full: only the end may be left, or one byte too many.
			var probe [1]byte
			n, err := r.Read(probe[:])
			switch {
			case n > 0:
				x.over = []byte{probe[0]}
				return true, nil
			case err == io.EOF:
				return false, nil
			case err != nil:
				return false, err
			}
			continue
		}
		if len(x.buf) == cap(x.buf) {
			if err := x.grow(); err != nil {
				return false, err
			}
		}
		n, err := r.Read(x.buf[len(x.buf):cap(x.buf)])
		x.buf = x.buf[:len(x.buf)+n]
		switch {
		case err == io.EOF:
			return false, nil
		case err != nil:
			return false, err
		}
	}
}

// read is what was read so far, with the byte past the limit if there was one.
func (x *buffer) read() []byte { return append(bytes.Clone(x.buf), x.over...) }

func (x *buffer) free() {
	x.b.release(x.org, x.held)
	x.buf, x.held = nil, 0
}

// readBody holds the call's body for counting its records (a body to count is read before
// the call is priced): a large one (or one of unknown length, or coded) only once the call
// holds its concurrency slot and the smallest cost of its rule (preDebit). It reports whether
// the call goes on to be priced; otherwise it has answered it, or, in shadow mode, forwarded
// it uncharged with its body as sent (bufferBody put back what it read).
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, c *call) bool {
	_, coded := r.Header["Content-Encoding"]
	large := r.ContentLength < 0 || r.ContentLength > prefetchLimit || coded
	if !g.cfg.Shadow && large && !g.preDebit(w, r, c) {
		return false
	}
	held, err := g.bufferBody(w, r, c.t.org.ID)
	c.held = held
	if err == nil {
		return true
	}
	if c.pre.Allowed {
		g.refundDecision(r, c.t, c.preKey, c.pre, c.preLocal, c.rule)
	}
	setPolicyFields(w.Header(), c.t)
	if g.pass(w, r, c, g.bodyRefusal(err)) {
		g.forward(w, r, c.callState)
		c.forwarded = true
	}
	return false
}

// bodyRefusal is the refusal of a call whose body to count could not be held: too large or
// no room in the budget (which shadow mode lets through), or unreadable.
func (g *Gateway) bodyRefusal(err error) refusal {
	ref := refusal{kind: final, out: outBadRequest, err: err, abandon: true, answerFields: keepFields,
		msg: "body not buffered", level: zapcore.InfoLevel, fields: []zap.Field{zap.Error(err)}}
	var tooLarge *bodyTooLargeError
	switch {
	case errors.Is(err, errBodyBudget):
		ref.kind, ref.reason, ref.out, ref.retry = rejection, reasonBodyBuffer, outBodyBudget, 1
		ref.msg, ref.level, ref.fields = "body buffer full", zapcore.WarnLevel, nil
	case errors.As(err, &tooLarge):
		ref.kind, ref.reason = rejection, reasonBodyTooLarge
	}
	ref.shadowFields = []zap.Field{zap.String("reason", reasonNames[ref.reason]), zap.Int64("max_bytes", g.cfg.MaxBodyBytes)}
	return ref
}

// abandonBody lets a call be answered without its body being read (or read in full): the
// server would read what is left of it before and after answering, with no deadline, so a
// client that stalls would hold its connection and never get its answer. Reads of it fail at
// once, and an HTTP/1 connection is closed after the answer (an HTTP/2 stream is reset on
// its own; closing would end the client's other streams).
func abandonBody(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor < 2 {
		w.Header().Set("Connection", "close")
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
}

// bufferBody reads the whole body of a call whose records are counted, so it can be counted
// and then forwarded byte for byte, within the body budget. The body it returns holds its
// bytes of the budget until release.
func (g *Gateway) bufferBody(w http.ResponseWriter, r *http.Request, org string) (*heldBody, error) {
	max := g.cfg.MaxBodyBytes
	if r.ContentLength > max {
		return nil, &bodyTooLargeError{max: max}
	}
	hb := &heldBody{org: org, countable: true}
	if r.Body == nil || r.Body == http.NoBody {
		return hb, nil
	}
	var rc *http.ResponseController
	if g.cfg.BodyTimeout > 0 {
		rc = http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(g.cfg.BodyTimeout)) != nil {
			rc = nil
		}
	}
	x := &buffer{b: g.bodies, ctx: r.Context(), org: org, limit: max}
	if r.ContentLength > 0 {
		// The declared size is taken at once, so the body lands in one allocation; it stays
		// taken while a slow client sends it (bounded by the body timeout).
		x.limit, x.exact = r.ContentLength, true
	}
	over, err := x.readFrom(r.Body)
	if rc != nil && err == nil {
		// Only a body read in time clears the deadline. A failed one keeps it expired, so
		// the server, which reads what is left of a body before it answers, gives up on the
		// stalled client at once instead of waiting for it with no deadline.
		_ = rc.SetReadDeadline(time.Time{})
	}
	if errors.Is(err, errBodyBudget) && r.Context().Err() != nil {
		err = r.Context().Err() // the client left while it waited for room: its failure, not the budget's
	}
	switch {
	case over && x.exact:
		x.free()
		return nil, fmt.Errorf("%w: longer than its Content-Length", errClientBody)
	case errors.Is(err, errBodyBudget), over:
		if g.cfg.Shadow {
			// Put back what was read: shadow mode forwards the call all the same.
			g.putBack(r, x.read())
		}
		x.free()
		if over {
			return nil, &bodyTooLargeError{max: max}
		}
		return nil, err
	case err != nil:
		x.free()
		return nil, fmt.Errorf("%w: %v", errClientBody, err)
	}
	hb.raw, hb.decoded, hb.held = x.buf, x.buf, x.held
	r.Body = io.NopCloser(bytes.NewReader(hb.raw))
	r.ContentLength = int64(len(hb.raw))
	r.TransferEncoding = nil // forwarded with a Content-Length now that its size is known

	if enc := r.Header["Content-Encoding"]; len(enc) > 0 {
		if err := g.decodeBody(r.Context(), hb, enc); err != nil {
			g.releaseBody(hb)
			return nil, err
		}
	}
	return hb, nil
}

// putBack makes the part of a body read so far readable again, ahead of the rest.
func (g *Gateway) putBack(r *http.Request, read []byte) {
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(read), r.Body), r.Body}
}

// releaseBody gives back what hb holds of the budget.
func (g *Gateway) releaseBody(hb *heldBody) {
	if hb == nil {
		return
	}
	hb.dropDecoded(g.bodies)
	g.bodies.release(hb.org, hb.held)
	hb.held = 0
}

// Bounds on decoding a compressed body to count its records.
const (
	// maxCodings is how many content codings a body may stack ("gzip, zstd").
	maxCodings = 2
	// inflateFloor is the decoded size below which the ratio bound does not apply: small
	// bodies of repeated records compress well, and cost little to hold.
	inflateFloor = 1 << 20
)

// decodeBody removes the content codings of hb.raw (the header's values, applied in the
// order listed) into hb.decoded, within the body budget and the bounds on decoded size
// (MaxBodyBytes, and MaxInflateRatio times the raw size past inflateFloor). A coding it does
// not know, or bytes that are not what the coding says, leave the body not countable.
func (g *Gateway) decodeBody(ctx context.Context, hb *heldBody, header []string) error {
	codings, n, ok := contentCodings(header)
	if !ok {
		hb.countable = false
		return nil
	}
	if n == 0 {
		return nil
	}
	rd, done, err := decoding(codings, n, bytes.NewReader(hb.raw))
	if err != nil {
		hb.countable = false
		return nil
	}
	defer done()
	limit := g.cfg.MaxBodyBytes
	if r := g.cfg.MaxInflateRatio; r > 0 {
		limit = min(limit, max(inflateFloor, r*int64(len(hb.raw))))
	}
	x := &buffer{b: g.bodies, ctx: ctx, org: hb.org, limit: limit}
	over, err := x.readFrom(rd)
	switch {
	case errors.Is(err, errBodyBudget):
		x.free()
		return err
	case over:
		x.free()
		return &bodyTooLargeError{max: g.cfg.MaxBodyBytes, decoded: true, ratio: g.cfg.MaxInflateRatio}
	case err != nil:
		x.free()
		hb.countable = false
		return nil
	}
	hb.decoded = x.buf
	hb.decodedHeld = x.held
	return nil
}

// contentCodings lists the codings of a Content-Encoding header, lower-cased, in the order
// applied ("identity" left out); ok is false when there are more than maxCodings.
func contentCodings(header []string) (codings [maxCodings]string, n int, ok bool) {
	for _, v := range header {
		for c := range strings.SplitSeq(v, ",") {
			c = strings.ToLower(strings.TrimSpace(c))
			if c == "" || c == "identity" {
				continue
			}
			if n == maxCodings {
				return codings, n, false
			}
			codings[n] = c
			n++
		}
	}
	return codings, n, true
}

// decoder returns a reader that removes coding from r, and what to call when done with it.
func decoder(coding string, r io.Reader) (io.Reader, func(), error) {
	switch coding {
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		zr.Multistream(true)
		return zr, func() { zr.Close() }, nil
	case "deflate":
		// RFC 9110 §8.4.1.2: zlib format. Some clients send raw deflate; take either.
		br := bufio.NewReader(r)
		if hdr, err := br.Peek(2); err == nil && (uint16(hdr[0])<<8|uint16(hdr[1]))%31 == 0 && hdr[0]&0x0f == 8 {
			zr, err := zlib.NewReader(br)
			if err != nil {
				return nil, nil, err
			}
			return zr, func() { zr.Close() }, nil
		}
		fr := flate.NewReader(br)
		return fr, func() { fr.Close() }, nil
	case "zstd":
		d := zstdDecoders.Get().(*zstd.Decoder)
		// Hidden behind a plain io.Reader: the decoder decodes a small in-memory source
		// whole, with no bound on its output, rather than streaming it within ours.
		if err := d.Reset(struct{ io.Reader }{r}); err != nil {
			zstdDecoders.Put(d)
			return nil, nil, err
		}
		return d, func() { _ = d.Reset(nil); zstdDecoders.Put(d) }, nil
	}
	return nil, nil, fmt.Errorf("unknown content coding %q", coding)
}

// decoding returns r with codings[:n] removed (the last listed was applied last), and what
// to call when done with it.
func decoding(codings [maxCodings]string, n int, r io.Reader) (io.Reader, func(), error) {
	var closers []func()
	done := func() {
		for _, c := range closers {
			c()
		}
	}
	for i := n - 1; i >= 0; i-- {
		dec, closeDec, err := decoder(codings[i], r)
		if err != nil {
			done()
			return nil, nil, err
		}
		closers = append(closers, closeDec)
		r = dec
	}
	return r, done, nil
}

// decodable reports whether decoder removes coding (lower case), or it is identity.
func decodable(coding string) bool {
	switch coding {
	case "gzip", "x-gzip", "deflate", "zstd", "identity":
		return true
	}
	return false
}

// zstdDecoders are synchronous decoders (one goroutine: the caller's) whose window is
// bounded, so a frame cannot make one allocate more than zstdMaxWindow.
var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdMaxWindow))
	if err != nil {
		panic("gateway: zstd decoder: " + err.Error()) // only for bad options
	}
	return d
}}

const zstdMaxWindow = 8 << 20
