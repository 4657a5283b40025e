package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// explainRequest is the body of POST /admin/v1/explain.
type explainRequest struct {
	Host   string          `json:"host"` // routes by host: the host the client would ask for
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Query  string          `json:"query"`
	Body   json.RawMessage `json:"body"`
}

// explainResponse answers what a call would cost and which rule priced it.
type explainResponse struct {
	Cost    int64  `json:"cost"`
	Rule    string `json:"rule"`
	Route   string `json:"route,omitempty"` // with routes: the route that would forward the call
	Heavy   bool   `json:"heavy"`
	Records *int64 `json:"records,omitempty"` // per-record rules: the records counted
	Counted *bool  `json:"counted,omitempty"` // per-record rules: false when the rule's cost was charged instead
	// Response is set for a rule that settles the cost from the answer: cost is then the
	// reservation debited on admission, settled as this says.
	Response *explainResponseRule `json:"response,omitempty"`
}

// explainResponseRule is a rule's response block, as the cost table file writes it.
type explainResponseRule struct {
	Count  string `json:"count,omitempty"`
	Number string `json:"number,omitempty"`
	Header string `json:"header,omitempty"`
	Per    int64  `json:"per,omitempty"`
	Max    int64  `json:"max,omitempty"`
}

// explain answers "what would this request cost, and which rule matched", with the table in
// use right now and the same counting as the request path.
func (g *Gateway) explain(w http.ResponseWriter, r *http.Request) {
	var req explainRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes+64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, &explainError{"The body must be JSON: {\"method\":…,\"path\":…,\"query\":…,\"body\":…} (" + err.Error() + ")."}, 0)
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, &explainError{"The body must hold one JSON object."}, 0)
		return
	}
	if req.Method == "" {
		req.Method = http.MethodGet
	}
	if !strings.HasPrefix(req.Path, "/") {
		writeError(w, &explainError{`"path" must start with "/".`}, 0)
		return
	}
	req.Query = strings.TrimPrefix(req.Query, "?")
	// Priced as the proxy prices it: the path decoded (%77rite is write), then cleaned.
	u, err := url.ParseRequestURI(req.Path) // as the server reads a request line: "//crm/…" is a path
	if err != nil || u.Path == "" {
		writeError(w, &explainError{`"path" must be a URL path, as sent in the request line.`}, 0)
		return
	}
	query := req.Query
	if query == "" {
		query = u.RawQuery
	}
	path := cleanedPath(u.Path)
	rt := g.routes.Load().match(req.Host, path)
	if rt == nil {
		writeError(w, errNoRoute, 0)
		return
	}
	rule := rt.Costs.Match(req.Method, rt.upstreamPath(path), query)
	var body []byte
	if rule.CountsBody() && len(req.Body) > 0 && string(req.Body) != "null" {
		body = req.Body
	}
	cost, records, counted := rule.Charge(query, body)
	resp := explainResponse{Cost: cost, Rule: rule.Name, Route: rt.Name, Heavy: rule.Heavy}
	if rule.Per > 0 {
		resp.Records, resp.Counted = &records, &counted
	}
	if s := rule.Response; s != nil {
		resp.Response = &explainResponseRule{Count: s.Count, Number: s.Number, Header: s.Header, Per: s.Per, Max: s.Max}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(resp)
}
