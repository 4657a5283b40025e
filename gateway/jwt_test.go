package gateway

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/creditgate/creditgate/orgs"
)

const (
	testIss = "https://issuer.test/"
	testAud = "creditgate-api"
)

// testKeys are made once: RSA key generation is slow.
var testKeys = sync.OnceValue(func() map[string]crypto.Signer {
	must := func(k crypto.Signer, err error) crypto.Signer {
		if err != nil {
			panic(err)
		}
		return k
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return map[string]crypto.Signer{
		"rsa-1": must(rsa.GenerateKey(rand.Reader, 2048)),
		"rsa-2": must(rsa.GenerateKey(rand.Reader, 2048)),
		"ec-1":  must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)),
		"ed-1":  ed,
	}
})

var testAlgs = map[string]jwt.SigningMethod{
	"rsa-1": jwt.SigningMethodRS256, "rsa-2": jwt.SigningMethodRS256,
	"ec-1": jwt.SigningMethodES256, "ed-1": jwt.SigningMethodEdDSA,
}

// testIssuer serves a JWK set on loopback: the kids published, or 503 while down.
type testIssuer struct {
	*httptest.Server
	mu        sync.Mutex
	published []string
	down      atomic.Bool
	hits      atomic.Int64
}

func newTestIssuer(t *testing.T, kids ...string) *testIssuer {
	is := &testIssuer{published: kids}
	is.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.hits.Add(1)
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(is.jwks(t))
	}))
	t.Cleanup(is.Close)
	return is
}

func (is *testIssuer) publish(kids ...string) {
	is.mu.Lock()
	is.published = kids
	is.mu.Unlock()
}

