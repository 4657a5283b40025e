package gateway

import (
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/limiter"
)

// ServeHTTP implements http.Handler. A call goes through the steps below in order; each one
// either hands it on or has answered it (a refusal goes through pass, which weighs it against
// shadow mode and the fail mode).
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.metrics.inFlight.Inc()
	defer g.metrics.inFlight.Dec()
	cleanPath(r) // routed, priced and forwarded as cleaned, preflights too
	if isPreflight(r) {
		g.preflight(w, r)
		return
	}
	g.allowOrigin(w, r)
	underscored := hasUnderscoreName(r.Header)
	t, err := g.identify(r, underscored) // identify.go
	if err != nil {
		g.unidentified(w, err)
		return
	}
	if r.URL.Path == ownUsagePath || r.URL.Path == ownUsageHoursPath {
		g.serveOwnUsage(w, r, t) // neither charged nor forwarded
		return
	}
	c := call{callState: callState{t: t}, underscored: underscored}
	if !g.routeCall(w, r, &c) { // pricing.go: the route, and the rules that may price the call
		return
	}
	// From here the call may hold a period's count, leases and a buffered body: finish gives
	// back what it still holds, however the call ends (ReverseProxy panics with
	// http.ErrAbortHandler when a client leaves mid-body).
	defer g.finish(r, &c)
	if t.period != nil && !g.countPeriod(w, r, &c) { // period.go: monthly plans
		return
	}
	if c.p.countsBody() && !g.readBody(w, r, &c) { // body.go: a body whose records are counted
		return
	}
	g.charge(r, &c)         // pricing.go: the cost, with the body if it was read
	if !g.debit(w, r, &c) { // admit.go: the debit from the org's window
		return
	}
	c.forwarded = true
	g.forward(w, r, c.callState) // forward.go; an upstream failure refunds (refund.go)
}

// call is one call on its way through the steps of ServeHTTP: each step reads what the ones
// before it decided, and adds its own. It lives on ServeHTTP's stack.
type call struct {
	callState             // what travels with the call to the proxy's error hook
	p           pricing   // the rules that may price the call
	now         time.Time // the decision time (zero: the store's clock)
	cost        int64     // the call's price, once charged
	held        *heldBody // a body buffered for counting; nil otherwise
	charged     bool      // false once the call goes on uncharged (shadow mode, fail open)
	forwarded   bool      // handed to the proxy: a period's count stays
	underscored bool      // r has header names with '_' (hasUnderscoreName)
	preLease    heldDebit // the lease of the smallest cost's debit, released when the call is over
	lease       heldDebit // the lease of the debit, released when the call is over
}

// heldDebit is a debit whose lease a call holds.
type heldDebit struct {
	key limiter.Key
	d   limiter.Decision
}

// finish gives back what a call still holds when ServeHTTP returns: its leases, its buffered
// body, and a monthly plan's count of a call that was not forwarded.
func (g *Gateway) finish(r *http.Request, c *call) {
	if c.lease.d.Lease != "" {
		g.release(r, c.lease.key, c.lease.d)
	}
	if c.preLease.d.Lease != "" {
		g.release(r, c.preLease.key, c.preLease.d)
	}
	g.releaseBody(c.held)
	if !c.forwarded {
		g.uncountCall(r, c.t, c.pd)
	}
}

// callState travels to the proxy's error hook, which refunds, in a callWriter.
type callState struct {
	t     *orgState
	route *route // where the call goes
	key   limiter.Key
	d     limiter.Decision
	// pre is the debit taken before a large body was read (the rule's smallest cost, with
	// the concurrency lease), under preKey; d is then the rest of the cost. Zero otherwise.
	pre    limiter.Decision
	preKey limiter.Key
	// local and preLocal: d and pre were decided on the gateway's own (fail mode local).
	local, preLocal bool
	rule            string
	settle          *costtable.Response // the rule settles the call's cost from its answer; nil otherwise
	body            *watchedBody        // nil without a request body
	rs              *ruleSeries         // the rule's metrics
	sent            time.Time           // when the call was handed to the proxy
	// observed: the upstream latency is recorded (when the response's headers are written,
	// or when the proxy gives up).
	observed bool
	pd       limiter.PeriodDecision // monthly plans: the call counted in the period
}

// watchedBody records whether reading the client's body failed, so that a broken client
// body is not mistaken for an unreachable upstream (and refunded).
type watchedBody struct {
	io.ReadCloser
	failed atomic.Bool // set by the transport's writer goroutine
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.failed.Store(true)
	}
	return n, err
}
