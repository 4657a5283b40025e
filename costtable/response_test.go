package costtable

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestResponseSettle(t *testing.T) {
	count := &Response{Count: "data", Per: 200, Max: 20}
	tokens := &Response{Number: "usage.total_tokens", Per: 1000}
	header := &Response{Header: "X-Credits-Cost"}
	capped := &Response{Header: "X-Credits-Cost", Max: 50}
	tests := []struct {
		r    *Response
		give int64
		want int64
	}{
		{count, 0, 1}, {count, 1, 1}, {count, 200, 1}, {count, 201, 2}, {count, 5000, 20}, {count, -3, 1},
		{tokens, 12345, 13}, {tokens, 1000, 1}, {tokens, 0, 1}, {tokens, math.MaxInt64, math.MaxInt64/1000 + 1},
		{header, 0, 0}, {header, 7, 7}, {header, -1, 0},
		{capped, 49, 49}, {capped, 5000, 50},
	}
	for _, tt := range tests {
		if got := tt.r.Settle(tt.give); got != tt.want {
			t.Errorf("%s: Settle(%d) = %d, want %d", tt.r, tt.give, got, tt.want)
		}
	}
}

func TestParseHeaderCost(t *testing.T) {
	tests := []struct {
		give string
		want int64
		ok   bool
	}{
		{"7", 7, true}, {" 12 ", 12, true}, {"0", 0, true},
		{"", 0, false}, {"-1", 0, false}, {"+3", 0, false}, {"3.5", 0, false}, {"1e3", 0, false},
		{"99999999999999999999", 0, false}, {"abc", 0, false},
	}
	for _, tt := range tests {
		if got, ok := ParseHeaderCost(tt.give); got != tt.want || ok != tt.ok {
			t.Errorf("ParseHeaderCost(%q) = %d, %t; want %d, %t", tt.give, got, ok, tt.want, tt.ok)
		}
	}
}

// records is {"data":[…n records…],"more":true}.
func records(n int) string {
	var b strings.Builder
	b.WriteString(`{"info":{"count":` + fmt.Sprint(n) + `},"data":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"lead \"%d\"","tags":["a","b"],"data":[1,2]}`, i, i)
	}
	b.WriteString(`],"more":true}`)
	return b.String()
}

// readAll writes body to a new counter in pieces of size (the whole body when size is 0).
func readAll(r *Response, events bool, body string, size int) (int64, error) {
	c := r.NewCounter(events)
	if size <= 0 {
		size = len(body) + 1
	}
	for len(body) > 0 {
		n := min(size, len(body))
		_, _ = c.Write([]byte(body[:n]))
		body = body[n:]
	}
	return c.Result()
}

func TestCounterCounts(t *testing.T) {
	r := &Response{Count: "data", Per: 200, Max: 20}
	for _, tt := range []struct{ records, want int64 }{{0, 1}, {1, 1}, {200, 1}, {201, 2}, {5000, 20}} {
		body := records(int(tt.records))
		for _, size := range []int{0, 1, 7, 4096} {
			n, err := readAll(r, false, body, size)
			if err != nil || n != tt.records || r.Settle(n) != tt.want {
				t.Errorf("%d records in pieces of %d: %d, %v; settles %d, want %d", tt.records, size, n, err, r.Settle(n), tt.want)
			}
		}
	}
}

