package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
	"github.com/creditgate/creditgate/plans"
)

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
	// Upstream is the API behind the gateway, with Costs its cost table: the one route of a
	// gateway without Routes (required then).
	Upstream *url.URL
	// Routes, when not empty, send calls to several upstreams by host and path prefix, each
	// with its own cost table (see Route); Upstream and Costs are then not used. Calls that no
	// route matches are answered 404 ROUTE_NOT_FOUND, uncharged.
	Routes []Route
	// Transport reaches the upstreams; nil means NewUpstreamTransport(UpstreamTimeout (or a
	// route's Timeout), UpstreamTLS, !UpstreamHTTP1Only), one per timeout, which the gateway
	// closes in Close. An *http.Transport is cloned to send each call at most once and
	// HTTP/1.1 only (see upstream.go); another RoundTripper (an *UpstreamTransport among
	// them) is used as is, must not resend calls itself, and stays open after Close.
	Transport http.RoundTripper
	// UpstreamTLS configures TLS to an https:// upstream (a private CA, a client certificate)
	// for the default transport; nil: the system's roots, no client certificate.
	UpstreamTLS *tls.Config
	// UpstreamHTTP1Only keeps the default transport to HTTP/1.1; zero: HTTP/2 to https://
	// upstreams that offer it (see h2pool.go).
	UpstreamHTTP1Only bool
	// UpstreamTimeout bounds the wait for the upstream's response headers (zero: 60s), for
	// routes without a Timeout of their own; past it the gateway answers 504 and refunds.
	UpstreamTimeout time.Duration
	// Store keeps the windows (required): see Store for what the gateway asks of it.
	Store Store
	// StoreLacks names the features of Store that Store does not have (zero: none, as for
	// limiter's stores): the gateway never calls their methods, and does without as each
	// StoreFeature says.
	StoreLacks StoreFeature
	// StoreInProcess says Store answers within the process and never waits (as
	// limiter.MemoryStore): debits then skip the StoreTimeout timer. False: every debit is
	// bounded by StoreTimeout.
	StoreInProcess bool
	// StoreTimeout bounds one store call (zero: 1s); past it the call counts as a store error.
	StoreTimeout time.Duration
	// FailOpen lets calls through, uncharged, when the store cannot decide; false answers 503.
	FailOpen bool
	// FailLocal keeps limiting when the store cannot decide: each gateway admits its share of
	// an org's credits on its own, and writes them into the store when it answers again (see
	// local.go). It wins over FailOpen.
	FailLocal bool
	// Costs prices the calls of Upstream (required without Routes).
	Costs *costtable.Table
	// Orgs is who may call (required), and LimitOf gives an org's credits per window.
	Orgs    *orgs.Directory
	LimitOf func(*orgs.Org) int64
	// ConcurrencyOf gives an org's cap on calls in flight (0: no cap); nil: no caps.
	ConcurrencyOf func(*orgs.Org) int64
	// HeavyConcurrency caps each org's heavy calls in flight (rules marked heavy), inside its
	// own cap; 0 means no sub-cap. It applies only to orgs with a cap.
	HeavyConcurrency int64
	// AddonPlanOf says what an org may buy in add-on credits (see plans.Addon); nil: no org
	// has add-ons. Slabs price consumed add-on credits (nil: plans.DefaultSlabs).
	AddonPlanOf func(*orgs.Org) plans.Addon
	Slabs       plans.Slabs
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
	// PreserveHost sends the client's Host to Upstream instead of the upstream URL's (routes
	// say it for themselves).
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
	// renews the leases of calls in flight every third of it, unless the store lacks
	// StoreRenew. Zero: leases are not renewed.
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
	// Notices configures usage notices (nil: no default thresholds or endpoint; orgs may
	// still have their own). Without StoreNotices there are none.
	Notices *NoticeConfig
	// AdditionalOf gives the add-on part of an org's limit, which the usage API reports as
	// additional_credits (the rest is daily_free_limit); nil: none. It is the seam where add-on
	// limits set at run time plug in.
	AdditionalOf func(*orgs.Org) int64
}

