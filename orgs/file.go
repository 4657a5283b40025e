package orgs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/creditgate/creditgate/internal/configfile"
	"go.yaml.in/yaml/v3"
)

// knownFileFields lists the fields of an org in a file: the ID, those of CREDITGATE_ORGS, then
// those only a file has (usage notices).
var knownFileFields = "id, " + knownFields + ", notify_thresholds, webhook_url, webhook_secret"

// maxFileErrors caps the problems ParseFile reports one by one; a mistake repeated in every
// org of a 100,000-org file should not print 100,000 lines at start-up.
const maxFileErrors = 100

// LoadFile reads orgs from the YAML or JSON file at path, as ParseFile does. Every error is
// prefixed with the file's base name.
func LoadFile(path string) ([]Org, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	orgs, err := ParseFile(data)
	if err != nil {
		errs := unjoin(err)
		base := filepath.Base(path)
		for i, e := range errs {
			errs[i] = fmt.Errorf("%s: %w", base, e)
		}
		return nil, errors.Join(errs...)
	}
	return orgs, nil
}

// ParseFile reads orgs from YAML or JSON data in the format described in the package
// documentation, and returns them in the order given. It applies the rules of Parse, with
// the same checks for each field, and gives the same Org values. On error it returns nil and
// every problem found, joined (after the first 100, only their number); each names the line,
// the org (or its position in the list when its ID is unusable) and the field, and quotes
// the bad value, except for keys, which no error shows.
//
// Data whose first non-blank byte is '{' is read as JSON, with encoding/json; if it is not
// valid JSON but valid YAML (a YAML flow mapping), it is read as YAML. Other data is read
// as YAML. Both syntaxes decode into the same structs, checked by the same code, so the
// same content gives the same orgs or the same errors in either.
func ParseFile(data []byte) ([]Org, error) {
	if configfile.IsJSON(data) {
		if orgs, ok := parseJSONFast(data); ok {
			return orgs, nil
		}
	}
	return parseFileTree(data)
}

// parseFileTree reads data through the node tree, with lines for errors.
func parseFileTree(data []byte) ([]Org, error) {
	var doc fileDoc
	_, err := configfile.Decode(data, &doc)
	var se *configfile.SyntaxError
	if errors.As(err, &se) {
		return nil, se
	}
	var p fileParser
	p.document(&doc, err)
	return p.result()
}

// parseJSONFast reads a valid JSON file of orgs straight into the structs, org by org,
// without lines: several times faster than through the node tree, which matters with a
// million orgs. On any problem it reports false, and ParseFile reads the file again for
// errors with lines.
func parseJSONFast(data []byte) ([]Org, bool) {
	var p fileParser
	// The number of orgs is not known yet; the number of "id" strings is a good guess.
	p.start(bytes.Count(data, []byte(`"id"`)))
	errStop := errors.New("stop")
	err := configfile.DecodeJSONList(data, "orgs", func(i int, f *fileOrg) error {
		p.org(i, f, nil)
		if p.nerrs > 0 {
			return errStop
		}
		return nil
	})
	if err != nil {
		return nil, false
	}
	orgs, _ := p.result()
	return orgs, true
}

// fileDoc is an orgs file as written.
type fileDoc struct {
	Pos  configfile.Pos `yaml:"-" json:"-"`
	Orgs []fileOrg      `yaml:"orgs" json:"orgs"` // nil: not given
}

// fileOrg is an org as written. Every field is a value, whatever its type, so that a wrong
// type is reported as CREDITGATE_ORGS reports it, with every other problem.
type fileOrg struct {
	Pos          configfile.Pos `yaml:"-" json:"-"`
	ID           value          `yaml:"id" json:"id"`
	Edition      value          `yaml:"edition" json:"edition"`
	Users        value          `yaml:"users" json:"users"`
	Agents       value          `yaml:"agents" json:"agents"`
	LightAgents  value          `yaml:"light_agents" json:"light_agents"`
	Limit        value          `yaml:"limit" json:"limit"`
	Addon        value          `yaml:"addon" json:"addon"`
	Legacy       value          `yaml:"legacy" json:"legacy"`
	Concurrency  value          `yaml:"concurrency" json:"concurrency"`
	MonthlyLimit value          `yaml:"monthly_limit" json:"monthly_limit"`
	Additional   value          `yaml:"additional" json:"additional"`
	Commercial   value          `yaml:"commercial" json:"commercial"`
	Keys         value          `yaml:"keys" json:"keys"`

	NotifyThresholds value `yaml:"notify_thresholds" json:"notify_thresholds"`
	WebhookURL       value `yaml:"webhook_url" json:"webhook_url"`
	WebhookSecret    value `yaml:"webhook_secret" json:"webhook_secret"`
}

