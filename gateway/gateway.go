package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// spender is what the gateway needs of a limiter.Store.
type spender interface {
	Spend(ctx context.Context, key limiter.Key, cost int64, now time.Time) (limiter.Decision, error)
	Refund(ctx context.Context, key limiter.Key, d limiter.Decision) error
	Release(ctx context.Context, key limiter.Key, d limiter.Decision) error
}

// OrgMode says how a request names its org.
type OrgMode string

// Org modes (CREDITGATE_ORG_MODE).
const (
	// OrgModeAPIKey looks the org up by the API key in Authorization (Bearer or
	// Zoho-oauthtoken) or X-Api-Key.
	OrgModeAPIKey OrgMode = "apikey"
	// OrgModeHeader trusts a header (default X-Org-Id) set by an auth layer in front.
	OrgModeHeader OrgMode = "header"
	// OrgModeJWT reads the org from a claim of a verified JWT access token (see JWTConfig).
	OrgModeJWT OrgMode = "jwt"
)

// Config holds what a Gateway needs. Zero values are documented per field.
type Config struct {
	// Upstream is the API behind the gateway (required).
	Upstream *url.URL
	// Transport reaches the upstream; nil means a tuned clone of http.DefaultTransport with
	// UpstreamTimeout as its response-header timeout. An *http.Transport is cloned to send
	// each call at most once and HTTP/1.1 only (see upstream.go); another RoundTripper is
	// used as is, and must not resend calls itself.
	Transport http.RoundTripper
	// UpstreamTLS configures TLS to an https:// upstream (a private CA, a client certificate)
	// for the default transport; nil: the system's roots, no client certificate.
	UpstreamTLS *tls.Config
	// UpstreamTimeout bounds the wait for the upstream's response headers (zero: 60s); past
	// it the gateway answers 504 and refunds.
	UpstreamTimeout time.Duration
	// Store keeps the windows (required).
	Store spender
	// StoreTimeout bounds one store call (zero: 1s); past it the call counts as a store error.
	StoreTimeout time.Duration
	// FailOpen lets calls through, uncharged, when the store cannot decide; false answers 503.
	FailOpen bool
	// FailLocal keeps limiting when the store cannot decide: each gateway admits its share of
	// an org's credits on its own, and writes them into the store when it answers again (see
	// local.go). It wins over FailOpen.
	FailLocal bool
	// Costs prices calls (required).
	Costs *costtable.Table
	// Orgs is who may call (required), and LimitOf gives an org's credits per window.
	Orgs    *orgs.Directory
	LimitOf func(*orgs.Org) int64
	// ConcurrencyOf gives an org's cap on calls in flight (0: no cap); nil: no caps.
	ConcurrencyOf func(*orgs.Org) int64
	// HeavyConcurrency caps each org's heavy calls in flight (rules marked heavy), inside its
	// own cap; 0 means no sub-cap. It applies only to orgs with a cap.
	HeavyConcurrency int64
	// AddonPlanOf says what an org may buy in add-on credits (see AddonPlan); nil: no org
	// has add-ons. Slabs price consumed add-on credits (nil: costtable.DefaultSlabs).
	AddonPlanOf func(*orgs.Org) AddonPlan
	Slabs       costtable.Slabs
	// Mode and OrgHeader say how a request names its org (zero: OrgModeAPIKey, "X-Org-Id").
	Mode      OrgMode
	OrgHeader string
	// JWT configures OrgModeJWT (required in that mode, unused in the others).
	JWT *JWTConfig
	// MaxBodyBytes bounds the bodies buffered to count records (zero: 10 MiB); a larger one is
	// answered 413, uncharged and not forwarded. Other bodies stream through unbuffered.
	MaxBodyBytes int64
	// BodyTimeout bounds the time a client may take to send a body that is buffered for
	// counting (zero: no bound), so a client that declares a large body and sends it slowly
	// cannot hold a connection and its buffer for ever; past it the call is answered 400.
	BodyTimeout time.Duration
	// MaxInflateRatio bounds how much a compressed body to count may grow when decoded:
	// past 1 MiB, a decoded body over this many times its size is answered 413 (zero: no
	// ratio bound; MaxBodyBytes still bounds it).
	MaxInflateRatio int64
	// BodyBufferBytes bounds the bytes of bodies held for counting at once, and
	// BodyBufferOrgBytes those of one org (zero: 256 MiB and a quarter of BodyBufferBytes).
	// A call that finds no room within a second is answered 503 BODY_BUFFER_FULL, uncharged.
	BodyBufferBytes, BodyBufferOrgBytes int64
	// RateLimitFields says which rate-limit fields answers carry (zero: FieldsDraft).
	RateLimitFields RateLimitFields
	// MethodOverride says how calls with method override headers are priced (zero:
	// MethodOverridePrice).
	MethodOverride MethodOverride
	// StripCredentials removes the API key header before forwarding.
	StripCredentials bool
	// PreserveHost sends the client's Host upstream instead of the upstream URL's.
	PreserveHost bool
	// CORS is the policy for browsers on other origins (nil: none; preflights are then
	// forwarded, uncharged and bounded in rate, and CORS fields are the upstream's).
	CORS *CORSPolicy
	// Shadow counts and logs, but never rejects.
	Shadow bool
	// Window is the store's window, for the RateLimit-Policy field (zero: 24h).
	Window time.Duration
	// CallTTL is how long the store keeps a debit's record (limiter.Options.CallTTL): queued
	// refunds and compensations are retried until then (zero: 2m).
	CallTTL time.Duration
	// LeaseTTL is the store's lease time to live (limiter.Options.LeaseTTL): the gateway
	// renews the leases of calls in flight every third of it, when the store can
	// (limiter.LeaseRenewer). Zero: leases are not renewed.
	LeaseTTL time.Duration
	// Clock gives the time of each decision; nil lets the store use its own clock (the Redis
	// server's TIME), which keeps replicas in agreement. Tests inject one.
	Clock func() time.Time
	// Logger receives one line per rejection and per error (nil: no logs).
	Logger *zap.Logger

	// Metrics receives the gateway's metrics (nil: metrics of its own, not served).
	Metrics *Metrics
	// BreakerFailures is how many store calls in a row must fail before the breaker opens
	// and calls stop waiting on the store (zero: 3).
	BreakerFailures int
	// BreakerCooldown is how often an open breaker probes the store (zero: 1s).
	BreakerCooldown time.Duration
	// Probe checks the store while the breaker is open (e.g. RedisStore.LoadScripts); nil
	// lets one call per BreakerCooldown through as the probe.
	Probe func(context.Context) error

	// Usage reads windows for the usage API and page; nil: Store, if it implements
	// limiter.UsageReader.
	Usage usageReader
	// AdditionalOf gives the add-on part of an org's limit, which the usage API reports as
	// additional_credits (the rest is daily_free_limit); nil: none. It is the seam where add-on
	// limits set at run time plug in.
	AdditionalOf func(*orgs.Org) int64
}

