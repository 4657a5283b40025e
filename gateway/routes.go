package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/creditgate/creditgate/costtable"
)

// Route sends the calls it matches to one upstream, priced by its own cost table. Every
// route debits the same window of the calling org: an org's credits are shared across routes.
type Route struct {
	// Name identifies the route: lower-case letters, digits, '_' and '-'. Usage by rule, the
	// rule label of metrics and logs name a rule of a named route as "name/rule", so usage can
	// be read by route. Empty only for the one route of Config.Upstream.
	Name string
	// Host matches the host the client asked for (Host, without its port), in any case; empty
	// matches any host.
	Host string
	// PathPrefix matches paths that start with it at a segment boundary ("/crm" matches
	// "/crm" and "/crm/v8/Leads", not "/crmx"); empty or "/" matches any path.
	PathPrefix string
	// StripPrefix removes PathPrefix from the path before the call is priced and forwarded:
	// the route's cost table is written for the upstream's own paths.
	StripPrefix bool
	// Upstream is the API the route forwards to (required).
	Upstream *url.URL
	// Costs prices the route's calls (required).
	Costs *costtable.Table
	// PreserveHost sends the client's Host upstream instead of the upstream URL's.
	PreserveHost bool
	// Timeout bounds the wait for the upstream's response headers with the gateway's own
	// transport (zero: Config.UpstreamTimeout). A Config.Transport of another kind is used
	// as is.
	Timeout time.Duration
}

// route is a Route ready for the request path.
type route struct {
	Route
	prefix string // PathPrefix without its trailing slash; "" matches any path
	proxy  *httputil.ReverseProxy
	// names are the rules' names as usage, metrics and logs see them ("route/rule"); nil for
	// an unnamed route, whose rules go by their own names.
	names map[string]string
	// from is the upstream's base URL as its absolute redirects name it.
	from string
	// settles: a rule of the route's table settles its cost from the answer, so its calls
	// may carry a settling (settle.go); the others skip looking for one.
	settles bool
}

// routeTable is the routes in force, in the order they are tried: routes with a host first,
// then longer prefixes first. Swapped whole on reload, read without locks.
type routeTable struct {
	routes []*route
	single bool // the one route of Config.Upstream
}

// match returns the route of a request for host (as the client sent it) and the cleaned
// path, or nil.
func (rt *routeTable) match(host, path string) *route {
	if rt.single {
		return rt.routes[0]
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	for _, r := range rt.routes {
		if r.Host != "" && !strings.EqualFold(r.Host, host) {
			continue
		}
		if r.prefix == "" || hasPathPrefix(path, r.prefix) {
			return r
		}
	}
	return nil
}

// hasPathPrefix reports whether path starts with prefix at a segment boundary.
func hasPathPrefix(path, prefix string) bool {
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// ruleName is the name rule goes by in usage, metrics and logs.
func (r *route) ruleName(rule *costtable.Rule) string {
	if n, ok := r.names[rule.Name]; ok {
		return n
	}
	return rule.Name
}

// upstreamPath is the path the route forwards and prices for a path it matched: without
// the prefix if the route strips it.
func (r *route) upstreamPath(path string) string {
	if !r.StripPrefix || r.prefix == "" {
		return path
	}
	path = strings.TrimPrefix(path, r.prefix)
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	return path
}

// checkRoutes reports what is wrong with routes, all of it at once.
func checkRoutes(routes []Route) error {
	var errs []error
	names := map[string]int{}
	places := map[string]int{}
	for i, r := range routes {
		fail := func(format string, a ...any) {
			errs = append(errs, &routeError{index: i, name: r.Name, msg: fmt.Sprintf(format, a...)})
		}
		if err := checkRouteName(r.Name); err != nil {
			fail("%v", err)
		} else if j, ok := names[r.Name]; ok {
			fail("name already used by routes[%d]", j)
		} else {
			names[r.Name] = i
		}
		switch {
		case r.Upstream == nil:
			fail("no upstream")
		case r.Upstream.Scheme != "http" && r.Upstream.Scheme != "https" || r.Upstream.Host == "":
			fail("upstream must be an absolute http:// or https:// URL")
		}
		if r.Costs == nil {
			fail("no cost table")
		}
		if r.Timeout < 0 {
			fail("timeout must not be negative")
		}
		if strings.ContainsAny(r.Host, "/:@ ") {
			fail("host must be a host name without port, got %q", r.Host)
		}
		if r.PathPrefix != "" && (!strings.HasPrefix(r.PathPrefix, "/") || cleanedPath(r.PathPrefix) != r.PathPrefix ||
			strings.ContainsAny(r.PathPrefix, "?#*{}")) {
			fail("path_prefix must be a clean path starting with /, got %q", r.PathPrefix)
		}
		if r.StripPrefix && strings.TrimSuffix(r.PathPrefix, "/") == "" {
			fail("strip_prefix needs a path_prefix")
		}
		place := strings.TrimSuffix(strings.ToLower(r.Host), ".") + " " + strings.TrimSuffix(r.PathPrefix, "/")
		if j, ok := places[place]; ok {
			fail("same host and path_prefix as routes[%d]: it would never match", j)
		} else {
			places[place] = i
		}
	}
	if len(routes) == 0 {
		errs = append(errs, errors.New("no routes"))
	}
	return errors.Join(errs...)
}

// routeError is a mistake in one route; line is its line in a routes file (0: none).
type routeError struct {
	index, line int
	name, msg   string
}

func (e *routeError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("line %d: routes[%d] %q: %s", e.line, e.index, e.name, e.msg)
	}
	return fmt.Sprintf("routes[%d] %q: %s", e.index, e.name, e.msg)
}

func checkRouteName(name string) error {
	if name == "" {
		return errors.New("name is empty")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return errors.New("name must be lower-case letters, digits, _ and -")
		}
	}
	return nil
}

