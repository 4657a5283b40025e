package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseAdminTokens(t *testing.T) {
	tests := []struct {
		give    string
		wantLen int
		wantErr string
	}{
		{"", 0, ""},
		{"viewer:v1;admin:a1;super-admin:sha256:" + strings.Repeat("ab", 32), 3, ""},
		{" viewer : v1 ; ", 1, ""},
		{"owner:secret1", 0, "entry 1: unknown role"},
		{"viewer", 0, "entry 1: want role:token"},
		{"viewer:", 0, "entry 1 (viewer)"},
		{"viewer:dup-tok;admin:dup-tok", 0, "listed twice"},
	}
	for _, tt := range tests {
		got, err := ParseAdminTokens(tt.give)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseAdminTokens(%q) error = %v, want %q", tt.give, err, tt.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), "secret1") || strings.Contains(err.Error(), "dup-tok")) {
				t.Errorf("error quotes a token: %v", err)
			}
			continue
		}
		if err != nil || got.Len() != tt.wantLen {
			t.Errorf("ParseAdminTokens(%q) = %d tokens, %v; want %d", tt.give, got.Len(), err, tt.wantLen)
		}
	}
}

func TestExplain(t *testing.T) {
	f := newFixture(t, nil)
	tokens, err := ParseAdminTokens("viewer:view-token;admin:admin-token")
	if err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(NewAdminHandler(AdminConfig{Gateway: f.gw, Tokens: tokens}))
	defer admin.Close()
	tests := []struct {
		name, token, body string
		wantStatus        int
		wantBody          string
	}{
		{"users", "view-token", `{"method":"GET","path":"/crm/v2/users"}`, 200, `{"cost":1,"rule":"users","heavy":false}`},
		{"cvid", "admin-token", `{"path":"/crm/v2/Leads","query":"?cvid=9"}`, 200, `{"cost":3,"rule":"records_cvid","heavy":false}`},
		{"insert", "view-token", `{"method":"POST","path":"/crm/v2/Leads","body":{"data":[{},{},{},{},{},{},{},{},{},{},{}]}}`, 200,
			`{"cost":2,"rule":"insert_records","heavy":true,"records":11,"counted":true}`},
		{"encoded path", "view-token", `{"method":"POST","path":"/crm/bulk/v8/%77rite"}`, 200, `{"cost":500,"rule":"bulk_write_initialize","heavy":true}`},
		{"dot segments", "view-token", `{"method":"POST","path":"/crm/v2/x/%2e%2e/../bulk/v2/write"}`, 200, `{"cost":500,"rule":"bulk_write_initialize","heavy":true}`},
		{"double slash", "view-token", `{"method":"POST","path":"//crm/bulk/v2/write"}`, 200, `{"cost":500,"rule":"bulk_write_initialize","heavy":true}`},
		{"query in path", "view-token", `{"path":"/crm/v2/Leads?cvid=9"}`, 200, `{"cost":3,"rule":"records_cvid","heavy":false}`},
		{"insert without body", "view-token", `{"method":"POST","path":"/crm/v2/Leads"}`, 200,
			`{"cost":1,"rule":"insert_records","heavy":true,"records":0,"counted":true}`},
		{"insert with wrong type", "view-token", `{"method":"POST","path":"/crm/v2/Leads","body":{"data":{}}}`, 200,
			`{"cost":10,"rule":"insert_records","heavy":true,"records":0,"counted":false}`},
		{"tags v2", "view-token", `{"method":"POST","path":"/crm/v2/Leads/actions/add_tags","query":"ids=1,2,3"}`, 200,
			`{"cost":1,"rule":"add_tags","heavy":true,"records":3,"counted":true}`},
		{"no token", "", `{"path":"/x"}`, 401, `"code":"AUTHENTICATION_FAILURE"`},
		{"wrong token", "nope", `{"path":"/x"}`, 401, `"code":"INVALID_TOKEN"`},
		{"not JSON", "view-token", `path=/x`, 400, `"code":"INVALID_DATA"`},
		{"unknown field", "view-token", `{"path":"/x","verb":"GET"}`, 400, `"code":"INVALID_DATA"`},
		{"relative path", "view-token", `{"path":"x"}`, 400, `"code":"INVALID_DATA"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{"Content-Type": "application/json"}
			if tt.token != "" {
				hdr["Authorization"] = "Bearer " + tt.token
			}
			resp, body := do(t, "POST", admin.URL+"/admin/v1/explain", hdr, tt.body)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("%d %s; want %d containing %s", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	// With no tokens configured the admin API refuses everything.
	closed := httptest.NewServer(NewAdminHandler(AdminConfig{Gateway: f.gw}))
	defer closed.Close()
	if resp, _ := do(t, "POST", closed.URL+"/admin/v1/explain", map[string]string{"Authorization": "Bearer view-token"}, `{"path":"/x"}`); resp.StatusCode != 401 {
		t.Fatalf("no tokens configured: status %d", resp.StatusCode)
	}
}

// TestAdminUnknownRouteJSON: paths and methods the admin listener does not serve answer in
// the one JSON error shape; what it serves is untouched.
func TestAdminUnknownRouteJSON(t *testing.T) {
	f := newFixture(t, nil)
	tokens, err := ParseAdminTokens("viewer:view-token")
	if err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(NewAdminHandler(AdminConfig{Gateway: f.gw, Tokens: tokens}))
	defer admin.Close()
	tests := []struct {
		method, path string
		wantStatus   int
		wantBody     string
		wantAllow    string
	}{
		{"GET", "/admin/v1/nothing", 404, `{"code":"NOT_FOUND","details":{},"message":"Nothing is served at this path.","status":"error"}`, ""},
		{"GET", "/favicon.ico", 404, `"code":"NOT_FOUND"`, ""},
		{"DELETE", "/healthz", 405, `{"code":"METHOD_NOT_ALLOWED","details":{},"message":"This method is not allowed here.","status":"error"}`, "GET, HEAD"},
		{"GET", "/admin/v1/explain", 405, `"code":"METHOD_NOT_ALLOWED"`, "POST"},
		{"GET", "/healthz", 200, "ok", ""},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, admin.URL+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantBody) {
			t.Errorf("%s %s = %d %s; want %d with %s", tt.method, tt.path, resp.StatusCode, body, tt.wantStatus, tt.wantBody)
		}
		if tt.wantStatus >= 400 {
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s %s: Content-Type %q, want JSON", tt.method, tt.path, ct)
			}
		}
		if got := resp.Header.Get("Allow"); got != tt.wantAllow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.wantAllow)
		}
	}
}