// fields returns the fields of f but the ID, in the order of fieldNames.
func (f *fileOrg) fields() [len(fieldNames)]*value {
	return [...]*value{&f.Edition, &f.Users, &f.Agents, &f.LightAgents, &f.Limit, &f.Addon, &f.Legacy,
		&f.Concurrency, &f.MonthlyLimit, &f.Additional, &f.Commercial, &f.Keys}
}

// A value is a field value as written in a file; the zero value is a field not given.
type value struct {
	text      string   // the text of a scalar, unquoted; for kindOther, the tag, a NUL, then the text
	items     *[]value // the items of a list
	line, col int32    // 0 on the fast path, which reports no errors
	kind      valueKind
}

type valueKind uint8

const (
	kindString valueKind = iota + 1 // a YAML string (quoted or not) or a JSON string
	kindNumber
	kindBool
	kindNull
	kindOther // another YAML scalar, such as a timestamp
	kindList
	kindMapping
)

// UnmarshalYAML keeps n as it is written, whatever its type.
func (v *value) UnmarshalYAML(n *yaml.Node) error {
	*v = value{line: int32(n.Line), col: int32(n.Column)}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.ScalarNode:
		v.text = n.Value
		switch tag := n.ShortTag(); tag {
		case "!!str":
			v.kind = kindString
		case "!!int", "!!float":
			v.kind = kindNumber
		case "!!bool":
			v.kind = kindBool
		case "!!null":
			v.kind = kindNull
		default:
			v.kind, v.text = kindOther, tag+"\x00"+n.Value
		}
	case yaml.SequenceNode:
		v.kind = kindList
		items := make([]value, len(n.Content))
		for i, item := range n.Content {
			_ = items[i].UnmarshalYAML(item)
			items[i].items = nil // only the items of the field's list are checked
		}
		v.items = &items
	default:
		v.kind = kindMapping
	}
	return nil
}

// UnmarshalJSON keeps b as it is written, as UnmarshalYAML does for the nodes that
// configfile makes of JSON.
func (v *value) UnmarshalJSON(b []byte) error {
	*v = value{}
	switch b[0] {
	case '"':
		if s := b[1 : len(b)-1]; bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
			v.text = string(s)
		} else if err := json.Unmarshal(b, &v.text); err != nil {
			return err
		}
		v.kind = kindString
	case 't', 'f':
		v.kind, v.text = kindBool, string(b)
	case 'n':
		v.kind, v.text = kindNull, "null"
	case '[':
		items, ok := plainStrings(b)
		if !ok {
			if err := json.Unmarshal(b, &items); err != nil {
				return err
			}
		}
		for i := range items {
			items[i].items = nil
		}
		v.kind, v.items = kindList, &items
	case '{':
		v.kind = kindMapping
	default:
		v.kind, v.text = kindNumber, string(b)
	}
	return nil
}

// plainStrings reads b, a valid JSON array, when it holds only strings without escapes (a
// list of keys, as a rule) and reports false otherwise: a million orgs' keys are read
// without a decoder each.
func plainStrings(b []byte) ([]value, bool) {
	var items []value
	i := skipSpace(b, 1)
	if b[i] == ']' {
		return []value{}, true
	}
	for {
		if b[i] != '"' {
			return nil, false
		}
		end := bytes.IndexByte(b[i+1:], '"')
		s := b[i+1 : i+1+end]
		if bytes.IndexByte(s, '\\') >= 0 || !utf8.Valid(s) {
			return nil, false
		}
		items = append(items, value{kind: kindString, text: string(s)})
		i = skipSpace(b, i+end+2)
		switch b[i] {
		case ']':
			return items, true
		case ',':
			i = skipSpace(b, i+1)
		default:
			return nil, false
		}
	}
}

// skipSpace returns the index of the first byte of b from i on that is not JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// noun names the kind of v for an error message, without its text.
func (v value) noun() string {
	switch v.kind {
	case kindString:
		return "a string"
	case kindNumber:
		return "a number"
	case kindBool:
		return "a boolean"
	case kindNull:
		return "null"
	case kindList:
		return "a list"
	case kindMapping:
		return "a mapping"
	}
	tag, _, _ := strings.Cut(v.text, "\x00")
	return "a value tagged " + tag
}

// scalar returns the text of a scalar, without the tag of a kindOther.
func (v value) scalar() string {
	if v.kind == kindOther {
		_, text, _ := strings.Cut(v.text, "\x00")
		return text
	}
	return v.text
}

// describe names the kind of v and, for a scalar, quotes its text.
func (v value) describe() string {
	switch v.kind {
	case kindString, kindNumber, kindBool, kindOther:
		return v.noun() + " " + quote(v.scalar())
	}
	return v.noun()
}

// fileParser turns the decoded orgs into Orgs, collecting errors.
type fileParser struct {
	orgs   []Org
	errs   []fileError
	nerrs  int            // problems found
	lineOf map[string]int // org ID → line of its id field
}

