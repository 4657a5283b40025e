package orgs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unique"

	"github.com/creditgate/creditgate/internal/configfile"
)

// Org is one organization as configured: who it is, what it has bought, and the API keys it
// calls with. Parse and NewDirectory check the syntax and ranges of each field; whether the
// edition exists and which fields it needs are the caller's business.
type Org struct {
	// ID names the org in Redis keys, metrics and logs: 1 to 64 of [A-Za-z0-9._-]. It is put
	// inside a Redis hash tag, so it can never contain '{' or '}'.
	ID string
	// Edition is the edition name as given (e.g. "crm-professional"): lower-case letters,
	// digits and '-', or empty when not set.
	Edition string
	// Users, Agents and LightAgents are seat counts: CRM editions allot per user, Desk
	// editions per agent (light agents are not counted towards credits).
	Users, Agents, LightAgents int64
	// Limit is an explicit number of credits per window that overrides the edition formula;
	// 0 when not set. HasLimit tells whether it is set (a set Limit is at least 1).
	Limit    int64
	HasLimit bool
	// Addon is the add-on credits per window; Legacy a grandfathered limit (the org gets the
	// larger of it and the credit model); Concurrency overrides the edition's cap on
	// in-flight requests (0: the edition default).
	Addon, Legacy, Concurrency int64
	// MonthlyLimit and Additional are the calls per subscription period and the additional
	// calls allowed on top of them, for monthly plans.
	MonthlyLimit, Additional int64
	// Commercial selects the price of additional calls on monthly plans. Parse defaults it
	// to true; an Org built by hand must set it.
	Commercial bool
	// Keys are the API keys the org calls with, as digests.
	Keys []Key
	// NotifyThresholds are the percents of the org's limit whose crossing sends it a usage
	// notice, ascending, when HasNotify (an empty list: none); without HasNotify the
	// gateway's default applies. WebhookURL and WebhookSecret are where its notices go, and
	// the secret that signs them; empty: the gateway's. Only the orgs file sets them; whether
	// they are usable is the caller's business.
	NotifyThresholds []int64
	HasNotify        bool
	WebhookURL       string
	WebhookSecret    string
}

// idPattern describes a valid org ID in error messages.
const idPattern = "[A-Za-z0-9._-]{1,64}"

// ValidID reports whether id is a valid org ID: 1 to 64 of [A-Za-z0-9._-]. Callers that take
// org IDs from elsewhere than Parse (a token's claim, say) check them with it before they reach
// Redis keys, metrics or logs.
func ValidID(id string) bool { return validID(id) }

func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// validEdition reports whether e is empty or lower-case letters, digits and '-'.
func validEdition(e string) bool {
	for i := 0; i < len(e); i++ {
		switch c := e[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-':
		default:
			return false
		}
	}
	return true
}

// fieldNames lists the fields of CREDITGATE_ORGS in documented order.
var fieldNames = [...]string{
	"edition", "users", "agents", "light_agents", "limit", "addon", "legacy",
	"concurrency", "monthly_limit", "additional", "commercial", "keys",
}

var knownFields = strings.Join(fieldNames[:], ", ")

// intField returns the integer field of o called name, or nil if name is not an integer field.
func intField(o *Org, name string) *int64 {
	switch name {
	case "users":
		return &o.Users
	case "agents":
		return &o.Agents
	case "light_agents":
		return &o.LightAgents
	case "limit":
		return &o.Limit
	case "addon":
		return &o.Addon
	case "legacy":
		return &o.Legacy
	case "concurrency":
		return &o.Concurrency
	case "monthly_limit":
		return &o.MonthlyLimit
	case "additional":
		return &o.Additional
	}
	return nil
}

// Parse parses orgs in the CREDITGATE_ORGS syntax described in the package documentation and
// returns them in the order given. An empty string gives no orgs. On error it returns nil and
// every problem found, joined; each names the org (or the entry's position when the ID is
// unusable) and the field, and quotes the bad value, except for keys, which no error shows.
func Parse(s string) ([]Org, error) {
	var (
		orgs      []Org
		errs      []error
		entryOf   = make(map[string]int) // org ID → entry number
		afterKeys bool                   // the previous entry ended in a keys field
	)
	for i, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		p := entryParser{n: i + 1, suspect: afterKeys}
		o, ok := p.parse(entry)
		afterKeys = p.suspect
		errs = append(errs, p.errs...)
		if !ok {
			continue
		}
		if first, dup := entryOf[o.ID]; dup {
			errs = append(errs, fmt.Errorf("org %q: defined twice (entries %d and %d)", o.ID, first, p.n))
			continue
		}
		entryOf[o.ID] = p.n
		orgs = append(orgs, o)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return orgs, nil
}

// entryParser parses one org entry, "id:field=value,…", collecting its errors.
type entryParser struct {
	n     int    // 1-based position of the entry in the string
	where string // how errors name the entry: `org "acme"` or `entry 3`
	errs  []error
	// suspect is set by a keys field and cleared by the next field that is not left out, or
	// by an entry that starts with "id:". A key that (against the rules) contains ',' or ';'
	// is split there, and its pieces show up as unknown fields or invalid org IDs; while
	// suspect, such text is left out of error messages.
	suspect bool
}

// notShown ends messages that leave suspect text out.
const notShown = `(text not shown: it may be part of a key containing "," or ";"; give such keys as sha256:<hex>)`

