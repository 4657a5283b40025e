package gateway

import (
	"net/http"
	"path"
	"strings"

	"go.uber.org/zap"

	"github.com/creditgate/creditgate/costtable"
)

// routeCall finds where the call goes and the rules that may price it, and the key it is
// debited under. It reports whether the call goes on; otherwise it has answered it (404 for
// no route, 400 for too many method overrides), uncharged.
func (g *Gateway) routeCall(w http.ResponseWriter, r *http.Request, c *call) bool {
	rt := g.routeFor(r)
	if rt == nil {
		return g.pass(w, r, c, refusal{kind: final, out: outNoRoute, err: errNoRoute})
	}
	p, err := g.price(rt.Costs, r, c.underscored)
	c.route, c.p = rt, p
	c.rule = rt.ruleName(p.rules[0])
	c.rs = g.metrics.rule(c.rule)
	if err != nil {
		return g.pass(w, r, c, refusal{kind: final, out: outBadRequest, err: err})
	}
	c.now = g.decisionTime()
	c.key = c.t.key
	if p.heavy() {
		c.key = c.t.heavyKey
	}
	c.key = c.key.WithRule(c.rule) // usage by rule; the rule that prices the call, once known
	c.charged = true
	return true
}

// charge prices the call with the rule that charges the most, counting the records of its
// body if it was read, and frees the body's decoded copy.
func (g *Gateway) charge(r *http.Request, c *call) {
	var raw, decoded []byte
	countable := true
	if c.held != nil {
		raw, decoded, countable = c.held.raw, c.held.decoded, c.held.countable
	}
	rule, cost, records, counted := c.p.charge(r.URL.RawQuery, raw, decoded, countable)
	c.cost = cost
	c.settle = nil
	// A reservation, settled when the answer is known (settle.go); not a call debited in two
	// (a part before its body was read, c.pre): it keeps its cost.
	if rule.Response != nil && g.has(StoreSettle) && !c.pre.Allowed {
		c.settle = rule.Response
	}
	if rule != c.p.rules[0] {
		c.rule = c.route.ruleName(rule)
		c.rs = g.metrics.rule(c.rule)
		c.key = c.key.WithRule(c.rule)
	}
	if !counted {
		g.log.Info("records not countable, rule cost charged", zap.String("org", c.t.org.ID),
			zap.String("rule", c.rule), zap.Int64("cost", cost), zap.Int("body_bytes", len(raw)))
	} else if rule.Per > 0 {
		g.log.Debug("records counted", zap.String("org", c.t.org.ID), zap.String("rule", c.rule),
			zap.Int64("records", records), zap.Int64("cost", cost))
	}
	if c.held != nil {
		c.held.dropDecoded(g.bodies)
	}
}

// MethodOverride says what the gateway does with method override headers
// (CREDITGATE_METHOD_OVERRIDE).
type MethodOverride string

const (
	// MethodOverridePrice prices a call that names another method in an override header as
	// the dearer of its own method and the one it names (the upstream may honour either).
	MethodOverridePrice MethodOverride = "price"
	// MethodOverrideStrip removes the override headers before the call is priced and
	// forwarded, so the upstream sees only the request's own method.
	MethodOverrideStrip MethodOverride = "strip"
)

// methodOverrideHeaders are the headers frameworks read to let a client tunnel a method
// through another (Rails, Express's method-override, ASP.NET, Spring, Symfony, Laravel).
var methodOverrideHeaders = [...]string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// maxOverrides bounds the distinct methods a call may name in override headers.
const maxOverrides = 4

// pricing is the rules that may price a call: the one of its own method, then one per
// distinct method its override headers name. The dearest of them prices the call.
type pricing struct {
	rules   [1 + maxOverrides]*costtable.Rule
	methods [1 + maxOverrides]string // the method each rule was matched for
	n       int
}

// price finds the rules of the call r (path already cleaned) in table t; underscored says
// whether r has header names with '_', read as aliases (hasUnderscoreName).
func (g *Gateway) price(t *costtable.Table, r *http.Request, underscored bool) (pricing, error) {
	var p pricing
	p.rules[0], p.methods[0], p.n = t.Match(r.Method, r.URL.Path, r.URL.RawQuery), r.Method, 1
	h := r.Header
	for _, name := range methodOverrideHeaders {
		vs := h[name]
		if underscored {
			vs = aliasValues(h, name)
		}
		if len(vs) == 0 {
			continue
		}
		if g.cfg.MethodOverride == MethodOverrideStrip {
			deleteAliases(h, name)
			continue
		}
		for _, v := range vs {
			for m := range strings.SplitSeq(v, ",") {
				m = strings.ToUpper(strings.TrimSpace(m))
				if m == "" || p.has(m) {
					continue
				}
				if p.n == len(p.rules) {
					return p, errMethodOverride
				}
				p.rules[p.n], p.methods[p.n] = t.Match(m, r.URL.Path, r.URL.RawQuery), m
				p.n++
			}
		}
	}
	return p, nil
}

func (p *pricing) has(method string) bool {
	for _, m := range p.methods[:p.n] {
		if m == method {
			return true
		}
	}
	return false
}

// countsBody reports whether any of the rules needs the body.
func (p *pricing) countsBody() bool {
	for _, r := range p.rules[:p.n] {
		if r.CountsBody() {
			return true
		}
	}
	return false
}

// heavy reports whether any of the rules is heavy: a call is held to the heavy sub-cap when
// any reading of it is a heavy call.
func (p *pricing) heavy() bool {
	for _, r := range p.rules[:p.n] {
		if r.Heavy {
			return true
		}
	}
	return false
}

// charge prices the call with each rule and returns the dearest (the first among equals: the
// request's own method). body is the decoded body; countable is false when its coding could
// not be removed, and raw is then what was sent: such a body costs the rule's cost, or what
// its bytes read as sent cost if more (an upstream may ignore the coding).
func (p *pricing) charge(rawQuery string, raw, body []byte, countable bool) (rule *costtable.Rule, cost, records int64, counted bool) {
	for i, r := range p.rules[:p.n] {
		c, n, ok := r.Charge(rawQuery, body)
		if r.CountsBody() && !countable {
			c, n, _ = r.Charge(rawQuery, raw)
			c, ok = max(c, r.Cost), false
		}
		if i == 0 || c > cost {
			rule, cost, records, counted = r, c, n, ok
		}
	}
	return rule, cost, records, counted
}

// cleanPath resolves "." and ".." segments and repeated slashes, so the path that is priced
// is the path that is forwarded (a crafted path cannot look cheap here and be expensive
// upstream).
func cleanPath(r *http.Request) {
	if c := cleanedPath(r.URL.Path); c != r.URL.Path {
		r.URL.Path = c
		r.URL.RawPath = ""
	}
}

// cleanedPath is p (decoded) with "." and ".." segments and repeated slashes resolved.
func cleanedPath(p string) string {
	if !strings.HasPrefix(p, "/") || (!strings.Contains(p, "/.") && !strings.Contains(p, "//")) {
		return p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}
