package costtable

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/creditgate/creditgate/internal/configfile"
	"go.yaml.in/yaml/v3"
)

// A cost table file (YAML, or JSON with the same fields) looks like this:
//
//	name: orders-api            # optional; defaults to the file's base name
//	rules:
//	  - name: list_orders
//	    method: GET
//	    path: /v1/orders
//	    cost: 1
//	  - name: create_orders
//	    method: POST
//	    path: /v1/orders
//	    per: 25                 # 1 credit per 25 records…
//	    count_body: items       # …of the body's top-level "items" array
//	    cost: 40                # charged when the body cannot be counted
//	    heavy: true
//	  - name: search_orders
//	    method: GET
//	    path: /v1/orders/search
//	    cost: 5                 # reserved when the call is admitted…
//	    response:               # …and settled on the answer: 1 credit per 100 of the
//	      count: results        # "results" array's records, at most 10
//	      per: 100              # (or number: a.b, a number at a path; or header: X-Cost)
//	      max: 10
//	default:                    # optional; defaults to {name: default, cost: 1}
//	  name: default
//	  cost: 1
//
// Rule fields are those of Rule in snake_case: name, method, path, query, cost, heavy, per,
// count_body, count_query, response (count, number, header, per, max). Unknown fields, wrong types and every problem New finds are
// reported together, each with its line.

// tableFile is a cost table file as written.
type tableFile struct {
	Name    *string    `yaml:"name"`
	Rules   []ruleFile `yaml:"rules"` // nil: not given
	Default *ruleFile  `yaml:"default"`
}

// ruleFile is a rule as written.
type ruleFile struct {
	Pos        configfile.Pos `yaml:"-"`
	Name       string         `yaml:"name"`
	Method     string         `yaml:"method"`
	Path       string         `yaml:"path"`
	Query      string         `yaml:"query"`
	Cost       int64          `yaml:"cost"`
	Heavy      bool           `yaml:"heavy"`
	Per        int64          `yaml:"per"`
	CountBody  string         `yaml:"count_body"`
	CountQuery string         `yaml:"count_query"`
	Response   *responseFile  `yaml:"response"`
}

// responseFile is a rule's response block as written. Per and Max are pointers so that a 0
// written is told from one left out.
type responseFile struct {
	Count  string `yaml:"count"`
	Number string `yaml:"number"`
	Header string `yaml:"header"`
	Per    *int64 `yaml:"per"`
	Max    *int64 `yaml:"max"`
}

func (r *ruleFile) rule() Rule {
	rule := Rule{Name: r.Name, Method: r.Method, Path: r.Path, Query: r.Query, Cost: r.Cost, Heavy: r.Heavy,
		Per: r.Per, CountBody: r.CountBody, CountQuery: r.CountQuery}
	if s := r.Response; s != nil {
		rule.Response = &Response{Count: s.Count, Number: s.Number, Header: s.Header}
		if s.Per != nil {
			rule.Response.Per = *s.Per
		}
		if s.Max != nil {
			rule.Response.Max = max(*s.Max, 0) // one below 1 is reported by responseErrors
		}
	}
	return rule
}

// LoadFile reads and compiles the cost table file at path.
func LoadFile(path string) (*Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	t, err := Parse(base, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return t, nil
}

// Parse compiles a cost table from YAML or JSON data; name is used when the data names none.
// Errors name the line and the rule.
func Parse(name string, data []byte) (*Table, error) {
	var f tableFile
	root, err := configfile.Decode(data, &f)
	if err := configfile.RootError(err, "line 1: want a mapping with name, rules and default"); err != nil {
		return nil, err
	}
	errs := configfile.LineErrors(err, func(p configfile.Path) (string, int) {
		switch {
		case len(p) >= 2 && p[0].Field == "rules" && p[1].Field == "" && p[1].Index < len(f.Rules):
			return ruleWhere("rules["+strconv.Itoa(p[1].Index)+"]", &f.Rules[p[1].Index], root, p[:2]), 2
		case len(p) >= 1 && p[0].Field == "default" && f.Default != nil:
			return ruleWhere("default", f.Default, root, p[:1]), 1
		}
		return "", 0
	})
	if f.Rules == nil && configfile.Lookup(root, configfile.Step{Field: "rules"}) == nil {
		errs = append(errs, errors.New("line 1: no rules: every call would cost the default"))
	}
	errs = append(errs, responseErrors(f.Rules)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if f.Name != nil {
		name = *f.Name
	}
	rules := make([]Rule, len(f.Rules))
	for i := range f.Rules {
		rules[i] = f.Rules[i].rule()
	}
	fallback, fbLine := Rule{Name: "default", Cost: 1}, 0
	if f.Default != nil {
		fallback, fbLine = f.Default.rule(), f.Default.Pos.Line
	}

	t, err := New(name, rules, fallback)
	if err == nil {
		return t, nil
	}
	// Put each rule's line in front of New's errors.
	var out []error
	for _, e := range unjoin(err) {
		var re *RuleError
		if errors.As(e, &re) {
			line := fbLine
			if re.Index >= 0 && re.Index < len(f.Rules) {
				line = f.Rules[re.Index].Pos.Line
			}
			if line > 0 {
				out = append(out, fmt.Errorf("line %d: %w", line, e))
				continue
			}
		}
		out = append(out, e)
	}
	return nil, errors.Join(out...)
}

// responseErrors reports what only the file can tell of response blocks: a max written below
// 1 (to New, a max of 0 means no cap).
func responseErrors(rules []ruleFile) []error {
	var errs []error
	for i := range rules {
		if s := rules[i].Response; s != nil && s.Max != nil && *s.Max < 1 {
			errs = append(errs, fmt.Errorf("line %d: rules[%d] %q: response: max must be at least 1, got %d",
				rules[i].Pos.Line, i, rules[i].Name, *s.Max))
		}
	}
	return errs
}

// ruleWhere names a rule in an error: where it is, and its name if the file gives one.
func ruleWhere(where string, r *ruleFile, root *yaml.Node, path configfile.Path) string {
	if configfile.Lookup(root, append(path[:len(path):len(path)], configfile.Step{Field: "name"})...) != nil {
		where += fmt.Sprintf(" %q", r.Name)
	}
	return where
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return slices.Clone(j.Unwrap())
	}
	return []error{err}
}
