package gateway

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

const (
	maxJWKSBytes = 1 << 20 // a JWK set larger than this is refused
	maxJWKSKeys  = 100
	minRSABits   = 2048
)

// jwtKey is one verification key of the issuer's set.
type jwtKey struct {
	kid string
	alg string // the JWK's alg; "": any algorithm of the key's kind
	pub crypto.PublicKey
}

// fits reports whether a token signed with alg may be verified with k: the algorithm is of
// the key's kind (and curve), and the one the JWK names, if it names one.
func (k *jwtKey) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		_, ok := k.pub.(*rsa.PublicKey)
		return ok
	case "ES256", "ES384", "ES512":
		ec, ok := k.pub.(*ecdsa.PublicKey)
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		return ok && ec.Curve == want
	case "EdDSA":
		_, ok := k.pub.(ed25519.PublicKey)
		return ok
	}
	return false
}

// keySet is the issuer's keys as last loaded; immutable, swapped whole.
type keySet struct {
	byKID map[string]*jwtKey
	anon  []*jwtKey // keys without a kid
	n     int
}

// find returns the key for a token's kid and alg. A token without kid may use the one key of
// the set that fits alg and has no kid either.
func (ks *keySet) find(kid, alg string) (*jwtKey, error) {
	var k *jwtKey
	if kid != "" {
		if k = ks.byKID[kid]; k == nil {
			return nil, errUnknownKey
		}
	} else {
		for _, c := range ks.anon {
			if c.fits(alg) {
				if k != nil {
					return nil, errUnknownKey // ambiguous
				}
				k = c
			}
		}
		if k == nil {
			return nil, errUnknownKey
		}
	}
	if !k.fits(alg) {
		return nil, errKeyAlg
	}
	return k, nil
}

// has reports whether k is still in the set (the same key under the same kid).
func (ks *keySet) has(k *jwtKey) bool {
	if k.kid != "" {
		return ks.byKID[k.kid] == k
	}
	for _, c := range ks.anon {
		if c == k {
			return true
		}
	}
	return false
}

// parseKeySet reads a JWK set (RFC 7517 §5) with jwkset. Keys that are not signature keys of
// a supported kind (RSA of 2048 bits or more, EC P-256/384/521, Ed25519), that do not parse,
// or that repeat a kid are left out; a set with no key left is an error. A key unchanged
// since prev keeps its identity, so tokens cached under it stay cached.
func parseKeySet(data []byte, prev *keySet) (*keySet, int, error) {
	var raw jwkset.JWKSMarshal
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, 0, fmt.Errorf("not a JWK set: %w", err)
	}
	if len(raw.Keys) > maxJWKSKeys {
		return nil, 0, fmt.Errorf("JWK set has %d keys, more than %d", len(raw.Keys), maxJWKSKeys)
	}
	ks := &keySet{byKID: make(map[string]*jwtKey, len(raw.Keys))}
	skipped := 0
	for _, m := range raw.Keys {
		if m.USE != "" && m.USE != jwkset.UseSig {
			skipped++
			continue
		}
		j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			skipped++
			continue
		}
		k := &jwtKey{kid: m.KID, alg: string(m.ALG)}
		switch pub := j.Key().(type) {
		case *rsa.PublicKey:
			if pub.N.BitLen() < minRSABits {
				skipped++
				continue
			}
			k.pub = pub
		case *ecdsa.PublicKey:
			k.pub = pub
		case ed25519.PublicKey:
			k.pub = pub
		default: // symmetric, X25519, anything else: never a verification key here
			skipped++
			continue
		}
		if k.kid != "" {
			if _, dup := ks.byKID[k.kid]; dup {
				skipped++
				continue
			}
		}
		if prev != nil {
			k = prev.same(k)
		}
		if k.kid != "" {
			ks.byKID[k.kid] = k
		} else {
			ks.anon = append(ks.anon, k)
		}
		ks.n++
	}
	if ks.n == 0 {
		return nil, skipped, fmt.Errorf("JWK set has no usable signature key (%d left out)", skipped)
	}
	return ks, skipped, nil
}

// same returns ks's key equal to k (kid, alg and key material), or k.
func (ks *keySet) same(k *jwtKey) *jwtKey {
	eq := func(o *jwtKey) bool {
		p, ok := o.pub.(interface{ Equal(crypto.PublicKey) bool })
		return o.kid == k.kid && o.alg == k.alg && ok && p.Equal(k.pub)
	}
	if k.kid != "" {
		if o := ks.byKID[k.kid]; o != nil && eq(o) {
			return o
		}
		return k
	}
	for _, o := range ks.anon {
		if eq(o) {
			return o
		}
	}
	return k
}

// load reads the key set (file or URL) and puts it in force; on error the keys in force stay.
func (v *jwtVerifier) load(ctx context.Context) error {
	v.loadMu.Lock()
	defer v.loadMu.Unlock()
	data, err := v.read(ctx)
	if err == nil {
		var ks *keySet
		var skipped int
		if ks, skipped, err = parseKeySet(data, v.keys.Load()); err == nil {
			v.keys.Store(ks)
			v.m.keys.Set(float64(ks.n))
			v.m.loads[0].Inc()
			if skipped > 0 {
				v.log.Info("JWK set keys left out", zap.Int("keys", ks.n), zap.Int("left_out", skipped))
			}
			return nil
		}
	}
	v.m.loads[1].Inc()
	return err
}