// A fileError is a problem and where it is, for sorting.
type fileError struct {
	line, col int
	err       error
}

func (p *fileParser) fail(line, col int, format string, args ...any) {
	p.nerrs++
	p.errs = append(p.errs, fileError{line, col, fmt.Errorf("line %d: "+format, append([]any{line}, args...)...)})
}

func (p *fileParser) failAt(v value, format string, args ...any) {
	p.fail(int(v.line), int(v.col), format, args...)
}

// result returns the orgs or the errors in the file's order, the first 100 of them.
func (p *fileParser) result() ([]Org, error) {
	if p.nerrs > 0 {
		slices.SortStableFunc(p.errs, func(a, b fileError) int {
			if a.line != b.line {
				return a.line - b.line
			}
			return a.col - b.col
		})
		errs := make([]error, 0, min(len(p.errs), maxFileErrors)+1)
		for _, e := range p.errs[:min(len(p.errs), maxFileErrors)] {
			errs = append(errs, e.err)
		}
		if p.nerrs > maxFileErrors {
			errs = append(errs, fmt.Errorf("%d more problems not shown (%d in all)", p.nerrs-maxFileErrors, p.nerrs))
		}
		return nil, errors.Join(errs...)
	}
	if len(p.orgs) == 0 {
		return nil, nil
	}
	return p.orgs, nil
}

// start prepares for a list of n orgs.
func (p *fileParser) start(n int) {
	p.orgs = make([]Org, 0, n)
	p.lineOf = make(map[string]int, n)
}

// document checks doc, decoded with the errors decodeErr, and turns its orgs into Orgs.
func (p *fileParser) document(doc *fileDoc, decodeErr error) {
	var errs configfile.Errors
	errors.As(decodeErr, &errs)
	byOrg := make(map[int][]*configfile.Error)
	notOrg := make(map[int]bool) // orgs that are not mappings
	for _, e := range errs {
		switch {
		case len(e.Path) == 0 && e.Kind == configfile.WrongType:
			p.fail(e.Line, e.Column, `want a mapping with the field "orgs"`)
			return
		case len(e.Path) == 0 && e.Kind == configfile.RepeatedField:
			p.fail(e.Line, e.Column, `field %q given twice`, e.Key)
		case len(e.Path) == 0:
			p.fail(e.Line, e.Column, `unknown field %s (known fields: orgs)`, quote(e.Key))
		case len(e.Path) == 1:
			p.fail(e.Line, e.Column, `field "orgs": must be a list of orgs, got %s`, configfile.Noun(e.Node))
		case len(e.Path) == 2 && e.Kind == configfile.WrongType:
			i := e.Path[1].Index
			notOrg[i] = true
			p.fail(e.Line, e.Column, "orgs[%d]: must be a mapping of org fields, got %s", i, configfile.Noun(e.Node))
		default:
			byOrg[e.Path[1].Index] = append(byOrg[e.Path[1].Index], e)
		}
	}
	if doc.Orgs == nil {
		if len(errs) == 0 || errs[0].Kind != configfile.WrongType || len(errs[0].Path) != 1 {
			p.fail(doc.Pos.Line, doc.Pos.Column, `missing field "orgs"`)
		}
		return
	}
	p.start(len(doc.Orgs))
	for i := range doc.Orgs {
		if !notOrg[i] {
			p.org(i, &doc.Orgs[i], byOrg[i])
		}
	}
}

// place names an org in an error: by its ID, or by its index in the list (from 0) while its
// ID is unusable. It is formatted only when there is an error to report.
type place struct {
	i  int
	id string
}

func (w place) String() string {
	if w.id != "" {
		return fmt.Sprintf("org %q", w.id)
	}
	return "orgs[" + strconv.Itoa(w.i) + "]"
}

// org checks f, the org at index i of the list (from 0), with the errors found decoding it,
// and adds it to the orgs.
func (p *fileParser) org(i int, f *fileOrg, decodeErrs []*configfile.Error) {
	where := place{i: i}
	o := Org{Commercial: true}
	idOK, idLine := false, f.Pos.Line
	switch id := f.ID; {
	case id.kind == 0:
		p.fail(f.Pos.Line, f.Pos.Column, `%s: missing field "id"`, where)
	case id.kind != kindString:
		idLine = int(id.line)
		p.failAt(id, `%s: field "id": must be a string, got %s`, where, id.describe())
	case !validID(id.text):
		idLine = int(id.line)
		p.failAt(id, "org %s: id must match %s", quote(id.text), idPattern)
	default:
		idLine = int(id.line)
		o.ID, idOK = id.text, true
		where.id = o.ID
	}
	for _, e := range decodeErrs {
		switch e.Kind {
		case configfile.UnknownField:
			p.fail(e.Line, e.Column, "%s: unknown field %s (known fields: %s)", where, quote(e.Key), knownFileFields)
		case configfile.RepeatedField:
			p.fail(e.Line, e.Column, "%s: field %q given twice (lines %d and %d)", where, e.Key, e.First, e.Line)
		default:
			p.fail(e.Line, e.Column, "%s: %s", where, e.Msg())
		}
	}
	for j, v := range f.fields() {
		switch name := fieldNames[j]; {
		case v.kind == 0:
		case name == "keys":
			p.keys(&o, where, *v)
		default:
			p.scalar(&o, where, name, *v)
		}
	}
	p.notices(&o, where, f)

	if !idOK {
		return
	}
	if first, dup := p.lineOf[o.ID]; dup {
		p.failAt(f.ID, "org %q: defined twice (lines %d and %d)", o.ID, first, idLine)
		return
	}
	p.lineOf[o.ID] = idLine
	p.orgs = append(p.orgs, o)
}

