package gateway

import (
	"errors"
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/creditgate/creditgate/limiter"
)

// debit debits the call's cost from the org's window: all of it, or, after a debit of its
// smallest cost before a large body was read (preDebit), the rest. It reports whether the call
// goes on (allowed; or, uncharged, passed by pass), and otherwise has answered it.
func (g *Gateway) debit(w http.ResponseWriter, r *http.Request, c *call) bool {
	switch {
	case !c.charged:
		return true
	case c.pre.Allowed:
		return g.debitRest(w, r, c)
	}
	d, local, err := g.decide(r.Context(), c.t, c.key, c.cost, c.now)
	c.d, c.local = d, local
	if d.Lease != "" {
		// Released when the call is over, however it ends (finish); renewed meanwhile when
		// the call lasts.
		g.hold(c.key, d)
		c.lease = heldDebit{key: c.key, d: d}
	}
	if err != nil && !g.pass(w, r, c, g.debitRefusal(w.Header(), r, c, c.cost, d, err)) {
		return false
	}
	if d.Allowed {
		g.allowed(w.Header(), c, d, d.Addon)
	}
	return true
}

// preDebit debits the smallest cost of the call's rule, with its concurrency lease, before
// a large body (or one of unknown length) is read: an org without either cannot make the
// gateway hold its body. It reports whether the call goes on; otherwise it has answered it,
// leaving its body unread.
func (g *Gateway) preDebit(w http.ResponseWriter, r *http.Request, c *call) bool {
	c.preKey = c.key
	pre, local, err := g.decide(r.Context(), c.t, c.key, 1, c.now)
	c.pre, c.preLocal = pre, local
	if pre.Lease != "" {
		g.hold(c.key, pre)
		c.preLease = heldDebit{key: c.key, d: pre}
	}
	if err != nil && !g.pass(w, r, c, g.debitRefusal(w.Header(), r, c, 1, pre, err)) {
		abandonBody(w, r)
		return false
	}
	c.charged = pre.Allowed
	return true
}

// debitRest debits the rest of the cost after preDebit, without a second lease. A cost over
// the whole limit can never be paid: the rest alone would not tell (it is one credit less).
func (g *Gateway) debitRest(w http.ResponseWriter, r *http.Request, c *call) bool {
	pre := c.pre
	var (
		d     limiter.Decision
		local bool
		err   error
	)
	switch rest := c.cost - pre.Cost; {
	case c.cost > pre.Limit:
		d, err = limiter.Decision{Limit: pre.Limit, Used: pre.Used, Remaining: pre.Remaining}, limiter.ErrCostExceedsLimit
	case rest > 0:
		d, local, err = g.decide(r.Context(), c.t, c.key.WithConcurrency(0, 0), rest, c.now)
	default:
		d = pre
		d.Cost, d.Addon, d.Lease = 0, 0, ""
	}
	if err != nil {
		// The rest was refused, or could not be decided: the smallest cost goes back (from
		// the queue when the store just failed, rather than waiting on it again now).
		if storeFailed(err) || local {
			g.refundLater(c.preKey, pre, c.preLocal)
		} else {
			g.refundDecision(r, c.t, c.preKey, pre, c.preLocal, c.rule)
		}
		d.Used, d.Remaining = d.Used-pre.Cost, min(d.Remaining+pre.Cost, d.Limit)
		c.d, c.local = d, local
		if !g.pass(w, r, c, g.debitRefusal(w.Header(), r, c, c.cost, d, err)) {
			return false
		}
		c.pre, c.preKey = limiter.Decision{}, limiter.Key{}
		return true
	}
	c.d, c.local = d, local
	shown := d
	shown.Cost, shown.Lease, shown.InFlight, shown.ConcurrencyLimit = pre.Cost+d.Cost, pre.Lease, pre.InFlight, pre.ConcurrencyLimit
	g.allowed(w.Header(), c, shown, pre.Addon+d.Addon)
	return true
}

// allowed counts an allowed call, which debited d.Cost credits (addon of them add-on credits),
// and writes its rate-limit fields.
func (g *Gateway) allowed(h http.Header, c *call, d limiter.Decision, addon int64) {
	if c.settle != nil {
		// Its credits are counted once settled (settling.end).
		g.metrics.count(c.t.m, c.rs, outAllowed, 0, 0)
		setLimitFields(h, c.t, d)
		return
	}
	g.metrics.count(c.t.m, c.rs, outAllowed, 0, d.Cost)
	if addon > 0 && c.t.m != nil {
		c.t.m.addon.Add(float64(addon)) // add-on credits metered in this debit
	}
	setLimitFields(h, c.t, d)
}

// debitRefusal is the refusal of a debit of cost that the store answered with d and err (not
// nil). The window's fields are written on the answer whether or not the call goes on.
func (g *Gateway) debitRefusal(h http.Header, r *http.Request, c *call, cost int64, d limiter.Decision, err error) refusal {
	t := c.t
	switch {
	case errors.Is(err, limiter.ErrConcurrency):
		setLimitFields(h, t, d)
		h.Set("X-Credits-Charged", "0")
		scope, why := "org", reasonConcurrency
		if d.ConcurrencyLimit != c.key.Concurrency {
			scope, why = "heavy", reasonHeavyConcurrency
		}
		fields := []zap.Field{zap.Int64("cost", cost), zap.String("reason", "concurrency_"+scope), zap.Int64("in_flight", d.InFlight)}
		return refusal{kind: rejection, out: outRejected, reason: why, msg: "rejected", level: zapcore.InfoLevel,
			fields: fields, shadowFields: fields, answerFields: keepFields,
			err: &concurrencyError{limit: d.ConcurrencyLimit, scope: scope}, retry: 1}
	case errors.Is(err, limiter.ErrOverLimit), errors.Is(err, limiter.ErrCostExceedsLimit):
		setLimitFields(h, t, d)
		ref := refusal{kind: rejection, out: outRejected, reason: reasonCredits, msg: "rejected", level: zapcore.InfoLevel,
			shadowFields: []zap.Field{zap.Int64("cost", cost), zap.String("reason", "credits"), zap.Int64("used", d.Used)},
			answerFields: keepFields, err: g.overLimit, retry: ceilSeconds(d.RetryAfter)}
		if errors.Is(err, limiter.ErrCostExceedsLimit) {
			ref.reason, ref.err, ref.retry = reasonCostExceedsLimit, &costError{cost: cost, limit: d.Limit}, 0
			ref.shadowFields[1] = zap.String("reason", "cost_exceeds_limit")
		}
		ref.fields = append(ref.shadowFields[:3:3], zap.Duration("retry_after", d.RetryAfter))
		return ref
	case r.Context().Err() != nil:
		// The client left while we waited for the store, which may have debited the call (at
		// most once: never retried); a lease it may have taken, the store releases.
		return refusal{kind: final, out: outClientClosed}
	}
	// The store could not decide. limiter.ErrCompensated lands here too: this call's id was
	// compensated or refunded before its debit ran, so nothing is debited and no lease held
	// (a debit that ran and was sent again answers allowed, not this), and the fail mode
	// decides as for a store that did not answer.
	return refusal{kind: storeDown, cause: err, level: zapcore.WarnLevel, fields: []zap.Field{zap.Int64("cost", cost)}}
}
