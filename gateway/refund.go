package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"

	"go.uber.org/zap"

	"github.com/creditgate/creditgate/limiter"
)

// proxyError runs when the upstream could not be reached or did not answer in time: the
// gateway answers 502/504 itself, and the call is refunded.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if cw, ok := w.(*callWriter); ok {
		cw.restore() // after an upstream's 1xx: the fields the refund below edits
	}
	st := stateOf(w)
	if st != nil && st.rs != nil && !st.observed {
		st.observed = true
		st.rs.observeUpstream(0, st.sent)
	}
	// First the client's body: a client that half-closes its socket mid-body also ends the
	// request's context, yet may still read the answer.
	if st != nil && st.body != nil && st.body.failed.Load() {
		// The client's body broke off. The upstream may have started on the call: the charge
		// stays, and the client is told whose fault it was.
		g.log.Info("client body unreadable", zap.String("org", st.t.org.ID), zap.String("rule", st.rule), zap.Error(err))
		writeError(w, errClientBody, 0)
		return
	}
	if errors.Is(err, errRetryRefused) {
		// The transport's second attempt was refused: the first failed on a connection the
		// upstream closed or reset.
		g.metrics.retries.Inc()
	} else if r.Context().Err() != nil {
		// The client went away. The upstream may have done the work, so the charge stays.
		if st != nil {
			g.log.Debug("client gone", zap.String("org", st.t.org.ID), zap.String("rule", st.rule))
		}
		return
	}
	status := errUpstream
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		status = errUpstreamTimeout
	}
	org, rule := "", ""
	if st != nil {
		g.refundUnserved(w, r, st)
		org, rule = st.t.org.ID, st.rule
	}
	g.log.Error("upstream error", zap.String("org", org), zap.String("rule", rule), zap.Error(err))
	writeError(w, status, 0)
}

// refundDecision gives back a debit of a call that will not be forwarded after all.
func (g *Gateway) refundDecision(r *http.Request, t *orgState, key limiter.Key, d limiter.Decision, local bool, rule string) {
	if err := g.refundCall(r.Context(), key, d, local); err != nil {
		g.log.Error("refund failed", zap.String("org", t.org.ID), zap.String("rule", rule),
			zap.Int64("cost", d.Cost), zap.Error(err))
		return
	}
	t.m.refunded.Add(float64(d.Cost))
}

// hold has the lease of a call that took one renewed while the call lasts.
func (g *Gateway) hold(key limiter.Key, d limiter.Decision) {
	if g.leases != nil {
		g.leases.add(key, d.Lease)
	}
}

// release ends a call's concurrency lease, with a context of its own: the client's may be
// gone already.
func (g *Gateway) release(r *http.Request, key limiter.Key, d limiter.Decision) {
	if g.leases != nil {
		g.leases.remove(d.Lease)
	}
	if err := g.releaseLease(r.Context(), key, d); err != nil && err != errBreakerOpen {
		// The lease expires on its own after its TTL.
		g.log.Warn("lease release failed", zap.String("org", key.Org), zap.Error(err))
	}
}

// refundUnserved gives back what a call the upstream never served took: its period's count
// (monthly plans) and its debits, and rewrites the answer's fields to say so.
func (g *Gateway) refundUnserved(w http.ResponseWriter, r *http.Request, st *callState) {
	g.uncountCall(r, st.t, st.pd)
	if !st.d.Allowed || st.d.Cost+st.pre.Cost <= 0 {
		return
	}
	var rerr error
	if st.pre.Allowed && st.pre.Cost > 0 {
		rerr = g.refundCall(r.Context(), st.preKey, st.pre, st.preLocal)
	}
	if st.d.Cost > 0 {
		rerr = errors.Join(rerr, g.refundCall(r.Context(), st.key, st.d, st.local))
	}
	cost := st.pre.Cost + st.d.Cost
	if rerr != nil {
		g.log.Error("refund failed", zap.String("org", st.t.org.ID), zap.String("rule", st.rule),
			zap.Int64("cost", cost), zap.Error(rerr))
		return
	}
	st.t.m.refunded.Add(float64(cost))
	h := w.Header()
	h.Set("X-Credits-Charged", "0")
	setRemaining(h, st.t, st.d.Limit, st.d.Remaining+cost)
}
