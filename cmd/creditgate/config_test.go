package main

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const validOrgs = "acme:edition=crm-professional,users=20,keys=k1|k2;beta:limit=5000,keys=k3"

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.demo || cfg.ListenAddr != ":8080" || cfg.AdminAddr != ":9090" || cfg.Window != 24*time.Hour ||
		cfg.Bucket != time.Minute || cfg.FailMode != "local" || cfg.MaxBodyBytes != 10<<20 ||
		cfg.CostTable != "zoho-crm" || cfg.OrgMode != "apikey" || cfg.OrgHeader != "X-Org-Id" ||
		cfg.BreakerFailures != 3 || cfg.BreakerCooldown != time.Second || cfg.MetricsMaxOrgs != 100 {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestLoadConfigProduction(t *testing.T) {
	cfg, err := loadConfig(map[string]string{
		"CREDITGATE_UPSTREAM_URL": "http://127.0.0.1:9000/api",
		"CREDITGATE_ORGS":         validOrgs,
		"CREDITGATE_WINDOW":       "4s",
		"CREDITGATE_BUCKET":       "1s",
		"CREDITGATE_REDIS_URL":    "redis://127.0.0.1:6379/0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.demo || cfg.upstream.Path != "/api" || cfg.orgSet.dir.Len() != 2 || cfg.Bucket != time.Second {
		t.Fatalf("%+v", cfg)
	}
	tests := []struct {
		org  int
		want int64
	}{
		{0, 20000}, // Professional: 10,000 + 20 × 500
		{1, 5000},  // explicit limit
	}
	for _, tt := range tests {
		if got := cfg.orgSet.LimitOf(cfg.orgSet.dir.At(tt.org)); got != tt.want {
			t.Errorf("limit of %s = %d, want %d", cfg.orgSet.dir.At(tt.org).ID, got, tt.want)
		}
	}
}

func TestLoadConfigErrors(t *testing.T) {
	base := map[string]string{"CREDITGATE_UPSTREAM_URL": "http://127.0.0.1:9000", "CREDITGATE_ORGS": validOrgs}
	tests := []struct {
		name string
		give map[string]string
		want []string // every fragment must appear in the error
	}{
		{"unknown org field", map[string]string{"CREDITGATE_ORGS": "acme:limit=5,colour=red,keys=k"}, []string{"CREDITGATE_ORGS", `"acme"`, `"colour"`}},
		{"negative limit", map[string]string{"CREDITGATE_ORGS": "acme:limit=-5,keys=k"}, []string{"CREDITGATE_ORGS", `"acme"`, `"limit"`, "-5"}},
		{"unknown edition", map[string]string{"CREDITGATE_ORGS": "acme:edition=crm-gold,keys=k"}, []string{"CREDITGATE_ORGS", `"acme"`, `"edition"`, "crm-gold"}},
		{"no limit or edition", map[string]string{"CREDITGATE_ORGS": "acme:keys=k"}, []string{"CREDITGATE_ORGS", `"acme"`, "limit"}},
		{"no keys in apikey mode", map[string]string{"CREDITGATE_ORGS": "acme:limit=5"}, []string{"CREDITGATE_ORGS", `"acme"`, "keys"}},
		{"bad upstream scheme", map[string]string{"CREDITGATE_UPSTREAM_URL": "ftp://x"}, []string{"CREDITGATE_UPSTREAM_URL", "http"}},
		{"upstream password not echoed", map[string]string{"CREDITGATE_UPSTREAM_URL": "ftp://u:hunter2@x/"}, []string{"CREDITGATE_UPSTREAM_URL"}},
		{"bad upstream with password not echoed", map[string]string{"CREDITGATE_UPSTREAM_URL": "http://u:hunter2@x:badport/"}, []string{"CREDITGATE_UPSTREAM_URL"}},
		{"monthly edition without monthly_limit", map[string]string{"CREDITGATE_ORGS": "acme:edition=monthly,keys=k"}, []string{"CREDITGATE_ORGS", `"acme"`, `"monthly_limit"`}},
		{"additional over twice monthly", map[string]string{"CREDITGATE_ORGS": "acme:edition=monthly,monthly_limit=10,additional=21,keys=k"}, []string{"CREDITGATE_ORGS", `"acme"`, `"additional"`, "20"}},
		{"monthly fields on a window plan", map[string]string{"CREDITGATE_ORGS": "acme:edition=crm-standard,monthly_limit=10,keys=k"}, []string{"CREDITGATE_ORGS", `"acme"`, "monthly plans only"}},
		{"addon over the cap", map[string]string{"CREDITGATE_ORGS": "acme:edition=crm-standard,users=60,addon=80001,keys=k"}, []string{"CREDITGATE_ORGS", `"acme"`, `"addon"`, "80000"}},
		{"addon on a free edition", map[string]string{"CREDITGATE_ORGS": "acme:edition=crm-free,addon=1,keys=k"}, []string{"CREDITGATE_ORGS", `"acme"`, `"addon"`, "cannot"}},
		{"addon slabs", map[string]string{"CREDITGATE_ADDON_SLABS": "25000:0.14"}, []string{"CREDITGATE_ADDON_SLABS", "last slab"}},
		{"anchor day", map[string]string{"CREDITGATE_BILLING_ANCHOR_DAY": "31"}, []string{"CREDITGATE_BILLING_ANCHOR_DAY", "1 to 28"}},
		{"agents on a CRM edition", map[string]string{"CREDITGATE_ORGS": "acme:edition=crm-standard,agents=5,keys=k"}, []string{"CREDITGATE_ORGS", `"acme"`, `"agents"`, "crm-standard"}},
		{"users on a Desk edition", map[string]string{"CREDITGATE_ORGS": "acme:edition=desk-standard,users=5,keys=k"}, []string{"CREDITGATE_ORGS", `"acme"`, `"users"`, "desk-standard"}},
		{"call price", map[string]string{"CREDITGATE_CALL_PRICE_COMMERCIAL": "6 cents"}, []string{"CREDITGATE_CALL_PRICE_COMMERCIAL", "6 cents"}},
		{"notify thresholds syntax", map[string]string{"CREDITGATE_NOTIFY_THRESHOLDS": "50,eighty"}, []string{"CREDITGATE_NOTIFY_THRESHOLDS", "50,eighty"}},
		{"notify threshold range", map[string]string{"CREDITGATE_NOTIFY_THRESHOLDS": "50,150"}, []string{"CREDITGATE_NOTIFY_THRESHOLDS", "1 to 100"}},
		{"webhook URL without secret", map[string]string{"CREDITGATE_WEBHOOK_URL": "https://hooks.example/x?token=hunter2"}, []string{"CREDITGATE_WEBHOOK_URL", "secret"}},
		{"webhook URL scheme", map[string]string{"CREDITGATE_WEBHOOK_URL": "ftp://hunter2@hooks.example/x", "CREDITGATE_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, []string{"CREDITGATE_WEBHOOK_URL", "http"}},
		{"webhook secret not whsec", map[string]string{"CREDITGATE_WEBHOOK_URL": "https://hooks.example/x", "CREDITGATE_WEBHOOK_SECRET": "hunter2"}, []string{"CREDITGATE_WEBHOOK_URL", "whsec_"}},
		{"webhook secret too short", map[string]string{"CREDITGATE_WEBHOOK_URL": "https://hooks.example/x", "CREDITGATE_WEBHOOK_SECRET": "whsec_aHVudGVyMg=="}, []string{"CREDITGATE_WEBHOOK_URL", "24 to 64 bytes"}},
		{"webhook timeout", map[string]string{"CREDITGATE_WEBHOOK_TIMEOUT": "0s"}, []string{"CREDITGATE_WEBHOOK_TIMEOUT"}},
		{"webhook backoff order", map[string]string{"CREDITGATE_WEBHOOK_BACKOFF": "10s", "CREDITGATE_WEBHOOK_MAX_BACKOFF": "1s"}, []string{"CREDITGATE_WEBHOOK_MAX_BACKOFF"}},
		{"limit beyond exact doubles", map[string]string{"CREDITGATE_ORGS": "acme:limit=9007199254740992,keys=k"}, []string{"CREDITGATE_ORGS", `"acme"`, `"limit"`}},
		{"upstream not a URL", map[string]string{"CREDITGATE_UPSTREAM_URL": "http://[::1"}, []string{"CREDITGATE_UPSTREAM_URL"}},
		{"upstream without host", map[string]string{"CREDITGATE_UPSTREAM_URL": "http:///path"}, []string{"CREDITGATE_UPSTREAM_URL", "host"}},
		{"orgs without upstream", map[string]string{"CREDITGATE_UPSTREAM_URL": ""}, []string{"CREDITGATE_UPSTREAM_URL", "must be set"}},
		{"bad redis url", map[string]string{"CREDITGATE_REDIS_URL": "http://x"}, []string{"CREDITGATE_REDIS_URL", "scheme"}},
		{"redis password not echoed", map[string]string{"CREDITGATE_REDIS_URL": "redis://:hunter2@x:1?nope=1"}, []string{"CREDITGATE_REDIS_URL"}},
		{"window not a duration", map[string]string{"CREDITGATE_WINDOW": "a day"}, []string{"CREDITGATE_WINDOW", "duration"}},
		{"window zero", map[string]string{"CREDITGATE_WINDOW": "0s"}, []string{"CREDITGATE_WINDOW", "between"}},
		{"bucket longer than window", map[string]string{"CREDITGATE_WINDOW": "4s", "CREDITGATE_BUCKET": "5s"}, []string{"CREDITGATE_BUCKET"}},
		{"too many buckets", map[string]string{"CREDITGATE_WINDOW": "24h", "CREDITGATE_BUCKET": "1ms"}, []string{"CREDITGATE_BUCKET", "100000"}},
		{"fail mode", map[string]string{"CREDITGATE_FAIL_MODE": "sideways"}, []string{"CREDITGATE_FAIL_MODE", "sideways"}},
		{"cors origin", map[string]string{"CREDITGATE_CORS_ORIGINS": "https://ok.example, app.example.com"}, []string{"CREDITGATE_CORS_ORIGINS", "app.example.com"}},
		{"cors max age", map[string]string{"CREDITGATE_CORS_MAX_AGE": "-1s"}, []string{"CREDITGATE_CORS_MAX_AGE"}},
		{"tls cert without key", map[string]string{"CREDITGATE_TLS_CERT_FILE": "cert.pem"}, []string{"CREDITGATE_TLS_CERT_FILE", "CREDITGATE_TLS_KEY_FILE"}},
		{"tls files missing", map[string]string{"CREDITGATE_TLS_CERT_FILE": "/nonexistent/cert.pem", "CREDITGATE_TLS_KEY_FILE": "/nonexistent/key.pem"}, []string{"CREDITGATE_TLS_CERT_FILE", "no such file"}},
		{"breaker failures zero", map[string]string{"CREDITGATE_BREAKER_FAILURES": "0"}, []string{"CREDITGATE_BREAKER_FAILURES", "between 1 and 1000"}},
		{"breaker failures not int", map[string]string{"CREDITGATE_BREAKER_FAILURES": "few"}, []string{"CREDITGATE_BREAKER_FAILURES", "integer"}},
		{"breaker cooldown too short", map[string]string{"CREDITGATE_BREAKER_COOLDOWN": "1ms"}, []string{"CREDITGATE_BREAKER_COOLDOWN", "10ms"}},
		{"metrics max orgs negative", map[string]string{"CREDITGATE_METRICS_MAX_ORGS": "-1"}, []string{"CREDITGATE_METRICS_MAX_ORGS", "-1"}},
		{"log level", map[string]string{"CREDITGATE_LOG_LEVEL": "loud"}, []string{"CREDITGATE_LOG_LEVEL", "loud"}},
		{"shadow not bool", map[string]string{"CREDITGATE_SHADOW": "perhaps"}, []string{"CREDITGATE_SHADOW", "true or false"}},
		{"max body not int", map[string]string{"CREDITGATE_MAX_BODY_BYTES": "10MB"}, []string{"CREDITGATE_MAX_BODY_BYTES", "integer"}},
		{"unknown cost table", map[string]string{"CREDITGATE_COST_TABLE": "nope"}, []string{"CREDITGATE_COST_TABLE", "zoho-crm"}},
		{"cost table file missing", map[string]string{"CREDITGATE_COST_TABLE_FILE": "/nonexistent/x.yaml"}, []string{"CREDITGATE_COST_TABLE_FILE", "no such file"}},
		{"orgs file missing", map[string]string{"CREDITGATE_ORGS_FILE": "/nonexistent/orgs.yaml"}, []string{"CREDITGATE_ORGS_FILE", "no such file"}},
		{"orgs file bad org", map[string]string{"CREDITGATE_ORGS_FILE": "../../orgs/testdata/files/bad-limit-zero.yaml"}, []string{"CREDITGATE_ORGS_FILE: bad-limit-zero.yaml: line"}},
		{"editions file missing", map[string]string{"CREDITGATE_EDITIONS_FILE": "/nonexistent/editions.yaml"}, []string{"CREDITGATE_EDITIONS_FILE", "no such file"}},
		{"org mode", map[string]string{"CREDITGATE_ORG_MODE": "ldap"}, []string{"CREDITGATE_ORG_MODE", "ldap"}},
		{"jwt without keys, issuer or audience", map[string]string{"CREDITGATE_ORG_MODE": "jwt"}, []string{"CREDITGATE_JWT_JWKS_URL", "CREDITGATE_JWT_ISSUER", "CREDITGATE_JWT_AUDIENCE"}},
		{"jwt keys from URL and file", map[string]string{"CREDITGATE_ORG_MODE": "jwt", "CREDITGATE_JWT_JWKS_URL": "https://issuer.example/jwks", "CREDITGATE_JWT_ISSUER": "https://issuer.example/", "CREDITGATE_JWT_AUDIENCE": "api", "CREDITGATE_JWT_JWKS_FILE": "jwks.json"}, []string{"CREDITGATE_JWT_JWKS_URL", "not both"}},
		{"jwt keys over plain http", map[string]string{"CREDITGATE_ORG_MODE": "jwt", "CREDITGATE_JWT_JWKS_URL": "http://issuer.example/jwks", "CREDITGATE_JWT_ISSUER": "https://issuer.example/", "CREDITGATE_JWT_AUDIENCE": "api"}, []string{"CREDITGATE_JWT_JWKS_URL", "https"}},
		{"jwt default plan with keys", map[string]string{"CREDITGATE_ORG_MODE": "jwt", "CREDITGATE_JWT_JWKS_URL": "https://issuer.example/jwks", "CREDITGATE_JWT_ISSUER": "https://issuer.example/", "CREDITGATE_JWT_AUDIENCE": "api", "CREDITGATE_JWT_DEFAULT_PLAN": "limit=5,keys=k1"}, []string{"CREDITGATE_JWT_DEFAULT_PLAN", "keys"}},
		{"jwt default plan unknown edition", map[string]string{"CREDITGATE_ORG_MODE": "jwt", "CREDITGATE_JWT_JWKS_URL": "https://issuer.example/jwks", "CREDITGATE_JWT_ISSUER": "https://issuer.example/", "CREDITGATE_JWT_AUDIENCE": "api", "CREDITGATE_JWT_DEFAULT_PLAN": "edition=crm-gold"}, []string{"CREDITGATE_JWT_DEFAULT_PLAN", "crm-gold"}},
		{"jwt default plan without limit", map[string]string{"CREDITGATE_ORG_MODE": "jwt", "CREDITGATE_JWT_JWKS_URL": "https://issuer.example/jwks", "CREDITGATE_JWT_ISSUER": "https://issuer.example/", "CREDITGATE_JWT_AUDIENCE": "api", "CREDITGATE_JWT_DEFAULT_PLAN": "users=5"}, []string{"CREDITGATE_JWT_DEFAULT_PLAN", "limit"}},
		{"jwt leeway", map[string]string{"CREDITGATE_ORG_MODE": "jwt", "CREDITGATE_JWT_JWKS_URL": "https://issuer.example/jwks", "CREDITGATE_JWT_ISSUER": "https://issuer.example/", "CREDITGATE_JWT_AUDIENCE": "api", "CREDITGATE_JWT_LEEWAY": "1h"}, []string{"CREDITGATE_JWT_LEEWAY", "5m"}},
		{"jwt max orgs", map[string]string{"CREDITGATE_ORG_MODE": "jwt", "CREDITGATE_JWT_JWKS_URL": "https://issuer.example/jwks", "CREDITGATE_JWT_ISSUER": "https://issuer.example/", "CREDITGATE_JWT_AUDIENCE": "api", "CREDITGATE_JWT_MAX_ORGS": "0"}, []string{"CREDITGATE_JWT_MAX_ORGS", "between 1"}},
		{"jwt settings outside jwt mode", map[string]string{"CREDITGATE_JWT_ISSUER": "https://issuer.example/"}, []string{"CREDITGATE_JWT_ISSUER", "not jwt"}},
		{"unknown variable", map[string]string{"CREDITGATE_WINDWO": "4s"}, []string{"CREDITGATE_WINDWO", "unknown variable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.give {
				env[k] = v
			}
			_, err := loadConfig(env)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "k1") {
				t.Errorf("error leaks a secret: %q", err)
			}
		})
	}
}

// TestLoadConfigJWT: jwt mode needs no orgs when a default plan is set, and orgs without keys
// are fine in it.
func TestLoadConfigJWT(t *testing.T) {
	cfg, err := loadConfig(map[string]string{
		"CREDITGATE_UPSTREAM_URL":     "http://127.0.0.1:9000",
		"CREDITGATE_ORG_MODE":         "jwt",
		"CREDITGATE_JWT_JWKS_URL":     "http://127.0.0.1:9001/jwks",
		"CREDITGATE_JWT_ISSUER":       "https://issuer.example/",
		"CREDITGATE_JWT_AUDIENCE":     "api, api2",
		"CREDITGATE_JWT_DEFAULT_PLAN": "edition=crm-standard,users=5",
	})
	if err != nil {
		t.Fatal(err)
	}
	j := cfg.jwt
	if j == nil || len(j.Audiences) != 2 || j.Leeway != 30*time.Second || j.OrgClaim != "org_id" ||
		j.DefaultPlan == nil || j.DefaultPlan.Users != 5 || cfg.orgSet.dir.Len() != 0 {
		t.Fatalf("%+v", j)
	}
	if _, err := loadConfig(map[string]string{
		"CREDITGATE_UPSTREAM_URL": "http://127.0.0.1:9000", "CREDITGATE_ORG_MODE": "jwt",
		"CREDITGATE_JWT_JWKS_URL": "https://issuer.example/jwks", "CREDITGATE_JWT_ISSUER": "i", "CREDITGATE_JWT_AUDIENCE": "a",
		"CREDITGATE_ORGS": "acme:edition=crm-standard,users=3",
	}); err != nil {
		t.Fatal(err)
	}
}

// TestLoadConfigReportsAllProblems: every problem at once, not just the first.
func TestLoadConfigReportsAllProblems(t *testing.T) {
	_, err := loadConfig(map[string]string{
		"CREDITGATE_UPSTREAM_URL": "ftp://x",
		"CREDITGATE_ORGS":         "a:limit=-1",
		"CREDITGATE_FAIL_MODE":    "no",
		"CREDITGATE_WINDOW":       "0s",
	})
	for _, name := range []string{"CREDITGATE_UPSTREAM_URL", "CREDITGATE_ORGS", "CREDITGATE_FAIL_MODE", "CREDITGATE_WINDOW"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}

func TestLoadConfigCostTableFile(t *testing.T) {
	base := map[string]string{"CREDITGATE_UPSTREAM_URL": "http://127.0.0.1:9000", "CREDITGATE_ORGS": validOrgs}
	base["CREDITGATE_COST_TABLE_FILE"] = "../../costtable/testdata/tables/orders.yaml"
	cfg, err := loadConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.costTable.Name() != "orders-api" {
		t.Fatalf("cost table %q", cfg.costTable.Name())
	}
	base["CREDITGATE_COST_TABLE_FILE"] = "../../costtable/testdata/tables/bad-unknown-field.yaml"
	_, err = loadConfig(base)
	if err == nil || !strings.Contains(err.Error(), `CREDITGATE_COST_TABLE_FILE: bad-unknown-field.yaml: line 5: rules[0] "list_orders": unknown field "coast"`) {
		t.Fatalf("error %v", err)
	}
}

func TestLoadConfigRoutesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "routes.yaml")
	write := func(data string) {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("routes:\n  - {name: crm, path_prefix: /crm, upstream: http://127.0.0.1:9000}\n  - {name: orders, path_prefix: /orders, upstream: http://127.0.0.1:9001, cost_table_file: " +
		mustAbs(t, "../../costtable/testdata/tables/orders.yaml") + ", timeout: 5s}\n")
	base := map[string]string{"CREDITGATE_ROUTES_FILE": path, "CREDITGATE_ORGS": validOrgs, "CREDITGATE_PRESERVE_HOST": "true"}
	cfg, err := loadConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.routes) != 2 || cfg.routes[0].Costs.Name() != "zoho-crm" || cfg.routes[1].Costs.Name() != "orders-api" ||
		!cfg.routes[0].PreserveHost || cfg.routes[1].Timeout != 5*time.Second || cfg.demo {
		t.Fatalf("routes %+v", cfg.routes)
	}

	for _, c := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"CREDITGATE_UPSTREAM_URL": "http://127.0.0.1:9000"}, "CREDITGATE_ROUTES_FILE: and CREDITGATE_UPSTREAM_URL are both set"},
		{map[string]string{"CREDITGATE_COST_TABLE_FILE": "x.yaml"}, "CREDITGATE_ROUTES_FILE: and CREDITGATE_COST_TABLE_FILE are both set"},
		{map[string]string{"CREDITGATE_ORGS": ""}, "CREDITGATE_ROUTES_FILE: is set but no orgs are"},
		{map[string]string{"CREDITGATE_CALL_RECORD_TTL": "5s"}, `route "orders": timeout 5s must be shorter than CREDITGATE_CALL_RECORD_TTL`},
	} {
		vars := maps.Clone(base)
		maps.Copy(vars, c.vars)
		if vars["CREDITGATE_ORGS"] == "" {
			delete(vars, "CREDITGATE_ORGS")
		}
		if _, err := loadConfig(vars); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.vars, err, c.want)
		}
	}
	write("routes:\n  - {name: crm, path_prefix: /crm, upstream: http://127.0.0.1:9000}\n  - {name: crm, upstream: http://127.0.0.1:9001}\n")
	if _, err := loadConfig(base); err == nil || !strings.Contains(err.Error(), `CREDITGATE_ROUTES_FILE: `+path+`: line 3: routes[1] "crm": name already used by routes[0]`) {
		t.Errorf("error %v", err)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestLoadConfigOrgsAndEditionsFiles: the orgs file adds to CREDITGATE_ORGS, an editions file
// changes what an edition allots, and an ID in both places is refused.
func TestLoadConfigOrgsAndEditionsFiles(t *testing.T) {
	dir := t.TempDir()
	orgsFile := filepath.Join(dir, "orgs.yaml")
	writeFile(t, orgsFile, `orgs:
  - id: gamma
    edition: partner-gold
    agents: 3
    light_agents: 7
    keys: [k5]
  - id: delta
    edition: crm-professional
    users: 10
    keys: k6
`)
	edFile := filepath.Join(dir, "editions.yaml")
	writeFile(t, edFile, `editions:
  - name: partner-gold
    kind: desk
    base: 20000
    per_seat: 800
    concurrency: 12
  - name: crm-professional
    per_seat: 600
`)
	env := map[string]string{
		"CREDITGATE_UPSTREAM_URL":  "http://127.0.0.1:9000",
		"CREDITGATE_ORGS":          validOrgs,
		"CREDITGATE_ORGS_FILE":     orgsFile,
		"CREDITGATE_EDITIONS_FILE": edFile,
	}
	cfg, err := loadConfig(env)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id          string
		limit, conc int64
	}{
		{"acme", 10_000 + 20*600, 15}, // from CREDITGATE_ORGS, edition changed by the file
		{"beta", 5000, 0},
		{"gamma", 20_000 + 3*800, 12}, // a new edition; light agents earn nothing
		{"delta", 10_000 + 10*600, 15},
	}
	for _, tt := range tests {
		o, ok := cfg.orgSet.dir.ByID(tt.id)
		if !ok {
			t.Fatalf("org %s missing", tt.id)
		}
		if got := cfg.orgSet.LimitOf(o); got != tt.limit {
			t.Errorf("limit of %s = %d, want %d", tt.id, got, tt.limit)
		}
		if got := cfg.orgSet.ConcurrencyOf(o); got != tt.conc {
			t.Errorf("concurrency of %s = %d, want %d", tt.id, got, tt.conc)
		}
	}

	// Without the editions file, partner-gold is unknown: the error names the file's variable.
	delete(env, "CREDITGATE_EDITIONS_FILE")
	_, err = loadConfig(env)
	if err == nil || !strings.Contains(err.Error(), `CREDITGATE_ORGS_FILE: org "gamma": field "edition": unknown edition "partner-gold"`) {
		t.Fatalf("error %v", err)
	}

	// The same ID in CREDITGATE_ORGS and in the file.
	env["CREDITGATE_EDITIONS_FILE"] = edFile
	env["CREDITGATE_ORGS"] = validOrgs + ";gamma:limit=5,keys=k9"
	_, err = loadConfig(env)
	if err == nil || !strings.Contains(err.Error(), "CREDITGATE_ORGS and CREDITGATE_ORGS_FILE") || !strings.Contains(err.Error(), "gamma") {
		t.Fatalf("error %v", err)
	}

	// An orgs file alone, without CREDITGATE_ORGS, is a configuration (not the demo).
	delete(env, "CREDITGATE_ORGS")
	cfg, err = loadConfig(env)
	if err != nil || cfg.demo || cfg.orgSet.dir.Len() != 2 {
		t.Fatalf("orgs file alone: demo=%v err=%v", cfg.demo, err)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDemoLinesWithOperatorTokens: with CREDITGATE_ADMIN_TOKENS set the demo keeps the
// operator's tokens, so its admin curl lines must not print the demo token, which is refused.
func TestDemoLinesWithOperatorTokens(t *testing.T) {
	var b strings.Builder
	printDemo(&b, "127.0.0.1:8080", "127.0.0.1:9090", "")
	out := b.String()
	if strings.Contains(out, demoAdminToken) || strings.Count(out, `-H "Authorization: Bearer $CREDITGATE_ADMIN_TOKEN"`) != 3 {
		t.Fatalf("demo lines with the operator's tokens (double quotes, so the shell expands the variable):\n%s", out)
	}
	// As a shell runs them.
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "curl ") || !strings.Contains(line, "CREDITGATE_ADMIN_TOKEN") {
			continue
		}
		cmd := exec.Command("sh", "-c", "printf '%s\\n' "+strings.TrimPrefix(line, "curl "))
		cmd.Env = []string{"CREDITGATE_ADMIN_TOKEN=s3cret"}
		got, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(got), "Authorization: Bearer s3cret") {
			t.Errorf("as a shell runs %q it sends:\n%s", line, got)
		}
	}
}

