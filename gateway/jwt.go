package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/creditgate/creditgate/orgs"
)

// JWTConfig configures OrgModeJWT: the org comes from a claim of an OAuth 2.0 access token
// (a JWT in Authorization: Bearer or Zoho-oauthtoken), verified against the issuer's keys.
// Zero values are documented per field.
type JWTConfig struct {
	// JWKSURL is the issuer's JWK set: fetched by New (which fails without it), again every
	// Refresh, and again when a token names a key the set lacks, at most once per
	// RefetchInterval. When a fetch fails, the last keys stay. JWKSFile is a JWK set on disk
	// instead, read by New and by ReloadKeys. Exactly one of the two is set.
	JWKSURL  string
	JWKSFile string
	// HTTPClient fetches JWKSURL; nil: a client with a 10s timeout.
	HTTPClient *http.Client
	// Refresh is how often JWKSURL is fetched in the background (zero: 5m).
	Refresh time.Duration
	// RefetchInterval bounds fetches for unknown key ids: at most one per interval (zero: 1m).
	RefetchInterval time.Duration

	// Issuer must equal the iss claim (required). Audiences must hold the aud claim's value,
	// or one of them if aud is a list (required, at least one).
	Issuer    string
	Audiences []string
	// Leeway is the clock skew allowed on exp and nbf (zero: none).
	Leeway time.Duration

	// OrgClaim names the claim holding the org id (zero: "org_id"): a string, or an integer,
	// that must be a valid org id (orgs.ValidID).
	OrgClaim string
	// UsersClaim names a claim holding the org's seats, a positive integer ("": seats never
	// come from tokens). It applies where PerUser says the plan counts users, and an org
	// configured with users keeps its own.
	UsersClaim string
	PerUser    func(*orgs.Org) bool
	// DefaultPlan is the plan of orgs that are not in Config.Orgs (its ID is ignored); nil:
	// such tokens are refused 401.
	DefaultPlan *orgs.Org
	// MaxOrgs bounds the orgs held besides Config.Orgs: those on DefaultPlan, and configured
	// orgs whose seats come from tokens (zero: 10000). Past it, a token of a new org is
	// answered 503.
	MaxOrgs int
	// CacheSize bounds the verified tokens kept, so a token seen again costs a map lookup
	// rather than a signature check (zero: 10000; negative: no cache). Tokens over 4 KiB are
	// never kept.
	CacheSize int
}

// Token rejection reasons: the details.reason of a 401 INVALID_TOKEN, the error_description
// of its WWW-Authenticate field and the reason label of creditgate_jwt_rejections_total. They
// tell what was wrong without echoing anything the token said.
const (
	tokMissing = iota
	tokTwoTokens
	tokMalformed
	tokAlgorithm
	tokUnknownKey
	tokBadSignature
	tokExpired
	tokNotYetValid
	tokWrongIssuer
	tokWrongAudience
	tokInvalidClaims
	tokInvalidOrg
	tokUnknownOrg
	tokOrgCapacity
	numTokReasons
)

var tokReasonNames = [numTokReasons]string{
	"missing", "two_tokens", "malformed", "unsupported_algorithm", "unknown_key", "bad_signature",
	"expired", "not_yet_valid", "wrong_issuer", "wrong_audience", "invalid_claims", "invalid_org",
	"unknown_org", "org_capacity",
}

var tokMessages = [numTokReasons]string{
	"No access token: send Authorization: Bearer <token>.",
	"The request carries more than one access token (Authorization given twice with different values); send exactly one.",
	"The access token is not a well-formed signed JWT.",
	"The access token's signing algorithm is not accepted (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 and EdDSA are, each with a key of its kind).",
	"The access token names a signing key the issuer does not publish.",
	"The access token's signature does not verify.",
	"The access token has expired.",
	"The access token is not valid yet.",
	"The access token comes from another issuer.",
	"The access token is meant for another audience.",
	"The access token lacks a required claim (exp, iss, aud) or has one of the wrong type.",
	"The access token's org claim is missing or not a valid org id.",
	"The access token's org is not known to the gateway.",
	"The gateway holds as many orgs as it is configured to; the token's org cannot be added. Nothing was charged.",
}

