package costtable

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Response says how a rule settles a call's cost from the upstream's answer. The rule's Cost
// is then a reservation: debited when the call is admitted, and corrected to the settled cost
// when the response is known (see Settle). Exactly one of Count, Number and Header is set.
type Response struct {
	// Count is a path (see Number) to an array whose elements are counted, such as "data" for
	// {"data":[…]}.
	Count string
	// Number is a dotted path of object keys to a number, such as "usage.total_tokens". Keys
	// match exactly, as written: the upstream is trusted, so no spelling of a key needs
	// catching, and a key holding a '.' cannot be named.
	Number string
	// Header names a response header whose value, a non-negative integer, is the cost. The
	// gateway removes it before the client sees the answer.
	Header string
	// Per makes one credit of every Per records (Count) or units (Number), or part of them;
	// at least 1, and only with Count or Number.
	Per int64
	// Max caps the settled cost; 0 means no cap.
	Max int64
}

// Settle returns the cost a call settles on, given n, the records counted (Count), the number
// read, rounded up (Number), or the header's value (Header): for Count and Number
// max(1, ceil(n/Per)), for Header n itself, in either case at most Max when Max is set. A
// negative n counts as 0. This is the one place the settled cost is worked out.
func (r *Response) Settle(n int64) int64 {
	n = max(n, 0)
	cost := n
	if r.Header == "" {
		cost = perRecord(n, max(r.Per, 1))
	}
	if r.Max > 0 {
		cost = min(cost, r.Max)
	}
	return cost
}

// Path returns the dotted path the response is read at ("" for a Header rule).
func (r *Response) Path() string {
	if r.Count != "" {
		return r.Count
	}
	return r.Number
}

// String describes r as the file writes it, for explain and logs: "count: data, per: 200,
// max: 20".
func (r *Response) String() string {
	var b strings.Builder
	switch {
	case r.Count != "":
		b.WriteString("count: " + r.Count)
	case r.Number != "":
		b.WriteString("number: " + r.Number)
	default:
		b.WriteString("header: " + r.Header)
	}
	if r.Per > 0 {
		b.WriteString(", per: " + strconv.FormatInt(r.Per, 10))
	}
	if r.Max > 0 {
		b.WriteString(", max: " + strconv.FormatInt(r.Max, 10))
	}
	return b.String()
}

// checkResponse checks r.Response, when set, and how it fits the rest of r.
func checkResponse(r *Rule) error {
	s := r.Response
	if s == nil {
		return nil
	}
	set := 0
	for _, v := range [...]string{s.Count, s.Number, s.Header} {
		if v != "" {
			set++
		}
	}
	switch {
	case set == 0:
		return errors.New("response: one of count, number and header says what the call settles on")
	case set > 1:
		return errors.New("response: count, number and header are exclusive: a call settles on one of them")
	case r.Per > 0:
		return errors.New("response and per both set: a rule is priced by its request's records or settled by its response, not both")
	case s.Max < 0:
		return fmt.Errorf("response: max must be at least 1, got %d", s.Max)
	case s.Header != "" && s.Per != 0:
		return errors.New("response: per goes with count or number; a header names the cost itself")
	case s.Header != "":
		return checkHeaderName(s.Header)
	case s.Per < 1:
		return fmt.Errorf("response: per must be at least 1, got %d", s.Per)
	}
	return checkPath(s.Path())
}

// checkPath checks a dotted path of object keys.
func checkPath(p string) error {
	for _, seg := range strings.Split(p, ".") {
		switch {
		case seg == "":
			return fmt.Errorf("response: path %q has an empty key (a leading, trailing or double '.')", p)
		case !utf8.ValidString(seg) || strings.ContainsRune(seg, utf8.RuneError):
			// A key that is not valid UTF-8 decodes to U+FFFD: no key could match it exactly.
			return fmt.Errorf("response: path %q is not valid UTF-8", p)
		}
	}
	if n := strings.Count(p, ".") + 1; n > maxSegments {
		return fmt.Errorf("response: path %q has more than %d keys", p, maxSegments)
	}
	return nil
}

