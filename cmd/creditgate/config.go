package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/gateway"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/plans"
)

// Config is the whole configuration, read from the environment. Every variable is documented
// in docs/configuration.md; the tag carries the full name so a grep for it finds the field.
type Config struct {
	ListenAddr string `env:"CREDITGATE_LISTEN_ADDR" envDefault:":8080"`
	AdminAddr  string `env:"CREDITGATE_ADMIN_ADDR" envDefault:":9090"`

	// UpstreamURL is the API behind the gateway; unset (with CREDITGATE_ORGS unset too): the
	// built-in demo upstream.
	UpstreamURL string `env:"CREDITGATE_UPSTREAM_URL"`
	// RoutesFile routes calls to several upstreams by host and path prefix, each with its own
	// cost table (YAML or JSON, read again on SIGHUP); it replaces CREDITGATE_UPSTREAM_URL.
	RoutesFile string `env:"CREDITGATE_ROUTES_FILE"`
	// UpstreamTimeout bounds the wait for the upstream's response headers; then 504, refunded.
	UpstreamTimeout time.Duration `env:"CREDITGATE_UPSTREAM_TIMEOUT" envDefault:"60s"`

	// RedisURL selects the Redis store; unset: the in-memory store (one replica only).
	RedisURL string `env:"CREDITGATE_REDIS_URL"`
	// RedisTimeout bounds one credit decision in Redis; past it the fail mode applies.
	RedisTimeout time.Duration `env:"CREDITGATE_REDIS_TIMEOUT" envDefault:"1s"`
	// RedisPipeline sends concurrent credit decisions to Redis together, one pipeline per
	// flush (limiter.PipelinedStore); false: one round trip per decision.
	RedisPipeline bool `env:"CREDITGATE_REDIS_PIPELINE" envDefault:"false"`
	// FailMode is what happens when the store cannot decide: open (forward, uncharged),
	// closed (503) or local (each gateway limits to its share on its own, and writes what it
	// admitted into the store when it answers again).
	FailMode string `env:"CREDITGATE_FAIL_MODE" envDefault:"local"`
	// BreakerFailures is how many credit store calls in a row must fail before the breaker
	// opens: then calls stop waiting on Redis and the fail mode answers them at once.
	BreakerFailures int `env:"CREDITGATE_BREAKER_FAILURES" envDefault:"3"`
	// BreakerCooldown is how often an open breaker probes Redis to close again.
	BreakerCooldown time.Duration `env:"CREDITGATE_BREAKER_COOLDOWN" envDefault:"1s"`
	// MetricsMaxOrgs is how many orgs get an org label of their own in /metrics (the first
	// configured); the others share org="other". 0: all share it.
	MetricsMaxOrgs int `env:"CREDITGATE_METRICS_MAX_ORGS" envDefault:"100"`

	// HeavyConcurrency caps each org's heavy calls in flight (bulk and multi-record writes),
	// inside its own cap; 0 disables the sub-cap.
	HeavyConcurrency int64 `env:"CREDITGATE_HEAVY_CONCURRENCY" envDefault:"10"`
	// CallRecordTTL is how long Redis keeps each debit's record, so that a refund applies once
	// and a debit whose reply was lost can be undone; longer than CREDITGATE_UPSTREAM_TIMEOUT.
	CallRecordTTL time.Duration `env:"CREDITGATE_CALL_RECORD_TTL" envDefault:"2m"`
	// LeaseTTL is how long a concurrency slot stays taken if its gateway dies mid-call; the
	// leases of calls in flight are renewed every third of it.
	LeaseTTL time.Duration `env:"CREDITGATE_LEASE_TTL" envDefault:"15s"`

	// Window is how long a consumed credit stays consumed.
	Window time.Duration `env:"CREDITGATE_WINDOW" envDefault:"24h"`
	// Bucket is the granularity of the window's records; zero: Window/1440 (1m for 24h).
	Bucket time.Duration `env:"CREDITGATE_BUCKET"`

	Shadow       bool  `env:"CREDITGATE_SHADOW"`
	MaxBodyBytes int64 `env:"CREDITGATE_MAX_BODY_BYTES" envDefault:"10485760"`
	// BodyTimeout bounds the time a client takes to send a body buffered for counting.
	BodyTimeout time.Duration `env:"CREDITGATE_BODY_TIMEOUT" envDefault:"60s"`
	// BodyBufferBytes bounds the bytes of bodies held for counting at once, in all;
	// BodyBufferOrgBytes those of one org (0: a quarter of BodyBufferBytes).
	BodyBufferBytes    int64 `env:"CREDITGATE_BODY_BUFFER_BYTES" envDefault:"268435456"`
	BodyBufferOrgBytes int64 `env:"CREDITGATE_BODY_BUFFER_ORG_BYTES"`
	// MaxInflateRatio bounds how many times its size a compressed body may grow when
	// decoded for counting (past 1 MiB); 0: no ratio bound.
	MaxInflateRatio int64 `env:"CREDITGATE_MAX_INFLATE_RATIO" envDefault:"100"`
	// MethodOverride is price (a call naming another method in X-HTTP-Method-Override and
	// its cousins costs the dearer of the two) or strip (those headers are removed).
	MethodOverride string `env:"CREDITGATE_METHOD_OVERRIDE" envDefault:"price"`
	// RateLimitFields is draft (the current IETF draft's structured fields), draft7 (its
	// combined form of draft 7) or x (X-RateLimit-* only); X-RateLimit-* are always sent.
	RateLimitFields string `env:"CREDITGATE_RATELIMIT_FIELDS" envDefault:"draft"`
	CostTable       string `env:"CREDITGATE_COST_TABLE" envDefault:"zoho-crm"`
	// CostTableFile is a custom cost table (YAML or JSON); it replaces CREDITGATE_COST_TABLE
	// and is read again on SIGHUP.
	CostTableFile string `env:"CREDITGATE_COST_TABLE_FILE"`

	// OrgMode is apikey, header or jwt (the org from a verified access token's claim).
	OrgMode          string `env:"CREDITGATE_ORG_MODE" envDefault:"apikey"`
	OrgHeader        string `env:"CREDITGATE_ORG_HEADER" envDefault:"X-Org-Id"`
	StripCredentials bool   `env:"CREDITGATE_STRIP_CREDENTIALS"`
	// JWT mode: the issuer's JWK set from a URL (https, or http on loopback) or a file (one of
	// the two), the iss claim it must carry and the aud values accepted (comma-separated).
	JWTJWKSURL  string `env:"CREDITGATE_JWT_JWKS_URL"`
	JWTJWKSFile string `env:"CREDITGATE_JWT_JWKS_FILE"`
	JWTIssuer   string `env:"CREDITGATE_JWT_ISSUER"`
	JWTAudience string `env:"CREDITGATE_JWT_AUDIENCE"`
	// JWTLeeway is the clock skew allowed on exp and nbf.
	JWTLeeway     time.Duration `env:"CREDITGATE_JWT_LEEWAY" envDefault:"30s"`
	JWTOrgClaim   string        `env:"CREDITGATE_JWT_ORG_CLAIM" envDefault:"org_id"`
	JWTUsersClaim string        `env:"CREDITGATE_JWT_USERS_CLAIM"`
	// JWTDefaultPlan is the plan of orgs not configured, in the CREDITGATE_ORGS field syntax
	// (edition=crm-standard,users=5); unset: their tokens are refused.
	JWTDefaultPlan string `env:"CREDITGATE_JWT_DEFAULT_PLAN"`
	// JWTMaxOrgs bounds the orgs held from tokens besides the configured ones.
	JWTMaxOrgs int `env:"CREDITGATE_JWT_MAX_ORGS" envDefault:"10000"`
	// JWTCacheSize bounds the verified tokens kept; 0: none (every call checks a signature).
	JWTCacheSize int `env:"CREDITGATE_JWT_CACHE_SIZE" envDefault:"10000"`
	// JWTRefresh is how often the JWK set URL is fetched; JWTRefetchInterval bounds fetches
	// for tokens naming an unknown key to one per interval.
	JWTRefresh         time.Duration `env:"CREDITGATE_JWT_JWKS_REFRESH" envDefault:"5m"`
	JWTRefetchInterval time.Duration `env:"CREDITGATE_JWT_JWKS_REFETCH_INTERVAL" envDefault:"1m"`
	// PreserveHost sends the client's Host header upstream instead of the upstream URL's.
	PreserveHost bool `env:"CREDITGATE_PRESERVE_HOST"`
	// CORSOrigins are the origins browsers may call from ("*": any), comma-separated; unset:
	// no CORS policy (preflights are forwarded, uncharged, bounded in rate).
	CORSOrigins string `env:"CREDITGATE_CORS_ORIGINS"`
	// CORSHeaders are the request headers a browser may send, comma-separated; unset: the
	// credential headers, Content-Type, Idempotency-Key and X-HTTP-Method-Override.
	CORSHeaders string `env:"CREDITGATE_CORS_HEADERS"`
	// CORSMaxAge is how long a browser may keep a preflight's answer.
	CORSMaxAge time.Duration `env:"CREDITGATE_CORS_MAX_AGE" envDefault:"10m"`
	// TLSCertFile and TLSKeyFile make the proxy listener serve TLS (HTTP/2 and HTTP/1.1) with
	// this certificate, read again on SIGHUP; both or neither.
	TLSCertFile string `env:"CREDITGATE_TLS_CERT_FILE"`
	TLSKeyFile  string `env:"CREDITGATE_TLS_KEY_FILE"`
	// UpstreamCAFile is a PEM bundle of the CAs an https:// upstream's certificate may chain
	// to (unset: the system's); UpstreamClientCertFile and UpstreamClientKeyFile, a client
	// certificate the gateway presents to it.
	UpstreamCAFile         string `env:"CREDITGATE_UPSTREAM_CA_FILE"`
	UpstreamClientCertFile string `env:"CREDITGATE_UPSTREAM_CLIENT_CERT_FILE"`
	UpstreamClientKeyFile  string `env:"CREDITGATE_UPSTREAM_CLIENT_KEY_FILE"`
	// UpstreamHTTP2 offers HTTP/2 to an https:// upstream (ALPN), each call still sent at most
	// once; false speaks HTTP/1.1 only. A plain http:// upstream is always spoken HTTP/1.1.
	UpstreamHTTP2 bool   `env:"CREDITGATE_UPSTREAM_HTTP2" envDefault:"true"`
	Orgs          string `env:"CREDITGATE_ORGS"`
	// OrgsFile holds more orgs (YAML or JSON), added to CREDITGATE_ORGS; read again on SIGHUP.
	OrgsFile string `env:"CREDITGATE_ORGS_FILE"`
	// EditionsFile changes or adds editions (YAML or JSON); read again on SIGHUP.
	EditionsFile string `env:"CREDITGATE_EDITIONS_FILE"`
	// AdminTokens authorize the admin API: role:token pairs separated by ';'. Unset: the admin
	// API refuses every call (health endpoints stay open).
	AdminTokens string `env:"CREDITGATE_ADMIN_TOKENS"`

	// AddonSlabs prices consumed add-on credits per 1,000 per day: "credits:dollars" slabs
	// separated by ',', the last "*:dollars".
	AddonSlabs string `env:"CREDITGATE_ADDON_SLABS" envDefault:"25000:0.14,75000:0.06,150000:0.05,*:0.025"`
	// AnchorDay is the day of the month (1 to 28) on which the subscription periods of monthly
	// plans start, at 00:00 UTC.
	AnchorDay int `env:"CREDITGATE_BILLING_ANCHOR_DAY" envDefault:"1"`
	// CallPriceCommercial and CallPriceNonCommercial price one additional call of a monthly
	// plan, in dollars (at most six decimals), by the org's "commercial" field.
	CallPriceCommercial    string `env:"CREDITGATE_CALL_PRICE_COMMERCIAL" envDefault:"0.06"`
	CallPriceNonCommercial string `env:"CREDITGATE_CALL_PRICE_NONCOMMERCIAL" envDefault:"0.02"`

	// NotifyThresholds are the percents of an org's limit whose crossing sends a usage notice
	// (comma-separated, 1 to 100), for orgs without notify_thresholds of their own; unset: none.
	NotifyThresholds string `env:"CREDITGATE_NOTIFY_THRESHOLDS"`
	// WebhookURL receives the notices, signed with WebhookSecret (whsec_ and base64), of orgs
	// without webhook_url of their own; both or neither.
	WebhookURL    string `env:"CREDITGATE_WEBHOOK_URL"`
	WebhookSecret string `env:"CREDITGATE_WEBHOOK_SECRET"`
	// WebhookTimeout bounds one delivery attempt; WebhookMaxAttempts are made before a notice
	// is dropped, WebhookBackoff apart after the first failure, doubling up to
	// WebhookMaxBackoff.
	WebhookTimeout     time.Duration `env:"CREDITGATE_WEBHOOK_TIMEOUT" envDefault:"5s"`
	WebhookMaxAttempts int           `env:"CREDITGATE_WEBHOOK_MAX_ATTEMPTS" envDefault:"10"`
	WebhookBackoff     time.Duration `env:"CREDITGATE_WEBHOOK_BACKOFF" envDefault:"1s"`
	WebhookMaxBackoff  time.Duration `env:"CREDITGATE_WEBHOOK_MAX_BACKOFF" envDefault:"5m"`

	LogLevel        string        `env:"CREDITGATE_LOG_LEVEL" envDefault:"info"`
	ShutdownTimeout time.Duration `env:"CREDITGATE_SHUTDOWN_TIMEOUT" envDefault:"30s"`

	// Derived by validate.
	upstream    *url.URL
	logLevel    zapcore.Level
	orgSet      *orgSet
	costTable   *costtable.Table
	routes      []gateway.Route // from RoutesFile
	adminTokens *gateway.AdminTokens
	slabs       plans.Slabs
	callPrices  [2]int64 // micro-dollars: non-commercial, commercial
	cors        *gateway.CORSPolicy
	cert        *certificate // nil: the proxy listener serves plain HTTP
	upstreamTLS *tls.Config
	demo        bool
	jwt         *gateway.JWTConfig // jwt org mode; PerUser is set by run
	notices     gateway.NoticeConfig
}