// jwks is the JWK set of the published kids, marshalled by jwkset.
func (is *testIssuer) jwks(t testing.TB) []byte {
	is.mu.Lock()
	defer is.mu.Unlock()
	var set jwkset.JWKSMarshal
	for _, kid := range is.published {
		j, err := jwkset.NewJWKFromKey(testKeys()[kid].Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
			KID: kid, ALG: jwkset.ALG(testAlgs[kid].Alg()), USE: jwkset.UseSig}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// claims returns valid claims for org at the fixture's clock.
func claims(org string) jwt.MapClaims {
	return jwt.MapClaims{"iss": testIss, "aud": testAud, "sub": "user-1", "org_id": org,
		"iat": t0.Unix(), "exp": t0.Add(time.Hour).Unix()}
}

// sign signs c with the key kid (published or not) and names it in the header.
func sign(t testing.TB, kid string, c jwt.MapClaims) string {
	tok := jwt.NewWithClaims(testAlgs[kid], c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(testKeys()[kid])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jwtConfig is a JWT setup against is, with a default plan of 500 credits.
func jwtConfig(is *testIssuer) *JWTConfig {
	return &JWTConfig{
		JWKSURL: is.URL, Issuer: testIss, Audiences: []string{testAud}, Leeway: 30 * time.Second,
		DefaultPlan: &orgs.Org{Limit: 500, HasLimit: true}, RefetchInterval: time.Nanosecond,
	}
}

func newJWTFixture(t *testing.T, is *testIssuer, mod func(*JWTConfig)) *fixture {
	jc := jwtConfig(is)
	if mod != nil {
		mod(jc)
	}
	return newFixture(t, func(c *Config) {
		c.Mode, c.JWT = OrgModeJWT, jc
		c.LimitOf = func(o *orgs.Org) int64 {
			if o.HasLimit {
				return o.Limit
			}
			return 1000 * max(o.Users, 1)
		}
	})
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// refused checks a 401 INVALID_TOKEN (or the given code) with reason, nothing forwarded.
func refused(t *testing.T, f *fixture, hdr map[string]string, status int, code, reason string) {
	t.Helper()
	before := f.up.count()
	resp, body := do(t, "GET", f.url+"/crm/v2/users", hdr, "")
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	var b errorBody
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatal(err)
	}
	if b.Code != code || b.Details["reason"] != reason {
		t.Errorf("code %s reason %v, want %s %s", b.Code, b.Details["reason"], code, reason)
	}
	if got := resp.Header.Get("X-Credits-Charged"); got != "0" {
		t.Errorf("X-Credits-Charged %q", got)
	}
	if status == http.StatusUnauthorized {
		want := `Bearer realm="creditgate", error="invalid_token", error_description="` + reason + `"`
		if reason == "missing" {
			want = `Bearer realm="creditgate"`
		}
		if got := resp.Header.Get("WWW-Authenticate"); got != want {
			t.Errorf("WWW-Authenticate %q, want %q", got, want)
		}
	}
	if f.up.count() != before {
		t.Error("a refused call was forwarded")
	}
}

func TestJWTChargesTheTokensOrg(t *testing.T) {
	is := newTestIssuer(t, "rsa-1", "ec-1", "ed-1")
	f := newJWTFixture(t, is, nil)
	tests := []struct {
		kid, org string
		limit    int64
	}{
		{"rsa-1", "acme", 1000}, // configured: its own plan
		{"ec-1", "newco", 500},  // not configured: the default plan
		{"ed-1", "acme", 1000},
	}
	for _, tt := range tests {
		resp, body := do(t, "GET", f.url+"/crm/v2/users", bearer(sign(t, tt.kid, claims(tt.org))), "")
		if resp.StatusCode != 200 {
			t.Fatalf("%s/%s: status %d: %s", tt.kid, tt.org, resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-RateLimit-Limit"); got != itoa(tt.limit) {
			t.Errorf("%s/%s: limit %s, want %d", tt.kid, tt.org, got, tt.limit)
		}
	}
	if got := f.used(t, "acme", 1000); got != 2 {
		t.Errorf("acme used %d, want 2", got)
	}
	if got := f.used(t, "newco", 500); got != 1 {
		t.Errorf("newco used %d, want 1", got)
	}
	if _, ok := f.gw.orgByID("newco"); !ok {
		t.Error("newco is not visible to the admin API")
	}
}

func TestJWTRefusals(t *testing.T) {
	is := newTestIssuer(t, "rsa-1", "ec-1")
	f := newJWTFixture(t, is, nil)
	with := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := claims("acme")
		mod(c)
		return c
	}
	valid := sign(t, "rsa-1", claims("acme"))
	parts := strings.Split(valid, ".")
	forged, _ := json.Marshal(claims("tiny"))
	pubDER, _ := x509.MarshalPKIXPublicKey(testKeys()["rsa-1"].Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("acme"))
	hs.Header["kid"] = "rsa-1"
	hsTok, _ := hs.SignedString(pubPEM)
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims("acme")).SignedString(jwt.UnsafeAllowNoneSignatureType)
	es := jwt.NewWithClaims(jwt.SigningMethodES256, claims("acme"))
	es.Header["kid"] = "rsa-1" // an EC signature under an RSA key's id
	esTok, _ := es.SignedString(testKeys()["ec-1"])

	tests := []struct {
		name   string
		give   map[string]string
		reason string
	}{
		{"expired", bearer(sign(t, "rsa-1", with(func(c jwt.MapClaims) { c["exp"] = t0.Add(-time.Minute).Unix() }))), "expired"},
		{"not yet valid", bearer(sign(t, "rsa-1", with(func(c jwt.MapClaims) { c["nbf"] = t0.Add(time.Minute).Unix() }))), "not_yet_valid"},
		{"wrong issuer", bearer(sign(t, "rsa-1", with(func(c jwt.MapClaims) { c["iss"] = "https://evil.test/" }))), "wrong_issuer"},
		{"wrong audience", bearer(sign(t, "rsa-1", with(func(c jwt.MapClaims) { c["aud"] = []string{"other-api"} }))), "wrong_audience"},
		{"no exp", bearer(sign(t, "rsa-1", with(func(c jwt.MapClaims) { delete(c, "exp") }))), "invalid_claims"},
		{"alg none", bearer(noneTok), "unsupported_algorithm"},
		{"HS256 with the public key", bearer(hsTok), "unsupported_algorithm"},
		{"ES256 under an RSA kid", bearer(esTok), "unsupported_algorithm"},
		{"tampered payload", bearer(parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]), "bad_signature"},
		{"bad signature", bearer(parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 256))), "bad_signature"},
		{"unknown kid", bearer(sign(t, "rsa-2", claims("acme"))), "unknown_key"},
		{"not a JWT", bearer("acme-key"), "malformed"},
		{"padded", bearer(valid + "="), "malformed"},
		{"org id with braces", bearer(sign(t, "rsa-1", with(func(c jwt.MapClaims) { c["org_id"] = "a{b}" }))), "invalid_org"},
		{"org id missing", bearer(sign(t, "rsa-1", with(func(c jwt.MapClaims) { delete(c, "org_id") }))), "invalid_org"},
		{"org id an object", bearer(sign(t, "rsa-1", with(func(c jwt.MapClaims) { c["org_id"] = map[string]any{"id": "acme"} }))), "invalid_org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refused(t, f, tt.give, http.StatusUnauthorized, "INVALID_TOKEN", tt.reason)
		})
	}
	refused(t, f, nil, http.StatusUnauthorized, "AUTHENTICATION_FAILURE", "missing")
	refused(t, f, map[string]string{"Authorization": "Basic YTpi"}, http.StatusUnauthorized, "AUTHENTICATION_FAILURE", "missing")
	refused(t, f, map[string]string{"X-Api-Key": "acme-key"}, http.StatusUnauthorized, "AUTHENTICATION_FAILURE", "missing")

	// Two Authorization fields with different tokens.
	req, _ := http.NewRequest("GET", f.url+"/crm/v2/users", nil)
	req.Header["Authorization"] = []string{"Bearer " + valid, "Bearer " + sign(t, "ec-1", claims("tiny"))}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("two tokens: status %d", resp.StatusCode)
	}
	if got := f.used(t, "acme", 1000) + f.used(t, "tiny", 10); got != 0 {
		t.Errorf("refused calls were charged %d credits", got)
	}
	if got := testutil.ToFloat64(f.gw.jwt.m.rejections[tokExpired]); got != 1 {
		t.Errorf("expired rejections counted %v, want 1", got)
	}
}

