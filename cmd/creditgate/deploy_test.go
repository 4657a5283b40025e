package main

// Checks of deploy/ and docker-compose.yml: no Docker engine or cluster runs here, so the
// files are parsed, cross-checked against each other and against the binary itself.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/creditgate/creditgate/internal/metricstest"
	"github.com/creditgate/creditgate/internal/redistest"
)

const repoRoot = "../.."

// yamlDocs parses every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, path))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// dig walks nested maps and lists: a string key for a map, an int for a list.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string { s, _ := v.(string); return s }

// TestDeployFilesParse: every YAML and JSON file under deploy/, and docker-compose.yml, parses.
func TestDeployFilesParse(t *testing.T) {
	var files []string
	err := filepath.WalkDir(filepath.Join(repoRoot, "deploy"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(repoRoot, p)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "docker-compose.yml")
	var checked int
	for _, f := range files {
		switch filepath.Ext(f) {
		case ".yml", ".yaml":
			if len(yamlDocs(t, f)) == 0 {
				t.Errorf("%s: no YAML document", f)
			}
			checked++
		case ".json":
			b, err := os.ReadFile(filepath.Join(repoRoot, f))
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Errorf("%s: %v", f, err)
			}
			checked++
		}
	}
	if checked < 12 {
		t.Errorf("only %d YAML/JSON files found: %v", checked, files)
	}
}

var (
	metricName = regexp.MustCompile(`\bcreditgate_[a-z0-9_]+`)
	// A label matcher on one of the labels whose values are fixed sets.
	labelMatcher = regexp.MustCompile(`\b(outcome|reason|op|code|state)\s*(=|!=)\s*"([^"]*)"`)
)

// dashboardQueries returns every PromQL string of the dashboard (panel targets and
// template variable queries).
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy/grafana/dashboards/creditgate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if s, ok := c.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					out = append(out, s)
				}
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(v)
	return out
}

// alertQueries returns the expressions of alerts.yml and the series of its unit tests.
func alertQueries(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, g := range dig(yamlDocs(t, "deploy/prometheus/alerts.yml")[0], "groups").([]any) {
		for _, r := range dig(g, "rules").([]any) {
			out = append(out, str(dig(r, "expr")))
		}
	}
	for _, tc := range dig(yamlDocs(t, "deploy/prometheus/alerts_test.yml")[0], "tests").([]any) {
		for _, s := range dig(tc, "input_series").([]any) {
			out = append(out, str(dig(s, "series")))
		}
	}
	return out
}

// TestDeployMetricsExist: every metric the dashboard and the alert rules name is one the
// binary exports, read from a live /metrics, and every fixed-set label value they match
// (outcome, reason, op, code, state) is one it exports too.
func TestDeployMetricsExist(t *testing.T) {
	up := newCostUpstream(t, 0)
	gw := startGateway(t, map[string]string{
		"CREDITGATE_UPSTREAM_URL": up.URL,
		"CREDITGATE_ORGS":         "acme:edition=crm-free,keys=acme-key",
	})
	fams := metricstest.Scrape(t, gw.admin+"/metrics")
	values := map[string]map[string]bool{} // label → values exported
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if values[l.GetName()] == nil {
					values[l.GetName()] = map[string]bool{}
				}
				values[l.GetName()][l.GetValue()] = true
			}
		}
	}
	exported := func(name string) bool {
		if fams[name] != nil {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && fams[base].GetType() == dto.MetricType_HISTOGRAM {
				return true
			}
		}
		return false
	}
	sources := map[string][]string{
		"dashboard":   dashboardQueries(t),
		"alert rules": alertQueries(t),
	}
	for src, queries := range sources {
		named := map[string]bool{}
		for _, q := range queries {
			for _, name := range metricName.FindAllString(q, -1) {
				named[name] = true
				if !exported(name) {
					t.Errorf("%s: %s is not exported by the binary (query %q)", src, name, q)
				}
			}
			for _, m := range labelMatcher.FindAllStringSubmatch(q, -1) {
				if !values[m[1]][m[3]] {
					t.Errorf("%s: %s=%q is not a value the binary exports (query %q)", src, m[1], m[3], q)
				}
			}
		}
		t.Logf("%s: %d queries naming %d metrics", src, len(queries), len(named))
	}
	// What the dashboard must show (docs/operations.md).
	all := strings.Join(sources["dashboard"], "\n")
	for _, want := range []string{
		"creditgate_rejections_total", "creditgate_rule_credits_total", "creditgate_credits_debited_total",
		"creditgate_limiter_duration_seconds_bucket", "creditgate_upstream_duration_seconds_bucket",
		"creditgate_redis_errors_total", "creditgate_breaker_state", "creditgate_addon_credits_total",
		"sum by (org)", "sum by (reason)", "sum by (rule)", "topk(10",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the dashboard does not use %q", want)
		}
	}
	alerts := strings.Join(sources["alert rules"], "\n")
	for _, want := range []string{"creditgate_breaker_state", "creditgate_redis_errors_total", `outcome="rejected"`, "creditgate_limiter_duration_seconds_bucket"} {
		if !strings.Contains(alerts, want) {
			t.Errorf("the alert rules do not use %q", want)
		}
	}
}