// Variables read by the test suite, not by the gateway; allowed in the environment.
var testVars = map[string]bool{"CREDITGATE_TEST_REDIS_URL": true, "CREDITGATE_REQUIRE_REDIS": true}

// loadConfig reads and validates the configuration from environ (NAME→value). All problems
// are reported together, each starting with the variable's name.
func loadConfig(environ map[string]string) (Config, error) {
	cfg, err := env.ParseAsWithOptions[Config](env.Options{Environment: environ})
	verr := cfg.validate(environ)
	if err == nil {
		return cfg, verr
	}
	// A value that did not parse is reported as such; the others are still checked, so every
	// problem is reported together. Checks of the variables that did not parse are dropped:
	// they saw a zero value, not the one given.
	perr := renameEnvErrors(err)
	bad := map[string]bool{}
	for _, e := range unjoin(perr) {
		if name, _, ok := strings.Cut(e.Error(), ":"); ok {
			bad[name] = true
		}
	}
	out := []error{perr}
	for _, e := range unjoin(verr) {
		if name, _, _ := strings.Cut(e.Error(), ":"); !bad[name] {
			out = append(out, e)
		}
	}
	return cfg, errors.Join(out...)
}

// unjoin returns the errors errors.Join joined into err (err alone otherwise; none for nil).
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// renameEnvErrors rewrites env's errors, which name Go fields, to name the variables.
func renameEnvErrors(err error) error {
	var agg env.AggregateError
	errs := []error{err}
	if errors.As(err, &agg) {
		errs = agg.Errors
	}
	t := reflect.TypeFor[Config]()
	var out []error
	for _, e := range errs {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if f, ok := t.FieldByName(pe.Name); ok {
				out = append(out, fmt.Errorf("%s: %s", f.Tag.Get("env"), describeParseError(pe)))
				continue
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

func describeParseError(pe env.ParseError) string {
	switch pe.Type {
	case reflect.TypeFor[time.Duration]():
		return "must be a Go duration such as 24h, 90s or 500ms: " + pe.Err.Error()
	case reflect.TypeFor[bool]():
		return "must be true or false: " + pe.Err.Error()
	case reflect.TypeFor[int64](), reflect.TypeFor[int]():
		return "must be an integer: " + pe.Err.Error()
	}
	return pe.Err.Error()
}

func (c *Config) validate(environ map[string]string) error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
	}

	known := map[string]bool{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if name := t.Field(i).Tag.Get("env"); name != "" {
			known[name] = true
		}
	}
	var unknown []string
	for name := range environ {
		if strings.HasPrefix(name, "CREDITGATE_") && !known[name] && !testVars[name] {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	for _, name := range unknown {
		bad(name, "unknown variable (a typo?); docs/configuration.md lists every variable")
	}

	if lvl, err := zapcore.ParseLevel(c.LogLevel); err != nil || lvl < zapcore.DebugLevel || lvl > zapcore.ErrorLevel {
		bad("CREDITGATE_LOG_LEVEL", "must be debug, info, warn or error, got %q", c.LogLevel)
	} else {
		c.logLevel = lvl
	}

	c.demo = c.UpstreamURL == "" && c.RoutesFile == "" && c.Orgs == "" && c.OrgsFile == ""
	switch {
	case c.RoutesFile != "" && c.UpstreamURL != "":
		bad("CREDITGATE_ROUTES_FILE", "and CREDITGATE_UPSTREAM_URL are both set: the routes file names the upstreams, unset one")
	case c.RoutesFile != "" && c.CostTableFile != "":
		bad("CREDITGATE_ROUTES_FILE", "and CREDITGATE_COST_TABLE_FILE are both set: routes name their cost tables (cost_table_file), unset one")
	case c.RoutesFile != "" && c.Orgs == "" && c.OrgsFile == "":
		bad("CREDITGATE_ROUTES_FILE", "is set but no orgs are: set CREDITGATE_ORGS or CREDITGATE_ORGS_FILE")
	case c.RoutesFile != "":
		// Read below, once the default cost table is known.
	case c.demo && c.EditionsFile != "":
		bad("CREDITGATE_EDITIONS_FILE", "is set but no orgs are (the demo uses the built-in editions): set CREDITGATE_ORGS or CREDITGATE_ORGS_FILE, and CREDITGATE_UPSTREAM_URL")
	case c.demo:
	case c.UpstreamURL == "":
		bad("CREDITGATE_UPSTREAM_URL", "must be set (or CREDITGATE_ROUTES_FILE) when CREDITGATE_ORGS or CREDITGATE_ORGS_FILE is (unset all of them for the demo)")
	default:
		u, err := url.Parse(c.UpstreamURL)
		shown := showURL(c.UpstreamURL)
		switch {
		case err != nil:
			bad("CREDITGATE_UPSTREAM_URL", "not a valid URL: %s", shown)
		case u.Scheme != "http" && u.Scheme != "https":
			bad("CREDITGATE_UPSTREAM_URL", "must be an http:// or https:// URL, got %s", shown)
		case u.Host == "":
			bad("CREDITGATE_UPSTREAM_URL", "has no host: %s", shown)
		case u.User != nil:
			bad("CREDITGATE_UPSTREAM_URL", "must not carry credentials")
		default:
			c.upstream = u
		}
	}
	if c.BodyTimeout <= 0 {
		bad("CREDITGATE_BODY_TIMEOUT", "must be positive, got %s", c.BodyTimeout)
	}
	if c.UpstreamTimeout <= 0 {
		bad("CREDITGATE_UPSTREAM_TIMEOUT", "must be positive, got %s", c.UpstreamTimeout)
	}

	if c.RedisURL != "" {
		if cl, err := limiter.NewRedisClient(c.RedisURL); err != nil {
			bad("CREDITGATE_REDIS_URL", "%v", err)
		} else {
			cl.Close()
		}
	}
	if c.RedisTimeout <= 0 || c.RedisTimeout > time.Minute {
		bad("CREDITGATE_REDIS_TIMEOUT", "must be between 1ms and 1m, got %s", c.RedisTimeout)
	}
	if c.FailMode != "open" && c.FailMode != "closed" && c.FailMode != "local" {
		bad("CREDITGATE_FAIL_MODE", "must be open, closed or local, got %q", c.FailMode)
	}
	if c.BreakerFailures < 1 || c.BreakerFailures > 1000 {
		bad("CREDITGATE_BREAKER_FAILURES", "must be between 1 and 1000, got %d", c.BreakerFailures)
	}
	if c.BreakerCooldown < 10*time.Millisecond || c.BreakerCooldown > 5*time.Minute {
		bad("CREDITGATE_BREAKER_COOLDOWN", "must be between 10ms and 5m, got %s", c.BreakerCooldown)
	}
	if c.MetricsMaxOrgs < 0 || c.MetricsMaxOrgs > 10_000 {
		bad("CREDITGATE_METRICS_MAX_ORGS", "must be between 0 and 10000 (each org adds about 20 series), got %d", c.MetricsMaxOrgs)
	}

	switch {
	case c.Window < time.Second || c.Window > 31*24*time.Hour:
		bad("CREDITGATE_WINDOW", "must be between 1s and 744h, got %s", c.Window)
	case c.Window%time.Millisecond != 0:
		bad("CREDITGATE_WINDOW", "must be a whole number of milliseconds, got %s", c.Window)
	default:
		if c.Bucket == 0 {
			c.Bucket = limiter.DefaultBucket(c.Window)
		}
		switch {
		case c.Bucket < time.Millisecond || c.Bucket%time.Millisecond != 0:
			bad("CREDITGATE_BUCKET", "must be a positive whole number of milliseconds, got %s", c.Bucket)
		case c.Bucket > c.Window:
			bad("CREDITGATE_BUCKET", "must not be longer than CREDITGATE_WINDOW (%s), got %s", c.Window, c.Bucket)
		case c.Window/c.Bucket > 100_000:
			bad("CREDITGATE_BUCKET", "%s makes %d buckets per window; at most 100000 keep memory per org bounded", c.Bucket, c.Window/c.Bucket)
		}
	}

	if c.HeavyConcurrency < 0 {
		bad("CREDITGATE_HEAVY_CONCURRENCY", "must be 0 (no sub-cap) or more, got %d", c.HeavyConcurrency)
	}
	if c.CallRecordTTL <= c.UpstreamTimeout || c.CallRecordTTL > 24*time.Hour {
		bad("CREDITGATE_CALL_RECORD_TTL", "must be longer than CREDITGATE_UPSTREAM_TIMEOUT (%s) and at most 24h, got %s", c.UpstreamTimeout, c.CallRecordTTL)
	}
	if c.LeaseTTL < time.Second {
		bad("CREDITGATE_LEASE_TTL", "must be at least 1s, got %s", c.LeaseTTL)
	}
	if c.MaxBodyBytes < 1 {
		bad("CREDITGATE_MAX_BODY_BYTES", "must be at least 1, got %d", c.MaxBodyBytes)
	}
	if c.BodyBufferOrgBytes == 0 {
		c.BodyBufferOrgBytes = c.BodyBufferBytes / 4
	}
	switch {
	case c.BodyBufferBytes < 1:
		bad("CREDITGATE_BODY_BUFFER_BYTES", "must be at least 1, got %d", c.BodyBufferBytes)
	case c.BodyBufferOrgBytes < 0 || c.BodyBufferOrgBytes > c.BodyBufferBytes:
		bad("CREDITGATE_BODY_BUFFER_ORG_BYTES", "must be between 1 and CREDITGATE_BODY_BUFFER_BYTES (%d), got %d", c.BodyBufferBytes, c.BodyBufferOrgBytes)
	case c.MaxBodyBytes >= 1 && c.BodyBufferOrgBytes < 3*c.MaxBodyBytes:
		bad("CREDITGATE_BODY_BUFFER_ORG_BYTES", "must hold three times CREDITGATE_MAX_BODY_BYTES (a body as sent, and its decoded copy while it grows): at least %d, got %d (a quarter of CREDITGATE_BODY_BUFFER_BYTES when unset)",
			3*c.MaxBodyBytes, c.BodyBufferOrgBytes)
	}
	if c.MaxInflateRatio < 0 {
		bad("CREDITGATE_MAX_INFLATE_RATIO", "must be 0 (no ratio bound) or more, got %d", c.MaxInflateRatio)
	}
	if c.CORSOrigins != "" {
		c.cors = &gateway.CORSPolicy{MaxAge: c.CORSMaxAge}
		for o := range strings.SplitSeq(c.CORSOrigins, ",") {
			o = strings.TrimSpace(o)
			u, err := url.Parse(o)
			if o != "*" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "") {
				bad("CREDITGATE_CORS_ORIGINS", "each origin must be * or scheme://host[:port], got %q", o)
				continue
			}
			c.cors.Origins = append(c.cors.Origins, o)
		}
		if c.CORSHeaders != "" {
			for h := range strings.SplitSeq(c.CORSHeaders, ",") {
				if h = strings.TrimSpace(h); h != "" {
					c.cors.Headers = append(c.cors.Headers, h)
				}
			}
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("CREDITGATE_TLS_CERT_FILE", "and CREDITGATE_TLS_KEY_FILE are both needed, or neither")
	} else if c.TLSCertFile != "" {
		if cert, err := newCertificate(c.TLSCertFile, c.TLSKeyFile); err != nil {
			errs = append(errs, err)
		} else {
			c.cert = cert
		}
	}
	if t, err := upstreamTLS(c.UpstreamCAFile, c.UpstreamClientCertFile, c.UpstreamClientKeyFile); err != nil {
		errs = append(errs, err)
	} else {
		c.upstreamTLS = t
	}
	if c.CORSMaxAge < 0 || c.CORSMaxAge > 24*time.Hour {
		bad("CREDITGATE_CORS_MAX_AGE", "must be between 0 and 24h, got %s", c.CORSMaxAge)
	}
	switch gateway.RateLimitFields(c.RateLimitFields) {
	case gateway.FieldsDraft, gateway.FieldsDraft7, gateway.FieldsX:
	default:
		bad("CREDITGATE_RATELIMIT_FIELDS", "must be draft, draft7 or x, got %q", c.RateLimitFields)
	}
	if c.MethodOverride != string(gateway.MethodOverridePrice) && c.MethodOverride != string(gateway.MethodOverrideStrip) {
		bad("CREDITGATE_METHOD_OVERRIDE", "must be price or strip, got %q", c.MethodOverride)
	}
	if c.CostTableFile != "" {
		if tbl, err := costtable.LoadFile(c.CostTableFile); err != nil {
			errs = append(errs, prefixLines("CREDITGATE_COST_TABLE_FILE", err))
		} else {
			c.costTable = tbl
		}
	} else if tbl, err := costtable.Builtin(c.CostTable); err != nil {
		bad("CREDITGATE_COST_TABLE", "%v", err)
	} else {
		c.costTable = tbl
	}
	if c.RoutesFile != "" && c.costTable != nil {
		if routes, err := c.loadRoutes(); err != nil {
			errs = append(errs, prefixLines("CREDITGATE_ROUTES_FILE", err))
		} else {
			c.routes = routes
		}
	}
	if toks, err := gateway.ParseAdminTokens(c.AdminTokens); err != nil {
		errs = append(errs, prefixLines("CREDITGATE_ADMIN_TOKENS", err))
	} else {
		c.adminTokens = toks
	}
	if sl, err := plans.ParseSlabs(c.AddonSlabs); err != nil {
		errs = append(errs, prefixLines("CREDITGATE_ADDON_SLABS", err))
	} else {
		c.slabs = sl
	}
	if c.AnchorDay < 1 || c.AnchorDay > 28 {
		bad("CREDITGATE_BILLING_ANCHOR_DAY", "must be a day of the month from 1 to 28, got %d", c.AnchorDay)
	}
	for i, v := range []struct{ name, value string }{
		{"CREDITGATE_CALL_PRICE_NONCOMMERCIAL", c.CallPriceNonCommercial},
		{"CREDITGATE_CALL_PRICE_COMMERCIAL", c.CallPriceCommercial},
	} {
		if p, err := plans.ParseMicros(v.value); err != nil || p > 1_000_000_000 {
			bad(v.name, "must be dollars per call such as 0.06 (at most six decimals, at most 1000), got %q", v.value)
		} else {
			c.callPrices[i] = p
		}
	}

	if c.OrgMode != "apikey" && c.OrgMode != "header" && c.OrgMode != "jwt" {
		bad("CREDITGATE_ORG_MODE", "must be apikey, header or jwt, got %q", c.OrgMode)
	}
	errs = append(errs, c.validateJWT(environ)...)
	if c.OrgHeader == "" || strings.ContainsAny(c.OrgHeader, " :\t\r\n") {
		bad("CREDITGATE_ORG_HEADER", "must be a header name, got %q", c.OrgHeader)
	}
	if !c.demo {
		if p, err := c.loadOrgSet(); err != nil {
			errs = append(errs, err)
		} else {
			c.orgSet = p
			if def := c.jwtDefaultPlan(); def != nil {
				if err := p.Check(def, false); err != nil {
					errs = append(errs, prefixLines("CREDITGATE_JWT_DEFAULT_PLAN", err))
				}
			}
		}
	}

	if c.ShutdownTimeout <= 0 {
		bad("CREDITGATE_SHUTDOWN_TIMEOUT", "must be positive, got %s", c.ShutdownTimeout)
	}
	errs = append(errs, c.validateNotices()...)
	return errors.Join(errs...)
}

// validateNotices checks the usage notice variables and builds c.notices.
func (c *Config) validateNotices() []error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
	}
	n := gateway.NoticeConfig{URL: c.WebhookURL, Secret: c.WebhookSecret, Timeout: c.WebhookTimeout,
		MaxAttempts: c.WebhookMaxAttempts, Backoff: c.WebhookBackoff, MaxBackoff: c.WebhookMaxBackoff}
	if c.NotifyThresholds != "" {
		var list []int64
		for f := range strings.SplitSeq(c.NotifyThresholds, ",") {
			p, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil {
				bad("CREDITGATE_NOTIFY_THRESHOLDS", "must be percents separated by commas such as 50,80,100, got %q", c.NotifyThresholds)
				list = nil
				break
			}
			list = append(list, p)
		}
		if list != nil {
			if sorted, err := limiter.CheckThresholds(list); err != nil {
				bad("CREDITGATE_NOTIFY_THRESHOLDS", "%v, got %q", err, c.NotifyThresholds)
			} else {
				n.Thresholds = sorted
			}
		}
	}
	if err := checkWebhook(c.WebhookURL, c.WebhookSecret); err != nil {
		bad("CREDITGATE_WEBHOOK_URL", "%v", err)
	}
	if c.WebhookTimeout < 100*time.Millisecond || c.WebhookTimeout > time.Minute {
		bad("CREDITGATE_WEBHOOK_TIMEOUT", "must be between 100ms and 1m, got %s", c.WebhookTimeout)
	}
	if c.WebhookMaxAttempts < 1 || c.WebhookMaxAttempts > 100 {
		bad("CREDITGATE_WEBHOOK_MAX_ATTEMPTS", "must be between 1 and 100, got %d", c.WebhookMaxAttempts)
	}
	if c.WebhookBackoff < 10*time.Millisecond || c.WebhookBackoff > time.Hour {
		bad("CREDITGATE_WEBHOOK_BACKOFF", "must be between 10ms and 1h, got %s", c.WebhookBackoff)
	}
	if c.WebhookMaxBackoff < c.WebhookBackoff || c.WebhookMaxBackoff > 24*time.Hour {
		bad("CREDITGATE_WEBHOOK_MAX_BACKOFF", "must be between CREDITGATE_WEBHOOK_BACKOFF (%s) and 24h, got %s", c.WebhookBackoff, c.WebhookMaxBackoff)
	}
	c.notices = n
	return errs
}

// checkWebhook checks a webhook endpoint and its secret, given together or not at all. No
// error shows either: a URL may carry a token.
func checkWebhook(url, secret string) error {
	switch {
	case url == "" && secret == "":
		return nil
	case url == "":
		return errors.New("a webhook secret is set without a URL (CREDITGATE_WEBHOOK_URL, webhook_url)")
	case secret == "":
		return errors.New("must come with its signing secret (CREDITGATE_WEBHOOK_SECRET, webhook_secret): whsec_ and base64")
	}
	if err := gateway.CheckWebhookURL(url); err != nil {
		return err
	}
	if _, err := gateway.ParseWebhookSecret(secret); err != nil {
		return err
	}
	return nil
}

// showURL returns a URL fit for an error message: its password masked, or nothing when it
// cannot be parsed and might hold one.
func showURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return strconv.Quote(u.Redacted())
	}
	if strings.Contains(raw, "@") {
		return "(not shown: it may contain a password)"
	}
	return strconv.Quote(raw)
}

