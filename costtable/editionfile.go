package costtable

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Editions is an immutable set of editions by configuration name. The zero value holds none;
// BuiltinEditions holds the reference's, and ParseEditions overrides or adds to them.
type Editions struct{ m map[string]Edition }

// BuiltinEditions returns the built-in editions (the CRM, Desk and monthly tables).
func BuiltinEditions() Editions { return Editions{m: editions} }

// Lookup returns the edition with this configuration name, ignoring case.
func (s Editions) Lookup(name string) (Edition, bool) {
	name = strings.ToLower(name)
	e, ok := s.m[name]
	if !ok {
		return Edition{}, false
	}
	e.Name = name
	return e, true
}

// Names returns the configuration names of all editions, sorted.
func (s Editions) Names() []string { return slices.Sorted(maps.Keys(s.m)) }

// An editions file (YAML, or JSON, which is read as YAML) changes or adds editions:
//
//	editions:
//	  - name: crm-professional   # a built-in name: the fields given replace the built-in's
//	    per_seat: 600
//	  - name: partner-gold       # a new name: kind and base are required
//	    kind: crm                # crm (per user, capped by max), desk (per agent) or monthly
//	    base: 20000
//	    per_seat: 800
//	    max: 750000              # 0 or absent: no maximum
//	    concurrency: 20          # default cap on calls in flight (0: none)
//	    addons: true             # may buy add-on credits
//
// Editions not named keep their built-in figures. Problems are reported together, each with
// its line and the edition's name.

var editionFields = []string{"name", "kind", "base", "per_seat", "max", "concurrency", "addons"}

// LoadEditionsFile reads an editions file over the built-in editions.
func LoadEditionsFile(path string) (Editions, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Editions{}, err
	}
	s, err := ParseEditions(data)
	if err != nil {
		return Editions{}, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return s, nil
}

// ParseEditions reads an editions file's YAML or JSON data over the built-in editions.
func ParseEditions(data []byte) (Editions, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Editions{}, fmt.Errorf("not valid YAML or JSON: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return Editions{}, errors.New("line 1: want a mapping with the field editions")
	}
	root := doc.Content[0]
	var errs []error
	fail := func(n *yaml.Node, format string, args ...any) {
		errs = append(errs, fmt.Errorf("line %d: "+format, append([]any{n.Line}, args...)...))
	}
	out := maps.Clone(editions)
	seen := map[string]int{}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "editions" {
			fail(k, "unknown field %q (known fields: editions)", k.Value)
			continue
		}
		list = v
	}
	switch {
	case list == nil:
		errs = append(errs, errors.New("line 1: no editions field"))
	case list.Kind != yaml.SequenceNode:
		fail(list, "editions: want a list of editions")
	default:
		for j, item := range list.Content {
			name, e, ok := decodeEdition(item, j, fail)
			if !ok {
				continue
			}
			if prev, dup := seen[name]; dup {
				fail(item, "edition %q: named twice (also on line %d)", name, prev)
				continue
			}
			seen[name] = item.Line
			out[name] = e
		}
	}
	if len(errs) > 0 {
		return Editions{}, errors.Join(errs...)
	}
	return Editions{m: out}, nil
}

// decodeEdition reads one edition mapping: over the built-in of the same name, or new.
func decodeEdition(n *yaml.Node, index int, fail func(*yaml.Node, string, ...any)) (string, Edition, bool) {
	where := fmt.Sprintf("editions[%d]", index)
	if n.Kind != yaml.MappingNode {
		fail(n, "%s: want a mapping of edition fields", where)
		return "", Edition{}, false
	}
	var name string
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" {
			if err := decodeScalar(n.Content[i+1], &name); err != nil {
				fail(n.Content[i+1], "%s: name: %v", where, err)
				return "", Edition{}, false
			}
		}
	}
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		fail(n, "%s: name: required", where)
		return "", Edition{}, false
	}
	if strings.ContainsAny(name, " ,;:|=\t") {
		fail(n, "%s: name: %q has a space or one of , ; : | =", where, name)
		return "", Edition{}, false
	}
	where = fmt.Sprintf("edition %q", name)
	e, builtin := editions[name]
	ok := true
	set := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		set[k.Value] = true
		var err error
		switch k.Value {
		case "name":
		case "kind":
			var s string
			if err = decodeScalar(v, &s); err == nil {
				switch strings.ToLower(s) {
				case "crm":
					e.Kind = KindCRM
				case "desk":
					e.Kind = KindDesk
				case "monthly":
					e.Kind = KindMonthly
				default:
					err = fmt.Errorf("want crm, desk or monthly, got %q", s)
				}
			}
		case "base":
			err = decodeCount(v, &e.Base)
		case "per_seat":
			err = decodeCount(v, &e.PerSeat)
		case "max":
			err = decodeCount(v, &e.Max)
		case "concurrency":
			err = decodeCount(v, &e.Concurrency)
		case "addons":
			err = decodeScalar(v, &e.AddOns)
		default:
			fail(k, "%s: unknown field %q (known fields: %s)", where, k.Value, strings.Join(editionFields, ", "))
			ok = false
			continue
		}
		if err != nil {
			fail(v, "%s: %s: %v", where, k.Value, err)
			ok = false
		}
	}
	if !builtin {
		for _, f := range []string{"kind", "base"} {
			if !set[f] {
				fail(n, "%s: %s: required for an edition that is not built in", where, f)
				ok = false
			}
		}
	}
	if ok && e.Max > 0 && e.Max < e.Base {
		fail(n, "%s: max (%d) is below base (%d)", where, e.Max, e.Base)
		ok = false
	}
	return name, e, ok
}

// decodeCount reads a non-negative integer no larger than MaxAllotment.
func decodeCount(v *yaml.Node, dst *int64) error {
	if err := decodeScalar(v, dst); err != nil {
		return err
	}
	if *dst < 0 || *dst > MaxAllotment {
		return fmt.Errorf("want 0 to %d, got %d", MaxAllotment, *dst)
	}
	return nil
}
