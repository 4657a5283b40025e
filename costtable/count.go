package costtable

import (
	"encoding/binary"
	"math/bits"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth is the deepest nesting of objects and arrays CountJSONArray accepts, the top-level
// object being depth 1: encoding/json's own limit, so a body an upstream in Go binds is never
// one the gateway cannot count (and charges only the rule's cost for). The container stack is
// a fixed bitset of 1,256 bytes.
const maxDepth = 10_000

// CountJSONArray counts the elements of the array that is the value of the top-level key
// `key` of the JSON object body. It reads the body once, validating all of it as JSON
// (RFC 8259), and does not allocate or recurse, whatever the body's size or nesting.
//
// Keys are compared as a JSON parser decodes them and as encoding/json matches them to a
// field: "d\u0061ta" is data, and so are "DATA" and "dAtA". Decoded keys are compared
// character by character with ASCII letters folded to upper case and every other character r
// folded to unicode.ToUpper(unicode.ToLower(r)), so that U+017F (ſ) matches "s" and U+212A (the
// Kelvin sign) matches "k". This pairs every two characters that Unicode simple case folding
// pairs (bytes.EqualFold, which current encoding/json uses), and also İ (U+0130) and ı (U+0131)
// with I: a key some parser binds is never missed. Invalid UTF-8 and unpaired surrogates in a
// key read as U+FFFD, as in encoding/json; a key that is not valid UTF-8 matches nothing. Only
// keys of the top-level object count; a "data" key inside a record does not.
//
// Every matching key is read, since parsers disagree on which of several wins: n is the largest
// element count among those whose value is an array ({"data":[1],"DATA":[1,2,3]} counts 3,
// whatever the order), and 0 when no key matches.
//
// ok is true when the body is a single valid JSON object, nested no deeper than 10,000 levels (as encoding/json),
// in which every matching key holds an array. When a matching key holds anything else (an
// object, a string, null, …) ok is false but n is still the largest count among the matching
// keys that hold arrays: {"data":[1,2],"DATA":null} gives (2, false), since a parser may bind
// the array. When the body is not a single valid JSON object (malformed, truncated, followed
// by anything but whitespace) or nests deeper than 10,000 levels, ok is false and n is 0. A
// leading byte order mark is rejected, as encoding/json rejects it (RFC 8259 §8.1: senders
// must not add one). Invalid UTF-8 inside strings is accepted, as encoding/json accepts it.
//
// An element is one value at the array's own level: an object or array element counts once,
// however much it holds.
func CountJSONArray(body []byte, key string) (n int64, ok bool) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return 0, false
	}
	var (
		arrays  [(maxDepth + 63) / 64]uint64 // bit d-1 set: the container at depth d is an array
		depth   int                          // open containers
		inArray bool                         // the container at depth is an array
		hit     bool                         // the key just read at depth 1 matches key
		other   bool                         // a matching key's value is not an array
		target  bool                         // the array open at depth 2 is a matching key's value
		count   int64                        // elements of that array so far
		best    int64                        // largest count among matching keys' arrays
	)
value:
	for {
		// i is at the first byte of a value, past any whitespace; depth is the container it
		// belongs to (0 only for the top-level value).
		if i >= len(body) {
			return 0, false
		}
		c := body[i]
		if depth == 1 && hit && c != '[' {
			// Not countable, but the body is still read to the end: it must be valid, and
			// another matching key's array may be larger than what the caller charges.
			other, hit = true, false
		}
		if depth == 2 && target {
			count++
		}
		switch c {
		case '{', '[':
			if depth == maxDepth {
				return 0, false
			}
			inArray = c == '['
			if inArray {
				arrays[depth>>6] |= 1 << (depth & 63)
			} else {
				arrays[depth>>6] &^= 1 << (depth & 63)
			}
			if depth == 1 && hit {
				target, count = true, 0
			}
			depth++
			i = skipSpace(body, i+1)
			if i < len(body) && body[i] == c+2 { // ']' is '['+2, '}' is '{'+2
				i++
				if depth == 2 && target {
					target = false // best is at least 0 already
				}
				depth--
				inArray = depth > 0 && arrays[(depth-1)>>6]>>((depth-1)&63)&1 == 1
				break
			}
			if !inArray {
				if i, hit = readKey(body, i, depth == 1, key); i < 0 {
					return 0, false
				}
			}
			continue value
		case '"':
			i = scanString(body, i+1)
		case 't':
			i = scanLiteral(body, i, "true")
		case 'f':
			i = scanLiteral(body, i, "false")
		case 'n':
			i = scanLiteral(body, i, "null")
		default:
			i = scanNumber(body, i)
		}
		if i < 0 {
			return 0, false
		}

		// After a value: commas, and the closing brackets of finished containers.
		for {
			i = skipSpace(body, i)
			if depth == 0 {
				if i != len(body) {
					return 0, false
				}
				return best, !other
			}
			if i >= len(body) {
				return 0, false
			}
			c := body[i]
			i++
			switch {
			case c == ',':
				i = skipSpace(body, i)
				if !inArray {
					if i, hit = readKey(body, i, depth == 1, key); i < 0 {
						return 0, false
					}
				}
				continue value
			case c == ']' && inArray, c == '}' && !inArray:
				if depth == 2 && target {
					target, best = false, max(best, count)
				}
				depth--
				inArray = depth > 0 && arrays[(depth-1)>>6]>>((depth-1)&63)&1 == 1
			default:
				return 0, false
			}
		}
	}
}

