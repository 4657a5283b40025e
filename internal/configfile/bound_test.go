package configfile

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

type boundEntry struct {
	Name string   `yaml:"name"`
	Keys []string `yaml:"keys"`
}

type boundDoc struct {
	Routes []boundEntry `yaml:"routes"`
}

// TestAliasesCannotBlowUp: a small file whose aliases name a large mapping or list many
// times is refused before decoding, rather than decoded (and its errors collected) with the
// square of its size in time and memory.
func TestAliasesCannotBlowUp(t *testing.T) {
	for _, anchored := range []string{"mapping", "list"} {
		var b strings.Builder
		b.WriteString("x: &x\n")
		for i := range 2000 {
			if anchored == "mapping" {
				fmt.Fprintf(&b, "  k%d: 1\n", i)
			} else {
				fmt.Fprintf(&b, "  - k%d\n", i)
			}
		}
		b.WriteString("routes: [")
		for range 2000 {
			if anchored == "mapping" {
				b.WriteString("*x,")
			} else {
				b.WriteString("{name: a, keys: *x},")
			}
		}
		b.WriteString("]\n")
		var d boundDoc
		_, err := Decode([]byte(b.String()), &d)
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "aliases expand") {
			t.Fatalf("%s anchored: error %v, want the aliases refused", anchored, err)
		}
	}

	// Aliases within bounds still read as written.
	var d struct {
		K      []string     `yaml:"k"`
		Routes []boundEntry `yaml:"routes"`
	}
	if _, err := Decode([]byte("k: &k [a, b]\nroutes: [{name: x, keys: *k}, {name: y, keys: *k}]\n"), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Routes) != 2 || len(d.Routes[1].Keys) != 2 {
		t.Fatalf("%+v", d)
	}
}