func TestJWTUnknownOrgWithoutDefaultPlan(t *testing.T) {
	is := newTestIssuer(t, "rsa-1")
	f := newJWTFixture(t, is, func(c *JWTConfig) { c.DefaultPlan = nil })
	refused(t, f, bearer(sign(t, "rsa-1", claims("newco"))), http.StatusUnauthorized, "INVALID_TOKEN", "unknown_org")
	if resp, _ := do(t, "GET", f.url+"/crm/v2/users", bearer(sign(t, "rsa-1", claims("acme"))), ""); resp.StatusCode != 200 {
		t.Errorf("configured org: status %d", resp.StatusCode)
	}
}

func TestJWTOrgCapacity(t *testing.T) {
	is := newTestIssuer(t, "ec-1")
	f := newJWTFixture(t, is, func(c *JWTConfig) { c.MaxOrgs = 2 })
	for _, org := range []string{"one", "two", "acme", "one"} {
		if resp, body := do(t, "GET", f.url+"/crm/v2/users", bearer(sign(t, "ec-1", claims(org))), ""); resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", org, resp.StatusCode, body)
		}
	}
	refused(t, f, bearer(sign(t, "ec-1", claims("three"))), http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "org_capacity")
	if resp, body := do(t, "GET", f.url+"/crm/v2/users", bearer(sign(t, "ec-1", claims("two"))), ""); resp.StatusCode != 200 {
		t.Fatalf("an org held: status %d: %s", resp.StatusCode, body)
	}
	if n := len(f.gw.jwtOrgSummaries()); n != 2 {
		t.Errorf("%d orgs held, want 2", n)
	}
}