// Gateway is the proxy's http.Handler: identify, price, debit, forward.
type Gateway struct {
	cfg    Config
	costs  atomic.Pointer[costtable.Table]
	roster atomic.Pointer[roster]
	proxy  *httputil.ReverseProxy
	log    *zap.Logger

	metrics    *Metrics
	bodies     *bodyBudget
	overLimit  *overLimitError // the 429 of the window
	cors       *cors           // nil without a policy
	preflights preflightBucket // preflights forwarded without a policy
	leases     *leaseKeeper    // nil: leases are not renewed
	local      *localLimiter   // fail mode local; nil otherwise
	orgHeader  string          // cfg.OrgHeader, canonical
	breaker    *breaker
	deferred   chan deferredCall // refunds, compensations and releases waiting for the store
	stop       chan struct{}     // closed by Close
	stopOnce   sync.Once
	draining   atomic.Bool
	storeLocal bool         // the store is a *limiter.MemoryStore, which never waits
	jwt        *jwtVerifier // OrgModeJWT; nil otherwise
}

// roster is the orgs in force: swapped whole on reload, read without locks.
type roster struct {
	dir     *orgs.Directory
	tenants map[*orgs.Org]*tenant
	byID    map[string]*tenant
}

// tenant is an org with everything the request path needs prepared once.
type tenant struct {
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
	fields    RateLimitFields    // which rate-limit fields answers carry
	plan      AddonPlan          // add-on credits: what the org may buy
	period    *limiter.PeriodKey // monthly plans: the call quota per period; nil otherwise
}