// TestPromtool runs promtool on the Prometheus files: the rules, their unit tests, the
// configuration. CI installs promtool (Debian's prometheus package); elsewhere the test is
// skipped without it.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if redistest.Required() {
			t.Fatal("promtool not found on PATH, and CI requires it: apt-get install -y prometheus")
		}
		t.Skip("promtool not found on PATH (apt-get install -y prometheus)")
	}
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		{"check", "config", "prometheus.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Join(repoRoot, "deploy/prometheus")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// envOf turns a YAML map of variables into strings.
func envOf(t *testing.T, v any) map[string]string {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("environment %v is not a map", v)
	}
	out := map[string]string{}
	for k, x := range m {
		s, ok := x.(string)
		if !ok {
			t.Fatalf("variable %s: %v is not a string (quote it)", k, x)
		}
		out[k] = s
	}
	return out
}

// TestDockerCompose: the services the operations issue names, Redis with AOF, creditgate's
// environment accepted by the real configuration loader, Prometheus scraping creditgate's
// admin port, Grafana provisioned with the datasource and dashboard, and every mounted
// path present in the repository.
func TestDockerCompose(t *testing.T) {
	c := yamlDocs(t, "docker-compose.yml")[0]
	for _, s := range []string{"redis", "creditgate", "upstream", "prometheus", "grafana"} {
		if dig(c, "services", s) == nil {
			t.Errorf("service %s missing", s)
		}
	}
	redisCmd, _ := yaml.Marshal(dig(c, "services", "redis", "command"))
	if !strings.Contains(string(redisCmd), "--appendonly\n- \"yes\"") && !strings.Contains(string(redisCmd), "--appendonly yes") {
		t.Errorf("redis does not run with --appendonly yes: %s", redisCmd)
	}
	env := envOf(t, dig(c, "services", "creditgate", "environment"))
	if _, err := loadConfig(env); err != nil {
		t.Errorf("creditgate's environment in docker-compose.yml is refused:\n%v", err)
	}
	if !strings.HasPrefix(env["CREDITGATE_UPSTREAM_URL"], "http://upstream:") || !strings.HasPrefix(env["CREDITGATE_REDIS_URL"], "redis://redis:") {
		t.Errorf("creditgate does not use the compose upstream and redis: %v", env)
	}
	if got := str(dig(c, "services", "creditgate", "build", "dockerfile")); got != "deploy/Dockerfile" {
		t.Errorf("creditgate is built from %q, want deploy/Dockerfile", got)
	}

	mounts := map[string]string{} // container path → repository path
	for _, svc := range []string{"prometheus", "grafana"} {
		vols, _ := dig(c, "services", svc, "volumes").([]any)
		for _, v := range vols {
			src, dst, _ := strings.Cut(str(v), ":")
			dst, _, _ = strings.Cut(dst, ":")
			if !strings.HasPrefix(src, "./") {
				continue // a named volume
			}
			if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
				t.Errorf("%s mounts %s, which is not in the repository", svc, src)
			}
			mounts[dst] = strings.TrimPrefix(src, "./")
		}
	}
	// Prometheus: the config the command names is the repository's, and it scrapes creditgate.
	if mounts["/etc/prometheus"] != "deploy/prometheus" {
		t.Errorf("prometheus mounts %v, want deploy/prometheus at /etc/prometheus", mounts)
	}
	prom := yamlDocs(t, "deploy/prometheus/prometheus.yml")[0]
	target := str(dig(prom, "scrape_configs", 0, "static_configs", 0, "targets", 0))
	if target != "creditgate:9090" {
		t.Errorf("prometheus scrapes %q, want creditgate:9090 (the admin listener)", target)
	}
	// Grafana: provisioning files in the mounted folder, the dashboard folder where the
	// provider reads, the dashboard's datasource the provisioned one.
	if mounts["/etc/grafana/provisioning"] != "deploy/grafana/provisioning" {
		t.Errorf("grafana provisioning not mounted from deploy/grafana/provisioning: %v", mounts)
	}
	provider := yamlDocs(t, "deploy/grafana/provisioning/dashboards/creditgate.yml")[0]
	path := str(dig(provider, "providers", 0, "options", "path"))
	if mounts[path] != "deploy/grafana/dashboards" {
		t.Errorf("the dashboard provider reads %q, where %v is mounted", path, mounts)
	}
	ds := yamlDocs(t, "deploy/grafana/provisioning/datasources/prometheus.yml")[0]
	uid := str(dig(ds, "datasources", 0, "uid"))
	if url := str(dig(ds, "datasources", 0, "url")); url != "http://prometheus:9090" {
		t.Errorf("datasource url %q, want the compose prometheus service", url)
	}
	b, _ := os.ReadFile(filepath.Join(repoRoot, "deploy/grafana/dashboards/creditgate.json"))
	var dash any
	_ = json.Unmarshal(b, &dash)
	for _, p := range dig(dash, "panels").([]any) {
		if got := str(dig(p, "datasource", "uid")); got != uid {
			t.Errorf("panel %q uses datasource %q, want the provisioned %q", str(dig(p, "title")), got, uid)
		}
	}
}