// TestEditionsFileWithoutOrgs: an editions file alone would start the demo, which uses the
// built-in editions; the operator meant a configured gateway, so it is an error.
func TestEditionsFileWithoutOrgs(t *testing.T) {
	_, err := loadConfig(map[string]string{"CREDITGATE_EDITIONS_FILE": "editions.yaml"})
	if err == nil || !strings.Contains(err.Error(), "CREDITGATE_EDITIONS_FILE: is set but no orgs are") {
		t.Fatalf("loadConfig = %v, want an error naming CREDITGATE_EDITIONS_FILE", err)
	}
}

// TestParseAndCheckErrorsTogether: a value that does not parse does not hide the problems of
// the other variables.
func TestParseAndCheckErrorsTogether(t *testing.T) {
	_, err := loadConfig(map[string]string{
		"CREDITGATE_UPSTREAM_URL": "http://127.0.0.1:9000", "CREDITGATE_ORGS": validOrgs,
		"CREDITGATE_WINDOW": "10x", "CREDITGATE_FAIL_MODE": "sideways", "CREDITGATE_MAX_BODY_BYTES": "-5",
	})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"CREDITGATE_WINDOW: must be a Go duration", "CREDITGATE_FAIL_MODE", "sideways", "CREDITGATE_MAX_BODY_BYTES: must be at least 1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Count(msg, "CREDITGATE_WINDOW") != 1 {
		t.Errorf("CREDITGATE_WINDOW reported more than once (its zero value checked too):\n%s", msg)
	}
}