func (p *entryParser) fail(format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: "+format, append([]any{p.where}, args...)...))
}

// parse returns the org and whether its ID is valid.
func (p *entryParser) parse(entry string) (Org, bool) {
	id, fields, hasColon := strings.Cut(entry, ":")
	id = strings.TrimSpace(id)
	p.where = fmt.Sprintf("org %q", id)
	idOK := validID(id)
	if !idOK {
		p.where = "entry " + strconv.Itoa(p.n)
		switch {
		case id == "":
			p.fail(`missing org id before ":"`)
		case p.suspect || strings.ContainsAny(id, "=|,"):
			p.fail("id must match %s %s", idPattern, notShown)
		default:
			p.errs = append(p.errs, fmt.Errorf("org %s: id must match %s", quote(id), idPattern))
		}
	}

	if hasColon {
		// A key split at ';' leaves its piece in the ID; an "id:" makes that unlikely enough
		// to quote the fields that follow.
		p.suspect = false
	}

	o := Org{ID: id, Commercial: true}
	var seen [len(fieldNames)]bool
	for j, field := range strings.Split(fields, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		name, value, hasEq := strings.Cut(field, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		idx := fieldIndex(name)
		switch {
		case idx < 0 && p.suspect && hasEq && looksLikeFieldName(name):
			// Most likely a misspelt field after keys; name it, never its value.
			p.fail("unknown field %s (known fields: %s)", quote(name), knownFields)
			continue
		case idx < 0 && p.suspect:
			p.fail("field %d is not a known field=value %s", j+1, notShown)
			continue
		case !hasEq && idx >= 0:
			p.fail(`field %q: missing "=" and value`, name)
		case !hasEq:
			p.fail(`field %d: %s is not field=value`, j+1, quote(name))
		case name == "":
			p.fail(`field %d: missing field name before "="`, j+1)
		case idx < 0:
			p.fail("unknown field %s (known fields: %s)", quote(name), knownFields)
		case seen[idx]:
			p.fail("field %q given twice", name)
		default:
			seen[idx] = true
			p.set(&o, name, value)
		}
		p.suspect = name == "keys"
	}
	return o, idOK
}

// looksLikeFieldName reports whether s could be a misspelt field name (lower-case letters and
// '_'), rather than a piece of a random key.
func looksLikeFieldName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < 'a' || s[i] > 'z') && s[i] != '_' {
			return false
		}
	}
	return true
}

func fieldIndex(name string) int {
	for i, f := range fieldNames {
		if f == name {
			return i
		}
	}
	return -1
}

// set parses value into the field name of o.
func (p *entryParser) set(o *Org, name, value string) {
	if name == "keys" {
		p.add(setKeyList(o, value)...)
		return
	}
	p.add(setField(o, name, value))
}

// add records errs (nil ones are skipped), each prefixed with how the entry is named.
func (p *entryParser) add(errs ...error) {
	for _, err := range errs {
		if err != nil {
			p.errs = append(p.errs, fmt.Errorf("%s: %w", p.where, err))
		}
	}
}

// The field checks below are shared by Parse and ParseFile, so that both read a field the
// same way. Their errors name the field, but not the org (the caller adds it), and never
// show a key.

// setField parses value, the text of the field name (any field but keys), into o.
func setField(o *Org, name, value string) error {
	switch name {
	case "edition":
		if !validEdition(value) {
			return fmt.Errorf(`field "edition": must be lower-case letters, digits and "-", got %s`, quote(value))
		}
		o.Edition = unique.Make(value).Value() // a million orgs share a few editions
	case "commercial":
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf(`field "commercial": must be true or false, got %s`, quote(value))
		}
		o.Commercial = b
	default:
		n, err := count(name, value)
		if err != nil {
			return err
		}
		if name == "limit" {
			if n < 1 {
				return fmt.Errorf(`field "limit": must be at least 1, got %s`, quote(value))
			}
			o.HasLimit = true
		}
		*intField(o, name) = n
	}
	return nil
}

// setKeyList adds the keys of value, separated by '|', to o.
func setKeyList(o *Org, value string) []error {
	var errs []error
	for i, k := range strings.Split(value, "|") {
		if err := addKey(o, i+1, k); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// addKey adds k, the n-th key of o (counting from 1), to o after trimming white space. Its
// errors never quote the key: it is a credential.
func addKey(o *Org, n int, k string) error {
	k = strings.TrimSpace(k)
	if k == "" {
		return fmt.Errorf(`field "keys": key %d is empty`, n)
	}
	key, err := ParseKey(k)
	if err != nil {
		return fmt.Errorf(`field "keys": key %d: %w`, n, err)
	}
	o.Keys = append(o.Keys, key)
	return nil
}

// count parses a non-negative base-10 integer with no sign, the value of the field name.
func count(name, value string) (int64, error) {
	if value == "" || strings.Trim(value, "0123456789") != "" {
		return 0, fmt.Errorf("field %q: must be a non-negative integer, got %s", name, quote(value))
	}
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil { // only overflow is left
		return 0, fmt.Errorf("field %q: must be at most %d, got %s", name, int64(1<<63-1), quote(value))
	}
	return n, nil
}

// quote quotes a configured value for an error message, cut to 64 bytes so that a runaway
// value does not flood the log.
func quote(s string) string { return configfile.Quote(s) }
