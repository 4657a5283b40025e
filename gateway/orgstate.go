package gateway

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
	"github.com/creditgate/creditgate/plans"
)

// orgTable is the orgs in force, each prepared for the request path: swapped whole on
// reload, read without locks.
type orgTable struct {
	dir   *orgs.Directory
	byOrg map[*orgs.Org]*orgState
	byID  map[string]*orgState
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
	r := &orgTable{dir: dir, byOrg: make(map[*orgs.Org]*orgState, dir.Len()), byID: make(map[string]*orgState, dir.Len())}
	series := g.metrics.setOrgs(dir.Orgs())
	old := g.orgs.Load()
	for _, o := range dir.Orgs() {
		var prev *orgState
		if old != nil {
			prev = old.byID[o.ID]
		}
		t := g.newOrgState(o, series[o], prev)
		r.byOrg[o] = t
		r.byID[o.ID] = t
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
			t.period = &limiter.PeriodKey{Org: o.ID, Monthly: t.plan.Monthly, Additional: t.plan.Addon, MaxAdditional: t.plan.Cap, AnchorDay: t.plan.AnchorDay}
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
