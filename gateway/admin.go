package gateway

import (
	"context"
	"errors"
	"net/http"
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
// the admin API under /admin/v1/, and the usage page under /ui/ (see adminRoutes).
func NewAdminHandler(cfg AdminConfig) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range cfg.adminRoutes() {
		switch {
		case rt.handler == nil, rt.gateway && cfg.Gateway == nil:
			continue
		case rt.role == public:
			mux.Handle(rt.method+" "+rt.path, rt.handler)
		default:
			mux.Handle(rt.method+" "+rt.path, cfg.require(rt.role, rt.handler))
		}
	}
	return jsonMisses(mux)
}

// adminRoute is one route of the admin listener.
type adminRoute struct {
	method, path string
	role         Role         // the least role of the admin token it needs; public: none
	gateway      bool         // served only with a Gateway
	handler      http.Handler // nil: not served
}

// public is the role of the routes that need no admin token.
const public Role = 0

// adminRoutes is every route of the admin listener: method, path, the role it needs and its
// handler, in one table.
func (cfg AdminConfig) adminRoutes() []adminRoute {
	g := cfg.Gateway
	var metrics http.Handler
	if cfg.Metrics != nil {
		metrics = cfg.Metrics.Handler()
	}
	hf := func(f http.HandlerFunc) http.Handler { return f }
	return []adminRoute{
		{"GET", "/healthz", public, false, hf(healthz)},
		{"GET", "/readyz", public, false, hf(cfg.readyz)},
		{"GET", "/metrics", public, false, metrics},
		{"GET", "/ui/", public, false, uiHandler()},
		{"GET", "/{$}", public, false, http.RedirectHandler("/ui/", http.StatusFound)},

		{"POST", "/admin/v1/explain", RoleViewer, true, hf(g.explain)},
		{"GET", "/admin/v1/orgs", RoleViewer, true, hf(g.listOrgs)},
		{"GET", "/admin/v1/orgs/{org}/usage", RoleViewer, true, hf(g.orgUsage)},
		{"GET", "/admin/v1/orgs/{org}/usage/hours", RoleViewer, true, hf(g.orgUsageHours)},
		{"PUT", "/admin/v1/orgs/{org}/addon", RoleAdmin, true, hf(g.putAddon)},
		{"DELETE", "/admin/v1/orgs/{org}/addon", RoleAdmin, true, hf(g.deleteAddon)},
		{"GET", "/admin/v1/orgs/{org}/billing", RoleViewer, true, hf(g.billingReport)},
		{"GET", "/admin/v1/orgs/{org}/notices", RoleViewer, true, hf(g.getNotices)},
		{"PUT", "/admin/v1/orgs/{org}/notices", RoleAdmin, true, hf(g.putNotices)},
		{"DELETE", "/admin/v1/orgs/{org}/notices", RoleAdmin, true, hf(g.deleteNotices)},
		{"GET", "/admin/v1/quote", RoleViewer, true, hf(g.quote)},
	}
}

// healthz answers that the process is up.
func healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz answers 503 while the gateway drains for shutdown, and when the credit store is
// unavailable (its breaker is open, or Ready fails) under CREDITGATE_FAIL_MODE=closed. Under
// fail-open it answers 200 with a "degraded" body instead: every replica shares the store, so
// taking them all out of a load balancer would turn "fail open" into "fail everything".
func (cfg AdminConfig) readyz(w http.ResponseWriter, r *http.Request) {
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
func (cfg AdminConfig) require(min Role, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := cfg.Tokens.authorize(r, min); err != nil {
			writeError(w, err, 0)
			return
		}
		h.ServeHTTP(w, r)
	})
}