// TestLoadConfigOrgNotices: an org's notice fields in the orgs file are checked at start-up,
// each problem naming the org and the field, the secret never shown; valid ones come sorted.
func TestLoadConfigOrgNotices(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "orgs:\n"+
		"  - {id: acme, limit: 10, keys: [k1], notify_thresholds: [50, 0]}\n"+
		"  - {id: beta, limit: 10, keys: [k2], webhook_url: 'https://hooks.example/b', webhook_secret: whsec_hunter2}\n"+
		"  - {id: gamma, limit: 10, keys: [k3], webhook_secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'}\n")
	_, err := loadConfig(map[string]string{"CREDITGATE_UPSTREAM_URL": "http://127.0.0.1:9000", "CREDITGATE_ORGS_FILE": bad})
	for _, want := range []string{
		`CREDITGATE_ORGS_FILE: org "acme": field "notify_thresholds": a threshold is a percent from 1 to 100, got 0`,
		`CREDITGATE_ORGS_FILE: org "beta": field "webhook_url": a webhook secret is "whsec_" and base64`,
		`CREDITGATE_ORGS_FILE: org "gamma": field "webhook_url": a webhook secret is set without a URL`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the secret is shown: %v", err)
	}
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, "orgs:\n  - {id: acme, limit: 10, keys: [k1], notify_thresholds: [100, 50]}\n")
	cfg, err := loadConfig(map[string]string{"CREDITGATE_UPSTREAM_URL": "http://127.0.0.1:9000", "CREDITGATE_ORGS_FILE": good,
		"CREDITGATE_NOTIFY_THRESHOLDS": "90, 75"})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.orgSet.dir.At(0).NotifyThresholds; len(got) != 2 || got[0] != 50 || got[1] != 100 {
		t.Errorf("org thresholds %v, want [50 100]", got)
	}
	if got := cfg.notices.Thresholds; len(got) != 2 || got[0] != 75 {
		t.Errorf("default thresholds %v, want [75 90]", got)
	}
}
