package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/creditgate/creditgate/gateway"
	"github.com/creditgate/creditgate/orgs"
)

// Demo keys. They exist only in demo mode, which starts only when neither
// CREDITGATE_UPSTREAM_URL nor CREDITGATE_ORGS is set.
const (
	demoKey        = "demo-key"
	acmeKey        = "acme-key"
	demoAdminToken = "demo-admin-token"
)

// demoAdminTokens returns the demo's admin token: an admin, so the demo can change add-ons
// too (it also reads, as a viewer does).
func demoAdminTokens() *gateway.AdminTokens {
	t, err := gateway.ParseAdminTokens("admin:" + demoAdminToken)
	if err != nil {
		panic("demo admin tokens: " + err.Error()) // a programmer error: the string above is constant
	}
	return t
}

// demoOrgs returns the demo's orgs: "demo", small enough to run out in a few calls, and
// "acme", a Professional edition org with 20 users (10,000 + 20×500 = 20,000 credits).
func demoOrgs() []orgs.Org {
	list, err := orgs.Parse("demo:limit=1000,keys=" + demoKey + ";acme:edition=crm-professional,users=20,keys=" + acmeKey)
	if err != nil {
		panic("demo orgs: " + err.Error()) // a programmer error: the string above is constant
	}
	return list
}

// startDemoUpstream serves a small stand-in for a CRM API on a loopback port: it answers
// every call with JSON naming what it received.
func startDemoUpstream() (*url.URL, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("demo upstream: %w", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(demoAPI), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	u := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	return u, func() { _ = srv.Close() }, nil
}

func demoAPI(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"data": []map[string]any{{"status": "success", "code": "SUCCESS"}},
		"info": map[string]any{
			"upstream":   "creditgate demo API",
			"method":     r.Method,
			"path":       r.URL.Path,
			"query":      r.URL.RawQuery,
			"body_bytes": n,
		},
	})
}

// printDemo prints curl lines that work as printed against the demo. adminToken is the demo's
// admin token, or "" when CREDITGATE_ADMIN_TOKENS set the operator's own: the admin lines
// then name it rather than print a token that is not accepted.
func printDemo(w io.Writer, proxyAddr, adminAddr, adminToken string) {
	base := "http://" + loopbackAddr(proxyAddr)
	uiToken := adminToken
	if adminToken == "" {
		// An admin token of CREDITGATE_ADMIN_TOKENS, from the shell: the admin lines quote
		// it with double quotes so the shell expands it.
		adminToken, uiToken = "$CREDITGATE_ADMIN_TOKEN", "<an admin token>"
	}
	lines := []string{
		"",
		"creditgate demo: in-memory store, built-in sample API, demo orgs. Try:",
		"",
		"  # 1 credit (users): watch X-Credits-Charged and X-RateLimit-Remaining",
		fmt.Sprintf("  curl -i -H 'Authorization: Bearer %s' %s/crm/v8/users", demoKey, base),
		"  # 3 credits (records with cvid), key in X-Api-Key",
		fmt.Sprintf("  curl -i -H 'X-Api-Key: %s' '%s/crm/v8/Leads?cvid=42'", demoKey, base),
		"  # 500 credits (bulk write initialize); the demo org has 1000 a day, so the second call is refused:",
		fmt.Sprintf("  curl -i -X POST -H 'Authorization: Zoho-oauthtoken %s' %s/crm/bulk/v8/write", demoKey, base),
		fmt.Sprintf("  curl -i -X POST -H 'Authorization: Zoho-oauthtoken %s' %s/crm/bulk/v8/write", demoKey, base),
		"  # ...with 429 TOO_MANY_REQUESTS and Retry-After. Another org still has credits:",
		fmt.Sprintf("  curl -i -H 'Authorization: Bearer %s' %s/crm/v8/settings/modules", acmeKey, base),
		"  # No key: 401, nothing forwarded, nothing charged",
		fmt.Sprintf("  curl -i %s/crm/v8/users", base),
		"  # 3 credits: an insert of 21 records costs 1 credit per 10 records",
		fmt.Sprintf(`  curl -i -X POST -H 'X-Api-Key: %s' -H 'Content-Type: application/json' %s/crm/v8/Leads -d '{"data":[%s]}'`,
			acmeKey, base, strings.TrimSuffix(strings.Repeat(`{"Last_Name":"Lee"},`, 21), ",")),
		"  # What would a call cost, and which rule prices it? (admin listener, admin token)",
		fmt.Sprintf(`  curl -i -X POST -H "Authorization: Bearer %s" http://%s/admin/v1/explain -d '{"method":"POST","path":"/crm/v8/Leads/actions/add_tags","body":{"ids":[1,2,3]}}'`,
			adminToken, loopbackAddr(adminAddr)),
		"  # Where an org's credits stand (not charged, not forwarded)",
		fmt.Sprintf("  curl -i -H 'Authorization: Bearer %s' %s/creditgate/v1/usage", acmeKey, base),
		"  # Sell acme 5,000 add-on credits a day (its limit becomes 25,000), and what 100,000 would cost",
		fmt.Sprintf(`  curl -i -X PUT -H "Authorization: Bearer %s" http://%s/admin/v1/orgs/acme/addon -d '{"limit":5000}'`,
			adminToken, loopbackAddr(adminAddr)),
		fmt.Sprintf(`  curl -i -H "Authorization: Bearer %s" 'http://%s/admin/v1/quote?addon_credits=100000'`,
			adminToken, loopbackAddr(adminAddr)),
		"  # Health",
		fmt.Sprintf("  curl -i http://%s/readyz", loopbackAddr(adminAddr)),
		"",
		fmt.Sprintf("Usage page: http://%s/ui/?org=acme#token=%s", loopbackAddr(adminAddr), uiToken),
		"",
		"Stop with Ctrl-C. Configure CREDITGATE_UPSTREAM_URL and CREDITGATE_ORGS for real use (see README).",
		"",
	}
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}

// loopbackAddr turns a wildcard listen address ([::]:8080, 0.0.0.0:8080) into one a local
// curl can reach.
func loopbackAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