// callState travels to the proxy's error hook, which refunds, in a callWriter.
type callState struct {
	t   *tenant
	key limiter.Key
	d   limiter.Decision
	// pre is the debit taken before a large body was read (the rule's smallest cost, with
	// the concurrency lease), under preKey; d is then the rest of the cost. Zero otherwise.
	pre    limiter.Decision
	preKey limiter.Key
	// local and preLocal: d and pre were decided on the gateway's own (fail mode local).
	local, preLocal bool
	rule            string
	body            *watchedBody // nil without a request body
	rs              *ruleSeries  // the rule's metrics
	sent            time.Time    // when the call was handed to the proxy
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

// New returns a Gateway for cfg.
func New(cfg Config) (*Gateway, error) {
	switch {
	case cfg.Upstream == nil:
		return nil, errors.New("gateway: no upstream")
	case cfg.Store == nil:
		return nil, errors.New("gateway: no store")
	case cfg.Costs == nil:
		return nil, errors.New("gateway: no cost table")
	case cfg.Orgs == nil || cfg.LimitOf == nil:
		return nil, errors.New("gateway: no orgs")
	}
	if cfg.Mode == "" {
		cfg.Mode = OrgModeAPIKey
	}
	if cfg.Mode != OrgModeAPIKey && cfg.Mode != OrgModeHeader && cfg.Mode != OrgModeJWT {
		return nil, fmt.Errorf("gateway: unknown org mode %q", cfg.Mode)
	}
	if cfg.OrgHeader == "" {
		cfg.OrgHeader = "X-Org-Id"
	}
	if cfg.Window == 0 {
		cfg.Window = 24 * time.Hour
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 60 * time.Second
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = time.Second
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 10 << 20
	}
	if cfg.BodyBufferBytes == 0 {
		cfg.BodyBufferBytes = 256 << 20
	}
	if cfg.BodyBufferOrgBytes == 0 {
		cfg.BodyBufferOrgBytes = cfg.BodyBufferBytes / 4
	}
	if cfg.BodyBufferOrgBytes > cfg.BodyBufferBytes || cfg.BodyBufferOrgBytes < 3*cfg.MaxBodyBytes {
		return nil, fmt.Errorf("gateway: an org's body buffer (%d bytes) must hold three times MaxBodyBytes (%d: a body as sent, and its decoded copy while it grows) and fit in the whole buffer (%d)",
			cfg.BodyBufferOrgBytes, cfg.MaxBodyBytes, cfg.BodyBufferBytes)
	}
	switch cfg.RateLimitFields {
	case "":
		cfg.RateLimitFields = FieldsDraft
	case FieldsDraft, FieldsDraft7, FieldsX:
	default:
		return nil, fmt.Errorf("gateway: unknown rate-limit fields %q", cfg.RateLimitFields)
	}
	switch cfg.MethodOverride {
	case "":
		cfg.MethodOverride = MethodOverridePrice
	case MethodOverridePrice, MethodOverrideStrip:
	default:
		return nil, fmt.Errorf("gateway: unknown method override mode %q", cfg.MethodOverride)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Transport == nil {
		t := NewTransport(cfg.UpstreamTimeout)
		t.TLSClientConfig = cfg.UpstreamTLS
		cfg.Transport = t
	}
	if t, ok := cfg.Transport.(*http.Transport); ok {
		cfg.Transport = oneAttempt(t)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(MetricsOptions{})
	}
	if cfg.Usage == nil {
		cfg.Usage, _ = cfg.Store.(usageReader)
	}
	if cfg.CallTTL <= 0 {
		cfg.CallTTL = 2 * time.Minute
	}
	if cfg.BreakerFailures <= 0 {
		cfg.BreakerFailures = 3
	}
	if cfg.BreakerCooldown <= 0 {
		cfg.BreakerCooldown = time.Second
	}
	g := &Gateway{
		cfg:       cfg,
		log:       cfg.Logger.Named("gateway"),
		metrics:   cfg.Metrics,
		bodies:    newBodyBudget(cfg.BodyBufferBytes, cfg.BodyBufferOrgBytes, cfg.Metrics),
		orgHeader: textproto.CanonicalMIMEHeaderKey(cfg.OrgHeader),
		overLimit: newOverLimitError(cfg.Window),
		cors:      newCORS(cfg.CORS),
	}
	g.breaker = newBreaker(cfg.BreakerFailures, cfg.BreakerCooldown, cfg.StoreTimeout, cfg.Probe,
		cfg.Logger.Named("breaker"), cfg.Metrics)
	g.deferred = make(chan deferredCall, maxDeferred)
	g.stop = make(chan struct{})
	g.breaker.onClose = func() {
		g.runDeferred()
		if g.local != nil {
			g.reconcile()
		}
	}
	if cfg.FailLocal {
		g.local = newLocalLimiter(limiter.Options{Window: cfg.Window})
		if hb, ok := cfg.Store.(limiter.Heartbeater); ok {
			go g.heartbeatLoop(hb)
		}
	}
	go g.retryLoop()
	_, g.storeLocal = cfg.Store.(*limiter.MemoryStore)
	if r, ok := cfg.Store.(renewer); ok && cfg.LeaseTTL > 0 {
		g.leases = newLeaseKeeper(r, cfg.LeaseTTL, cfg.StoreTimeout, cfg.Clock, g.log.Named("leases"), g.breaker, cfg.Metrics)
	}
	g.SetCosts(cfg.Costs)
	g.SetOrgs(cfg.Orgs)
	if cfg.Mode == OrgModeJWT {
		if err := g.startJWT(); err != nil {
			g.Close()
			return nil, err
		}
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      cfg.Transport,
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.proxyError,
		BufferPool:     newBufferPool(),
		ErrorLog:       zap.NewStdLog(g.log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))),
	}
	return g, nil
}