// tokenError is a refused access token (or, for tokOrgCapacity, a valid token whose org the
// gateway has no room for). writeError renders it: 401 INVALID_TOKEN with its reason in
// details and in WWW-Authenticate (RFC 6750 §3), or 503 for tokOrgCapacity.
type tokenError struct{ reason int }

func (e *tokenError) Error() string { return "access token refused: " + tokReasonNames[e.reason] }

// tokenErrors are the errors of each reason, made once: refusing allocates nothing.
var tokenErrors = func() (out [numTokReasons]*tokenError) {
	for i := range out {
		out[i] = &tokenError{reason: i}
	}
	return out
}()

// challenge is the WWW-Authenticate value of a 401; "" for the 503.
func (e *tokenError) challenge() string {
	switch e.reason {
	case tokOrgCapacity:
		return ""
	case tokMissing:
		// RFC 6750 §3.1: a request without credentials gets no error code.
		return `Bearer realm="creditgate"`
	}
	return `Bearer realm="creditgate", error="invalid_token", error_description="` + tokReasonNames[e.reason] + `"`
}

// fill completes b for e and returns the status.
func (e *tokenError) fill(b *errorBody) int {
	b.Message = tokMessages[e.reason]
	b.Details["reason"] = tokReasonNames[e.reason]
	switch e.reason {
	case tokOrgCapacity:
		b.Code = "SERVICE_UNAVAILABLE"
		return http.StatusServiceUnavailable
	case tokMissing:
		b.Code = "AUTHENTICATION_FAILURE"
	default:
		b.Code = "INVALID_TOKEN"
	}
	return http.StatusUnauthorized
}

// jwtAlgs are the signing algorithms accepted: asymmetric ones only, so a key published for
// verifying can never serve as an HMAC secret ("none" and HS* are refused before any key is
// looked at).
var jwtAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

const (
	maxTokenBytes   = 16 << 10 // longer: malformed (no issuer makes such tokens)
	maxCachedToken  = 4 << 10  // longer tokens are verified every time, never kept
	defaultMaxOrgs  = 10_000
	defaultCache    = 10_000
	maxClaimedSeats = 1_000_000
)

// jwtVerifier verifies access tokens and keeps the verified ones.
type jwtVerifier struct {
	cfg    JWTConfig
	parser *jwt.Parser
	now    func() time.Time
	keys   atomic.Pointer[keySet]
	cache  tokenCache
	orgs   jwtOrgs
	m      *jwtMetrics
	log    *zap.Logger
	client *http.Client

	loadMu      sync.Mutex // one load of the key set at a time
	fetchMu     sync.Mutex // guards lastRefetch and inflight
	lastRefetch time.Time  // of the last fetch for an unknown key id
	inflight    chan struct{}
}

// startJWT sets up OrgModeJWT: loads the key set (an error if it cannot) and, for a URL,
// refreshes it in the background until Close.
func (g *Gateway) startJWT() error {
	c := g.cfg.JWT
	switch {
	case c == nil:
		return errors.New("gateway: jwt org mode without JWT settings")
	case (c.JWKSURL == "") == (c.JWKSFile == ""):
		return errors.New("gateway: jwt org mode needs a JWKS URL or a JWKS file, not both")
	case c.Issuer == "" || len(c.Audiences) == 0:
		return errors.New("gateway: jwt org mode needs an issuer and an audience")
	}
	cfg := *c
	if cfg.OrgClaim == "" {
		cfg.OrgClaim = "org_id"
	}
	if cfg.MaxOrgs <= 0 {
		cfg.MaxOrgs = defaultMaxOrgs
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = defaultCache
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 5 * time.Minute
	}
	if cfg.RefetchInterval <= 0 {
		cfg.RefetchInterval = time.Minute
	}
	if cfg.PerUser == nil {
		cfg.PerUser = func(*orgs.Org) bool { return false }
	}
	v := &jwtVerifier{cfg: cfg, log: g.log.Named("jwt"), m: newJWTMetrics(g.metrics), client: cfg.HTTPClient}
	if v.client == nil {
		v.client = &http.Client{Timeout: 10 * time.Second}
	}
	v.now = time.Now
	if g.cfg.Clock != nil {
		v.now = g.cfg.Clock
	}
	v.parser = jwt.NewParser(jwt.WithValidMethods(jwtAlgs), jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audiences...), jwt.WithLeeway(cfg.Leeway), jwt.WithExpirationRequired(),
		jwt.WithStrictDecoding(), jwt.WithJSONNumber(), jwt.WithTimeFunc(v.now))
	v.cache.init(cfg.CacheSize)
	v.cache.n = v.m.cached
	v.orgs.max = cfg.MaxOrgs
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := v.load(ctx); err != nil {
		return fmt.Errorf("gateway: the JWK set at start: %w", err)
	}
	g.jwt = v
	if cfg.JWKSURL != "" {
		go v.refreshLoop(g.stop)
	}
	return nil
}

