package gateway

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// newJWTGateway is a gateway in jwt mode over a JWK set file with the test keys, a memory
// store and a canned upstream, on the fixture's clock (mode apikey when jwtMode is false).
func newJWTGateway(tb testing.TB, jwtMode bool) *Gateway {
	tb.Helper()
	is := &testIssuer{published: []string{"rsa-1", "ec-1", "ed-1"}}
	file := filepath.Join(tb.TempDir(), "jwks.json")
	if err := os.WriteFile(file, is.jwks(tb), 0o600); err != nil {
		tb.Fatal(err)
	}
	up, _ := url.Parse("http://upstream.invalid")
	store, err := limiter.NewMemoryStore(limiter.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	list, err := orgs.Parse("acme:limit=1000000000000000,keys=acme-key")
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := orgs.NewDirectory(list)
	if err != nil {
		tb.Fatal(err)
	}
	costs, err := costtable.Builtin("zoho-crm")
	if err != nil {
		tb.Fatal(err)
	}
	cfg := Config{
		Upstream: up, Transport: cannedTransport{}, Store: store, Costs: costs, Orgs: dir,
		LimitOf: func(o *orgs.Org) int64 { return max(o.Limit, 1000) },
		Clock:   func() time.Time { return t0 },
	}
	if jwtMode {
		cfg.Mode = OrgModeJWT
		cfg.JWT = &JWTConfig{JWKSFile: file, Issuer: testIss, Audiences: []string{testAud},
			DefaultPlan: &orgs.Org{Limit: 500, HasLimit: true}, MaxOrgs: 100, CacheSize: 100}
	}
	g, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(g.Close)
	return g
}

// FuzzJWTIdentify feeds arbitrary Authorization values to the token path. It must never
// panic, and must accept nothing but the exact tokens the issuer signed: a fuzzer cannot
// sign, so any other accepted input would be a token the issuer never made (strict
// base64, no padding, no trailing bytes, no second reading of the same signature).
func FuzzJWTIdentify(f *testing.F) {
	g := newJWTGateway(f, true)
	valid := map[string]bool{}
	for _, kid := range []string{"rsa-1", "ec-1", "ed-1"} {
		tok := sign(f, kid, claims("acme"))
		valid[tok] = true
		f.Add(tok) // a valid token of each kind of key
	}
	expired := claims("acme")
	expired["exp"] = t0.Add(-time.Hour).Unix()
	f.Add(sign(f, "rsa-1", expired)) // valid signature, expired
	newOrg := claims("newco")
	tok := sign(f, "ec-1", newOrg)
	valid[tok] = true
	f.Add(tok) // an org on the default plan
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims("acme")).SignedString(jwt.UnsafeAllowNoneSignatureType)
	f.Add(none)                                               // alg none
	f.Add("")                                                 // nothing
	f.Add("a.b.c")                                            // three segments of nothing
	f.Add("eyJhbGciOiJSUzI1NiJ9.e30.")                        // RS256 header, empty claims, no signature
	f.Add(`eyJhbGciOiJFUzI1NiIsImtpZCI6WzFdfQ.e30.AAAA`)      // kid not a string
	f.Add(strings.Repeat("A", 300) + "." + "B" + "." + "C==") // padding
	f.Fuzz(func(t *testing.T, s string) {
		e, _ := g.jwt.verify(context.Background(), s)
		if e != nil && !valid[s] {
			t.Fatalf("accepted a token the issuer did not sign: %q", s)
		}
		r := httptest.NewRequest("GET", "/crm/v2/users", nil)
		r.Header["Authorization"] = []string{"Bearer " + s}
		tn, err := g.identify(r, false)
		if err == nil && (!valid[s] || tn == nil) {
			t.Fatalf("identified a token the issuer did not sign: %q", s)
		}
	})
}

// TestJWTHotPathAllocs: a cached token costs no more allocations than an API key.
func TestJWTHotPathAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts need a full run")
	}
	tok := sign(t, "ec-1", claims("acme"))
	// The least of three counts: AllocsPerRun counts the whole process's allocations, and
	// goroutines other tests left behind (a timer firing, say) can add one to a count.
	perCall := func(h http.Handler, hdr, val string) float64 {
		least := math.Inf(1)
		for range 3 {
			least = min(least, allocsPerCall(t, h, hdr, val))
		}
		return least
	}
	key := perCall(newJWTGateway(t, false), "X-Api-Key", "acme-key")
	jwtCall := perCall(newJWTGateway(t, true), "Authorization", "Bearer "+tok)
	t.Logf("allocations per call: API key %.0f, cached JWT %.0f", key, jwtCall)
	if jwtCall > key {
		t.Errorf("a cached JWT allocates %.0f times per call, an API key %.0f", jwtCall, key)
	}
}

// allocsPerCall counts the allocations of one allowed call through h, identified by hdr.
func allocsPerCall(t *testing.T, h http.Handler, hdr, val string) float64 {
	return testing.AllocsPerRun(200, func() {
		req := httptest.NewRequest("GET", "/crm/v2/users", nil)
		req.Header[hdr] = []string{val}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
	})
}

// BenchmarkJWTIdentify: identifying by a cached token, and verifying one (cache off).
func BenchmarkJWTIdentify(b *testing.B) {
	for _, tt := range []struct {
		name  string
		kid   string
		cache int
	}{{"cached", "rsa-1", 100}, {"verify-RS256", "rsa-1", -1}, {"verify-ES256", "ec-1", -1}, {"verify-EdDSA", "ed-1", -1}} {
		b.Run(tt.name, func(b *testing.B) {
			g := newJWTGateway(b, true)
			g.jwt.cache.max = tt.cache
			r := httptest.NewRequest("GET", "/crm/v2/users", nil)
			r.Header["Authorization"] = []string{"Bearer " + sign(b, tt.kid, claims("acme"))}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.identify(r, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
