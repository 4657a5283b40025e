package plans

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/creditgate/creditgate/internal/configfile"
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

// An editions file (YAML, or JSON with the same fields) changes or adds editions:
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

// editionsFile is an editions file as written.
type editionsFile struct {
	Editions []editionFile `yaml:"editions"` // nil: not given
}

// editionFile is an edition as written; nil fields are not given.
type editionFile struct {
	Pos         configfile.Pos `yaml:"-"`
	Name        *string        `yaml:"name"`
	Kind        *string        `yaml:"kind"`
	Base        *int64         `yaml:"base"`
	PerSeat     *int64         `yaml:"per_seat"`
	Max         *int64         `yaml:"max"`
	Concurrency *int64         `yaml:"concurrency"`
	AddOns      *bool          `yaml:"addons"`
}

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
	var f editionsFile
	root, err := configfile.Decode(data, &f)
	if err := configfile.RootError(err, "line 1: want a mapping with the field editions"); err != nil {
		return Editions{}, err
	}
	names := make([]string, len(f.Editions)) // of each edition, once valid
	errs := configfile.LineErrors(err, func(p configfile.Path) (string, int) {
		if len(p) >= 2 && p[0].Field == "editions" && p[1].Field == "" && p[1].Index < len(names) {
			return editionWhere(p[1].Index, f.Editions[p[1].Index].Name), 2
		}
		return "", 0
	})
	if f.Editions == nil && configfile.Lookup(root, configfile.Step{Field: "editions"}) == nil {
		errs = append(errs, errors.New("line 1: no editions field"))
	}
	out := maps.Clone(editions)
	seen := map[string]int{}
	for j := range f.Editions {
		ef := &f.Editions[j]
		fail := func(line int, format string, args ...any) {
			errs = append(errs, fmt.Errorf("line %d: %s: "+format, append([]any{line, editionWhere(j, ef.Name)}, args...)...))
		}
		at := func(field string) int {
			if n := configfile.Lookup(root, configfile.Step{Field: "editions"}, configfile.Step{Index: j}, configfile.Step{Field: field}); n != nil {
				return n.Line
			}
			return ef.Pos.Line
		}
		name, e, ok := checkEdition(ef, fail, at)
		if !ok {
			continue
		}
		if prev, dup := seen[name]; dup {
			fail(ef.Pos.Line, "named twice (also on line %d)", prev)
			continue
		}
		seen[name] = ef.Pos.Line
		out[name] = e
	}
	if len(errs) > 0 {
		return Editions{}, errors.Join(errs...)
	}
	return Editions{m: out}, nil
}

// editionName returns the configuration name written, lower-cased, and whether it is one.
func editionName(name *string) (string, bool) {
	if name == nil {
		return "", false
	}
	n := strings.ToLower(strings.TrimSpace(*name))
	return n, n != "" && !strings.ContainsAny(n, " ,;:|=\t")
}

// editionWhere names the edition at index j in an error: by its name once that is valid.
func editionWhere(j int, name *string) string {
	if n, ok := editionName(name); ok {
		return fmt.Sprintf("edition %q", n)
	}
	return fmt.Sprintf("editions[%d]", j)
}

// checkEdition turns ef into an edition: over the built-in of the same name, or new. at
// gives the line of a field.
func checkEdition(ef *editionFile, fail func(int, string, ...any), at func(string) int) (string, Edition, bool) {
	name, ok := editionName(ef.Name)
	switch {
	case ef.Name == nil || name == "":
		fail(ef.Pos.Line, "name: required")
		return "", Edition{}, false
	case !ok:
		fail(ef.Pos.Line, "name: %q has a space or one of , ; : | =", name)
		return "", Edition{}, false
	}
	e, builtin := editions[name]
	if ef.Kind != nil {
		switch strings.ToLower(*ef.Kind) {
		case "crm":
			e.Kind = KindCRM
		case "desk":
			e.Kind = KindDesk
		case "monthly":
			e.Kind = KindMonthly
		default:
			fail(at("kind"), "kind: want crm, desk or monthly, got %q", *ef.Kind)
			ok = false
		}
	}
	for _, c := range []struct {
		field string
		from  *int64
		to    *int64
	}{{"base", ef.Base, &e.Base}, {"per_seat", ef.PerSeat, &e.PerSeat}, {"max", ef.Max, &e.Max}, {"concurrency", ef.Concurrency, &e.Concurrency}} {
		switch {
		case c.from == nil:
		case *c.from < 0 || *c.from > MaxAllotment:
			fail(at(c.field), "%s: want 0 to %d, got %d", c.field, MaxAllotment, *c.from)
			ok = false
		default:
			*c.to = *c.from
		}
	}
	if ef.AddOns != nil {
		e.AddOns = *ef.AddOns
	}
	if !builtin {
		for _, f := range []struct {
			name  string
			given bool
		}{{"kind", ef.Kind != nil}, {"base", ef.Base != nil}} {
			if !f.given {
				fail(ef.Pos.Line, "%s: required for an edition that is not built in", f.name)
				ok = false
			}
		}
	}
	if ok && e.Max > 0 && e.Max < e.Base {
		fail(ef.Pos.Line, "max (%d) is below base (%d)", e.Max, e.Base)
		ok = false
	}
	return name, e, ok
}