// ReloadKeys loads the JWK set again (the file, or the URL); on error the keys in force stay.
// It is a no-op outside OrgModeJWT.
func (g *Gateway) ReloadKeys(ctx context.Context) error {
	if g.jwt == nil {
		return nil
	}
	return g.jwt.load(ctx)
}

func (v *jwtVerifier) refreshLoop(stop <-chan struct{}) {
	t := time.NewTicker(v.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := v.load(ctx); err != nil {
				v.log.Warn("JWKS refresh failed, the last keys stay", zap.Error(err))
			}
			cancel()
		}
	}
}

// refetch loads the key set again for a token naming an unknown key, at most once per
// RefetchInterval; callers arriving while a refetch runs wait for it. It returns the key set
// to look in again, or nil when no refetch was allowed or it failed.
func (v *jwtVerifier) refetch(ctx context.Context) *keySet {
	if v.cfg.JWKSURL == "" {
		return nil
	}
	v.fetchMu.Lock()
	if ch := v.inflight; ch != nil {
		v.fetchMu.Unlock()
		select {
		case <-ch:
			return v.keys.Load()
		case <-ctx.Done():
			return nil
		}
	}
	now := time.Now()
	if !v.lastRefetch.IsZero() && now.Sub(v.lastRefetch) < v.cfg.RefetchInterval {
		v.fetchMu.Unlock()
		return nil
	}
	v.lastRefetch = now
	ch := make(chan struct{})
	v.inflight = ch
	v.fetchMu.Unlock()
	defer func() {
		v.fetchMu.Lock()
		v.inflight = nil
		v.fetchMu.Unlock()
		close(ch)
	}()
	// Not the caller's context: the callers waiting on this fetch stay served if it leaves.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := v.load(fctx); err != nil {
		v.log.Warn("JWKS refetch for an unknown key failed, the last keys stay", zap.Error(err))
		return nil
	}
	return v.keys.Load()
}

// identifyJWT returns the org state of the access token r carries. A token verified before and
// still valid, whose key is still published, costs one map lookup.
func (g *Gateway) identifyJWT(r *http.Request, underscored bool) (*orgState, error) {
	v := g.jwt
	a, err := authorization(r.Header, underscored)
	if err != nil {
		return nil, v.refuse(tokTwoTokens)
	}
	tok, ok := bearerKey(a)
	if !ok {
		return nil, v.refuse(tokMissing)
	}
	now := v.now()
	e := v.cache.get(tok)
	if e != nil && !e.fresh(now, v.keys.Load()) {
		e = nil
	}
	if e == nil {
		v.m.misses.Inc()
		var reason int
		if e, reason = v.verify(r.Context(), tok); e == nil {
			return nil, v.refuse(reason)
		}
		if len(tok) <= maxCachedToken {
			v.cache.put(strings.Clone(tok), e, now)
		}
	} else {
		v.m.hits.Inc()
	}
	ros, gen := g.orgs.Load(), v.orgs.gen.Load()
	if res := e.res.Load(); res != nil && res.ros == ros && res.gen == gen {
		res.t.touch(now)
		return res.t, nil
	}
	t, reason := g.jwtOrg(ros, e.org, e.users)
	if t == nil {
		return nil, v.refuse(reason)
	}
	t.touch(now)
	e.res.Store(&resolved{ros: ros, gen: gen, t: t})
	return t, nil
}