func TestCounterReads(t *testing.T) {
	count := &Response{Count: "data", Per: 1}
	nested := &Response{Count: "result.items", Per: 1}
	tokens := &Response{Number: "usage.total_tokens", Per: 1000}
	tests := []struct {
		name string
		r    *Response
		body string
		want int64
		err  error
	}{
		{"llm usage", tokens, `{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":45,"total_tokens":12345}}`, 12345, nil},
		{"fraction rounds up", tokens, `{"usage":{"total_tokens":12.01}}`, 13, nil},
		{"exponent", tokens, `{"usage":{"total_tokens":1.5e3}}`, 1500, nil},
		{"negative is 0", tokens, `{"usage":{"total_tokens":-5}}`, 0, nil},
		{"huge saturates", tokens, `{"usage":{"total_tokens":1e300}}`, math.MaxInt64, nil},
		{"number at top level", tokens, `{"usage":{"total_tokens":7}} `, 7, nil},
		{"last duplicate wins", tokens, `{"usage":{"total_tokens":1,"total_tokens":2}}`, 2, nil},
		{"parent duplicate replaces", tokens, `{"usage":{"total_tokens":1},"usage":{"x":2}}`, 0, ErrResponseMissing},
		{"parent duplicate after", tokens, `{"usage":{"x":2},"usage":{"total_tokens":3}}`, 3, nil},
		{"escaped key", tokens, `{"us\u0061ge":{"total\u005ftokens":4}}`, 4, nil},
		{"case differs", tokens, `{"Usage":{"total_tokens":4}}`, 0, ErrResponseMissing},
		{"not a number", tokens, `{"usage":{"total_tokens":"4"}}`, 0, ErrResponseMissing},
		{"null", tokens, `{"usage":null}`, 0, ErrResponseMissing},
		{"inside an array", tokens, `{"usage":[{"total_tokens":4}]}`, 0, ErrResponseMissing},
		{"deeper key of the same name", tokens, `{"x":{"usage":{"total_tokens":4}}}`, 0, ErrResponseMissing},
		{"long number", tokens, `{"usage":{"total_tokens":` + strings.Repeat("1", 70) + `}}`, 0, ErrResponseNumber},
		{"truncated", tokens, `{"usage":{"total_tokens":4}`, 0, ErrResponseNotJSON},
		{"trailing data", tokens, `{"usage":{"total_tokens":4}}x`, 0, ErrResponseNotJSON},
		{"bom", tokens, "\xef\xbb\xbf{\"usage\":{\"total_tokens\":4}}", 0, ErrResponseNotJSON},
		{"top-level array", count, `[1,2]`, 0, ErrResponseMissing},
		{"empty body", count, ``, 0, ErrResponseNotJSON},
		{"records hold the key too", count, `{"data":[{"data":[1,2,3]},{"data":[]}]}`, 2, nil},
		{"empty array", count, `{"data":[]}`, 0, nil},
		{"not an array", count, `{"data":{"a":1}}`, 0, ErrResponseMissing},
		{"nested path", nested, `{"result":{"total":3,"items":[1,[2],{"a":[3]}]}}`, 3, nil},
		{"strings with brackets", count, `{"data":["]","[","}\"{",",,"]}`, 4, nil},
		{"surrogate pair key", &Response{Count: "😀", Per: 1}, `{"\ud83d\ude00":[1,2]}`, 2, nil},
		{"lone surrogate key", &Response{Count: "x", Per: 1}, `{"\ud83dx":[1,2]}`, 0, ErrResponseMissing},
		{"bad escape", count, `{"data":["\x"]}`, 0, ErrResponseNotJSON},
		{"leading zero", count, `{"data":[01]}`, 0, ErrResponseNotJSON},
	}
	for _, tt := range tests {
		for _, size := range []int{0, 1, 3} {
			n, err := readAll(tt.r, false, tt.body, size)
			if n != tt.want || !errors.Is(err, tt.err) {
				t.Errorf("%s (pieces of %d): %d, %v; want %d, %v", tt.name, size, n, err, tt.want, tt.err)
			}
		}
	}
}

func TestCounterDepth(t *testing.T) {
	r := &Response{Count: "data", Per: 1}
	deep := func(d int) string {
		return `{"data":[1],"x":` + strings.Repeat("[", d-1) + strings.Repeat("]", d-1) + `}`
	}
	if n, err := readAll(r, false, deep(maxDepth), 0); err != nil || n != 1 {
		t.Errorf("nested %d deep: %d, %v; want 1", maxDepth, n, err)
	}
	if _, err := readAll(r, false, deep(maxDepth+1), 0); !errors.Is(err, ErrResponseNotJSON) {
		t.Errorf("nested %d deep: %v; want ErrResponseNotJSON", maxDepth+1, err)
	}
}