// SetOrgs swaps the orgs for new requests (requests in flight finish with the org they
// started with). Windows live in the store under the org ID, so an org that stays keeps its
// consumption.
func (g *Gateway) SetOrgs(dir *orgs.Directory) {
	r := &roster{dir: dir, tenants: make(map[*orgs.Org]*tenant, dir.Len()), byID: make(map[string]*tenant, dir.Len())}
	series := g.metrics.setOrgs(dir.Orgs())
	old := g.roster.Load()
	for _, o := range dir.Orgs() {
		var prev *tenant
		if old != nil {
			prev = old.byID[o.ID]
		}
		t := g.newTenant(o, series[o], prev)
		r.tenants[o] = t
		r.byID[o.ID] = t
	}
	g.roster.Store(r)
}

// newTenant prepares org o, whose metrics are s, for the request path. prev is the org's
// tenant until now (nil: none), whose last word from the store carries over.
func (g *Gateway) newTenant(o *orgs.Org, s *orgSeries, prev *tenant) *tenant {
	cfg := g.cfg
	window := strconv.FormatInt(int64(cfg.Window/time.Second), 10)
	limit := cfg.LimitOf(o)
	var concurrency int64
	if cfg.ConcurrencyOf != nil {
		concurrency = cfg.ConcurrencyOf(o)
	}
	l := strconv.FormatInt(limit, 10)
	t := &tenant{
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
			t.period = &limiter.PeriodKey{Org: o.ID, Monthly: t.plan.Monthly, Additional: t.plan.Addon, AnchorDay: t.plan.AnchorDay}
		} else if t.plan.Cap > 0 {
			t.key = t.key.WithAddons(t.plan.Free, t.plan.Addon, t.plan.Cap)
			l = strconv.FormatInt(t.key.Limit, 10)
		}
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

// SetCosts swaps the cost table for new requests; requests in flight keep the one they read.
func (g *Gateway) SetCosts(t *costtable.Table) {
	g.metrics.setRules(ruleNames(t)...)
	g.costs.Store(t)
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.metrics.inFlight.Inc()
	defer g.metrics.inFlight.Dec()
	h := w.Header()
	if isPreflight(r) {
		g.preflight(w, r)
		return
	}
	if g.cors != nil {
		if origin := r.Header.Get("Origin"); origin != "" {
			g.cors.set(h, origin) // on the gateway's own answers too, so a browser can read them
		}
	}
	underscored := hasUnderscoreName(r.Header)
	t, err := g.identify(r, underscored)
	if err != nil {
		g.metrics.count(nil, nil, outUnauthorized, 0, 0)
		h.Set("X-Credits-Charged", "0")
		g.log.Debug("unauthenticated", zap.String("reason", err.Error()))
		writeError(w, err, 0)
		return
	}
	cleanPath(r)
	if r.URL.Path == ownUsagePath || r.URL.Path == ownUsageHoursPath {
		g.serveOwnUsage(w, r, t) // neither charged nor forwarded
		return
	}
	p, err := g.price(g.costs.Load(), r, underscored)
	rule := p.rules[0]
	rs := g.metrics.rule(rule.Name)
	if err != nil {
		setPolicyFields(h, t)
		g.metrics.count(t.m, rs, outBadRequest, 0, 0)
		writeError(w, err, 0)
		return
	}

	var now time.Time
	if g.cfg.Clock != nil {
		now = g.cfg.Clock()
	}
	// Monthly plans: the call is counted against the subscription period first, and given
	// back if it is not forwarded after all.
	var (
		pd        limiter.PeriodDecision
		forwarded bool
	)
	if t.period != nil {
		var ok bool
		if pd, ok = g.countCall(w, r, t, rule.Name, rs, now); !ok {
			return
		}
		defer func() {
			if !forwarded {
				g.uncountCall(r, t, pd)
			}
		}()
	}
	key := t.key
	if p.heavy() {
		key = t.heavyKey
	}
	key = key.WithRule(rule.Name) // usage by rule; the rule that prices the call, once known

	// A body whose records are counted is read before the call is priced. A large one (or
	// one of unknown length) is read only once the call holds its concurrency slot and the
	// smallest cost of its rule, so an org without either cannot make the gateway hold it.
	var (
		pre      limiter.Decision
		preLocal bool // pre, and d, were decided on the gateway's own (fail mode local)
		local    bool
		preKey   limiter.Key
		charged  = true // false once the call goes on uncharged (shadow mode, fail open)
		body     *heldBody
	)
	defer func() { g.releaseBody(body) }()
	if p.countsBody() {
		_, coded := r.Header["Content-Encoding"]
		if !g.cfg.Shadow && (r.ContentLength < 0 || r.ContentLength > prefetchLimit || coded) {
			var err error
			preKey = key
			pre, preLocal, err = g.decide(r, t, key, 1, now)
			if pre.Lease != "" {
				g.hold(key, pre)
				defer g.release(r, key, pre)
			}
			if !g.admit(w, r, t, rs, rule.Name, key, 1, pre, err) {
				abandonBody(w, r)
				return
			}
			charged = pre.Allowed
		}
		if body, err = g.bufferBody(w, r, t.org.ID); err != nil {
			if pre.Allowed {
				g.refundDecision(r, t, preKey, pre, preLocal, rule.Name)
			}
			if !g.bodyRefused(w, r, t, rs, rule.Name, err, callState{t: t, key: key, rule: rule.Name, rs: rs, pd: pd}) {
				return
			}
			forwarded = true // shadow mode: forwarded uncharged (bodyRefused did)
			return
		}
	}
	var raw, decoded []byte
	countable := true
	if body != nil {
		raw, decoded, countable = body.raw, body.decoded, body.countable
	}
	rule, cost, records, counted := p.charge(r.URL.RawQuery, raw, decoded, countable)
	if rule != p.rules[0] {
		rs = g.metrics.rule(rule.Name)
		key = key.WithRule(rule.Name)
	}
	if !counted {
		g.log.Info("records not countable, rule cost charged", zap.String("org", t.org.ID),
			zap.String("rule", rule.Name), zap.Int64("cost", cost), zap.Int("body_bytes", len(raw)))
	} else if rule.Per > 0 {
		g.log.Debug("records counted", zap.String("org", t.org.ID), zap.String("rule", rule.Name),
			zap.Int64("records", records), zap.Int64("cost", cost))
	}
	if body != nil {
		body.dropDecoded(g.bodies)
	}

	var d limiter.Decision
	switch {
	case !charged:
	case pre.Allowed:
		// The rest of the cost, without a second lease. A cost over the whole limit can never
		// be paid: the rest alone would not tell (it is one credit less).
		switch rest := cost - pre.Cost; {
		case cost > pre.Limit:
			d, err = limiter.Decision{Limit: pre.Limit, Used: pre.Used, Remaining: pre.Remaining}, limiter.ErrCostExceedsLimit
		case rest > 0:
			d, local, err = g.decide(r, t, key.WithConcurrency(0, 0), rest, now)
		default:
			d = pre
			d.Cost, d.Addon, d.Lease = 0, 0, ""
		}
		if err != nil {
			// The rest was refused, or could not be decided: the smallest cost goes back (from
			// the queue when the store just failed, rather than waiting on it again now).
			if storeFailed(err) || local {
				g.refundLater(preKey, pre, preLocal)
			} else {
				g.refundDecision(r, t, preKey, pre, preLocal, rule.Name)
			}
			d.Used, d.Remaining = d.Used-pre.Cost, min(d.Remaining+pre.Cost, d.Limit)
			if !g.admit(w, r, t, rs, rule.Name, key, cost, d, err) {
				return
			}
			pre, preKey = limiter.Decision{}, limiter.Key{}
			break
		}
		g.metrics.count(t.m, rs, outAllowed, 0, pre.Cost+d.Cost)
		if a := pre.Addon + d.Addon; a > 0 && t.m != nil {
			t.m.addon.Add(float64(a))
		}
		shown := d
		shown.Cost, shown.Lease, shown.InFlight, shown.ConcurrencyLimit = pre.Cost+d.Cost, pre.Lease, pre.InFlight, pre.ConcurrencyLimit
		setLimitFields(h, t, shown)
	default:
		d, local, err = g.decide(r, t, key, cost, now)
		if d.Lease != "" {
			// Released when the call is over, however it ends: answered, client gone, or panic
			// (ReverseProxy panics with http.ErrAbortHandler when a client leaves mid-body).
			// Renewed meanwhile when the call lasts.
			g.hold(key, d)
			defer g.release(r, key, d)
		}
		if !g.admit(w, r, t, rs, rule.Name, key, cost, d, err) {
			return
		}
		if d.Allowed {
			g.metrics.count(t.m, rs, outAllowed, 0, d.Cost)
			if d.Addon > 0 && t.m != nil {
				t.m.addon.Add(float64(d.Addon)) // add-on credits metered in this debit
			}
			setLimitFields(h, t, d)
		}
	}
	forwarded = true
	g.forward(w, r, callState{t: t, key: key, d: d, local: local, pre: pre, preLocal: preLocal, preKey: preKey, rule: rule.Name, rs: rs, pd: pd})
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
	if !g.preflights.take(time.Now()) {
		g.metrics.preflights.WithLabelValues("refused").Inc()
		writeError(w, errPreflightRate, 1)
		return
	}
	g.metrics.preflights.WithLabelValues("forwarded").Inc()
	r.Body, r.ContentLength = http.NoBody, 0
	g.proxy.ServeHTTP(w, r)
}

// admit acts on the store's answer to a debit of cost credits: it reports whether the call
// goes on (allowed; or, uncharged, in shadow mode or failing open), and otherwise has
// answered it.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, t *tenant, rs *ruleSeries, rule string, key limiter.Key, cost int64, d limiter.Decision, err error) bool {
	h := w.Header()
	switch {
	case err == nil:
		return true
	case errors.Is(err, limiter.ErrConcurrency):
		setLimitFields(h, t, d)
		h.Set("X-Credits-Charged", "0")
		scope, why := "org", reasonConcurrency
		if d.ConcurrencyLimit != key.Concurrency {
			scope, why = "heavy", reasonHeavyConcurrency
		}
		if g.cfg.Shadow {
			g.metrics.count(t.m, rs, outShadowRejected, why, 0)
			g.log.Info("shadow rejection", zap.String("org", t.org.ID), zap.String("rule", rule),
				zap.Int64("cost", cost), zap.String("reason", "concurrency_"+scope), zap.Int64("in_flight", d.InFlight))
			return true
		}
		g.metrics.count(t.m, rs, outRejected, why, 0)
		g.log.Info("rejected", zap.String("org", t.org.ID), zap.String("rule", rule),
			zap.Int64("cost", cost), zap.String("reason", "concurrency_"+scope), zap.Int64("in_flight", d.InFlight))
		writeError(w, &concurrencyError{limit: d.ConcurrencyLimit, scope: scope}, 1)
		return false
	case errors.Is(err, limiter.ErrOverLimit), errors.Is(err, limiter.ErrCostExceedsLimit):
		setLimitFields(h, t, d)
		why := reasonCredits
		if errors.Is(err, limiter.ErrCostExceedsLimit) {
			why = reasonCostExceedsLimit
		}
		if g.cfg.Shadow {
			g.metrics.count(t.m, rs, outShadowRejected, why, 0)
			g.log.Info("shadow rejection", zap.String("org", t.org.ID), zap.String("rule", rule),
				zap.Int64("cost", cost), zap.String("reason", reason(err)), zap.Int64("used", d.Used))
			return true
		}
		g.metrics.count(t.m, rs, outRejected, why, 0)
		g.log.Info("rejected", zap.String("org", t.org.ID), zap.String("rule", rule),
			zap.Int64("cost", cost), zap.String("reason", reason(err)), zap.Int64("used", d.Used),
			zap.Duration("retry_after", d.RetryAfter))
		if errors.Is(err, limiter.ErrCostExceedsLimit) {
			writeError(w, &costError{cost: cost, limit: d.Limit}, 0)
			return false
		}
		writeError(w, g.overLimit, ceilSeconds(d.RetryAfter))
		return false
	default:
		if r.Context().Err() != nil {
			g.metrics.count(t.m, rs, outClientClosed, 0, 0)
			// The client left while we waited for the store, which may have debited the call
			// (at most once: never retried); a lease it may have taken, the store releases.
			return false
		}
		failOpen := g.cfg.FailOpen || g.cfg.Shadow // shadow mode never rejects
		if failOpen {
			g.metrics.count(t.m, rs, outFailOpen, 0, 0)
		} else {
			g.metrics.count(t.m, rs, outFailClosed, 0, 0)
		}
		// The breaker logs once when it opens; while it is open, calls are not logged one by one.
		if err != errBreakerOpen {
			g.log.Warn("credit store error", zap.String("org", t.org.ID), zap.String("rule", rule),
				zap.Int64("cost", cost), zap.Bool("fail_open", failOpen), zap.Error(err))
		}
		setPolicyFields(h, t)
		if !failOpen {
			writeError(w, errStoreUnavailable, 1)
			return false
		}
		return true
	}
}