func (v *jwtVerifier) refuse(reason int) error {
	v.m.rejections[reason].Inc()
	return tokenErrors[reason]
}

// Errors of the key lookup, told apart by reasonOf.
var (
	errUnknownKey = errors.New("unknown key")
	errKeyAlg     = errors.New("algorithm not the key's")
	errBadHeader  = errors.New("bad header")
)

// verify checks tok's signature and claims and returns what the cache keeps of it, or nil and
// the reason it is refused.
func (v *jwtVerifier) verify(ctx context.Context, tok string) (*tokenEntry, int) {
	if len(tok) > maxTokenBytes {
		return nil, tokMalformed
	}
	var (
		called bool
		key    *jwtKey
		ks     *keySet
	)
	keyfunc := func(t *jwt.Token) (any, error) {
		called = true
		if _, ok := t.Header["crit"]; ok {
			return nil, errBadHeader // extensions this verifier does not understand (RFC 7515 §4.1.11)
		}
		alg, _ := t.Header["alg"].(string)
		var kid string
		if raw, ok := t.Header["kid"]; ok {
			if kid, ok = raw.(string); !ok {
				return nil, errBadHeader
			}
		}
		ks = v.keys.Load()
		k, err := ks.find(kid, alg)
		if errors.Is(err, errUnknownKey) {
			if fresh := v.refetch(ctx); fresh != nil {
				ks = fresh
				k, err = ks.find(kid, alg)
			}
		}
		if err != nil {
			return nil, err
		}
		key = k
		return k.pub, nil
	}
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(tok, claims, keyfunc); err != nil {
		return nil, reasonOf(err, called)
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil { // required by the parser: unreachable
		return nil, tokInvalidClaims
	}
	e := &tokenEntry{until: exp.Add(v.cfg.Leeway), key: key}
	e.ks.Store(ks)
	var ok bool
	if e.org, ok = claimID(claims[v.cfg.OrgClaim]); !ok {
		return nil, tokInvalidOrg
	}
	if v.cfg.UsersClaim != "" {
		if raw, present := claims[v.cfg.UsersClaim]; present {
			n, ok := raw.(interface{ Int64() (int64, error) })
			users, err := int64(0), error(nil)
			if ok {
				users, err = n.Int64()
			}
			if !ok || err != nil || users < 0 || users > maxClaimedSeats {
				return nil, tokInvalidClaims
			}
			e.users = users
		}
	}
	return e, 0
}

// claimID returns the org id a claim holds: a string, or an integer (JSON number).
func claimID(raw any) (string, bool) {
	var id string
	switch c := raw.(type) {
	case string:
		id = c
	case interface{ Int64() (int64, error) }: // json.Number
		if _, err := c.Int64(); err != nil {
			return "", false
		}
		id = c.(interface{ String() string }).String()
	default:
		return "", false
	}
	return id, orgs.ValidID(id)
}

// reasonOf maps a parse error to its reason. Before the key function runs (called false),
// only the token's form and algorithm were looked at; the signature is checked before any
// claim, so a forged token learns nothing about claims.
func reasonOf(err error, called bool) int {
	switch {
	case errors.Is(err, errUnknownKey):
		return tokUnknownKey
	case errors.Is(err, errKeyAlg):
		return tokAlgorithm
	case errors.Is(err, errBadHeader):
		return tokMalformed
	case !called && errors.Is(err, jwt.ErrTokenMalformed):
		return tokMalformed
	case !called:
		return tokAlgorithm // "none", HS*, or an algorithm nobody knows
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return tokBadSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return tokExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return tokNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return tokWrongIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return tokWrongAudience
	}
	return tokInvalidClaims
}
