package costtable

import (
	"encoding/json"
	"testing"
)

var benchSizes = []struct {
	name string
	size int
}{
	{"1KiB", 1 << 10},
	{"64KiB", 64 << 10},
	{"1MiB", 1 << 20},
}

func BenchmarkCountJSONArray(b *testing.B) {
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			body := benchBody(bs.size)
			want, _ := refCountJSONArray(body, "data")
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if n, ok := CountJSONArray(body, "data"); n != want || !ok {
					b.Fatalf("CountJSONArray = %d, %t; want %d, true", n, ok, want)
				}
			}
		})
	}
}

// BenchmarkEncodingJSONCount counts the same records with encoding/json, for comparison.
func BenchmarkEncodingJSONCount(b *testing.B) {
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			body := benchBody(bs.size)
			want, _ := refCountJSONArray(body, "data")
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var v struct{ Data []json.RawMessage }
				if err := json.Unmarshal(body, &v); err != nil || int64(len(v.Data)) != want {
					b.Fatalf("json.Unmarshal: %d records, %v; want %d", len(v.Data), err, want)
				}
			}
		})
	}
}

func BenchmarkCountQueryList(b *testing.B) {
	query := "fields=Last_Name,Email&ids=" + "4150868000000224005,4150868000000224006,4150868000000224007"
	b.SetBytes(int64(len(query)))
	b.ReportAllocs()
	for b.Loop() {
		if n := CountQueryList(query, "ids"); n != 3 {
			b.Fatalf("CountQueryList = %d, want 3", n)
		}
	}
}

// BenchmarkClassifyAndCharge is what the request path does for an insert: match the rule in
// the built-in table, then count the body's records and price them.
func BenchmarkClassifyAndCharge(b *testing.B) {
	tbl, err := Builtin("zoho-crm")
	if err != nil {
		b.Fatal(err)
	}
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			body := benchBody(bs.size)
			want, _ := refCountJSONArray(body, "data")
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				r := tbl.Match("POST", "/crm/v8/Leads", "")
				if _, n, ok := r.Charge("", body); n != want || !ok {
					b.Fatalf("Charge counted %d, %t; want %d", n, ok, want)
				}
			}
		})
	}
}

// BenchmarkCounter reads a 1 MiB list response in 32 KiB pieces, as the gateway passes it on.
func BenchmarkCounter(b *testing.B) {
	body := []byte(records(6000))
	r := &Response{Count: "data", Per: 200}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		c := r.NewCounter(false)
		for p := body; len(p) > 0; {
			n := min(32<<10, len(p))
			_, _ = c.Write(p[:n])
			p = p[n:]
		}
		if n, err := c.Result(); err != nil || n != 6000 {
			b.Fatal(n, err)
		}
	}
}