func TestCounterEventStream(t *testing.T) {
	tokens := &Response{Number: "usage.total_tokens", Per: 1000}
	tests := []struct {
		name string
		body string
		want int64
		err  error
	}{
		{"usage in the last event", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n" +
			"data: {\"choices\":[],\"usage\":{\"total_tokens\":12345}}\n\ndata: [DONE]\n\n", 12345, nil},
		{"the last value wins", "data: {\"usage\":{\"total_tokens\":1}}\n\ndata: {\"usage\":{\"total_tokens\":2}}\n\n", 2, nil},
		{"a later event without usage keeps it", "data: {\"usage\":{\"total_tokens\":5}}\n\ndata: {\"x\":1}\n\n", 5, nil},
		{"CRLF and CR lines, comments, other fields", ": ping\r\nevent: message\r\nid: 1\r\ndata:{\"usage\":\r\ndata: {\"total_tokens\":9}}\r\n\r\n", 9, nil},
		{"data split over lines", "data: {\"usage\":\ndata: {\"total_tokens\":3}}\n\n", 3, nil},
		{"unfinished last event is not read", "data: {\"usage\":{\"total_tokens\":5}}\n", 0, ErrResponseNotJSON},
		{"no usage anywhere", "data: {\"x\":1}\n\n", 0, ErrResponseMissing},
		{"nothing but [DONE]", "data: [DONE]\n\n", 0, ErrResponseNotJSON},
		{"long field names are skipped", "datadatadata: {\"usage\":{\"total_tokens\":5}}\n\n", 0, ErrResponseNotJSON},
	}
	for _, tt := range tests {
		for _, size := range []int{0, 1, 2, 5} {
			n, err := readAll(tokens, true, tt.body, size)
			if n != tt.want || !errors.Is(err, tt.err) {
				t.Errorf("%s (pieces of %d): %d, %v; want %d, %v", tt.name, size, n, err, tt.want, tt.err)
			}
		}
	}
}

func TestResponseRuleErrors(t *testing.T) {
	tests := []struct {
		give string
		want string
	}{
		{"{count: data, per: 200, max: 20}", ""},
		{"{number: usage.total_tokens, per: 1000}", ""},
		{"{header: X-Credits-Cost}", ""},
		{"{header: X-Credits-Cost, max: 9}", ""},
		{"{}", "line 2: rules[0] \"a\": response: one of count, number and header"},
		{"{count: data, number: x, per: 1}", "exclusive"},
		{"{count: data, header: X-Cost, per: 1}", "exclusive"},
		{"{count: data}", "per must be at least 1, got 0"},
		{"{number: a.b, per: -2}", "per must be at least 1, got -2"},
		{"{count: data, per: 1, max: 0}", "line 2: rules[0] \"a\": response: max must be at least 1, got 0"},
		{"{count: data, per: 1, max: -1}", "max must be at least 1, got -1"},
		{"{header: X-Cost, per: 3}", "per goes with count or number"},
		{"{header: \"X Cost\"}", "not allowed in a field name"},
		{"{count: a..b, per: 1}", "empty key"},
		{"{count: .a, per: 1}", "empty key"},
		{"{count: data, per: 1, maximum: 3}", `unknown field "maximum"`},
		{"{count: data, per: one}", "integer"},
	}
	for _, tt := range tests {
		_, err := Parse("t", []byte("rules:\n  - {name: a, method: GET, path: /a, cost: 3,\n     response: "+tt.give+"}\n"))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.give, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want one saying %q", tt.give, err, tt.want)
		}
	}
	if _, err := Parse("t", []byte("rules:\n  - {name: a, method: POST, path: /a, cost: 3, per: 10, count_body: items, response: {count: data, per: 1}}\n")); err == nil ||
		!strings.Contains(err.Error(), "not both") {
		t.Errorf("a per-record rule with a response: %v", err)
	}
	if _, err := Parse("t", []byte("rules: []\ndefault: {name: d, cost: 1, response: {header: X-Cost}}\n")); err == nil ||
		!strings.Contains(err.Error(), "fixed-cost") {
		t.Errorf("a default with a response: %v", err)
	}
	tbl, err := Parse("t", []byte("rules:\n  - {name: a, method: GET, path: /a, cost: 3, response: {count: data, per: 200, max: 20}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := tbl.Match("GET", "/a", ""); r.Response == nil || *r.Response != (Response{Count: "data", Per: 200, Max: 20}) {
		t.Fatalf("rule %+v", r)
	}
}