// readKey reads an object key at body[i], then the colon and whitespace after it, and returns
// the index of the value. When compare is set, hit reports whether the decoded key equals key.
// end is -1 when the bytes are not a key and a colon.
func readKey(body []byte, i int, compare bool, key string) (end int, hit bool) {
	if i >= len(body) || body[i] != '"' {
		return -1, false
	}
	if compare {
		i, hit = scanKey(body, i+1, key)
	} else {
		i = scanString(body, i+1)
	}
	if i < 0 {
		return -1, false
	}
	i = skipSpace(body, i)
	if i >= len(body) || body[i] != ':' {
		return -1, false
	}
	return skipSpace(body, i+1), hit
}

func skipSpace(body []byte, i int) int {
	for i < len(body) {
		switch body[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// Masks for finding, eight bytes at a time, the bytes that end a run of plain string
// characters: '"', '\\' and control characters.
const (
	byteOnes  = 0x0101010101010101
	byteHighs = 0x8080808080808080
)

// stringStop returns a word whose lowest set bit is the high bit of the first byte of w (in
// little-endian order) that is '"', '\\' or below 0x20, or 0 when there is none. Bits above
// that one may be wrong, so callers use only the lowest ("Determine if a word has a byte less
// than n", Bit Twiddling Hacks).
func stringStop(w uint64) uint64 {
	quote := w ^ ('"' * byteOnes)
	slash := w ^ ('\\' * byteOnes)
	return ((quote-byteOnes)&^quote | (slash-byteOnes)&^slash | (w-0x20*byteOnes)&^w) & byteHighs
}

// scanString scans the rest of a string whose opening quote is at body[i-1] and returns the
// index after the closing quote, or -1.
func scanString(body []byte, i int) int {
	for {
		for i+8 <= len(body) {
			if m := stringStop(binary.LittleEndian.Uint64(body[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(body) {
			return -1
		}
		switch c := body[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i = scanEscape(body, i); i < 0 {
				return -1
			}
		case c < 0x20:
			return -1
		default:
			i++
		}
	}
}

// scanEscape checks the escape at body[i] (a backslash) and returns the index after it, or -1.
func scanEscape(body []byte, i int) int {
	if i+1 >= len(body) {
		return -1
	}
	switch body[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 2
	case 'u':
		if _, ok := hex4(body, i+2); ok {
			return i + 6
		}
	}
	return -1
}

// scanKey is scanString for a key compared with key as decoded, without building it: hit
// reports whether the decoded key matches key, character by character with case folded (see
// CountJSONArray).
func scanKey(body []byte, i int, key string) (end int, hit bool) {
	j := 0       // key[:j] matched so far
	same := true // the decoded key so far matches key[:j]
	eat := func(r rune) {
		if !same {
			return
		}
		if j == len(key) {
			same = false
			return
		}
		k, size := rune(key[j]), 1
		if k >= utf8.RuneSelf {
			if k, size = utf8.DecodeRuneInString(key[j:]); size == 1 {
				same = false // key is not UTF-8 here: nothing decodes to it
				return
			}
		}
		if k != r && foldRune(k) != foldRune(r) {
			same = false
			return
		}
		j += size
	}
	for i < len(body) {
		c := body[i]
		switch {
		case c == '"':
			return i + 1, same && j == len(key)
		case c < 0x20:
			return -1, false
		case c < utf8.RuneSelf && c != '\\':
			if same && j < len(key) && lower(key[j]) == lower(c) {
				j++
			} else {
				eat(rune(c))
			}
			i++
		case c != '\\':
			r, size := utf8.DecodeRune(body[i:])
			eat(r) // invalid UTF-8 is U+FFFD
			i += size
		case i+1 >= len(body):
			return -1, false
		default:
			var d byte
			switch body[i+1] {
			case '"', '\\', '/':
				d = body[i+1]
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
				r, ok := hex4(body, i+2)
				if !ok {
					return -1, false
				}
				i += 6
				// As encoding/json decodes: a high surrogate followed by an escaped low one
				// is one character; any other surrogate is U+FFFD, and whatever follows it
				// is read on its own.
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if i+1 < len(body) && body[i] == '\\' && body[i+1] == 'u' {
						if r2, ok = hex4(body, i+2); !ok {
							return -1, false
						}
					}
					if r = utf16.DecodeRune(r, r2); r != utf8.RuneError {
						i += 6
					}
				}
				eat(r)
				continue
			default:
				return -1, false
			}
			eat(rune(d))
			i += 2
		}
	}
	return -1, false
}

// foldRune folds r for comparing names without regard to case: ASCII letters to upper case,
// other characters to unicode.ToUpper(unicode.ToLower(r)). Two characters fold alike whenever
// Unicode simple case folding (unicode.SimpleFold, bytes.EqualFold) makes them equal, and
// also when they are İ (U+0130) or ı (U+0131) and I, which simple folding keeps apart.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' {
			r -= 'a' - 'A'
		}
		return r
	}
	return unicode.ToUpper(unicode.ToLower(r))
}

// hex4 decodes the four hex digits at body[i:].
func hex4(body []byte, i int) (rune, bool) {
	if i+4 > len(body) {
		return 0, false
	}
	var r rune
	for _, c := range body[i : i+4] {
		if !isHex(c) {
			return 0, false
		}
		r = r<<4 | rune(unhex(c))
	}
	return r, true
}

// scanNumber scans a number at body[i] (RFC 8259 §6) and returns the index after it, or -1.
// What may follow it is for the caller to check: "01" scans as "0", followed by '1'.
func scanNumber(body []byte, i int) int {
	if i < len(body) && body[i] == '-' {
		i++
	}
	switch {
	case i < len(body) && body[i] == '0':
		i++
	case i < len(body) && '1' <= body[i] && body[i] <= '9':
		i = skipDigits(body, i+1)
	default:
		return -1
	}
	if i < len(body) && body[i] == '.' {
		if i = scanDigits(body, i+1); i < 0 {
			return -1
		}
	}
	if i < len(body) && (body[i] == 'e' || body[i] == 'E') {
		i++
		if i < len(body) && (body[i] == '+' || body[i] == '-') {
			i++
		}
		return scanDigits(body, i)
	}
	return i
}

// scanDigits skips one or more digits at body[i], or returns -1 if there is none.
func scanDigits(body []byte, i int) int {
	if i >= len(body) || body[i] < '0' || body[i] > '9' {
		return -1
	}
	return skipDigits(body, i+1)
}

func skipDigits(body []byte, i int) int {
	for i < len(body) && '0' <= body[i] && body[i] <= '9' {
		i++
	}
	return i
}

// scanLiteral checks that lit ("true", "false" or "null") is at body[i] and returns the index
// after it, or -1.
func scanLiteral(body []byte, i int, lit string) int {
	if len(body)-i < len(lit) || string(body[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// CountQueryList counts the records named by query parameter `name` in rawQuery: the non-empty
// elements of its comma-separated value. It does not allocate.
//
// Pairs are separated by '&' or ';', and names are read as for a rule's query condition (see
// namesParam): decoded ("i%64s" is ids), without regard to case ("IDS", "%49ds"), and in the
// bracketed list forms frameworks bind ("ids[]", "ids[0]", "ids%5B%5D"). In a value, both ','
// and its escape "%2C" separate elements, since the upstream splits after decoding. Empty
// elements and elements of ASCII whitespace only ('+', "%20") are not records: "ids=,1,+,"
// counts 1. Malformed escapes are read literally. Every pair that names the parameter counts,
// since query parsers disagree on which occurrence wins and on which spellings they bind:
// "ids=1,2&IDS=3&ids[]=4&ids[1]=5" is 5 records. An absent parameter counts 0.
func CountQueryList(rawQuery, name string) int64 {
	var n int64
	for q := rawQuery; q != ""; {
		var pair string
		if i := strings.IndexAny(q, "&;"); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			pair, q = q, ""
		}
		if k, v, _ := strings.Cut(pair, "="); namesParam(k, name) {
			n += countList(v)
		}
	}
	return n
}

// countList counts the elements of the query-escaped, comma-separated list v that hold more
// than ASCII whitespace once decoded.
func countList(v string) int64 {
	var n int64
	filled := false // the current element has a non-space byte
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '+':
			c = ' '
		case c == '%' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]):
			c = unhex(v[i+1])<<4 | unhex(v[i+2])
			i += 2
		}
		switch c {
		case ',':
			if filled {
				n++
			}
			filled = false
		case ' ', '\t', '\n', '\v', '\f', '\r':
		default:
			filled = true
		}
	}
	if filled {
		n++
	}
	return n
}