func TestJWTSeatsFromClaims(t *testing.T) {
	is := newTestIssuer(t, "ec-1")
	f := newJWTFixture(t, is, func(c *JWTConfig) {
		c.UsersClaim = "seats"
		c.DefaultPlan = &orgs.Org{Edition: "crm-standard", Users: 5}
		c.PerUser = func(o *orgs.Org) bool { return !o.HasLimit }
	})
	seats := func(org string, n any) string {
		c := claims(org)
		if n != nil {
			c["seats"] = n
		}
		return sign(t, "ec-1", c)
	}
	tests := []struct {
		name  string
		give  string
		limit string
	}{
		{"default plan, no claim", seats("newco", nil), "5000"},
		{"default plan, claimed", seats("newco", 12), "12000"},
		{"configured users win", seats("pro", 50), "2000"},
		{"configured limit: not per user", seats("acme", 50), "1000"},
	}
	for _, tt := range tests {
		resp, body := do(t, "GET", f.url+"/crm/v2/users", bearer(tt.give), "")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", tt.name, resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-RateLimit-Limit"); got != tt.limit {
			t.Errorf("%s: limit %s, want %s", tt.name, got, tt.limit)
		}
	}
	refused(t, f, bearer(seats("newco", -3)), http.StatusUnauthorized, "INVALID_TOKEN", "invalid_claims")
	refused(t, f, bearer(seats("newco", "12")), http.StatusUnauthorized, "INVALID_TOKEN", "invalid_claims")
}

func TestJWTCacheSkipsTheSignatureCheck(t *testing.T) {
	is := newTestIssuer(t, "rsa-1")
	f := newJWTFixture(t, is, nil)
	tok := sign(t, "rsa-1", claims("acme"))
	for range 3 {
		if resp, _ := do(t, "GET", f.url+"/crm/v2/users", bearer(tok), ""); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	m := f.gw.jwt.m
	if hits, misses := testutil.ToFloat64(m.hits), testutil.ToFloat64(m.misses); hits != 2 || misses != 1 {
		t.Errorf("cache hits %v misses %v, want 2 and 1", hits, misses)
	}
	// Past exp plus the leeway the cached token is verified again, and refused.
	f.now.Store(t0.Add(time.Hour + 31*time.Second).UnixMilli())
	refused(t, f, bearer(tok), http.StatusUnauthorized, "INVALID_TOKEN", "expired")
}

func TestJWTKeyRotation(t *testing.T) {
	is := newTestIssuer(t, "rsa-1")
	f := newJWTFixture(t, is, nil)
	old := sign(t, "rsa-1", claims("acme"))
	ok := func(tok string) {
		t.Helper()
		if resp, body := do(t, "GET", f.url+"/crm/v2/users", bearer(tok), ""); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	}
	ok(old)

	// The issuer adds a key and signs with it: fetched on its first token, no restart.
	is.publish("rsa-1", "rsa-2")
	ok(sign(t, "rsa-2", claims("acme")))

	// The issuer goes down: a refresh fails, the keys stay, and new tokens of known keys
	// verify.
	is.down.Store(true)
	if err := f.gw.ReloadKeys(context.Background()); err == nil {
		t.Error("a reload from a down issuer succeeded")
	}
	fresh := claims("acme")
	fresh["jti"] = "after-outage"
	ok(sign(t, "rsa-2", fresh))
	ok(sign(t, "rsa-1", fresh))
	ok(old)

	// Back up without rsa-1: its tokens, cached ones too, are refused.
	is.down.Store(false)
	is.publish("rsa-2")
	if err := f.gw.ReloadKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	refused(t, f, bearer(old), http.StatusUnauthorized, "INVALID_TOKEN", "unknown_key")
	ok(sign(t, "rsa-2", claims("acme")))
}

func TestJWTUnknownKeyRefetchBounded(t *testing.T) {
	is := newTestIssuer(t, "rsa-1")
	f := newJWTFixture(t, is, func(c *JWTConfig) { c.RefetchInterval = time.Hour })
	start := is.hits.Load()
	for _, kid := range []string{"rsa-2", "ec-1", "ed-1", "rsa-2"} {
		refused(t, f, bearer(sign(t, kid, claims("acme"))), http.StatusUnauthorized, "INVALID_TOKEN", "unknown_key")
	}
	if got := is.hits.Load() - start; got != 1 {
		t.Errorf("%d fetches for unknown kids, want 1 within the interval", got)
	}
}

func TestJWTOrgsVisibleAfterReload(t *testing.T) {
	is := newTestIssuer(t, "ec-1")
	f := newJWTFixture(t, is, nil)
	if resp, _ := do(t, "GET", f.url+"/crm/v2/users", bearer(sign(t, "ec-1", claims("newco"))), ""); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	list, err := orgs.Parse("acme:limit=1000,keys=acme-key;newco:limit=7000")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := orgs.NewDirectory(list)
	if err != nil {
		t.Fatal(err)
	}
	f.gw.SetOrgs(dir)
	if n := len(f.gw.jwtOrgSummaries()); n != 0 {
		t.Errorf("%d orgs held after newco was configured, want 0", n)
	}
	resp, _ := do(t, "GET", f.url+"/crm/v2/users", bearer(sign(t, "ec-1", claims("newco"))), "")
	if got := resp.Header.Get("X-RateLimit-Limit"); got != "7000" {
		t.Errorf("newco limit %s after it was configured, want 7000", got)
	}
}

func TestJWTKeySetParsing(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	jwk := func(key any, kid string, use jwkset.USE) jwkset.JWKMarshal {
		j, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, USE: use}})
		if err != nil {
			t.Fatal(err)
		}
		return j.Marshal()
	}
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{
		jwk(testKeys()["rsa-1"].Public(), "good", jwkset.UseSig),
		jwk(small.Public(), "small", jwkset.UseSig),
		jwk(testKeys()["ec-1"].Public(), "enc", jwkset.UseEnc),
		{KTY: jwkset.KtyOct, K: base64.RawURLEncoding.EncodeToString([]byte("an HMAC secret")), KID: "hmac", USE: jwkset.UseSig},
		jwk(testKeys()["ec-1"].Public(), "good", jwkset.UseSig), // a kid twice
	}}
	b, _ := json.Marshal(set)
	ks, skipped, err := parseKeySet(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ks.n != 1 || skipped != 4 || ks.byKID["good"] == nil {
		t.Errorf("%d keys kept, %d left out; want only the 2048-bit RSA signature key", ks.n, skipped)
	}
	for _, give := range []string{`{}`, `{"keys":[]}`, `not json`, `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`} {
		if _, _, err := parseKeySet([]byte(give), nil); err == nil {
			t.Errorf("%s: accepted", give)
		}
	}
}

