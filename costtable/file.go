package costtable

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A cost table file (YAML, or JSON, which is read as YAML) looks like this:
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
//	default:                    # optional; defaults to {name: default, cost: 1}
//	  name: default
//	  cost: 1
//
// Rule fields are those of Rule in snake_case: name, method, path, query, cost, heavy, per,
// count_body, count_query. Unknown fields, wrong types and every problem New finds are
// reported together, each with its line.

var (
	tableFields = []string{"name", "rules", "default"}
	ruleFields  = []string{"name", "method", "path", "query", "cost", "heavy", "per", "count_body", "count_query"}
)

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
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not valid YAML or JSON: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("line 1: want a mapping with name, rules and default")
	}
	root := doc.Content[0]

	var (
		errs     []error
		rules    []Rule
		lines    []int // line of each rule
		fallback = Rule{Name: "default", Cost: 1}
		fbLine   int
		sawRules bool
	)
	fail := func(n *yaml.Node, format string, args ...any) {
		errs = append(errs, fmt.Errorf("line %d: "+format, append([]any{n.Line}, args...)...))
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "name":
			if err := v.Decode(&name); err != nil || v.Kind != yaml.ScalarNode {
				fail(v, "name: want a string")
			}
		case "rules":
			sawRules = true
			if v.Kind != yaml.SequenceNode {
				fail(v, "rules: want a list of rules")
				continue
			}
			for j, item := range v.Content {
				r, ok := decodeRule(item, fmt.Sprintf("rules[%d]", j), fail)
				if ok {
					rules = append(rules, r)
					lines = append(lines, item.Line)
				}
			}
		case "default":
			if r, ok := decodeRule(v, "default", fail); ok {
				fallback, fbLine = r, v.Line
			}
		default:
			fail(k, "unknown field %q (known fields: %s)", k.Value, strings.Join(tableFields, ", "))
		}
	}
	if !sawRules {
		errs = append(errs, errors.New("line 1: no rules: every call would cost the default"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
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
			if re.Index >= 0 && re.Index < len(lines) {
				line = lines[re.Index]
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

// decodeRule reads one rule mapping, reporting unknown fields and wrong types through fail.
func decodeRule(n *yaml.Node, where string, fail func(*yaml.Node, string, ...any)) (Rule, bool) {
	if n.Kind != yaml.MappingNode {
		fail(n, "%s: want a mapping of rule fields", where)
		return Rule{}, false
	}
	var r Rule
	ok := true
	// The name first, so that messages about the other fields can name the rule.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" {
			_ = n.Content[i+1].Decode(&r.Name)
			where += fmt.Sprintf(" %q", r.Name)
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "name":
			err = decodeScalar(v, &r.Name)
		case "method":
			err = decodeScalar(v, &r.Method)
		case "path":
			err = decodeScalar(v, &r.Path)
		case "query":
			err = decodeScalar(v, &r.Query)
		case "cost":
			err = decodeScalar(v, &r.Cost)
		case "heavy":
			err = decodeScalar(v, &r.Heavy)
		case "per":
			err = decodeScalar(v, &r.Per)
		case "count_body":
			err = decodeScalar(v, &r.CountBody)
		case "count_query":
			err = decodeScalar(v, &r.CountQuery)
		default:
			fail(k, "%s: unknown field %q (known fields: %s)", where, k.Value, strings.Join(ruleFields, ", "))
			ok = false
			continue
		}
		if err != nil {
			fail(v, "%s: %s: %v", where, k.Value, err)
			ok = false
		}
	}
	return r, ok
}

func decodeScalar[T string | int64 | bool](v *yaml.Node, dst *T) error {
	if v.Kind != yaml.ScalarNode {
		return errors.New("want a single value")
	}
	if err := v.Decode(dst); err != nil {
		var zero T
		switch any(zero).(type) {
		case int64:
			return fmt.Errorf("want an integer, got %q", v.Value)
		case bool:
			return fmt.Errorf("want true or false, got %q", v.Value)
		}
		return err
	}
	return nil
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return slices.Clone(j.Unwrap())
	}
	return []error{err}
}
