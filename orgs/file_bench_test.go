package orgs

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// bigFileKey returns the j-th key of org i in a generated file: the first plain, the second
// as sha256:<hex>.
func bigFileKey(i, j int) string {
	plain := "key-" + strconv.Itoa(i) + "-" + strconv.Itoa(j) + "-0123456789abcdefghijklmnopqrstuv"
	if j%2 == 0 {
		return plain
	}
	return keyPrefix + hexOf(plain)
}

// writeBigFiles writes n orgs, each with two keys, to orgs.json and orgs.yaml in dir and
// returns their paths.
func writeBigFiles(tb testing.TB, dir string, n int) (jsonPath, yamlPath string) {
	tb.Helper()
	var j, y bytes.Buffer
	j.WriteString("{\"orgs\": [\n")
	y.WriteString("orgs:\n")
	for i := range n {
		id := "org-" + strconv.Itoa(i)
		users := strconv.Itoa(i % 500)
		k0, k1 := bigFileKey(i, 0), bigFileKey(i, 1)
		if i > 0 {
			j.WriteString(",\n")
		}
		j.WriteString(`  {"id": "` + id + `", "edition": "crm-professional", "users": ` + users +
			`, "keys": ["` + k0 + `", "` + k1 + `"]}`)
		y.WriteString("  - id: " + id + "\n    edition: crm-professional\n    users: " + users +
			"\n    keys:\n      - " + k0 + "\n      - " + k1 + "\n")
	}
	j.WriteString("\n]}\n")
	jsonPath, yamlPath = filepath.Join(dir, "orgs.json"), filepath.Join(dir, "orgs.yaml")
	if err := os.WriteFile(jsonPath, j.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(yamlPath, y.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
	return jsonPath, yamlPath
}

// BenchmarkLoadFile100k loads a file of 100,000 orgs with two keys each, and builds the
// Directory from it.
func BenchmarkLoadFile100k(b *testing.B) {
	jsonPath, yamlPath := writeBigFiles(b, b.TempDir(), manyOrgs)
	for _, tt := range []struct{ name, path string }{{"json", jsonPath}, {"yaml", yamlPath}} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				orgs, err := LoadFile(tt.path)
				if err != nil {
					b.Fatal(err)
				}
				if len(orgs) != manyOrgs {
					b.Fatalf("%d orgs, want %d", len(orgs), manyOrgs)
				}
			}
		})
		b.Run(tt.name+"+directory", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				orgs, err := LoadFile(tt.path)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := NewDirectory(orgs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNewDirectory100k builds a Directory of 100,000 orgs with two keys each.
func BenchmarkNewDirectory100k(b *testing.B) {
	jsonPath, _ := writeBigFiles(b, b.TempDir(), manyOrgs)
	orgs, err := LoadFile(jsonPath)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewDirectory(orgs); err != nil {
			b.Fatal(err)
		}
	}
}
