package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// CORSPolicy is what browsers on other origins may do through the gateway. With a policy the
// gateway answers CORS preflights itself (neither charged nor forwarded) and owns the CORS
// fields of every answer, its own errors included, so a browser can read a 401 or a 429.
type CORSPolicy struct {
	// Origins allowed ("https://app.example.com"); "*" allows any.
	Origins []string
	// Headers a request may carry (Access-Control-Allow-Headers); nil: the credential headers,
	// Content-Type, Idempotency-Key and the method override headers.
	Headers []string
	// MaxAge is how long a browser may keep a preflight's answer (zero: 10 minutes).
	MaxAge time.Duration
}

// defaultCORSHeaders are the request headers allowed when a policy names none.
var defaultCORSHeaders = []string{"Authorization", "Content-Type", "X-Api-Key", "Idempotency-Key", "X-Http-Method-Override"}

// corsExposed are the answer's fields a browser script may read: the rate-limit fields.
var corsExposed = strings.Join([]string{"Retry-After", "X-Credits-Charged", "X-Ratelimit-Limit",
	"X-Ratelimit-Remaining", "X-Ratelimit-Reset", "Ratelimit", "Ratelimit-Policy"}, ", ")

// corsMethods are the methods a preflight may ask for.
const corsMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// cors applies a CORSPolicy.
type cors struct {
	any     bool
	origins map[string]bool
	headers string
	maxAge  string
}

func newCORS(p *CORSPolicy) *cors {
	if p == nil || len(p.Origins) == 0 {
		return nil
	}
	c := &cors{origins: map[string]bool{}, maxAge: strconv.FormatInt(int64(p.MaxAge/time.Second), 10)}
	if p.MaxAge == 0 {
		c.maxAge = "600"
	}
	for _, o := range p.Origins {
		if o == "*" {
			c.any = true
		}
		c.origins[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	hs := p.Headers
	if hs == nil {
		hs = defaultCORSHeaders
	}
	c.headers = strings.Join(hs, ", ")
	return c
}

// isPreflight reports whether r is a CORS preflight: it carries no credentials by design.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// allowed reports whether origin may call.
func (c *cors) allowed(origin string) bool {
	return origin != "" && (c.any || c.origins[strings.ToLower(origin)])
}

// corsFields are the CORS fields of an answer that the gateway owns with a policy: the
// upstream's are dropped, and the gateway's are held across an upstream's 1xx (as the
// rate-limit fields are).
var corsFields = [...]string{"Access-Control-Allow-Origin", "Access-Control-Expose-Headers"}

// dropUpstream removes the upstream's CORS fields from its answer.
func (c *cors) dropUpstream(h http.Header) {
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			delete(h, k)
		}
	}
}

// set writes the CORS fields of the gateway's answer to a call from origin, before the
// upstream's (dropped by dropUpstream) could be there: with a policy the gateway owns them.
// One slice holds the three values, each field a full slice of it, as setLimitFields does.
func (c *cors) set(h http.Header, origin string) {
	if !c.allowed(origin) {
		h.Add("Vary", "Origin")
		return
	}
	v := make([]string, 3)
	v[0], v[1], v[2] = "Origin", origin, corsExposed
	if vary := h["Vary"]; len(vary) > 0 {
		h["Vary"] = append(vary, v[0])
	} else {
		h["Vary"] = v[0:1:1]
	}
	h["Access-Control-Allow-Origin"] = v[1:2:2]
	h["Access-Control-Expose-Headers"] = v[2:3:3]
}

// preflight answers a preflight by the policy: 204, with the fields that allow the call when
// the origin may call, without them (the browser then refuses) when it may not.
func (c *cors) preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	origin := r.Header.Get("Origin")
	c.set(h, origin)
	if c.allowed(origin) {
		h.Set("Access-Control-Allow-Methods", corsMethods)
		h.Set("Access-Control-Allow-Headers", c.headers)
		h.Set("Access-Control-Max-Age", c.maxAge)
	}
	h.Set("X-Credits-Charged", "0")
	w.WriteHeader(http.StatusNoContent)
}

// preflightBucket bounds the preflights forwarded without a policy: they carry no credentials,
// so nobody is charged for them, and the bucket keeps them from being free upstream work at
// any rate. A token bucket of preflightRate a second, preflightBurst deep, for the process.
type preflightBucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

const (
	preflightRate  = 100
	preflightBurst = 200
)

// take reports whether a preflight may go upstream now.
func (b *preflightBucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = preflightBurst
	} else {
		b.tokens = min(preflightBurst, b.tokens+now.Sub(b.last).Seconds()*preflightRate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// preflight answers a CORS preflight by the policy, or, without one, forwards it uncharged:
// with no body, and at most preflightRate a second for the process (429 past it), so
// preflights, which carry no credentials, are no source of free upstream work.
func (g *Gateway) preflight(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Credits-Charged", "0")
	if g.cors != nil {
		g.metrics.preflights.WithLabelValues("answered").Inc()
		g.cors.preflight(w, r)
		return
	}
	now := time.Now()
	if g.cfg.Clock != nil {
		now = g.cfg.Clock() // tests hold the clock, so the bound is exact whatever their speed
	}
	if !g.preflights.take(now) {
		g.metrics.preflights.WithLabelValues("refused").Inc()
		writeError(w, errPreflightRate, 1)
		return
	}
	rt := g.routeFor(r)
	if rt == nil {
		writeError(w, errNoRoute, 0)
		return
	}
	g.metrics.preflights.WithLabelValues("forwarded").Inc()
	r.Body, r.ContentLength = http.NoBody, 0
	rt.proxy.ServeHTTP(w, r)
}

// allowOrigin writes the policy's CORS fields for a call from another origin, on the
// gateway's own answers too, so a browser can read them.
func (g *Gateway) allowOrigin(w http.ResponseWriter, r *http.Request) {
	if g.cors == nil {
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		g.cors.set(w.Header(), origin)
	}
}
