package gateway

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/creditgate/creditgate/costtable"
)

// The settle step. A call priced by a rule that settles from the response
// (costtable.Response) is debited the rule's cost as a reservation; once the upstream's
// answer says what the call cost, the debit is corrected to that cost (Store.Settle), in the
// same bucket, with the usage by rule and the add-on meter.
//
//   - A header rule reads (and removes) its header in modifyResponse and settles before the
//     answer's headers go out: X-Credits-Charged shows the settled cost.
//   - A count or number rule reads the body as it streams to the client (settleBody), with
//     constant memory, decoding a content coding for counting only; it settles when the body
//     ends, before its last bytes are passed on. X-Credits-Charged shows the reservation, and
//     a trailer of the same name the settled cost where the answer is chunked anyway.
//   - An answer that cannot be read keeps the reservation (creditgate_settle_unread_total).
//   - A client that leaves does not escape the settled cost: the upstream's call is not
//     cancelled with the client's, and the rest of its body is read and counted, up to
//     settleDrainBytes more bytes and settleDrainTime after the client left. Past those, the
//     call is charged the rule's max when it has one, else it keeps its reservation.
const (
	settleDrainTime  = 60 * time.Second
	settleDrainBytes = 256 << 20
)

// settleKey is the context key under which the outgoing request of a call that settles
// carries its settling, for modifyResponse.
type settleKey struct{}

// settling is the settle step of one call. It lives while forward runs.
type settling struct {
	g    *Gateway
	rule *costtable.Response
	cw   *callWriter   // the call's state (cw.st) and its answer's fields
	in   *http.Request // the client's request, as the gateway received it
	body *settleBody   // the body being read; nil for a header rule or a body not read

	cancel context.CancelFunc // ends the upstream call
	stop   func() bool        // stops watching the client

	trailer  bool // the answer is chunked anyway: the settled cost goes in a trailer
	finished bool // settled, or the reservation kept
	ended    bool // end ran
	cost     int64
	addon    int64
}

// startSettle begins the settle step of the call cw carries, and returns the request to
// forward: one whose context the client's leaving does not end at once (see above).
func (g *Gateway) startSettle(cw *callWriter, r *http.Request) (*settling, *http.Request) {
	s := &settling{g: g, rule: cw.st.settle, cw: cw, in: r, cost: cw.st.d.Cost, addon: cw.st.d.Addon}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	s.cancel = cancel
	s.stop = context.AfterFunc(r.Context(), func() {
		t := time.AfterFunc(settleDrainTime, cancel)
		context.AfterFunc(ctx, func() { t.Stop() })
	})
	return s, r.WithContext(context.WithValue(ctx, settleKey{}, s))
}

// settlingOf returns the settling of the call on rt whose outgoing request out is, or nil.
func settlingOf(rt *route, out *http.Request) *settling {
	if !rt.settles || out == nil {
		return nil
	}
	s, _ := out.Context().Value(settleKey{}).(*settling)
	return s
}

// end closes the settle step when the proxy is done with the call: a body still being read
// is given up on, and the call's credits (the settled cost, or the reservation kept) are
// counted.
func (s *settling) end() {
	if s.ended {
		return
	}
	s.ended = true
	s.stop()
	if b := s.body; b != nil && !b.ended {
		b.end(errSettleAbandoned)
	}
	s.cancel()
	st := &s.cw.st
	s.g.metrics.settled(st.t.m, st.rs, s.cost, s.addon)
}

var (
	errSettleAbandoned = errors.New("response body abandoned")
	errDrainBound      = errors.New("client gone: rest of the body past the drain bound")
)

