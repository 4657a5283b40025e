package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestREADMEDocumentsEveryVariable: every variable the gateway reads has a row in the
// configuration table of docs/configuration.md, and the table names no variable the gateway does not read.
func TestREADMEDocumentsEveryVariable(t *testing.T) {
	data, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	known := map[string]bool{}
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		name := typ.Field(i).Tag.Get("env")
		if name == "" {
			continue
		}
		known[name] = true
		if !strings.Contains(readme, "| `"+name+"` |") {
			t.Errorf("%s has no row in the configuration table of docs/configuration.md", name)
		}
	}
	for _, line := range strings.Split(readme, "\n") {
		if rest, ok := strings.CutPrefix(line, "| `CREDITGATE_"); ok {
			name := "CREDITGATE_" + rest[:strings.IndexByte(rest, '`')]
			if !known[name] {
				t.Errorf("docs/configuration.md documents %s, which the gateway does not read", name)
			}
		}
	}
}
