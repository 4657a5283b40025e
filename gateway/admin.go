package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// AdminConfig holds what the admin listener serves.
type AdminConfig struct {
	// Ready reports nil when the gateway can serve (e.g. Redis answers and holds the scripts);
	// nil means always ready.
	Ready func(context.Context) error
	// Gateway is the proxy whose cost table explain uses.
	Gateway *Gateway
	// Tokens authorize the admin API; with none, every admin API call is refused.
	Tokens *AdminTokens
	// Metrics are served at /metrics; nil serves none.
	Metrics *Metrics
}

// NewAdminHandler serves the admin listener: /healthz (the process is up), /readyz, /metrics,
// the admin API under /admin/v1/, and the usage page under /ui/.
//
// /readyz answers 503 while the gateway drains for shutdown, and when the credit store is
// unavailable (its breaker is open, or Ready fails) under CREDITGATE_FAIL_MODE=closed. Under
// fail-open it answers 200 with a "degraded" body instead: every replica shares the store, so
// taking them all out of a load balancer would turn "fail open" into "fail everything".
func NewAdminHandler(cfg AdminConfig) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		g := cfg.Gateway
		if g != nil && g.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: shutting down\n"))
			return
		}
		var storeErr error
		if g != nil && g.BreakerOpen() {
			storeErr = errBreakerOpen // known dead: no wait on it here either
		} else if cfg.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			storeErr = cfg.Ready(ctx)
			cancel()
		}
		switch {
		case storeErr == nil:
			_, _ = w.Write([]byte("ready\n"))
		case g != nil && g.cfg.FailLocal && !g.cfg.Shadow:
			_, _ = w.Write([]byte("ready (degraded): credit store unavailable, each gateway limits to its share (fail mode local)\n"))
		case g != nil && (g.cfg.FailOpen || g.cfg.Shadow):
			_, _ = w.Write([]byte("ready (degraded): credit store unavailable, calls pass uncharged (fail mode open)\n"))
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: credit store unavailable\n"))
		}
	})
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics.Handler())
	}
	if cfg.Gateway != nil {
		mux.Handle("POST /admin/v1/explain", cfg.require(RoleViewer, cfg.Gateway.explain))
		cfg.billingRoutes(mux)
	}
	registerUsage(mux, cfg)
	return jsonMisses(mux)
}

// errRouteNotFound is a path the admin listener does not serve.
var errRouteNotFound = errors.New("route not found")

// jsonMisses answers the paths and methods mux does not serve in the one JSON error shape
// (the one JSON error shape, see errors.go) rather than the mux's plain text. The mux still decides 404 or 405 and sets Allow.
func jsonMisses(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(&missWriter{ResponseWriter: w}, r)
	})
}

// missWriter turns the mux's 404 and 405 answers into writeError's; it drops their text.
type missWriter struct {
	http.ResponseWriter
	replaced bool
}

func (m *missWriter) WriteHeader(code int) {
	switch code {
	case http.StatusNotFound:
		m.replaced = true
		writeError(m.ResponseWriter, errRouteNotFound, 0)
	case http.StatusMethodNotAllowed:
		m.replaced = true
		writeError(m.ResponseWriter, errMethodNotAllowed, 0)
	default:
		m.ResponseWriter.WriteHeader(code)
	}
}

func (m *missWriter) Write(p []byte) (int, error) {
	if m.replaced {
		return len(p), nil
	}
	return m.ResponseWriter.Write(p)
}

// require wraps an admin API handler with the token check.
func (cfg AdminConfig) require(min Role, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := cfg.Tokens.authorize(r, min); err != nil {
			writeError(w, err, 0)
			return
		}
		h(w, r)
	})
}

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
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(resp)
}
