package gateway

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/creditgate/creditgate/orgs"
)

// jwtOrgs holds the org states that tokens brought and the org table does not have: orgs on the
// default plan, and configured orgs whose seats come from a claim. Only verified tokens add
// to it, and at most max orgs on the default plan are held. Built against one org table, it is
// rebuilt against the next one when the orgs are reloaded.
type jwtOrgs struct {
	mu      sync.Mutex
	ros     *orgTable
	m       map[string]*orgState // org ID → org state
	claimed map[string]int64     // org ID → seats its last token claimed (0: none)
	extra   int                  // orgs of m not in ros
	max     int
	gen     atomic.Uint64 // counts the times held orgs were let go (see resolved)
}

// touch records that a token named the org at now; at most one write a second.
func (t *orgState) touch(now time.Time) {
	if s := now.Unix(); t.lastUsed.Load() != s {
		t.lastUsed.Store(s)
	}
}

// dropIdleLocked lets go of the held orgs that are not configured and that no token has
// named for a whole window (their usage stays in the store; a later token holds the org
// again), and reports whether it let any go.
func (g *Gateway) dropIdleLocked(ros *orgTable, now time.Time) bool {
	j := &g.jwt.orgs
	before := now.Add(-g.cfg.Window).Unix()
	dropped := false
	for id, t := range j.m {
		if _, configured := ros.dir.ByID(id); configured || t.lastUsed.Load() > before {
			continue
		}
		delete(j.m, id)
		delete(j.claimed, id)
		j.extra--
		dropped = true
	}
	if dropped {
		j.gen.Add(1)
		g.jwt.m.orgs.Set(float64(j.extra))
	}
	return dropped
}

// jwtOrg returns the org state of org id with users seats claimed (0: none), under ros, or
// nil and the reason it has none.
func (g *Gateway) jwtOrg(ros *orgTable, id string, users int64) (*orgState, int) {
	v := g.jwt
	if i, ok := ros.dir.IndexByID(id); ok && !v.claimsSeats(ros.dir.At(i), users) {
		return g.state(ros, i), 0 // the common case, without the lock
	}
	j := &v.orgs
	j.mu.Lock()
	defer j.mu.Unlock()
	g.syncJWTOrgsLocked(ros)
	return g.jwtTenantLocked(ros, id, users, nil)
}

// claimsSeats reports whether a token's users claim sets the seats of configured org o.
func (v *jwtVerifier) claimsSeats(o *orgs.Org, users int64) bool {
	return users > 0 && o.Users == 0 && v.cfg.PerUser(o)
}

// jwtTenantLocked is jwtOrg with j.mu held and j built against ros; prev holds the
// org states of an earlier org table, whose remaining credits the new ones take over.
func (g *Gateway) jwtTenantLocked(ros *orgTable, id string, users int64, prev map[string]*orgState) (*orgState, int) {
	v := g.jwt
	j := &v.orgs
	var base orgs.Org
	i, configured := ros.dir.IndexByID(id)
	var o *orgs.Org
	if configured {
		o = ros.dir.At(i)
	}
	switch {
	case configured && !v.claimsSeats(o, users):
		return g.state(ros, i), 0
	case configured:
		base = *o
		base.Users = users
	case v.cfg.DefaultPlan == nil:
		return nil, tokUnknownOrg
	default:
		base = *v.cfg.DefaultPlan
		base.ID = id
		base.Keys = nil
		if users > 0 && v.cfg.PerUser(&base) {
			base.Users = users
		}
	}
	old, held := j.m[id]
	if held && old.org.Users == base.Users {
		return old, 0
	}
	if !held && !configured && j.extra >= j.max && !g.dropIdleLocked(ros, v.now()) {
		return nil, tokOrgCapacity
	}
	before := old
	if before == nil {
		before = prev[id]
	}
	if before == nil {
		before = ros.prepared(id)
	}
	t := g.newOrgState(&base, g.metrics.seriesOf(&base), before)
	if before != nil {
		t.lastUsed.Store(before.lastUsed.Load())
	} else {
		t.touch(v.now())
	}
	if !held && !configured {
		j.extra++
		v.m.orgs.Set(float64(j.extra))
	}
	j.m[id] = t
	j.claimed[id] = users
	return t, 0
}

// syncJWTOrgsLocked rebuilds j against ros when the orgs were reloaded: each org held is
// looked up again, with the seats it last claimed (an org now configured leaves it).
func (g *Gateway) syncJWTOrgsLocked(ros *orgTable) {
	j := &g.jwt.orgs
	if j.ros == ros {
		return
	}
	prev, claimed := j.m, j.claimed
	j.ros, j.m, j.claimed, j.extra = ros, make(map[string]*orgState, len(prev)), make(map[string]int64, len(claimed)), 0
	for id, users := range claimed {
		g.jwtTenantLocked(ros, id, users, prev)
	}
	g.jwt.m.orgs.Set(float64(j.extra))
}

// orgByID returns the org state of org id for the admin API: one held from tokens, else
// a configured one.
func (g *Gateway) orgByID(id string) (*orgState, bool) {
	ros := g.orgs.Load()
	if g.jwt != nil {
		j := &g.jwt.orgs
		j.mu.Lock()
		g.syncJWTOrgsLocked(ros)
		t := j.m[id]
		j.mu.Unlock()
		if t != nil {
			return t, true
		}
	}
	return g.stateByID(ros, id)
}

// jwtOrgSummaries lists the orgs held from tokens that are not configured.
func (g *Gateway) jwtOrgSummaries() []orgSummary {
	if g.jwt == nil {
		return nil
	}
	ros := g.orgs.Load()
	j := &g.jwt.orgs
	j.mu.Lock()
	defer j.mu.Unlock()
	g.syncJWTOrgsLocked(ros)
	var out []orgSummary
	for id, t := range j.m {
		if _, configured := ros.dir.ByID(id); !configured {
			out = append(out, orgSummary{Org: id, Edition: t.org.Edition})
		}
	}
	return out
}
