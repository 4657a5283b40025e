package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/creditgate/creditgate/plans"
)

// TestJWTMode runs the binary in jwt org mode against a JWK set on loopback: a configured
// org's seats come from its token, an org not configured gets the default plan and shows
// in the admin API, and an expired token is refused with RFC 6750's challenge.
func TestJWTMode(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := jwkset.NewJWKFromKey(key.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "k1", ALG: jwkset.AlgES256}})
	if err != nil {
		t.Fatal(err)
	}
	set, _ := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(set) }))
	t.Cleanup(issuer.Close)
	token := func(org string, seats int, exp time.Time) string {
		c := jwt.MapClaims{"iss": "https://issuer.test/", "aud": "api", "tenant": org, "exp": exp.Unix()}
		if seats > 0 {
			c["seats"] = seats
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	up := newCostUpstream(t, 0)
	gw := startGateway(t, map[string]string{
		"CREDITGATE_UPSTREAM_URL":     up.URL,
		"CREDITGATE_ORG_MODE":         "jwt",
		"CREDITGATE_ORGS":             "acme:edition=crm-professional",
		"CREDITGATE_JWT_JWKS_URL":     issuer.URL,
		"CREDITGATE_JWT_ISSUER":       "https://issuer.test/",
		"CREDITGATE_JWT_AUDIENCE":     "api",
		"CREDITGATE_JWT_ORG_CLAIM":    "tenant",
		"CREDITGATE_JWT_USERS_CLAIM":  "seats",
		"CREDITGATE_JWT_DEFAULT_PLAN": "edition=crm-standard,users=5",
		"CREDITGATE_ADMIN_TOKENS":     "viewer:view-token",
	})
	allot := func(edition string, users int64) string {
		e, _ := plans.BuiltinEditions().Lookup(edition)
		return strconv.FormatInt(e.Allotment(plans.Seats{Users: users}), 10)
	}
	soon := time.Now().Add(time.Hour)
	tests := []struct {
		name, tok, limit string
	}{
		{"configured, seats from the token", token("acme", 20, soon), allot("crm-professional", 20)},
		{"default plan", token("newco", 0, soon), allot("crm-standard", 5)},
		{"default plan, seats from the token", token("newco", 8, soon), allot("crm-standard", 8)},
	}
	for _, tt := range tests {
		resp, body := call(t, http.DefaultClient, "GET", gw.base+"/crm/v2/users", tt.tok)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", tt.name, resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-RateLimit-Limit"); got != tt.limit {
			t.Errorf("%s: limit %s, want %s", tt.name, got, tt.limit)
		}
	}
	resp, body := call(t, http.DefaultClient, "GET", gw.base+"/crm/v2/users", token("acme", 0, time.Now().Add(-time.Hour)))
	if resp.StatusCode != 401 || !strings.Contains(body, `"reason":"expired"`) ||
		resp.Header.Get("WWW-Authenticate") != `Bearer realm="creditgate", error="invalid_token", error_description="expired"` {
		t.Errorf("expired token: %d %s %q", resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
	}
	if got := up.calls.Load(); got != 3 {
		t.Errorf("upstream got %d calls, want 3", got)
	}

	req, _ := http.NewRequest("GET", gw.admin+"/admin/v1/orgs/newco/usage", nil)
	req.Header.Set("Authorization", "Bearer view-token")
	aresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(aresp.Body)
	aresp.Body.Close()
	if aresp.StatusCode != 200 {
		t.Errorf("admin usage of newco: %d %s", aresp.StatusCode, b)
	}
}