// SetRoutes swaps the routes for new requests; requests in flight finish on the route they
// started with. It checks them first and keeps the running ones if any is wrong.
func (g *Gateway) SetRoutes(routes []Route) error {
	if err := checkRoutes(routes); err != nil {
		return err
	}
	g.setRoutes(routes, false)
	return nil
}

// SetCosts swaps the cost table of the gateway's one route (Config.Upstream) for new
// requests; requests in flight keep the one they read. It does nothing on a gateway whose
// routes came from SetRoutes.
func (g *Gateway) SetCosts(t *costtable.Table) {
	g.routesMu.Lock()
	defer g.routesMu.Unlock()
	old := g.routes.Load()
	if old != nil && !old.single {
		g.log.Warn("SetCosts ignored: the routes name their cost tables")
		return
	}
	g.setRoutesLocked([]Route{{Upstream: g.cfg.Upstream, Costs: t, PreserveHost: g.cfg.PreserveHost}}, true)
}

func (g *Gateway) setRoutes(routes []Route, single bool) {
	g.routesMu.Lock()
	defer g.routesMu.Unlock()
	g.setRoutesLocked(routes, single)
}

func (g *Gateway) setRoutesLocked(routes []Route, single bool) {
	rt := &routeTable{single: single}
	var names []string
	for _, r := range routes {
		c := &route{Route: r, prefix: strings.TrimSuffix(r.PathPrefix, "/")}
		c.Host = strings.TrimSuffix(c.Host, ".")
		c.from = r.Upstream.Scheme + "://" + r.Upstream.Host + strings.TrimSuffix(r.Upstream.Path, "/")
		c.settles = slices.ContainsFunc(r.Costs.Rules(), func(x costtable.Rule) bool { return x.Response != nil })
		all := ruleNames(r.Costs)
		if r.Name != "" {
			c.names = make(map[string]string, len(all))
			for i, name := range all {
				all[i] = r.Name + "/" + name
				c.names[name] = all[i]
			}
		}
		names = append(names, all...)
		c.proxy = &httputil.ReverseProxy{
			Rewrite:        func(pr *httputil.ProxyRequest) { g.rewrite(c, pr) },
			Transport:      g.transportFor(r.Timeout),
			ModifyResponse: func(resp *http.Response) error { return g.modifyResponse(c, resp) },
			ErrorHandler:   g.proxyError,
			BufferPool:     g.buffers,
			ErrorLog:       g.proxyLog,
		}
		rt.routes = append(rt.routes, c)
	}
	slices.SortStableFunc(rt.routes, func(a, b *route) int {
		if (a.Host == "") != (b.Host == "") {
			if a.Host != "" {
				return -1
			}
			return 1
		}
		return len(b.prefix) - len(a.prefix)
	})
	g.metrics.setRules(names...)
	g.routes.Store(rt)
}

// transportFor returns the upstream transport for a route whose response-header timeout is
// timeout (zero: Config.UpstreamTimeout). Routes with the same timeout share one transport,
// and so its pooled connections, across reloads.
func (g *Gateway) transportFor(timeout time.Duration) http.RoundTripper {
	if g.cfg.Transport != nil {
		return g.cfg.Transport
	}
	if timeout <= 0 {
		timeout = g.cfg.UpstreamTimeout
	}
	if t, ok := g.transports[timeout]; ok {
		return t
	}
	t := NewUpstreamTransport(timeout, g.cfg.UpstreamTLS, !g.cfg.UpstreamHTTP1Only)
	g.transports[timeout] = t
	return t
}

// routeFor finds the route of r, with its prefix stripped if the route says so; nil when no
// route matches, and r is left as it was.
func (g *Gateway) routeFor(r *http.Request) *route {
	rt := g.routes.Load().match(r.Host, r.URL.Path)
	if rt != nil {
		if p := rt.upstreamPath(r.URL.Path); p != r.URL.Path {
			raw := r.URL.RawPath // escapes such as %2F kept when the prefix is as sent
			if raw != "" && hasPathPrefix(raw, rt.prefix) {
				raw = rt.upstreamPath(raw)
			} else {
				raw = ""
			}
			r.URL.Path, r.URL.RawPath = p, raw
		}
	}
	return rt
}