// prefixLines puts name in front of every error joined in err.
func prefixLines(name string, err error) error {
	var out []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, fmt.Errorf("%s: %w", name, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// logFields returns the effective configuration for the start-up log, without secrets.
func (c *Config) logFields() []zap.Field {
	store := "memory"
	if c.RedisURL != "" {
		store = c.RedisURL
		if u, err := url.Parse(c.RedisURL); err == nil {
			store = u.Redacted()
		}
	}
	upstream := c.UpstreamURL
	if c.demo {
		upstream = "(demo)"
	}
	return []zap.Field{
		zap.String("upstream", upstream), zap.Bool("upstream_http2", c.UpstreamHTTP2), zap.String("routes_file", c.RoutesFile), zap.Int("routes", len(c.routes)),
		zap.String("store", store), zap.String("fail_mode", c.FailMode),
		zap.Int("breaker_failures", c.BreakerFailures), zap.Duration("breaker_cooldown", c.BreakerCooldown),
		zap.Int("metrics_max_orgs", c.MetricsMaxOrgs),
		zap.Duration("window", c.Window), zap.Duration("bucket", c.Bucket), zap.Bool("shadow", c.Shadow),
		zap.String("cost_table", c.costTable.Name()), zap.String("cost_table_file", c.CostTableFile),
		zap.Int("admin_tokens", c.adminTokens.Len()), zap.String("org_mode", c.OrgMode), zap.Int("orgs", c.orgSet.dir.Len()), zap.String("orgs_file", c.OrgsFile), zap.String("editions_file", c.EditionsFile),
		zap.Bool("strip_credentials", c.StripCredentials), zap.String("log_level", c.LogLevel),
		zap.Bool("redis_pipeline", c.RedisPipeline),
		zap.String("addon_slabs", c.slabs.String()),
		zap.Int64("max_body_bytes", c.MaxBodyBytes), zap.Int64("body_buffer_bytes", c.BodyBufferBytes),
		zap.Int64("body_buffer_org_bytes", c.BodyBufferOrgBytes), zap.Int64("max_inflate_ratio", c.MaxInflateRatio),
		zap.String("method_override", c.MethodOverride),
		zap.String("jwt_issuer", c.JWTIssuer), zap.String("jwt_jwks", c.JWTJWKSURL+c.JWTJWKSFile),
		zap.Int64s("notify_thresholds", c.notices.Thresholds), zap.Bool("webhook_url_set", c.WebhookURL != ""),
		zap.Duration("webhook_timeout", c.WebhookTimeout),
	}
}

// loadRoutes reads CREDITGATE_ROUTES_FILE: routes that name no cost table get
// CREDITGATE_COST_TABLE's, and those that set no timeout or preserve_host, the environment's.
func (c *Config) loadRoutes() ([]gateway.Route, error) {
	routes, err := gateway.LoadRoutesFile(c.RoutesFile, gateway.RouteDefaults{Costs: c.costTable, PreserveHost: c.PreserveHost})
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		if r.Timeout >= c.CallRecordTTL {
			return nil, fmt.Errorf("%s: route %q: timeout %s must be shorter than CREDITGATE_CALL_RECORD_TTL (%s)", c.RoutesFile, r.Name, r.Timeout, c.CallRecordTTL)
		}
	}
	return routes, nil
}