// bodyRefused answers a call whose body to count could not be held (too large, unreadable,
// no room in the budget), or, in shadow mode, forwards it uncharged when it was too large or
// found no room (bufferBody put back what it read). It reports whether it forwarded.
func (g *Gateway) bodyRefused(w http.ResponseWriter, r *http.Request, t *tenant, rs *ruleSeries, rule string, err error, st callState) bool {
	h := w.Header()
	setPolicyFields(h, t)
	var tooLarge *bodyTooLargeError
	errors.As(err, &tooLarge)
	full := errors.Is(err, errBodyBudget)
	if g.cfg.Shadow && (tooLarge != nil || full) {
		// Shadow mode never rejects: the call goes on, uncharged as the refusal would have
		// left it, with its body as sent (bufferBody put back what it read).
		why := reasonBodyTooLarge
		if full {
			why = reasonBodyBuffer
		}
		g.metrics.count(t.m, rs, outShadowRejected, why, 0)
		g.log.Info("shadow rejection", zap.String("org", t.org.ID), zap.String("rule", rule),
			zap.String("reason", reasonNames[why]), zap.Int64("max_bytes", g.cfg.MaxBodyBytes))
		g.forward(w, r, st)
		return true
	}
	abandonBody(w, r)
	if full {
		g.metrics.count(t.m, rs, outBodyBudget, 0, 0)
		g.log.Warn("body buffer full", zap.String("org", t.org.ID), zap.String("rule", rule))
		writeError(w, err, 1)
		return false
	}
	g.metrics.count(t.m, rs, outBadRequest, 0, 0)
	g.log.Info("body not buffered", zap.String("org", t.org.ID), zap.String("rule", rule), zap.Error(err))
	writeError(w, err, 0)
	return false
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

// refundDecision gives back a debit of a call that will not be forwarded after all.
func (g *Gateway) refundDecision(r *http.Request, t *tenant, key limiter.Key, d limiter.Decision, local bool, rule string) {
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

func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, st callState) {
	cw := callWriters.Get().(*callWriter)
	cw.ResponseWriter, cw.st = w, st
	cw.hold()
	cw.st.sent = time.Now()
	if r.Body != nil && r.Body != http.NoBody {
		// Not pooled: the transport may still read a body after the proxy returns.
		cw.st.body = &watchedBody{ReadCloser: r.Body}
		r.Body = cw.st.body
	}
	if replayable(r) {
		r = withAttempts(r, &cw.att) // one upstream attempt at most (see upstream.go)
	}
	g.proxy.ServeHTTP(cw, r)
	*cw = callWriter{}
	callWriters.Put(cw)
}

func reason(err error) string {
	if errors.Is(err, limiter.ErrCostExceedsLimit) {
		return "cost_exceeds_limit"
	}
	return "credits"
}

// limitFields are the fields the gateway owns; the upstream's versions are dropped so a
// client never sees two answers. The upstream's own Retry-After (say, on a 503) stays.
var limitFields = [...]string{
	"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset",
	"Ratelimit-Policy", "Ratelimit", "X-Credits-Charged",
}

// modifyResponse measures the upstream's answer and drops its limit fields.
func (g *Gateway) modifyResponse(resp *http.Response) error {
	g.rewriteLocations(resp)
	if g.cors != nil {
		g.cors.dropUpstream(resp.Header) // the gateway's are on the answer already
	}
	return dropUpstreamLimitFields(resp)
}

// rewriteLocations points the upstream's own absolute URLs in Location, Content-Location and
// Refresh back at the address the client used (as nginx's default proxy_redirect does): the
// upstream, seeing its own Host, answers with its own address, and a client following it
// would leave the gateway (and its credits) behind.
func (g *Gateway) rewriteLocations(resp *http.Response) {
	h := resp.Header
	_, loc := h["Location"]
	_, cloc := h["Content-Location"]
	_, ref := h["Refresh"]
	if !loc && !cloc && !ref || resp.Request == nil {
		return
	}
	out := resp.Request
	host := out.Header.Get("X-Forwarded-Host") // the Host the client asked for
	proto := out.Header.Get("X-Forwarded-Proto")
	if host == "" || proto == "" {
		return
	}
	up := g.cfg.Upstream
	from := up.Scheme + "://" + up.Host + strings.TrimSuffix(up.Path, "/")
	to := proto + "://" + host
	rewrite := func(v string) string {
		if len(v) < len(from) || !strings.EqualFold(v[:len(from)], from) {
			return v
		}
		if rest := v[len(from):]; rest == "" || rest[0] == '/' || rest[0] == '?' || rest[0] == '#' {
			return to + rest
		}
		return v
	}
	for _, k := range [...]string{"Location", "Content-Location"} {
		if v := h.Get(k); v != "" {
			h.Set(k, rewrite(v))
		}
	}
	if v := h.Get("Refresh"); v != "" { // "5; url=http://…"
		if i := strings.Index(strings.ToLower(v), "url="); i >= 0 {
			h.Set("Refresh", v[:i+4]+rewrite(v[i+4:]))
		}
	}
}

func dropUpstreamLimitFields(resp *http.Response) error {
	for _, k := range limitFields {
		delete(resp.Header, k)
	}
	return nil
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
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

func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(g.cfg.Upstream)
	if g.cfg.PreserveHost {
		pr.Out.Host = pr.In.Host
	}
	// ReverseProxy drops the query parameters it cannot parse (';', bad escapes) before
	// Rewrite; the call was priced on the query as sent, so that is what goes upstream.
	if q := pr.In.URL.RawQuery; q != "" {
		if t := g.cfg.Upstream.RawQuery; t != "" {
			q = t + "&" + q
		}
		pr.Out.URL.RawQuery = q
	}
	// Keep the chain of a load balancer in front; SetXForwarded appends our hop. RFC 7239's
	// Forwarded, which ReverseProxy drops too, is kept and extended the same way.
	pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	pr.SetXForwarded()
	if fwd := pr.In.Header["Forwarded"]; len(fwd) > 0 {
		pr.Out.Header["Forwarded"] = append(fwd[:len(fwd):len(fwd)], forwardedElement(pr.In))
	}
	if g.cfg.StripCredentials && g.cfg.Mode == OrgModeAPIKey {
		if _, ok := bearerKey(pr.Out.Header.Get("Authorization")); ok {
			deleteAliases(pr.Out.Header, "Authorization")
		}
		deleteAliases(pr.Out.Header, "X-Api-Key")
	}
}

// forwardedElement is this hop's element of an RFC 7239 Forwarded field: the client's
// address, the host it asked for and the protocol.
func forwardedElement(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6, quoted below
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	return `for="` + host + `";host=` + strconv.Quote(r.Host) + ";proto=" + proto
}

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
	if st != nil {
		g.uncountCall(r, st.t, st.pd) // monthly plans: a call never served is not counted
	}
	if st != nil && st.d.Allowed && st.d.Cost+st.pre.Cost > 0 {
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
		} else {
			st.t.m.refunded.Add(float64(cost))
			h := w.Header()
			h.Set("X-Credits-Charged", "0")
			setRemaining(h, st.t, st.d.Limit, st.d.Remaining+cost)
		}
	}
	org, rule := "", ""
	if st != nil {
		org, rule = st.t.org.ID, st.rule
	}
	g.log.Error("upstream error", zap.String("org", org), zap.String("rule", rule), zap.Error(err))
	writeError(w, status, 0)
}
