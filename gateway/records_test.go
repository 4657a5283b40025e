package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func records(n int) string {
	var b strings.Builder
	b.WriteString(`{"data":[`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"Last_Name":"Lee %d","Note":"a ] , \" { tricky","Tags":[1,[2]]}`, i)
	}
	b.WriteString("]}")
	return b.String()
}

// TestPerRecordThroughHTTP: per-record calls through the real listener are charged
// ceil(records/10), and the upstream receives the body byte for byte.
func TestPerRecordThroughHTTP(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		method, path string
		body         string
		want         int64
	}{
		{"POST", "/crm/v2/Leads", records(0), 1},
		{"POST", "/crm/v2/Leads", records(1), 1},
		{"POST", "/crm/v3/Leads", records(10), 1},
		{"POST", "/crm/v4/Leads", records(11), 2},
		{"PUT", "/crm/v5/Contacts", records(50), 5},
		{"POST", "/crm/v8/Deals/upsert", records(51), 6},
		{"POST", "/crm/v8/Deals/upsert", records(100), 10},
		{"POST", "/crm/v2/Leads", "", 1},                                  // no body, no records
		{"POST", "/crm/v2/Leads", `{"data":[{"a":1},`, 10},                // truncated: the rule's cost
		{"POST", "/crm/v2/Leads", "\ufeff{\"data\":[1]}", 10},             // not JSON as sent
		{"POST", "/crm/v2/Leads", ` { "data" : [ {} , {} ] } ` + "\n", 1}, // whitespace kept
	}
	for _, tt := range tests {
		before := f.used(t, "acme", 1000)
		resp, body := do(t, tt.method, f.url+tt.path, map[string]string{"X-Api-Key": "acme-key", "Content-Type": "application/json"}, tt.body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", tt.method, tt.path, resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Credits-Charged"); got != strconv.FormatInt(tt.want, 10) {
			t.Errorf("%s %s with %d bytes: charged %s, want %d", tt.method, tt.path, len(tt.body), got, tt.want)
		}
		if got := f.used(t, "acme", 1000) - before; got != tt.want {
			t.Errorf("window grew by %d, want %d", got, tt.want)
		}
		f.up.mu.Lock()
		got := f.up.bodies[len(f.up.bodies)-1]
		f.up.mu.Unlock()
		if got != tt.body {
			t.Errorf("upstream body differs: %d bytes, sent %d", len(got), len(tt.body))
		}
	}
}

// TestChunkedBodyCounted: a body without Content-Length is counted and forwarded whole.
func TestChunkedBodyCounted(t *testing.T) {
	f := newFixture(t, nil)
	body := records(25)
	req, _ := http.NewRequest("POST", f.url+"/crm/v2/Leads", io.MultiReader(strings.NewReader(body[:100]), strings.NewReader(body[100:])))
	req.Header.Set("X-Api-Key", "acme-key")
	req.ContentLength = -1 // chunked
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Credits-Charged") != "3" {
		t.Fatalf("charged %s, want 3", resp.Header.Get("X-Credits-Charged"))
	}
	f.up.mu.Lock()
	defer f.up.mu.Unlock()
	if f.up.bodies[0] != body {
		t.Error("upstream body differs")
	}
}

// postLeads sends an insert of body for acme, with a Content-Length or chunked.
func postLeads(t *testing.T, base, body string, chunked bool) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/crm/v2/Leads", strings.NewReader(body))
	req.Header.Set("X-Api-Key", "acme-key")
	if chunked {
		req.ContentLength = -1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestBodyTooLarge(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxBodyBytes = 1000 })
	for _, chunked := range []bool{false, true} {
		resp := postLeads(t, f.url, records(30), chunked)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 || !strings.Contains(string(b), `"code":"REQUEST_ENTITY_TOO_LARGE"`) || !strings.Contains(string(b), `"max_bytes":1000`) {
			t.Fatalf("chunked=%v: %d %s", chunked, resp.StatusCode, b)
		}
	}
	if f.up.count() != 0 || f.used(t, "acme", 1000) != 0 {
		t.Fatalf("forwarded %d, used %d; want nothing", f.up.count(), f.used(t, "acme", 1000))
	}
	// A fixed-cost call streams its body whatever its size.
	resp, _ := do(t, "POST", f.url+"/crm/bulk/v2/write", map[string]string{"X-Api-Key": "acme-key"}, strings.Repeat("x", 5000))
	if resp.StatusCode != 200 {
		t.Fatalf("fixed-cost call with a large body: %d", resp.StatusCode)
	}
}

func TestTagCosts(t *testing.T) {
	f := newFixture(t, nil)
	ids := func(n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = strconv.Itoa(1000 + i)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		path, body string
		want       string
	}{
		{"/crm/v2/Leads/actions/add_tags?tag_names=a&ids=" + ids(50), "", "1"},
		{"/crm/v2.1/Leads/actions/remove_tags?ids=" + ids(51), "", "2"},
		{"/crm/v3/Leads/actions/add_tags", `{"tags":[{"name":"a"}],"ids":[` + ids(101) + `]}`, "3"},
		{"/crm/v8/Leads/42/actions/add_tags", `{"tags":[{"name":"a"}]}`, "1"},
	}
	for _, tt := range tests {
		resp, _ := do(t, "POST", f.url+tt.path, map[string]string{"X-Api-Key": "acme-key"}, tt.body)
		if got := resp.Header.Get("X-Credits-Charged"); got != tt.want {
			t.Errorf("%s: charged %s, want %s", tt.path[:40], got, tt.want)
		}
	}
}

// TestShadowForwardsLargeBody: shadow mode never rejects, so a body to count over the limit
// is forwarded whole (streamed, also when chunked), uncharged as the 413 would have left it.
func TestShadowForwardsLargeBody(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxBodyBytes = 1000; c.Shadow = true })
	want := records(30)
	for _, chunked := range []bool{false, true} {
		resp := postLeads(t, f.url, want, chunked)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Credits-Charged") != "0" {
			t.Fatalf("chunked=%v: %d, charged %q", chunked, resp.StatusCode, resp.Header.Get("X-Credits-Charged"))
		}
		f.up.mu.Lock()
		got := f.up.bodies[len(f.up.bodies)-1]
		f.up.mu.Unlock()
		if got != want {
			t.Fatalf("chunked=%v: upstream got %d bytes, want the %d sent", chunked, len(got), len(want))
		}
	}
	if f.used(t, "acme", 1000) != 0 {
		t.Fatalf("used %d, want nothing charged", f.used(t, "acme", 1000))
	}
}