// TestKubernetesManifests: several replicas with probes on /readyz and /healthz, non-root,
// settings from the ConfigMap and secrets by reference, a Service and a PodDisruptionBudget;
// the ConfigMap plus the example Secret is a configuration the real loader accepts.
func TestKubernetesManifests(t *testing.T) {
	kinds := map[string]map[string]any{}
	kust := yamlDocs(t, "deploy/kubernetes/kustomization.yaml")[0]
	for _, r := range dig(kust, "resources").([]any) {
		for _, d := range yamlDocs(t, "deploy/kubernetes/"+str(r)) {
			kinds[str(d["kind"])] = d
		}
	}
	for _, k := range []string{"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} {
		if kinds[k] == nil {
			t.Fatalf("kustomization.yaml has no %s", k)
		}
	}
	dep := kinds["Deployment"]
	if n, _ := dig(dep, "spec", "replicas").(int); n < 3 {
		t.Errorf("replicas %v, want at least 3", dig(dep, "spec", "replicas"))
	}
	if dig(dep, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
		t.Error("the pod does not require a non-root user")
	}
	ctr := dig(dep, "spec", "template", "spec", "containers", 0)
	ports := map[string]int{}
	for _, p := range dig(ctr, "ports").([]any) {
		ports[str(dig(p, "name"))], _ = dig(p, "containerPort").(int)
	}
	for probe, want := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if got := str(dig(ctr, probe, "httpGet", "path")); got != want {
			t.Errorf("%s path %q, want %s", probe, got, want)
		}
		if port := str(dig(ctr, probe, "httpGet", "port")); ports[port] != 9090 {
			t.Errorf("%s on port %q, want the admin port 9090", probe, port)
		}
	}
	if n, _ := dig(kinds["PodDisruptionBudget"], "spec", "minAvailable").(int); n < 1 || n >= 3 {
		t.Errorf("PodDisruptionBudget minAvailable %v", dig(kinds["PodDisruptionBudget"], "spec", "minAvailable"))
	}

	env := envOf(t, dig(kinds["ConfigMap"], "data"))
	if ref := str(dig(ctr, "envFrom", 0, "configMapRef", "name")); ref != str(dig(kinds["ConfigMap"], "metadata", "name")) {
		t.Errorf("the container reads ConfigMap %q", ref)
	}
	secret := envOf(t, dig(yamlDocs(t, "deploy/kubernetes/secret.example.yaml")[0], "stringData"))
	var refs []string
	for _, e := range dig(ctr, "env").([]any) {
		key := str(dig(e, "valueFrom", "secretKeyRef", "key"))
		if key == "" {
			continue
		}
		refs = append(refs, key)
		v, ok := secret[key]
		if !ok {
			t.Errorf("the container reads secret key %s, which secret.example.yaml lacks", key)
		}
		env[str(dig(e, "name"))] = v
	}
	slices.Sort(refs)
	if !slices.Equal(refs, []string{"CREDITGATE_ADMIN_TOKENS", "CREDITGATE_ORGS", "CREDITGATE_REDIS_URL"}) {
		t.Errorf("secrets by reference: %v", refs)
	}
	cfg, err := loadConfig(env)
	if err != nil {
		t.Fatalf("ConfigMap plus Secret is refused:\n%v", err)
	}
	if cfg.ShutdownTimeout.Seconds()+5 > float64(dig(dep, "spec", "template", "spec", "terminationGracePeriodSeconds").(int)) {
		t.Errorf("CREDITGATE_SHUTDOWN_TIMEOUT %s plus the 5s preStop sleep exceeds terminationGracePeriodSeconds", cfg.ShutdownTimeout)
	}
}

// TestDockerfile: multi-stage, a static binary, a non-root final image.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var user string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.EqualFold(f[0], "FROM") {
			froms = append(froms, f[1])
			user = ""
		}
		if len(f) >= 2 && strings.EqualFold(f[0], "USER") {
			user = f[1]
		}
	}
	if len(froms) < 2 {
		t.Errorf("%d stages, want a build stage and a runtime stage", len(froms))
	}
	if !strings.Contains(string(b), "CGO_ENABLED=0") {
		t.Error("the binary is not built static (CGO_ENABLED=0)")
	}
	if user == "" || strings.HasPrefix(user, "root") || strings.HasPrefix(user, "0") {
		t.Errorf("the final stage runs as %q, want a non-root user", user)
	}
	if last := froms[len(froms)-1]; !strings.Contains(last, "distroless/static") && last != "scratch" {
		t.Errorf("final stage %s is not a static base", last)
	}
}