// scalar sets the field name (any but id and keys) of o from v. The value must have the
// field's type; its text is then checked as in CREDITGATE_ORGS.
func (p *fileParser) scalar(o *Org, where place, name string, v value) {
	var err error
	switch want := scalarKind(name); {
	case v.kind == want:
		err = setField(o, name, v.text)
	case want == kindString:
		err = fmt.Errorf("field %q: must be a string, got %s", name, v.describe())
	case want == kindBool:
		err = fmt.Errorf("field %q: must be true or false, got %s", name, v.describe())
	default:
		err = fmt.Errorf("field %q: must be a non-negative integer, got %s", name, v.describe())
	}
	if err != nil {
		p.failAt(v, "%s: %w", where, err)
	}
}

// scalarKind returns the kind of value the field name (any but id and keys) takes.
func scalarKind(name string) valueKind {
	switch name {
	case "edition":
		return kindString
	case "commercial":
		return kindBool
	}
	return kindNumber
}

// keys adds the keys in v, a list of strings or one string of keys separated by '|', to o.
// No error shows a key, or any part of one.
func (p *fileParser) keys(o *Org, where place, v value) {
	switch v.kind {
	case kindString:
		for _, err := range setKeyList(o, v.text) {
			p.failAt(v, "%s: %w", where, err)
		}
	case kindList:
		items := *v.items
		if len(items) > 0 {
			o.Keys = make([]Key, 0, len(items))
		}
		for i, item := range items {
			var err error
			switch {
			case item.kind != kindString:
				err = fmt.Errorf(`field "keys": key %d must be a string, got %s`, i+1, item.noun())
			case strings.Contains(item.text, "|"):
				// Most likely "k1|k2" meant as two keys.
				err = fmt.Errorf(`field "keys": key %d contains "|": list each key on its own, or give a key containing "|" as sha256:<hex>`, i+1)
			default:
				err = addKey(o, i+1, item.text)
			}
			if err != nil {
				p.failAt(item, "%s: %w", where, err)
			}
		}
	default:
		p.failAt(v, `%s: field "keys": must be a list of strings or a string, got %s`, where, v.noun())
	}
}

// notices sets o's usage notice fields from f: a list of percents, and two strings. Their
// ranges, and whether the URL and secret are usable, are the caller's to check; no error
// shows the secret.
func (p *fileParser) notices(o *Org, where place, f *fileOrg) {
	switch v := f.NotifyThresholds; v.kind {
	case 0:
	case kindList:
		o.HasNotify = true
		o.NotifyThresholds = make([]int64, 0, len(*v.items))
		for i, item := range *v.items {
			n, err := count("notify_thresholds", item.text)
			if item.kind != kindNumber || err != nil {
				p.failAt(item, `%s: field "notify_thresholds": item %d must be a non-negative integer, got %s`, where, i+1, item.describe())
				continue
			}
			o.NotifyThresholds = append(o.NotifyThresholds, n)
		}
	default:
		p.failAt(v, `%s: field "notify_thresholds": must be a list of percents, got %s`, where, v.noun())
	}
	for _, s := range []struct {
		name   string
		v      value
		to     *string
		secret bool
	}{{"webhook_url", f.WebhookURL, &o.WebhookURL, false}, {"webhook_secret", f.WebhookSecret, &o.WebhookSecret, true}} {
		switch {
		case s.v.kind == 0:
		case s.v.kind != kindString && s.secret:
			p.failAt(s.v, `%s: field %q: must be a string, got %s`, where, s.name, s.v.noun())
		case s.v.kind != kindString:
			p.failAt(s.v, `%s: field %q: must be a string, got %s`, where, s.name, s.v.describe())
		default:
			*s.to = s.v.text
		}
	}
}

// unjoin returns the errors joined in err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return append([]error(nil), j.Unwrap()...)
	}
	return []error{err}
}
