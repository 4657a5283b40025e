package gateway

import (
	"context"
	"flag"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creditgate/creditgate/orgs"
	"github.com/creditgate/creditgate/plans"
)

var uiScreenshot = flag.String("ui.screenshot", "", "TestUsagePageInBrowser also writes a screenshot of the page to this PNG file")

// chromiumBinary returns Debian's chromium (or another Chromium build on PATH). Without one
// the browser test is skipped, except under CI=true, where it must run.
func chromiumBinary(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found on PATH, and CI requires the browser test: apt-get install -y chromium")
	}
	t.Skip("chromium not found on PATH: skipping the browser test (apt-get install -y chromium)")
	return ""
}

// runChromium runs headless Chromium once, bounded in time, and returns its standard output.
func runChromium(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + t.TempDir(),
		"--virtual-time-budget=15000", "--window-size=1280,1040",
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.Env = append(os.Environ(), "TZ=UTC", "LANG=en_US.UTF-8")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// domElement returns the start tag of the element with id in a dumped DOM.
func domElement(t *testing.T, dom, id string) string {
	t.Helper()
	m := regexp.MustCompile(`<[a-z]+[^>]*\sid="` + regexp.QuoteMeta(id) + `"[^>]*>`).FindString(dom)
	if m == "" {
		t.Fatalf("no element #%s in the page", id)
	}
	return m
}

func domAttr(t *testing.T, dom, id, attr string) string {
	t.Helper()
	tag := domElement(t, dom, id)
	m := regexp.MustCompile(`\s` + attr + `="([^"]*)"`).FindStringSubmatch(tag)
	if m == nil {
		t.Fatalf("#%s has no %s: %s", id, attr, tag)
	}
	return m[1]
}

// TestUsagePageInBrowser starts the gateway and its admin listener, drives a day of mixed
// traffic, opens /ui/ in headless Chromium with the token in the URL fragment, and checks
// that every number the page shows equals the usage API's, that the chart holds the hourly
// data, and that the token never reached the server in a URL.
func TestUsagePageInBrowser(t *testing.T) {
	bin := chromiumBinary(t)
	f := newFixture(t, func(c *Config) {
		c.LimitOf = func(o *orgs.Org) int64 {
			if o.HasLimit {
				return o.Limit
			}
			e, _ := plans.LookupEdition(o.Edition)
			return e.Allotment(plans.Seats{Users: o.Users, Addon: o.Addon})
		}
		c.ConcurrencyOf = func(o *orgs.Org) int64 {
			e, _ := plans.LookupEdition(o.Edition)
			return e.Concurrency
		}
		c.AdditionalOf = func(o *orgs.Org) int64 { return o.Addon }
	})
	list, err := orgs.Parse("acme:edition=crm-professional,users=20,addon=2000,keys=acme-key;" +
		"globex:edition=crm-enterprise,users=10,keys=globex-key;initech:limit=5000,keys=initech-key")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := orgs.NewDirectory(list)
	if err != nil {
		t.Fatal(err)
	}
	f.gw.SetOrgs(dir)

	tokens, err := ParseAdminTokens("viewer:" + viewerToken)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		uris []string // every request target that reached the admin listener
	)
	adminH := NewAdminHandler(AdminConfig{Gateway: f.gw, Tokens: tokens})
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		uris = append(uris, r.RequestURI)
		mu.Unlock()
		adminH.ServeHTTP(w, r)
	}))
	defer admin.Close()
	uf := &usageFixture{fixture: f, store: f.store, admin: admin.URL}

	// A working day of traffic: busier in office hours, every kind of call.
	key := map[string]string{"X-Api-Key": "acme-key", "Content-Type": "application/json"}
	for hour := range 23 {
		busy := 0.25 + math.Max(0, math.Sin(float64(hour-5)/14*math.Pi))
		bulk, small := int(busy*11), 6+int(busy*18)
		calls := bulk + small
		for i := range calls {
			c := mixedCalls[5] // bulk read, 50 credits
			if i%calls >= bulk {
				c = mixedCalls[(hour+i)%5]
			}
			if resp, body := do(t, c.method, f.url+c.path, key, c.body); resp.StatusCode != 200 {
				t.Fatalf("hour %d: %s %s: %d %s", hour, c.method, c.path, resp.StatusCode, body)
			}
			f.now.Add((60 * time.Minute / time.Duration(calls)).Milliseconds())
		}
	}
	// One call in flight while the page is open, so concurrency shows.
	release, arrived := make(chan struct{}), make(chan struct{}, 1)
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}
	inFlight := make(chan struct{})
	go func() {
		defer close(inFlight)
		do(t, "GET", f.url+"/crm/v2/users", key, "")
	}()
	<-arrived
	defer func() { close(release); <-inFlight }()

	u := uf.usage(t, "acme")
	h := uf.hours(t, "acme")
	if u.UsedCredits == 0 || u.ConcurrencyInUse != 1 || h.TotalCredits == 0 {
		t.Fatalf("workload left usage %+v, hours total %d", u, h.TotalCredits)
	}

	page := admin.URL + "/ui/?org=acme#token=" + viewerToken
	dom := runChromium(t, bin, "--dump-dom", page)
	if state := bodyState(dom); state != "ready" {
		t.Fatalf("page state %q, want ready; error: %s", state, domElement(t, dom, "error"))
	}
	for _, tt := range []struct {
		id   string
		want string
	}{
		{"used", itoa(u.UsedCredits)},
		{"overall", itoa(u.OverallCredits)},
		{"free", itoa(u.DailyFreeLimit)},
		{"additional", itoa(u.AdditionalCredits)},
		{"unused", itoa(u.UnusedCredits)},
		{"percent", strconv.FormatFloat(u.PercentUsed, 'f', -1, 64)},
		{"next-free", *u.NextFreeAt},
		{"concurrency", itoa(u.ConcurrencyInUse)},
		{"chart-total", itoa(h.TotalCredits)},
	} {
		if got := domAttr(t, dom, tt.id, "data-value"); got != tt.want {
			t.Errorf("page shows %s = %q, usage API says %q", tt.id, got, tt.want)
		}
	}
	// The numbers are also written out for people, formatted.
	if !strings.Contains(dom, `>`+formatThousands(u.UsedCredits)+`</span>`) || !strings.Contains(dom, "acme</h1>") {
		t.Errorf("used credits %s or the org name not shown", formatThousands(u.UsedCredits))
	}
	// One bar group per slot, in order, with the slot's credits.
	bars := regexp.MustCompile(`<g data-credits="(\d+)" data-start="([^"]+)"`).FindAllStringSubmatch(dom, -1)
	if len(bars) != len(h.Slots) {
		t.Fatalf("chart has %d bars, the API %d slots", len(bars), len(h.Slots))
	}
	for i, b := range bars {
		if b[1] != itoa(h.Slots[i].Credits) || b[2] != h.Slots[i].Start {
			t.Errorf("bar %d: %s credits at %s; API: %d at %s", i, b[1], b[2], h.Slots[i].Credits, h.Slots[i].Start)
		}
	}
	for _, r := range h.Rules {
		if !strings.Contains(dom, "</span>"+r+" ") {
			t.Errorf("legend lacks rule %s", r)
		}
	}
	// The credit axis counts whole credits; once loaded, the loading line is gone.
	ticks := regexp.MustCompile(`text-anchor="end" class="axis">([^<]*)<`).FindAllStringSubmatch(dom, -1)
	if len(ticks) != 5 {
		t.Errorf("%d ticks on the credit axis, want 5", len(ticks))
	}
	for _, tk := range ticks {
		if strings.ContainsAny(tk[1], ".") && !strings.Contains(tk[1], ",") {
			t.Errorf("a fractional tick on the credit axis: %q", tk[1])
		}
	}
	if !regexp.MustCompile(`id="loading"[^>]*hidden`).MatchString(dom) {
		t.Error("the loading line is still shown once the page is ready")
	}

	// Without a token the page asks for one and reads nothing.
	dom = runChromium(t, bin, "--dump-dom", admin.URL+"/ui/")
	if state := bodyState(dom); state != "login" {
		t.Errorf("without a token: state %q, want login", state)
	}

	// A refused token is forgotten and the page asks for another.
	dom = runChromium(t, bin, "--dump-dom", admin.URL+"/ui/?org=acme#token=not-a-token")
	if state, login := bodyState(dom), domElement(t, dom, "login"); state != "error" || strings.Contains(login, "hidden") ||
		!strings.Contains(dom, "The token was refused") {
		t.Errorf("with a refused token: state %q, login form %s", state, login)
	}

	mu.Lock()
	for _, uri := range uris {
		if strings.Contains(uri, viewerToken) || strings.Contains(uri, "not-a-token") {
			t.Errorf("the token reached the server in a URL: %s", uri)
		}
	}
	mu.Unlock()

	if *uiScreenshot != "" {
		runChromium(t, bin, "--screenshot="+*uiScreenshot, page)
		t.Logf("screenshot written to %s", *uiScreenshot)
	}
}

// formatThousands writes n as the page does (en-US grouping).
func formatThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// bodyState is the page's data-state: loading, login, ready or error.
func bodyState(dom string) string {
	m := regexp.MustCompile(`<body[^>]*\sdata-state="([^"]*)"`).FindStringSubmatch(dom)
	if m == nil {
		return ""
	}
	return m[1]
}
