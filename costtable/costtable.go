package costtable

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// ErrUnknownTable means Builtin was asked for a table it does not have.
var ErrUnknownTable = errors.New("unknown cost table")

// maxSegments bounds the depth of a template, and how many segments of a request Match keeps
// on its stack. Deeper requests can still match a template ending in "*".
const maxSegments = 32

// Rule is one row of a cost table.
//
// A rule is fixed-cost (Per is 0: every call costs Cost) or per-record (Per > 0: a call costs
// ceil(records/Per) credits, at least 1, with records counted from the JSON body array named by
// CountBody or the comma-separated query parameter named by CountQuery; see CountJSONArray and
// CountQueryList for how keys and names match). A per-record rule that cannot count a body
// (malformed, truncated, too deeply nested, or a matching key's value is not an array) charges
// Cost, or ceil(records/Per) for the records it still saw if that is more: in a valid body, the
// largest array among the matching keys that hold one. Cost is usually the price of the largest
// batch the API accepts, so a body the gateway cannot read is never cheaper than one it can,
// nor than the records seen in it. An empty body holds no records and costs the minimum, 1.
type Rule struct {
	// Name is the rule's stable identifier, such as "bulk_write_initialize": lower-case
	// letters, digits and '_', unique in its table. It is the route label on metrics and the
	// rule explain reports.
	Name string
	// Method is an upper-case HTTP method, such as "GET", or "*" for any method.
	Method string
	// Path is a path template (see the package documentation).
	Path string
	// Query, if not empty, restricts the rule to requests whose query string has this
	// parameter with a non-empty value, such as "cvid". The name matches as CountQueryList
	// reads names: decoded, without regard to case, and in the forms "cvid[]" and "cvid[0]".
	Query string
	// Cost is the credits a matching call is charged, at least 1; for a per-record rule, the
	// credits charged when the records cannot be counted.
	Cost int64
	// Heavy marks bulk and multi-record writes, which share a smaller concurrency cap.
	Heavy bool
	// Per, when above 0, makes the rule per-record: one credit per Per records or part of it.
	Per int64
	// CountBody names the top-level key of a JSON object body whose array holds the records,
	// such as "data" for {"data":[…]}. Only with Per; exclusive with CountQuery.
	CountBody string
	// CountQuery names the query parameter whose comma-separated values are the records, such
	// as "ids" for ?ids=1,2,3. Only with Per; exclusive with CountBody.
	CountQuery string
	// Response, when not nil, settles the call's cost from the upstream's answer: Cost is
	// then a reservation, corrected to Response.Settle of what the answer says. Only on a
	// fixed-cost rule (Per 0), never the fallback.
	Response *Response
}

// CountsBody reports whether pricing a call with r needs its body.
func (r *Rule) CountsBody() bool { return r.Per > 0 && r.CountBody != "" }