// TestJWTIdleOrgsMakeRoom: at the bound of orgs held from tokens, an org no token has named
// for a whole window is let go for a new one; one named within the window is not.
func TestJWTIdleOrgsMakeRoom(t *testing.T) {
	is := newTestIssuer(t, "ec-1")
	jc := jwtConfig(is)
	jc.MaxOrgs = 1
	f := newFixture(t, func(c *Config) {
		c.Mode, c.JWT, c.Window = OrgModeJWT, jc, 10*time.Minute
		c.LimitOf = func(o *orgs.Org) int64 { return 1000 }
	})
	call := func(org string) int {
		resp, _ := do(t, "GET", f.url+"/crm/v2/users", bearer(sign(t, "ec-1", claims(org))), "")
		return resp.StatusCode
	}
	if s := call("one"); s != 200 {
		t.Fatalf("first org: %d", s)
	}
	f.now.Add((9 * time.Minute).Milliseconds())
	if s := call("two"); s != http.StatusServiceUnavailable {
		t.Fatalf("a second org while the first was named 9 minutes ago: %d, want 503", s)
	}
	if s := call("one"); s != 200 { // named again: idle from now
		t.Fatalf("first org again: %d", s)
	}
	f.now.Add((11 * time.Minute).Milliseconds())
	if s := call("two"); s != 200 {
		t.Fatalf("a second org once the first was idle a whole window: %d, want 200", s)
	}
	if got := f.gw.jwtOrgSummaries(); len(got) != 1 || got[0].Org != "two" {
		t.Fatalf("held %+v, want only two", got)
	}
	if s := call("one"); s != http.StatusServiceUnavailable {
		t.Fatalf("the org let go, while two is in use: %d, want 503 (its cached token must not bring it back unheld)", s)
	}
}
