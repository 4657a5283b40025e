package gateway

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
	"github.com/creditgate/creditgate/plans"
)

// orgTable is the orgs in force, each prepared for the request path on its first call:
// swapped whole on reload, read without locks. An org that never calls costs one empty
// slot, so a million configured orgs start in seconds.
type orgTable struct {
	dir    *orgs.Directory
	states []atomic.Pointer[orgState] // by position in dir; nil until the org's first use
}

// state returns the state of the org at position i of ros.dir, prepared on first use.
func (g *Gateway) state(ros *orgTable, i int) *orgState {
	slot := &ros.states[i]
	if t := slot.Load(); t != nil {
		return t
	}
	o := ros.dir.At(i)
	t := g.newOrgState(o, g.metrics.seriesOf(o), nil)
	if slot.CompareAndSwap(nil, t) {
		return t
	}
	return slot.Load() // another call prepared it first
}

// stateByID returns the state of configured org id, prepared on first use.
func (g *Gateway) stateByID(ros *orgTable, id string) (*orgState, bool) {
	i, ok := ros.dir.IndexByID(id)
	if !ok {
		return nil, false
	}
	return g.state(ros, i), true
}

// prepared returns the state of configured org id if a call has prepared it, else nil.
func (ros *orgTable) prepared(id string) *orgState {
	if i, ok := ros.dir.IndexByID(id); ok {
		return ros.states[i].Load()
	}
	return nil
}

// orgState is an org with everything the request path needs prepared once.
type orgState struct {
	org      *orgs.Org
	key      limiter.Key // with the org's concurrency cap, if any
	heavyKey limiter.Key // the same, for heavy calls: the heavy sub-cap applies too
	limit    string      // decimal, for X-RateLimit-Limit
	policy   string      // RateLimit-Policy field value
	m        *orgSeries  // the org's metrics
	// policyTail follows q=<limit> in policy, for a limit changed by add-ons at run time.
	policyTail string
	// remaining is what the org had left at the store's last decision, -1 before any: its
	// share when the store cannot decide (fail mode local).
	remaining atomic.Int64
	// lastUsed is when a token last named the org (unix seconds), for orgs held from tokens:
	// those idle for a whole window make room when the held orgs are at their bound.
	lastUsed atomic.Int64
	fields   RateLimitFields    // which rate-limit fields answers carry
	plan     plans.Addon        // add-on credits: what the org may buy
	period   *limiter.PeriodKey // monthly plans: the call quota per period; nil otherwise
}

// SetOrgs swaps the orgs for new requests (requests in flight finish with the org they
// started with). Windows live in the store under the org ID, so an org that stays keeps its
// consumption.
func (g *Gateway) SetOrgs(dir *orgs.Directory) {
	r := &orgTable{dir: dir, states: make([]atomic.Pointer[orgState], dir.Len())}
	g.metrics.setOrgs(dir)
	if old := g.orgs.Load(); old != nil {
		// The orgs in use stay prepared, with the store's last word on each.
		for i := range old.states {
			prev := old.states[i].Load()
			if prev == nil {
				continue
			}
			if j, ok := dir.IndexByID(prev.org.ID); ok {
				o := dir.At(j)
				r.states[j].Store(g.newOrgState(o, g.metrics.seriesOf(o), prev))
			}
		}
	}
	g.orgs.Store(r)
}

// newOrgState prepares org o, whose metrics are s, for the request path. prev is the org's
// state until now (nil: none), whose last word from the store carries over.
func (g *Gateway) newOrgState(o *orgs.Org, s *orgSeries, prev *orgState) *orgState {
	cfg := g.cfg
	window := strconv.FormatInt(int64(cfg.Window/time.Second), 10)
	limit := cfg.LimitOf(o)
	var concurrency int64
	if cfg.ConcurrencyOf != nil {
		concurrency = cfg.ConcurrencyOf(o)
	}
	l := strconv.FormatInt(limit, 10)
	t := &orgState{
		org:        o,
		key:        limiter.NewKey(o.ID, limit),
		policyTail: ";w=" + window,
		m:          s,
		fields:     cfg.RateLimitFields,
	}
	t.remaining.Store(-1)
	if prev != nil {
		t.remaining.Store(prev.remaining.Load())
	}
	if cfg.AddonPlanOf != nil {
		t.plan = cfg.AddonPlanOf(o)
		if t.plan.Monthly > 0 {
			p := limiter.PeriodKey{Org: o.ID, Monthly: t.plan.Monthly, Additional: t.plan.Addon, MaxAdditional: t.plan.Cap, AnchorDay: t.plan.AnchorDay}.Prepared()
			t.period = &p
		} else if t.plan.Cap > 0 {
			t.key = t.key.WithAddons(t.plan.Free, t.plan.Addon, t.plan.Cap)
			l = strconv.FormatInt(t.key.Limit, 10)
		}
	}
	if g.notices != nil {
		t.key = t.key.WithNotices(g.notices.thresholdsOf(o))
	}
	t.heavyKey = t.key
	if concurrency > 0 {
		t.key = t.key.WithConcurrency(concurrency, 0)
		t.heavyKey = t.key.WithConcurrency(concurrency, cfg.HeavyConcurrency)
		if t.fields == FieldsDraft { // the other forms name one policy
			t.policyTail += `, "concurrency";q=` + strconv.FormatInt(concurrency, 10) + `;qu="concurrent-requests"`
		}
	}
	t.limit, t.policy = l, t.policyFor(l)
	return t
}
