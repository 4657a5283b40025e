package gateway

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/internal/configfile"
)

// A routes file (CREDITGATE_ROUTES_FILE), in YAML or JSON:
//
//	routes:
//	  - name: crm                     # required: lower-case letters, digits, _ and -
//	    host: api.example.com         # optional: only calls for this host
//	    path_prefix: /crm             # optional: only paths under it
//	    strip_prefix: true            # optional: forward and price /v8/Leads, not /crm/v8/Leads
//	    upstream: https://crm.internal:8443
//	    cost_table: zoho-crm          # a built-in table, or
//	    cost_table_file: crm.yaml     # a cost table file, relative to this file
//	    preserve_host: false          # optional: default CREDITGATE_PRESERVE_HOST
//	    timeout: 30s                  # optional: default CREDITGATE_UPSTREAM_TIMEOUT
//
// A call goes to the first route that matches it: routes with a host before those without,
// longer prefixes first.

// RouteDefaults is what a route of a routes file takes where it says nothing.
type RouteDefaults struct {
	Costs        *costtable.Table // when it names no cost table
	PreserveHost bool
}

type routesDoc struct {
	Routes []routeEntry `yaml:"routes"`
}

type routeEntry struct {
	Pos           configfile.Pos `yaml:"-" json:"-"`
	Name          string         `yaml:"name"`
	Host          string         `yaml:"host"`
	PathPrefix    string         `yaml:"path_prefix"`
	StripPrefix   bool           `yaml:"strip_prefix"`
	Upstream      string         `yaml:"upstream"`
	CostTable     string         `yaml:"cost_table"`
	CostTableFile string         `yaml:"cost_table_file"`
	PreserveHost  *bool          `yaml:"preserve_host"`
	Timeout       string         `yaml:"timeout"`
}

// LoadRoutesFile reads a routes file; cost table files are found relative to it. Errors
// name the file, and the line and route of each mistake, all of them at once.
func LoadRoutesFile(path string, def RouteDefaults) ([]Route, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	routes, err := ParseRoutes(filepath.Dir(path), data, def)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return routes, nil
}

// ParseRoutes compiles the routes of a routes file's data; dir is where cost table files are
// looked for.
func ParseRoutes(dir string, data []byte, def RouteDefaults) ([]Route, error) {
	var doc routesDoc
	if _, err := configfile.Decode(data, &doc); err != nil {
		return nil, err
	}
	var errs []error
	routes := make([]Route, 0, len(doc.Routes))
	lines := make([]int, len(doc.Routes))
	for i, e := range doc.Routes {
		line := e.Pos.Line
		lines[i] = line
		fail := func(format string, a ...any) {
			errs = append(errs, &routeError{index: i, line: line, name: e.Name, msg: fmt.Sprintf(format, a...)})
		}
		r := Route{Name: e.Name, Host: e.Host, PathPrefix: e.PathPrefix, StripPrefix: e.StripPrefix, PreserveHost: def.PreserveHost}
		if e.PreserveHost != nil {
			r.PreserveHost = *e.PreserveHost
		}
		if e.Upstream == "" {
			fail("upstream is required")
		} else if u, err := url.Parse(e.Upstream); err != nil {
			fail("upstream: %v", err)
		} else {
			r.Upstream = u
		}
		if e.Timeout != "" {
			d, err := time.ParseDuration(e.Timeout)
			if err != nil || d <= 0 {
				fail("timeout must be a positive duration such as 30s, got %q", e.Timeout)
			}
			r.Timeout = d
		}
		switch {
		case e.CostTable != "" && e.CostTableFile != "":
			fail("cost_table and cost_table_file: give one")
		case e.CostTableFile != "":
			p := e.CostTableFile
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			t, err := costtable.LoadFile(p)
			if err != nil {
				fail("cost_table_file: %v", err)
			}
			r.Costs = t
		case e.CostTable != "":
			t, err := costtable.Builtin(e.CostTable)
			if err != nil {
				fail("cost_table: %v", err)
			}
			r.Costs = t
		default:
			r.Costs = def.Costs
		}
		routes = append(routes, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := checkRoutes(routes); err != nil {
		return nil, withRouteLines(err, lines)
	}
	return routes, nil
}

// withRouteLines gives each of checkRoutes's errors the line of its route.
func withRouteLines(err error, lines []int) error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return err
	}
	for _, e := range j.Unwrap() {
		if re, ok := e.(*routeError); ok && re.index < len(lines) {
			re.line = lines[re.index]
		}
	}
	return err
}