// Charge returns the credits a call matched by r costs, given its raw query string and, for a
// rule that CountsBody, its whole body. records is the number counted (0 for a fixed-cost
// rule). counted is false when a per-record rule could not count the body (CountJSONArray is
// not ok); the call then costs max(Cost, ceil(records/Per)), records being the largest array
// among the matching keys that hold one (0 for a body that is not valid JSON, or too deep).
func (r *Rule) Charge(rawQuery string, body []byte) (cost, records int64, counted bool) {
	switch {
	case r.Per <= 0:
		return r.Cost, 0, true
	case r.CountBody != "" && isBlank(body):
		records = 0 // no body, no records: the minimum, not the fallback
	case r.CountBody != "":
		n, ok := CountJSONArray(body, r.CountBody)
		if !ok {
			// Never less than the records seen: {"data":[…1000…],"DATA":"x"} is not countable,
			// but a parser may still bind the 1000.
			return max(r.Cost, perRecord(n, r.Per)), n, false
		}
		records = n
	default:
		records = CountQueryList(rawQuery, r.CountQuery)
	}
	return perRecord(records, r.Per), records, true
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// perRecord is ceil(records/per), at least 1.
func perRecord(records, per int64) int64 {
	if records <= 0 {
		return 1
	}
	return (records-1)/per + 1
}

// RuleError is one problem New found with one rule. New joins them with errors.Join.
type RuleError struct {
	// Index is the rule's position in the rules passed to New, or -1 for the fallback.
	Index int
	// Name is the rule's Name as given.
	Name string
	// Err is the problem.
	Err error
}

func (e *RuleError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("fallback %q: %v", e.Name, e.Err)
	}
	return fmt.Sprintf("rules[%d] %q: %v", e.Index, e.Name, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

// Table is an immutable, compiled cost table. It is safe for concurrent use.
type Table struct {
	name string
	// rules holds the rules as given, then the fallback, so that Match can return pointers
	// into it without allocating.
	rules []Rule
	// methods holds one trie per method that a rule names; each also holds the "*" rules.
	methods []methodTrie
	// head holds the rules that name HEAD alone (nil without any): HEAD is priced by them
	// first, then as GET.
	head *node
	// any holds the "*" rules alone, for the methods no rule names.
	any *node
}

type methodTrie struct {
	method string
	root   *node
}

// New compiles a cost table. fallback prices every request that no rule matches; its Method,
// Path and Query are ignored (Fallback reports them as "*", "/*" and ""). The error, if any,
// joins one *RuleError for every problem found.
func New(name string, rules []Rule, fallback Rule) (*Table, error) {
	all := make([]Rule, 0, len(rules)+1)
	all = append(all, rules...)
	fallback.Method, fallback.Path, fallback.Query = "*", "/*", ""
	all = append(all, fallback)

	var errs []error
	fail := func(i int, err error) {
		index := i
		if i == len(rules) {
			index = -1
		}
		errs = append(errs, &RuleError{Index: index, Name: all[i].Name, Err: err})
	}

	templates := make([][]segment, len(rules))
	names := make(map[string]int, len(all))
	for i := range all {
		r := &all[i]
		if err := checkName(r.Name); err != nil {
			fail(i, err)
		} else if j, ok := names[r.Name]; ok {
			fail(i, fmt.Errorf("name already used by rules[%d]", j))
		} else {
			names[r.Name] = i
		}
		if r.Cost < 1 {
			fail(i, fmt.Errorf("cost must be at least 1, got %d", r.Cost))
		}
		if err := checkPerRecord(r); err != nil {
			fail(i, err)
		}
		if err := checkResponse(r); err != nil {
			fail(i, err)
		}
		if i == len(rules) {
			if r.Per != 0 || r.Response != nil {
				fail(i, errors.New("the fallback must be fixed-cost (no per, no response)"))
			}
			break
		}
		if err := checkMethod(r.Method); err != nil {
			fail(i, err)
		}
		if err := checkQuery(r.Query); err != nil {
			fail(i, err)
		}
		t, err := parseTemplate(r.Path)
		if err != nil {
			fail(i, err)
		}
		templates[i] = t
	}

	// A rule with the same method, template and query as an earlier one would end at the same
	// trie node under the same conditions and never be chosen.
	seen := make(map[string]int, len(rules))
	for i, t := range templates {
		if t == nil {
			continue // invalid, and already reported
		}
		key := all[i].Method + " " + canonical(t) + " ?" + all[i].Query
		if j, ok := seen[key]; ok {
			fail(i, fmt.Errorf("unreachable: same method, path and query as rules[%d] %q", j, all[j].Name))
			continue
		}
		seen[key] = i
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	tbl := &Table{name: name, rules: all, any: &node{}}
	methods := make(map[string]*node)
	for i := range rules {
		if m := all[i].Method; m != "*" && methods[m] == nil {
			methods[m] = &node{}
		}
	}
	for _, m := range slices.Sorted(maps.Keys(methods)) {
		tbl.methods = append(tbl.methods, methodTrie{method: m, root: methods[m]})
	}
	for i := range rules {
		r := &all[i]
		e := end{rule: r, query: r.Query, exact: r.Method != "*"}
		if r.Method != "*" {
			methods[r.Method].insert(templates[i], e)
			if r.Method == "HEAD" {
				if tbl.head == nil {
					tbl.head = &node{}
				}
				tbl.head.insert(templates[i], e)
			}
			continue
		}
		tbl.any.insert(templates[i], e)
		for _, root := range methods {
			root.insert(templates[i], e)
		}
	}
	tbl.any.finish()
	tbl.head.finish()
	for _, root := range methods {
		root.finish()
	}
	return tbl, nil
}

// Name returns the name the table was compiled with, such as "zoho-crm".
func (t *Table) Name() string { return t.name }

// Rules returns a copy of the table's rules in the order given to New, without the fallback.
func (t *Table) Rules() []Rule { return slices.Clone(t.rules[:len(t.rules)-1]) }

// Fallback returns the rule that prices requests no other rule matches.
func (t *Table) Fallback() Rule { return t.rules[len(t.rules)-1] }

// Match returns the rule that prices a request: method as sent, the decoded path
// (http.Request.URL.Path) and the raw query string without '?'. It never returns nil: with no
// matching rule it returns the fallback. The rule belongs to the table and must not be
// modified.
//
// Match does not allocate and accepts any input.
func (t *Table) Match(method, path, rawQuery string) *Rule {
	m := matcher{path: path, query: rawQuery}
	m.split()
	root := t.root(method)
	if equalFold(method, "HEAD") {
		// A rule that names HEAD and matches prices it; else it is priced as the GET it
		// mirrors (servers run the GET handler for it).
		if t.head != nil {
			if r := m.match(t.head, 0); r != nil {
				return r
			}
		}
		root = t.root("GET")
	}
	if r := m.match(root, 0); r != nil {
		return r
	}
	return &t.rules[len(t.rules)-1]
}

func (t *Table) root(method string) *node {
	if method == "" {
		method = "GET"
	}
	for i := range t.methods {
		if equalFold(t.methods[i].method, method) {
			return t.methods[i].root
		}
	}
	return t.any
}

// node is a trie node: the rules whose templates end here, and the edges for the next
// segment, each kind in the order Match tries them.
type node struct {
	lits  []litEdge  // sorted by key
	enums []enumEdge // fewer alternatives first, then by key
	param *node
	rest  *node // reached by "*"; has ends only
	ends  []end // query condition first, then exact method, then by query name
}

type litEdge struct {
	key  string // lower-case
	next *node
}

type enumEdge struct {
	key  string   // the alternatives joined by '|'
	alts []string // lower-case, sorted
	next *node
}

type end struct {
	rule  *Rule
	query string
	exact bool // the rule names this method, rather than "*"
}

func (n *node) insert(t []segment, e end) {
	for _, s := range t {
		switch s.kind {
		case segLiteral:
			i := slices.IndexFunc(n.lits, func(l litEdge) bool { return l.key == s.lit })
			if i < 0 {
				n.lits = append(n.lits, litEdge{key: s.lit, next: &node{}})
				i = len(n.lits) - 1
			}
			n = n.lits[i].next
		case segEnum:
			key := strings.Join(s.alts, "|")
			i := slices.IndexFunc(n.enums, func(e enumEdge) bool { return e.key == key })
			if i < 0 {
				n.enums = append(n.enums, enumEdge{key: key, alts: s.alts, next: &node{}})
				i = len(n.enums) - 1
			}
			n = n.enums[i].next
		case segParam:
			if n.param == nil {
				n.param = &node{}
			}
			n = n.param
		case segRest:
			if n.rest == nil {
				n.rest = &node{}
			}
			n = n.rest
		}
	}
	n.ends = append(n.ends, e)
}

// finish sorts every level into the order Match relies on.
func (n *node) finish() {
	if n == nil {
		return
	}
	slices.SortFunc(n.lits, func(a, b litEdge) int { return strings.Compare(a.key, b.key) })
	slices.SortFunc(n.enums, func(a, b enumEdge) int {
		if c := len(a.alts) - len(b.alts); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	slices.SortFunc(n.ends, func(a, b end) int {
		if c := firstTrue(a.query != "", b.query != ""); c != 0 {
			return c
		}
		if c := firstTrue(a.exact, b.exact); c != 0 {
			return c
		}
		return strings.Compare(a.query, b.query)
	})
	for _, l := range n.lits {
		l.next.finish()
	}
	for _, e := range n.enums {
		e.next.finish()
	}
	n.param.finish()
	n.rest.finish()
}

func firstTrue(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	default:
		return 1
	}
}

// span is one segment of the request path, path[lo:hi].
type span struct{ lo, hi int }

// matcher holds one request while Match walks a trie. It lives on Match's stack.
type matcher struct {
	path  string
	query string
	segs  [maxSegments]span
	n     int  // segments in segs
	more  bool // the path has segments beyond segs
}

// split records the path's segments, skipping empty and "." segments and resolving "..".
func (m *matcher) split() {
	p := m.path
	depth := 0 // may exceed maxSegments; segs[i] is valid for i < min(depth, maxSegments)
	for i := 0; i < len(p); {
		for i < len(p) && p[i] == '/' {
			i++
		}
		j, end := i, -1
		for j < len(p) && p[j] != '/' {
			if p[j] == ';' && end < 0 {
				end = j
			}
			j++
		}
		if end < 0 {
			end = j
		}
		// A segment's ";params" (RFC 3986 §3.3) are cut off, as servlet containers do before
		// routing: "write;x=1" is priced as "write", and "..;" resolves as "..".
		switch seg := p[i:end]; seg {
		case "", ".":
		case "..":
			if depth > 0 {
				depth--
			}
		default:
			if depth < maxSegments {
				m.segs[depth] = span{i, end}
			}
			depth++
		}
		i = j
	}
	m.n = min(depth, maxSegments)
	m.more = depth > maxSegments
}

// match returns the best rule for segments i and on, below n, or nil.
func (m *matcher) match(n *node, i int) *Rule {
	if i == m.n {
		if !m.more {
			if r := m.accept(n); r != nil {
				return r
			}
		}
		return m.accept(n.rest)
	}
	seg := m.path[m.segs[i].lo:m.segs[i].hi]
	if next := n.literal(seg); next != nil {
		if r := m.match(next, i+1); r != nil {
			return r
		}
	}
	for k := range n.enums {
		if e := &n.enums[k]; searchFold(e.alts, seg) {
			if r := m.match(e.next, i+1); r != nil {
				return r
			}
		}
	}
	if n.param != nil {
		if r := m.match(n.param, i+1); r != nil {
			return r
		}
	}
	return m.accept(n.rest)
}

// accept returns the first rule ending at n whose query condition holds, or nil.
func (m *matcher) accept(n *node) *Rule {
	if n == nil {
		return nil
	}
	for k := range n.ends {
		if e := &n.ends[k]; e.query == "" || hasParam(m.query, e.query) {
			return e.rule
		}
	}
	return nil
}

func (n *node) literal(seg string) *node {
	lo, hi := 0, len(n.lits)
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		switch c := compareFold(n.lits[h].key, seg); {
		case c == 0:
			return n.lits[h].next
		case c < 0:
			lo = h + 1
		default:
			hi = h
		}
	}
	return nil
}

// searchFold reports whether s is in sorted, a sorted list of lower-case strings, ignoring
// ASCII case.
func searchFold(sorted []string, s string) bool {
	lo, hi := 0, len(sorted)
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		switch c := compareFold(sorted[h], s); {
		case c == 0:
			return true
		case c < 0:
			lo = h + 1
		default:
			hi = h
		}
	}
	return false
}

// hasParam reports whether rawQuery has the parameter name with a non-empty value, the name
// read as namesParam reads it.
func hasParam(rawQuery, name string) bool {
	for q := rawQuery; q != ""; {
		var pair string
		// ';' separates too: some upstreams split on it, and charging for a condition that
		// the upstream might see is the safe side.
		if i := strings.IndexAny(q, "&;"); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			pair, q = q, ""
		}
		if k, v, _ := strings.Cut(pair, "="); v != "" && namesParam(k, name) {
			return true
		}
	}
	return false
}

// namesParam reports whether the query-escaped raw names the parameter name as an upstream's
// query parser or framework may bind it, without allocating. raw is decoded first ("c%76id" is
// cvid; '+' is a space; malformed escapes are read literally). The decoded name must then match
// name without regard to case, folded character by character as CountJSONArray folds keys
// ("CVID", "%43vid"; invalid UTF-8, in either, reads as U+FFFD), alone or followed by '[',
// anything but brackets and ']', the list forms many frameworks bind: "ids[]" and "ids[0]"
// name ids, as does "ids%5B%5D"; "ids[a][b]", "ids[" and "ids[]x" do not.
func namesParam(raw, name string) bool {
	i := 0
	for j := 0; j < len(name); {
		if i == len(raw) {
			return false
		}
		if c, k := raw[i], name[j]; c < utf8.RuneSelf && c != '%' && c != '+' && k < utf8.RuneSelf {
			if lower(c) != lower(k) { // two ASCII characters: only ASCII letters fold
				return false
			}
			i, j = i+1, j+1
			continue
		}
		var r rune
		r, i = queryRune(raw, i)
		k, size := utf8.DecodeRuneInString(name[j:])
		if k != r && foldRune(k) != foldRune(r) {
			return false
		}
		j += size
	}
	if i == len(raw) {
		return true
	}
	c, i := queryByte(raw, i)
	if c != '[' {
		return false
	}
	for i < len(raw) {
		switch c, i = queryByte(raw, i); c {
		case ']':
			return i == len(raw)
		case '[':
			return false
		}
	}
	return false
}

// queryByte decodes the byte at raw[i] of a query-escaped string and returns it and the index
// after it: '+' is a space, a well-formed %XX escape its byte, anything else itself.
func queryByte(raw string, i int) (byte, int) {
	switch c := raw[i]; {
	case c == '+':
		return ' ', i + 1
	case c == '%' && i+2 < len(raw) && isHex(raw[i+1]) && isHex(raw[i+2]):
		return unhex(raw[i+1])<<4 | unhex(raw[i+2]), i + 3
	default:
		return c, i + 1
	}
}

// queryRune decodes the character at raw[i] of a query-escaped string, whose bytes may each be
// escaped, and returns it and the index after it. Invalid UTF-8 is U+FFFD, one byte at a time.
func queryRune(raw string, i int) (rune, int) {
	c, i := queryByte(raw, i)
	if c < utf8.RuneSelf {
		return rune(c), i
	}
	var (
		buf  [utf8.UTFMax]byte
		ends [utf8.UTFMax]int // ends[k]: the index after the byte buf[k]
	)
	buf[0], ends[0] = c, i
	n := 1
	for n < len(buf) && i < len(raw) && !utf8.FullRune(buf[:n]) {
		buf[n], i = queryByte(raw, i)
		ends[n] = i
		n++
	}
	r, size := utf8.DecodeRune(buf[:n])
	return r, ends[size-1]
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// compareFold compares key, which is lower-case, with s lower-cased (ASCII only).
func compareFold(key, s string) int {
	for i := 0; i < len(key) && i < len(s); i++ {
		if a, b := key[i], lower(s[i]); a != b {
			if a < b {
				return -1
			}
			return 1
		}
	}
	return len(key) - len(s)
}

// equalFold reports whether a and b are equal ignoring ASCII case.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

type segKind uint8

const (
	segLiteral segKind = iota
	segEnum
	segParam
	segRest
)

// segment is one parsed template segment.
type segment struct {
	kind segKind
	lit  string   // segLiteral: lower-case
	alts []string // segEnum: lower-case, sorted
	name string   // segParam, segEnum
}

func parseTemplate(p string) ([]segment, error) {
	if p == "" {
		return nil, errors.New("path is empty")
	}
	if p[0] != '/' {
		return nil, fmt.Errorf("path %q must start with /", p)
	}
	parts := strings.Split(p[1:], "/")
	var t []segment
	for i, part := range parts {
		if part == "" {
			continue
		}
		s, err := parseSegment(part)
		if err != nil {
			return nil, fmt.Errorf("path %q: segment %q: %w", p, part, err)
		}
		if s.kind == segRest && slices.ContainsFunc(parts[i+1:], func(s string) bool { return s != "" }) {
			return nil, fmt.Errorf("path %q: * must be the last segment", p)
		}
		if s.name != "" && slices.ContainsFunc(t, func(o segment) bool { return o.name == s.name }) {
			return nil, fmt.Errorf("path %q: duplicate parameter name %q", p, s.name)
		}
		t = append(t, s)
	}
	if len(t) > maxSegments {
		return nil, fmt.Errorf("path %q: more than %d segments", p, maxSegments)
	}
	if t == nil {
		t = []segment{} // "/": the root, a valid template with no segments
	}
	return t, nil
}

func parseSegment(s string) (segment, error) {
	if s == "*" {
		return segment{kind: segRest}, nil
	}
	if strings.Contains(s, "*") {
		return segment{}, errors.New("* must be a whole segment")
	}
	if !strings.ContainsAny(s, "{}") {
		if err := checkLiteral(s); err != nil {
			return segment{}, err
		}
		return segment{kind: segLiteral, lit: lowerString(s)}, nil
	}
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
		}
		if depth < 0 || depth > 1 {
			return segment{}, errors.New("unbalanced braces")
		}
	}
	if depth != 0 {
		return segment{}, errors.New("unbalanced braces")
	}
	if s[0] != '{' || s[len(s)-1] != '}' || strings.Count(s, "{") != 1 {
		return segment{}, errors.New("a parameter must be the whole segment")
	}
	name, alts, constrained := strings.Cut(s[1:len(s)-1], ":")
	if name == "" {
		return segment{}, errors.New("empty parameter name")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return segment{}, fmt.Errorf("parameter name %q: use letters, digits and _", name)
		}
	}
	if !constrained {
		return segment{kind: segParam, name: name}, nil
	}
	seg := segment{kind: segEnum, name: name}
	for _, a := range strings.Split(alts, "|") {
		if a == "" {
			return segment{}, fmt.Errorf("parameter %q: empty alternative", name)
		}
		if err := checkLiteral(a); err != nil {
			return segment{}, fmt.Errorf("parameter %q: alternative %q: %w", name, a, err)
		}
		a = lowerString(a)
		if slices.Contains(seg.alts, a) {
			return segment{}, fmt.Errorf("parameter %q: duplicate alternative %q", name, a)
		}
		seg.alts = append(seg.alts, a)
	}
	slices.Sort(seg.alts)
	return seg, nil
}