// checkHeaderName checks an HTTP field name (RFC 9110 §5.1: a token).
func checkHeaderName(h string) error {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return fmt.Errorf("response: header %q: character %q not allowed in a field name", h, c)
		}
	}
	return nil
}

// ParseHeaderCost reads a header rule's value: a non-negative decimal integer, surrounding
// spaces allowed. ok is false for anything else (the reservation then stays).
func ParseHeaderCost(v string) (n int64, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" || v[0] == '+' || v[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// Reasons a response could not be read, so that its call keeps the reserved cost. Counter.Result
// returns them.
var (
	// ErrResponseNotJSON: the body (or, for an event stream, every event that carried data)
	// is not one valid JSON document, or nests deeper than 10,000 levels.
	ErrResponseNotJSON = errors.New("response is not valid JSON")
	// ErrResponseMissing: the JSON holds no array (Count) or number (Number) at the path.
	ErrResponseMissing = errors.New("response has no value at the path")
	// ErrResponseNumber: the number at the path is longer than 64 characters.
	ErrResponseNumber = errors.New("response number too long")
)

// maxNumber bounds the characters of a number the Counter reads.
const maxNumber = 64

// Counter reads a response body pushed to it in pieces, with constant memory, for the value a
// Count or Number rule settles on. Make one with NewCounter; Write never fails, and Result
// gives the outcome once the body has ended.
//
// A body is one JSON document (RFC 8259), validated whole as encoding/json validates it (a
// byte order mark, trailing data or nesting deeper than 10,000 levels make it invalid). The
// path's keys must each name an object member, from the top-level object down; when a key
// appears twice in one object, the last one counts, as in encoding/json. A number is read as
// strconv.ParseFloat reads it and rounded up to a whole number (an integer literal exactly).
//
// An event stream (text/event-stream) is read as its events: each event's data (its "data:"
// lines joined with newlines) is one JSON document, and the last event whose document holds a
// value at the path gives it; events whose data is not JSON (such as "[DONE]") are skipped.
type Counter struct {
	r      *Response
	path   []string
	events bool // a text/event-stream

	j     jsonScan
	found bool  // a value was found: in the document, or in an earlier event
	n     int64 // that value
	err   error // a body: why it cannot be read; an event stream: ErrResponseNotJSON until an event was valid

	// An event stream's line state.
	sse      sseState
	field    [8]byte // the start of a line's field name
	nfield   int
	dataSeen bool // the event being read has data
}

type sseState uint8

const (
	sseLineStart sseState = iota
	sseField              // reading a field name
	sseSpace              // after "data:", an optional space
	sseData               // the rest of a data line, fed to the JSON scanner
	sseSkip               // the rest of a line that is not data
	sseCR                 // after a '\r': a '\n' may follow
)

// NewCounter returns a Counter for r (a Count or Number rule); events says the body is a
// text/event-stream.
func (r *Response) NewCounter(events bool) *Counter {
	c := &Counter{r: r, path: strings.Split(r.Path(), "."), events: events}
	c.j.reset(c.path, r.Count != "")
	if events {
		c.err = ErrResponseNotJSON
	}
	return c
}

// Write reads p. It never fails.
func (c *Counter) Write(p []byte) (int, error) {
	if !c.events {
		c.j.write(p)
		return len(p), nil
	}
	for i := 0; i < len(p); {
		b := p[i]
		switch c.sse {
		case sseCR:
			c.sse = sseLineStart
			if b == '\n' {
				i++
			}
			continue
		case sseLineStart:
			if b == '\n' || b == '\r' {
				c.dispatch()
				c.sse = sseLineStart
				if b == '\r' {
					c.sse = sseCR
				}
				i++
				continue
			}
			c.sse, c.nfield = sseField, 0
			continue
		case sseField:
			switch b {
			case ':':
				if string(c.field[:c.nfield]) == "data" {
					c.startData()
					c.sse = sseSpace
				} else {
					c.sse = sseSkip
				}
			case '\n', '\r':
				// A line with no colon is a field with an empty value: "data" alone is an
				// empty data line.
				if string(c.field[:c.nfield]) == "data" {
					c.startData()
				}
				c.endLine(b)
			default:
				if c.nfield < len(c.field) {
					c.field[c.nfield] = b
				}
				c.nfield = min(c.nfield+1, len(c.field)) // a longer name is no field we read
				if c.nfield == len(c.field) {
					c.sse = sseSkip
				}
			}
			i++
		case sseSpace:
			c.sse = sseData
			if b == ' ' {
				i++
			}
		case sseData, sseSkip:
			j := i
			for j < len(p) && p[j] != '\n' && p[j] != '\r' {
				j++
			}
			if c.sse == sseData {
				c.j.write(p[i:j])
			}
			if j < len(p) {
				c.endLine(p[j])
				j++
			}
			i = j
		}
	}
	return len(p), nil
}

// startData begins a data line: lines after the event's first are joined by a newline.
func (c *Counter) startData() {
	if c.dataSeen {
		c.j.write([]byte{'\n'})
	}
	c.dataSeen = true
}

func (c *Counter) endLine(b byte) {
	c.sse = sseLineStart
	if b == '\r' {
		c.sse = sseCR
	}
}

// dispatch ends an event (a blank line): its document, if valid, may hold the value.
func (c *Counter) dispatch() {
	if !c.dataSeen {
		return
	}
	n, err := c.j.result()
	switch {
	case err == nil:
		c.found, c.n, c.err = true, n, nil
	case errors.Is(err, ErrResponseNotJSON):
		// Not an event of ours ("[DONE]", a keep-alive): skipped.
	case !c.found:
		c.err = err
	}
	c.dataSeen = false
	c.j.reset(c.path, c.r.Count != "")
}

// Result returns what the body settles on, once it has all been written: the records
// counted or the number read, rounded up; or the reason it cannot be read (ErrResponseNotJSON,
// ErrResponseMissing, ErrResponseNumber). An event stream's unfinished last event (no blank
// line after it) is not read, as an EventSource would not dispatch it.
func (c *Counter) Result() (int64, error) {
	if !c.events {
		return c.j.result()
	}
	if c.found {
		return c.n, nil
	}
	return 0, c.err
}

// jsonScan is a push-mode JSON scanner with the grammar and limits of CountJSONArray, which
// keeps, of the document, only its container stack and where it stands on the path.
type jsonScan struct {
	path  []string
	count bool // the value at the path is an array to count; else a number

	st      scanState
	arrays  [(maxDepth + 63) / 64]uint64 // bit d-1 set: the container at depth d is an array
	depth   int                          // open containers
	inArray bool                         // the container at depth is an array
	on      int                          // containers at depths 2..on+1 are the path's first on values
	rootObj bool                         // the top-level value is an object

	// A key being read (stKey...): whether it is compared with the path, and how far it
	// matches.
	inKey     bool
	cmp       bool
	seg       string
	segAt     int
	same      bool
	hi        rune // a high surrogate escape, waiting for its low half
	hit       bool // the last key read matches its path segment
	u         rune // a \u escape being read, and its digits so far
	uDigits   int
	afterHigh bool // the escape being read follows a high surrogate

	lit    string // a literal being read, and how far
	litAt  int
	num    [maxNumber]byte // the number at the path being read
	numLen int
	numHit bool // the number being read is the path's value
	numBad bool // ...and it was too long

	target      bool  // the array open at targetDepth is the path's value
	targetDepth int   // its depth
	elems       int64 // its elements so far
	found       bool  // the path's value (the last one, as encoding/json keeps) was read
	n           int64
	long        bool // the path's value was a number too long to read
}

type scanState uint8

const (
	stValue      scanState = iota // a value, after whitespace
	stAfterValue                  // whitespace, then ',' or a closing bracket (or the end)
	stObjOpen                     // after '{': whitespace, then '}' or a key
	stArrOpen                     // after '[': whitespace, then ']' or a value
	stKeyStart                    // after ',' in an object: whitespace, then a key
	stColon                       // after a key: whitespace, then ':'
	stString                      // in a string value
	stStringEsc                   // after a '\' in a string value or key
	stStringU                     // in a \u escape
	stKey                         // in a key
	stLiteral                     // in true, false or null
	stNumMinus                    // after '-'
	stNumZero                     // after a leading '0'
	stNumInt                      // in the integer digits
	stNumDot                      // after '.'
	stNumFrac                     // in the fraction digits
	stNumE                        // after 'e'
	stNumESign                    // after the exponent's sign
	stNumExp                      // in the exponent digits
	stError
)

func (j *jsonScan) reset(path []string, count bool) {
	*j = jsonScan{path: path, count: count}
}

// write scans p.
func (j *jsonScan) write(p []byte) {
	for i := 0; i < len(p) && j.st != stError; {
		i = j.step(p, i)
	}
}

// result ends the document and returns the value at the path.
func (j *jsonScan) result() (int64, error) {
	switch j.st {
	case stNumZero, stNumInt, stNumFrac, stNumExp:
		if j.depth == 0 {
			j.endNumber()
			j.st = stAfterValue
		}
	}
	if j.st != stAfterValue || j.depth != 0 {
		return 0, ErrResponseNotJSON
	}
	switch {
	case j.found:
		return j.n, nil
	case j.long:
		return 0, ErrResponseNumber
	}
	return 0, ErrResponseMissing
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// step scans from p[i] and returns where it stopped.
func (j *jsonScan) step(p []byte, i int) int {
	b := p[i]
	switch j.st {
	case stValue, stArrOpen:
		if isSpace(b) {
			return i + 1
		}
		if j.st == stArrOpen && b == ']' {
			j.close()
			return i + 1
		}
		j.startValue(b)
		return i + 1
	case stAfterValue:
		if isSpace(b) {
			return i + 1
		}
		switch {
		case j.depth == 0:
			j.st = stError // trailing data
		case b == ',' && j.inArray:
			j.st = stValue
		case b == ',':
			j.st = stKeyStart
		case b == ']' && j.inArray, b == '}' && !j.inArray:
			j.close()
		default:
			j.st = stError
		}
		return i + 1
	case stObjOpen, stKeyStart:
		if isSpace(b) {
			return i + 1
		}
		switch {
		case b == '}' && j.st == stObjOpen:
			j.close()
		case b == '"':
			j.startKey()
		default:
			j.st = stError
		}
		return i + 1
	case stColon:
		if isSpace(b) {
			return i + 1
		}
		j.st = stValue
		if b != ':' {
			j.st = stError
		}
		return i + 1
	case stString:
		// Plain characters eight at a time, as CountJSONArray scans strings.
		for i+8 <= len(p) {
			if m := stringStop(binary.LittleEndian.Uint64(p[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		for ; i < len(p); i++ {
			switch c := p[i]; {
			case c == '"':
				j.st = stAfterValue
				return i + 1
			case c == '\\':
				j.st = stStringEsc
				return i + 1
			case c < 0x20:
				j.st = stError
				return i + 1
			}
		}
		return i
	case stKey:
		for ; i < len(p); i++ {
			c := p[i]
			switch {
			case c == '"':
				j.endKey()
				return i + 1
			case c == '\\':
				j.st = stStringEsc
				return i + 1
			case c < 0x20:
				j.st = stError
				return i + 1
			}
			j.keyByte(c)
		}
		return i
	case stStringEsc:
		var d byte
		switch b {
		case '"', '\\', '/':
			d = b
		case 'b':
			d = '\b'
		case 'f':
			d = '\f'
		case 'n':
			d = '\n'
		case 'r':
			d = '\r'
		case 't':
			d = '\t'
		case 'u':
			j.st, j.u, j.uDigits = stStringU, 0, 0
			return i + 1
		default:
			j.st = stError
			return i + 1
		}
		if j.inKey {
			j.keyByte(d)
			j.st = stKey
		} else {
			j.st = stString
		}
		return i + 1
	case stStringU:
		if !isHex(b) {
			j.st = stError
			return i + 1
		}
		j.u = j.u<<4 | rune(unhex(b))
		if j.uDigits++; j.uDigits < 4 {
			return i + 1
		}
		if j.inKey {
			j.keyRune(j.u)
			j.st = stKey
		} else {
			j.st = stString
		}
		return i + 1
	case stLiteral:
		if b != j.lit[j.litAt] {
			j.st = stError
			return i + 1
		}
		if j.litAt++; j.litAt == len(j.lit) {
			j.st = stAfterValue
		}
		return i + 1
	case stNumMinus, stNumZero, stNumInt, stNumDot, stNumFrac, stNumE, stNumESign, stNumExp:
		return j.numberByte(p, i)
	}
	return len(p) // stError: nothing more to read
}

// startValue begins the value whose first byte is b, at depth.
func (j *jsonScan) startValue(b byte) {
	// The value of a key of the path: it replaces what an earlier one held (the last of
	// duplicate keys counts, as in encoding/json).
	atPath := j.hit && j.depth == len(j.path)
	if j.hit {
		j.found, j.long = false, false
	}
	if j.target && j.depth == j.targetDepth {
		j.elems++
	}
	switch b {
	case '{', '[':
		if j.depth == maxDepth {
			j.st = stError
			return
		}
		if j.depth == 0 && b == '{' {
			j.rootObj = true
		}
		if b == '{' && j.hit && j.depth < len(j.path) {
			j.on++ // the value of a key of the path before its last
		}
		if b == '[' && atPath && j.count {
			j.target, j.targetDepth, j.elems = true, j.depth+1, 0
		}
		j.inArray = b == '['
		if j.inArray {
			j.arrays[j.depth>>6] |= 1 << (j.depth & 63)
			j.st = stArrOpen
		} else {
			j.arrays[j.depth>>6] &^= 1 << (j.depth & 63)
			j.st = stObjOpen
		}
		j.depth++
	case '"':
		j.st = stString
	case 't':
		j.st, j.lit, j.litAt = stLiteral, "true", 1
	case 'f':
		j.st, j.lit, j.litAt = stLiteral, "false", 1
	case 'n':
		j.st, j.lit, j.litAt = stLiteral, "null", 1
	case '-':
		j.startNumber(atPath, b)
		j.st = stNumMinus
	default:
		if b < '0' || b > '9' {
			j.st = stError
			return
		}
		j.startNumber(atPath, b)
		j.st = stNumInt
		if b == '0' {
			j.st = stNumZero
		}
	}
	j.hit = false
}

// close ends the container at depth.
func (j *jsonScan) close() {
	if j.target && j.depth == j.targetDepth {
		j.target, j.found, j.n = false, true, j.elems
	}
	if j.on >= 1 && j.on == j.depth-1 {
		j.on--
	}
	j.depth--
	j.inArray = j.depth > 0 && j.arrays[(j.depth-1)>>6]>>((j.depth-1)&63)&1 == 1
	j.st = stAfterValue
}

// startKey begins a key of the object at depth: compared with the path's key for that depth
// when the containers above are the path's.
func (j *jsonScan) startKey() {
	j.st, j.inKey = stKey, true
	j.cmp = j.rootObj && j.depth-1 < len(j.path) && j.on == j.depth-1
	j.hit, j.hi = false, 0
	if j.cmp {
		j.seg, j.segAt, j.same = j.path[j.depth-1], 0, true
	}
}

// keyByte compares one byte of the decoded key.
func (j *jsonScan) keyByte(c byte) {
	if !j.cmp || !j.same {
		return
	}
	if j.hi != 0 { // a high surrogate not followed by its low half: U+FFFD, which no path key holds
		j.same = false
		return
	}
	if j.segAt < len(j.seg) && j.seg[j.segAt] == c {
		j.segAt++
		return
	}
	j.same = false
}

// keyRune compares one \u escape of the key, pairing surrogates as encoding/json does.
func (j *jsonScan) keyRune(r rune) {
	if !j.cmp || !j.same {
		return
	}
	switch {
	case j.hi != 0:
		if r < 0xDC00 || r > 0xDFFF {
			j.same = false // the high half alone is U+FFFD
			return
		}
		r = (j.hi-0xD800)<<10 | (r - 0xDC00) + 0x10000
		j.hi = 0
	case 0xD800 <= r && r <= 0xDBFF:
		j.hi = r
		return
	case 0xDC00 <= r && r <= 0xDFFF:
		j.same = false
		return
	}
	var buf [utf8.UTFMax]byte
	for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
		j.keyByte(c)
	}
}

func (j *jsonScan) endKey() {
	j.hit = j.cmp && j.same && j.hi == 0 && j.segAt == len(j.seg)
	j.cmp, j.inKey = false, false
	j.st = stColon
}

func (j *jsonScan) startNumber(atPath bool, b byte) {
	j.numHit, j.numBad, j.numLen = atPath && !j.count, false, 0
	j.numAppend(b)
}

func (j *jsonScan) numAppend(b byte) {
	if !j.numHit {
		return
	}
	if j.numLen == len(j.num) {
		j.numBad = true
		return
	}
	j.num[j.numLen] = b
	j.numLen++
}

// numberByte scans one byte of a number; a byte that cannot continue it ends it and is
// scanned again as what follows a value.
func (j *jsonScan) numberByte(p []byte, i int) int {
	b := p[i]
	digit := '0' <= b && b <= '9'
	next := j.st
	switch j.st {
	case stNumMinus:
		switch {
		case b == '0':
			next = stNumZero
		case digit:
			next = stNumInt
		default:
			j.st = stError
			return i + 1
		}
	case stNumZero, stNumInt:
		switch {
		case digit && j.st == stNumInt:
		case b == '.':
			next = stNumDot
		case b == 'e' || b == 'E':
			next = stNumE
		default:
			j.endNumber()
			return i
		}
	case stNumDot, stNumFrac:
		switch {
		case digit:
			next = stNumFrac
		case j.st == stNumDot:
			j.st = stError
			return i + 1
		case b == 'e' || b == 'E':
			next = stNumE
		default:
			j.endNumber()
			return i
		}
	case stNumE, stNumESign:
		switch {
		case digit:
			next = stNumExp
		case j.st == stNumE && (b == '+' || b == '-'):
			next = stNumESign
		default:
			j.st = stError
			return i + 1
		}
	case stNumExp:
		if !digit {
			j.endNumber()
			return i
		}
	}
	j.numAppend(b)
	j.st = next
	return i + 1
}

// endNumber ends a number; the path's is read.
func (j *jsonScan) endNumber() {
	j.st = stAfterValue
	if !j.numHit {
		return
	}
	j.numHit = false
	if j.numBad {
		j.long = true
		return
	}
	j.found, j.n = true, ceilNumber(string(j.num[:j.numLen]))
}

// ceilNumber is the JSON number lit rounded up to a whole number, from 0 to math.MaxInt64.
func ceilNumber(lit string) int64 {
	if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
		return max(n, 0)
	}
	f, _ := strconv.ParseFloat(lit, 64) // valid JSON: only a range error, and f is then ±Inf or 0
	switch f = math.Ceil(f); {
	case f <= 0:
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	}
	return int64(f)
}