func (v *jwtVerifier) read(ctx context.Context) ([]byte, error) {
	if v.cfg.JWKSFile != "" {
		b, err := os.ReadFile(v.cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("JWKS file: %w", err)
		}
		return b, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKS URL: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("JWKS fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("JWKS fetch: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("JWKS fetch: %w", err)
	}
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS fetch: larger than %d bytes", maxJWKSBytes)
	}
	return b, nil
}

// tokenEntry is what the cache keeps of a verified token.
type tokenEntry struct {
	until time.Time // exp plus the leeway
	key   *jwtKey   // the key that verified it
	ks    atomic.Pointer[keySet]
	org   string
	users int64 // seats claimed; 0: none
	res   atomic.Pointer[resolved]
}

// resolved is the org state a token's org was found to be, under the org table ros.
type resolved struct {
	ros *orgTable
	gen uint64 // jwtOrgs.gen when resolved: an org let go since then is looked up again
	t   *orgState
}

// fresh reports whether e may be used at now with the key set ks: not expired, and its key
// still published.
func (e *tokenEntry) fresh(now time.Time, ks *keySet) bool {
	if !now.Before(e.until) {
		return false
	}
	if e.ks.Load() == ks {
		return true
	}
	if !ks.has(e.key) {
		return false
	}
	e.ks.Store(ks)
	return true
}

// tokenCache keeps verified tokens, at most max of them.
type tokenCache struct {
	mu  sync.RWMutex
	m   map[string]*tokenEntry
	max int // < 0: nothing is kept
	n   prometheus.Gauge
}

func (c *tokenCache) init(max int) {
	c.max = max
	c.m = make(map[string]*tokenEntry)
}

func (c *tokenCache) get(tok string) *tokenEntry {
	if c.max < 0 {
		return nil
	}
	c.mu.RLock()
	e := c.m[tok]
	c.mu.RUnlock()
	return e
}

// put keeps e under tok. A full cache first drops what has expired, then, if still full,
// an eighth of its entries (arbitrary ones: Go's map order): each put costs O(1) amortized.
func (c *tokenCache) put(tok string, e *tokenEntry, now time.Time) {
	if c.max < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[tok]; !ok && len(c.m) >= c.max {
		for k, o := range c.m {
			if !now.Before(o.until) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < c.max-c.max/8 {
				break
			}
			delete(c.m, k)
		}
	}
	if c.max > 0 {
		c.m[tok] = e
	}
	if c.n != nil {
		c.n.Set(float64(len(c.m)))
	}
}

// jwtMetrics are the metrics of OrgModeJWT, registered in the gateway's registry.
type jwtMetrics struct {
	rejections   [numTokReasons]prometheus.Counter
	hits, misses prometheus.Counter
	loads        [2]prometheus.Counter // ok, error
	keys         prometheus.Gauge
	orgs         prometheus.Gauge
	cached       prometheus.Gauge
}

func newJWTMetrics(m *Metrics) *jwtMetrics {
	const ns = "creditgate"
	rej := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "jwt_rejections_total",
		Help: "Access tokens refused, by reason (missing, malformed, unsupported_algorithm, unknown_key, bad_signature, expired, not_yet_valid, wrong_issuer, wrong_audience, invalid_claims, invalid_org, unknown_org, org_capacity, two_tokens)."},
		[]string{"reason"})
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "jwt_cache_lookups_total",
		Help: "Access tokens looked up in the cache of verified tokens: hit (no signature check) or miss."}, []string{"result"})
	loads := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "jwks_loads_total",
		Help: "Loads of the issuer's JWK set (start, refresh, unknown key, reload), by result; on error the last keys stay."}, []string{"result"})
	keys := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "jwks_keys",
		Help: "Verification keys in force."})
	orgsG := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "jwt_orgs",
		Help: "Orgs held from tokens besides the configured ones (CREDITGATE_JWT_MAX_ORGS bounds them)."})
	cached := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "jwt_cached_tokens",
		Help: "Verified access tokens in the cache."})
	j := &jwtMetrics{}
	for i, c := range []prometheus.Collector{rej, lookups, loads, keys, orgsG, cached} {
		if err := m.reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(err) // a programmer's error: the names above collide with another metric
			}
			switch i { // a second gateway on the same Metrics: share the series
			case 0:
				rej = are.ExistingCollector.(*prometheus.CounterVec)
			case 1:
				lookups = are.ExistingCollector.(*prometheus.CounterVec)
			case 2:
				loads = are.ExistingCollector.(*prometheus.CounterVec)
			case 3:
				keys = are.ExistingCollector.(prometheus.Gauge)
			case 4:
				orgsG = are.ExistingCollector.(prometheus.Gauge)
			case 5:
				cached = are.ExistingCollector.(prometheus.Gauge)
			}
		}
	}
	for i := range j.rejections {
		j.rejections[i] = rej.WithLabelValues(tokReasonNames[i])
	}
	j.hits, j.misses = lookups.WithLabelValues("hit"), lookups.WithLabelValues("miss")
	j.loads[0], j.loads[1] = loads.WithLabelValues("ok"), loads.WithLabelValues("error")
	j.keys, j.orgs, j.cached = keys, orgsG, cached
	return j
}