func checkLiteral(s string) error {
	if s == "." || s == ".." {
		return errors.New("dot segments never match (requests are matched with them resolved)")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '?' || c == '#' || c == '{' || c == '}' {
			return fmt.Errorf("character %q not allowed", c)
		}
	}
	return nil
}

// canonical is the template as Match sees it: literals lower-case, parameter names dropped,
// alternatives sorted, empty segments gone.
func canonical(t []segment) string {
	var b strings.Builder
	for _, s := range t {
		b.WriteByte('/')
		switch s.kind {
		case segLiteral:
			b.WriteString(s.lit)
		case segEnum:
			b.WriteString("{" + strings.Join(s.alts, "|") + "}")
		case segParam:
			b.WriteString("{}")
		case segRest:
			b.WriteString("*")
		}
	}
	return b.String()
}

func lowerString(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lower(c)
	}
	return string(b)
}

func checkName(name string) error {
	if name == "" {
		return errors.New("name is empty")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return errors.New("name must be lower-case letters, digits and _")
		}
	}
	return nil
}

func checkMethod(m string) error {
	if m == "*" {
		return nil
	}
	if m == "" {
		return errors.New("method is empty (use * for any method)")
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c < 'A' || c > 'Z' {
			return fmt.Errorf("method %q must be upper-case letters, such as GET, or *", m)
		}
	}
	return nil
}