// response reads the upstream's answer: a header rule settles now, a count or number rule
// reads the body as it goes to the client.
func (s *settling) response(resp *http.Response) {
	if s.rule.Header != "" {
		vs := resp.Header.Values(s.rule.Header)
		resp.Header.Del(s.rule.Header) // the client never sees it
		n, ok := int64(0), len(vs) == 1
		if ok {
			n, ok = costtable.ParseHeaderCost(vs[0])
		}
		if !ok {
			s.keep(unreadHeader)
			return
		}
		s.settle(s.rule.Settle(n), true)
		return
	}
	switch {
	case resp.Request.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified:
		s.keep(unreadNoBody)
		return
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		s.keep(unreadStatus)
		return
	}
	codings, n, ok := contentCodings(resp.Header["Content-Encoding"])
	if !ok {
		s.keep(unreadEncoding)
		return
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	b := &settleBody{ReadCloser: resp.Body, s: s, count: s.rule.NewCounter(mt == "text/event-stream")}
	if n > 0 {
		b.decode(codings, n) // a coding the gateway does not know fails there, and is counted then
	}
	s.body = b
	resp.Body = b
	s.trailer = resp.ContentLength < 0 && s.in.ProtoAtLeast(1, 1)
}

// keep keeps the reservation of a call whose answer could not be read (why), or charges the
// rule's max for a client that left before its body could be read when the rule has one.
func (s *settling) keep(why int) {
	if s.finished {
		return
	}
	s.g.metrics.settleUnread[why].Inc()
	st := &s.cw.st
	if why == unreadClientGone && s.rule.Max > 0 {
		s.g.log.Info("client left before its answer could be read: charged the rule's max", zap.String("org", st.t.org.ID),
			zap.String("rule", st.rule), zap.Int64("reserved", st.d.Cost), zap.Int64("cost", s.rule.Max))
		s.settle(s.rule.Max, false)
		return
	}
	s.finished = true
	s.g.log.Info("answer not readable: reserved cost kept", zap.String("org", st.t.org.ID), zap.String("rule", st.rule),
		zap.String("reason", unreadNames[why]), zap.Int64("cost", st.d.Cost))
	s.setTrailer(st.d.Cost)
}

// settle corrects the call's debit to cost: on the gateway's own ledger when the debit never
// left it (fail mode local), else in the store, queued if the store cannot take it now.
// headers says the answer's headers have not gone out yet: they then show the settled cost.
func (s *settling) settle(cost int64, headers bool) {
	if s.finished {
		return
	}
	s.finished = true
	g, st := s.g, &s.cw.st
	defer func() { s.setTrailer(s.cost) }()
	if cost != st.d.Cost {
		if !st.local || !g.local.settle(st.d.Call, cost) {
			set, ran, err := g.settleStore(s.in.Context(), st.key, st.d, cost)
			switch {
			case err != nil:
				g.log.Error("settle failed: reserved cost kept", zap.String("org", st.t.org.ID), zap.String("rule", st.rule),
					zap.Int64("reserved", st.d.Cost), zap.Int64("cost", cost), zap.Error(err))
				return
			case ran && set.Applied:
				s.addon = max(st.d.Addon+set.Metered, 0)
				if headers {
					setRemaining(s.cw.ResponseWriter.Header(), st.t, st.d.Limit, max(st.d.Limit-set.Used, 0))
				}
			}
		}
	}
	s.cost = cost
	if headers {
		s.cw.ResponseWriter.Header()["X-Credits-Charged"] = []string{strconv.FormatInt(cost, 10)}
		s.cw.hold() // what an upstream's 1xx would take is put back as it is now
	}
	g.log.Debug("call settled", zap.String("org", st.t.org.ID), zap.String("rule", st.rule),
		zap.Int64("reserved", st.d.Cost), zap.Int64("cost", cost))
}

// setTrailer sends cost in the trailer X-Credits-Charged, where the answer is chunked anyway
// and its headers have gone out (a trailer set before would make the server chunk a body it
// would have sent with a length).
func (s *settling) setTrailer(cost int64) {
	if s.trailer && s.body != nil && s.body.read > 0 {
		s.cw.ResponseWriter.Header()[http.TrailerPrefix+"X-Credits-Charged"] = []string{strconv.FormatInt(cost, 10)}
	}
}

// settleBody reads the upstream's body for the proxy, and counts it as it goes.
type settleBody struct {
	io.ReadCloser
	s     *settling
	count *costtable.Counter
	read  int64 // bytes read from the upstream
	ended bool

	// With a content coding: the decoder reads what was read from this pipe, in a goroutine
	// of its own, and says how it ended on done.
	pw   *io.PipeWriter
	done chan error
}

// decode starts the decoder of the body's codings (n of them, in the order applied).
func (b *settleBody) decode(codings [maxCodings]string, n int) {
	pr, pw := io.Pipe()
	b.pw, b.done = pw, make(chan error, 1)
	go func() {
		err := decodeInto(b.count, codings, n, pr)
		pr.CloseWithError(errSettleAbandoned) // what is written after the coded data ends is not read
		b.done <- err
	}()
}

// decodeInto writes r with its codings removed to w.
func decodeInto(w io.Writer, codings [maxCodings]string, n int, r io.Reader) error {
	dec, done, err := decoding(codings, n, r)
	if err != nil {
		return err
	}
	defer done()
	var buf [4 << 10]byte
	_, err = io.CopyBuffer(w, dec, buf[:])
	return err
}

func (b *settleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.feed(p[:n])
	if err != nil {
		b.end(err)
	}
	return n, err
}

func (b *settleBody) feed(p []byte) {
	if len(p) == 0 || b.ended {
		return
	}
	b.read += int64(len(p))
	if b.pw != nil {
		_, _ = b.pw.Write(p) // fails once the decoder has stopped: its error tells
		return
	}
	_, _ = b.count.Write(p)
}

// Close reads and counts what the proxy left of the body (its client is gone), within the
// drain bounds, before closing it.
func (b *settleBody) Close() error {
	if !b.ended {
		buf := b.s.g.buffers.Get()
		limit := b.read + settleDrainBytes
		for !b.ended {
			if b.read >= limit {
				b.end(errDrainBound)
				break
			}
			n, err := b.ReadCloser.Read(buf)
			b.feed(buf[:n])
			if err != nil {
				b.end(err)
			}
		}
		b.s.g.buffers.Put(buf)
	}
	return b.ReadCloser.Close()
}

// end settles the call when the body has ended (err is io.EOF), or keeps its reservation.
func (b *settleBody) end(err error) {
	if b.ended {
		return
	}
	b.ended = true
	var decErr error
	if b.pw != nil {
		if err == io.EOF {
			b.pw.Close()
		} else {
			b.pw.CloseWithError(err)
		}
		decErr = <-b.done
	}
	s := b.s
	switch {
	case errors.Is(err, errDrainBound) || (err != io.EOF && s.in.Context().Err() != nil):
		s.keep(unreadClientGone)
		return
	case err != io.EOF:
		s.keep(unreadTruncated)
		return
	case decErr != nil:
		s.keep(unreadEncoding)
		return
	}
	n, rerr := b.count.Result()
	switch {
	case errors.Is(rerr, costtable.ErrResponseNotJSON):
		s.keep(unreadNotJSON)
	case errors.Is(rerr, costtable.ErrResponseMissing):
		s.keep(unreadMissing)
	case errors.Is(rerr, costtable.ErrResponseNumber):
		s.keep(unreadNumber)
	default:
		s.settle(s.rule.Settle(n), false)
	}
}

// readableCodings narrows the Accept-Encoding of a call whose answer is counted to the
// content codings the gateway decodes for counting (decoder): a client that asks for
// another one alone (br, say) would get an answer the gateway cannot read, and pay only the
// reservation. Codings it drops are ones the upstream then does without; with none left the
// field goes, and the transport asks for gzip and decodes it for the client, as for any call
// that names no coding.
func readableCodings(h http.Header) {
	vs, ok := h["Accept-Encoding"]
	if !ok {
		return
	}
	var keep []string
	for _, v := range vs {
		for c := range strings.SplitSeq(v, ",") {
			c = strings.TrimSpace(c)
			name, _, _ := strings.Cut(c, ";")
			if decodable(strings.ToLower(strings.TrimSpace(name))) {
				keep = append(keep, c)
			}
		}
	}
	if len(keep) == 0 {
		delete(h, "Accept-Encoding")
		return
	}
	h["Accept-Encoding"] = []string{strings.Join(keep, ", ")}
}