// Gateway is the proxy's http.Handler: identify, price, debit, forward.
type Gateway struct {
	cfg    Config
	routes atomic.Pointer[routeTable]
	orgs   atomic.Pointer[orgTable]
	log    *zap.Logger

	routesMu   sync.Mutex                           // one swap of the routes at a time
	transports map[time.Duration]*UpstreamTransport // built by the gateway, by response-header timeout; under routesMu
	buffers    httputil.BufferPool                  // the proxies' copy buffers
	proxyLog   *log.Logger                          // the proxies' own errors

	metrics    *Metrics
	bodies     *bodyBudget
	overLimit  *overLimitError // the 429 of the window
	cors       *cors           // nil without a policy
	preflights preflightBucket // preflights forwarded without a policy
	leases     *leaseKeeper    // nil: leases are not renewed
	local      *localLimiter   // fail mode local; nil otherwise
	orgHeader  string          // cfg.OrgHeader, canonical
	breaker    *breaker
	deferred   *deferredQueue // refunds, compensations and releases waiting for the store
	stop       chan struct{}  // closed by Close
	stopOnce   sync.Once
	draining   atomic.Bool
	jwt        *jwtVerifier // OrgModeJWT; nil otherwise
	notices    *notifier    // nil without StoreNotices
}

// New returns a Gateway for cfg.
func New(cfg Config) (*Gateway, error) {
	switch {
	case cfg.Upstream == nil && len(cfg.Routes) == 0:
		return nil, errors.New("gateway: no upstream")
	case cfg.Store == nil:
		return nil, errors.New("gateway: no store")
	case cfg.Costs == nil && len(cfg.Routes) == 0:
		return nil, errors.New("gateway: no cost table")
	case cfg.Orgs == nil || cfg.LimitOf == nil:
		return nil, errors.New("gateway: no orgs")
	}
	if len(cfg.Routes) > 0 {
		if err := checkRoutes(cfg.Routes); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
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
	if t, ok := cfg.Transport.(*http.Transport); ok {
		cfg.Transport = oneAttempt(t)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(MetricsOptions{})
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

		transports: map[time.Duration]*UpstreamTransport{},
		buffers:    newBufferPool(),
	}
	g.proxyLog = zap.NewStdLog(g.log.WithOptions(zap.IncreaseLevel(zap.WarnLevel)))
	g.breaker = newBreaker(cfg.BreakerFailures, cfg.BreakerCooldown, cfg.StoreTimeout, cfg.Probe, nil,
		cfg.Logger.Named("breaker"), cfg.Metrics)
	g.deferred = newDeferredQueue(nil, g.breaker.oks.Load, g.log, cfg.Metrics)
	g.stop = make(chan struct{})
	g.breaker.onClose = func() {
		g.runDeferred()
		if g.local != nil {
			g.reconcile()
		}
	}
	if cfg.FailLocal {
		g.local = newLocalLimiter(limiter.Options{Window: cfg.Window})
		if g.has(StoreHeartbeat) {
			go g.heartbeatLoop()
		}
	}
	go g.retryLoop()
	if g.has(StoreRenew) && cfg.LeaseTTL > 0 {
		g.leases = newLeaseKeeper(cfg.Store, cfg.LeaseTTL, cfg.StoreTimeout, cfg.Clock, g.log.Named("leases"), g.breaker, cfg.Metrics)
	}
	if g.has(StoreNotices) {
		var nc NoticeConfig
		if cfg.Notices != nil {
			nc = *cfg.Notices
		}
		g.notices = newNotifier(g, nc)
		go g.notices.run()
	}
	if len(cfg.Routes) > 0 {
		g.setRoutes(cfg.Routes, false)
	} else {
		g.SetCosts(cfg.Costs)
	}
	g.SetOrgs(cfg.Orgs)
	if cfg.Mode == OrgModeJWT {
		if err := g.startJWT(); err != nil {
			g.Close()
			return nil, err
		}
	}
	return g, nil
}

// Close stops the gateway's background work (the breaker's prober, the lease renewals) and
// closes the upstream connections of the transports it built, each once its calls are done.
// Calls still in flight are not affected.
func (g *Gateway) Close() {
	g.stopOnce.Do(func() { close(g.stop) })
	g.breaker.close()
	if g.leases != nil {
		g.leases.close()
	}
	g.routesMu.Lock()
	for _, t := range g.transports {
		t.Close()
	}
	g.routesMu.Unlock()
}

// Drain marks the gateway as shutting down: /readyz answers 503 so load balancers stop
// sending calls, while calls keep being served.
func (g *Gateway) Drain() { g.draining.Store(true) }

// BreakerOpen reports whether the credit store's breaker is open: calls skip the store and
// the fail mode answers them.
func (g *Gateway) BreakerOpen() bool { return g.breaker.open() }