// checkPerRecord checks Per, CountBody and CountQuery together.
func checkPerRecord(r *Rule) error {
	switch {
	case r.Per < 0:
		return fmt.Errorf("per must be at least 1, got %d", r.Per)
	case r.Per == 0 && (r.CountBody != "" || r.CountQuery != ""):
		return errors.New("count_body and count_query need per (records per credit), which is 0")
	case r.Per == 0:
		return nil
	case r.CountBody != "" && r.CountQuery != "":
		return errors.New("count_body and count_query both set: a rule counts records in one place")
	case r.CountBody == "" && r.CountQuery == "":
		return fmt.Errorf("per is %d but neither count_body nor count_query says where the records are", r.Per)
	case r.CountQuery != "":
		return checkQuery(r.CountQuery)
	case strings.TrimSpace(r.CountBody) != r.CountBody:
		return fmt.Errorf("count_body %q has leading or trailing spaces", r.CountBody)
	}
	return nil
}

func checkQuery(q string) error {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= ' ' || c == 0x7f || c == '&' || c == '=' || c == '?' || c == '#' {
			return fmt.Errorf("query parameter %q: character %q not allowed", q, c)
		}
	}
	return nil
}

// builtins are compiled on first use and shared: a Table never changes.
var builtins = map[string]func() (*Table, error){
	"zoho-crm": sync.OnceValues(zohoCRM),
}

// Builtin returns the built-in table with this name, such as "zoho-crm". An unknown name gives
// an error wrapping ErrUnknownTable that lists the known names.
func Builtin(name string) (*Table, error) {
	build, ok := builtins[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (built-in tables: %s)", ErrUnknownTable, name, strings.Join(BuiltinNames(), ", "))
	}
	t, err := build()
	if err != nil {
		return nil, fmt.Errorf("built-in cost table %q: %w", name, err)
	}
	return t, nil
}

// BuiltinNames returns the names of the built-in tables, sorted.
func BuiltinNames() []string { return slices.Sorted(maps.Keys(builtins)) }
