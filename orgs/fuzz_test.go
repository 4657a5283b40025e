package orgs

import (
	"encoding/hex"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics and is deterministic, that whatever it accepts is
// valid and survives a round trip through the syntax, and that no error message depends on
// the text of a key.
func FuzzParse(f *testing.F) {
	// The README's example.
	f.Add("acme:edition=crm-professional,users=20,keys=k1|k2;beta:limit=5000,keys=k3", "k9")
	// Every field, with whitespace and trailing separators.
	f.Add(" a : edition=desk-free , users=1,agents=2,light_agents=3,limit=4,addon=5,legacy=6,"+
		"concurrency=7,monthly_limit=8,additional=9,commercial=f,keys=x ;;", "key")
	// A sha256 key and a value with '='.
	f.Add("a:keys=sha256:"+strings.Repeat("aB", 32)+"|ab==", "AB+/==")
	// Orgs without fields.
	f.Add("a;b:;c", " spaced key ")
	// Errors: duplicate ID, bad ID, missing ID, unknown field, field twice.
	f.Add("a;a;{x};:;b:user=1,limit=1,limit=2", "k")
	// Errors: integers out of range or with a sign.
	f.Add("a:users=-1,agents=+1,limit=0,addon=9223372036854775808", "k")
	// Errors: empty keys, bad digests, the digest of the empty key.
	f.Add("a:keys=||sha256:zz|sha256:"+hexOf(""), "sha256:")
	// A key split at ',' and ';'.
	f.Add("a:keys=p1,p2;p3{;b:keys=q1;q2|q3", "k=,;|")
	// Unicode and control characters.
	f.Add("ä:edition=ü,keys=\x00\xff;\t", "\u00a0")

	f.Fuzz(func(t *testing.T, s, key string) {
		orgs, err := Parse(s)
		orgs2, err2 := Parse(s)
		if !reflect.DeepEqual(orgs, orgs2) || errText(err) != errText(err2) {
			t.Fatalf("Parse(%q) is not deterministic", s)
		}
		if err != nil {
			if orgs != nil {
				t.Fatalf("Parse(%q) returned orgs with an error", s)
			}
		} else {
			checkParsed(t, s, orgs)
		}

		// The text of a key never shapes an error: the same input with another plain key in
		// its place gives the same errors. (A key that contains a separator is not a key but
		// a syntax error, and the sha256: form can fail on its own.)
		key = strings.TrimSpace(key)
		if key == "" || strings.ContainsAny(key, ",;|") || strings.HasPrefix(strings.ToLower(key), keyPrefix) {
			return
		}
		const other = "other-key"
		for _, form := range []string{"x:keys=%s;" + s, s + ";x:keys=%s", s + ";x:keys=k0|%s,users=1"} {
			_, errWith := Parse(strings.Replace(form, "%s", key, 1))
			_, errWithout := Parse(strings.Replace(form, "%s", other, 1))
			if errText(errWith) != errText(errWithout) {
				t.Fatalf("errors depend on the key text:\n  with key:   %v\n  with other: %v", errWith, errWithout)
			}
		}
	})
}

// checkParsed checks the orgs Parse accepted from s.
func checkParsed(t *testing.T, s string, orgs []Org) {
	t.Helper()
	seen := make(map[string]bool)
	for _, o := range orgs {
		if !validID(o.ID) || strings.ContainsAny(o.ID, "{}") {
			t.Fatalf("Parse(%q) accepted org ID %q", s, o.ID)
		}
		if seen[o.ID] {
			t.Fatalf("Parse(%q) accepted org ID %q twice", s, o.ID)
		}
		seen[o.ID] = true
		if len(check(&o)) > 0 {
			t.Fatalf("Parse(%q) accepted an invalid org: %v", s, check(&o))
		}
		for _, k := range o.Keys {
			if k == (Key{}) {
				t.Fatalf("Parse(%q) accepted a zero key", s)
			}
		}
	}
	if d, err := NewDirectory(orgs); err == nil && d.Len() != len(orgs) {
		t.Fatalf("NewDirectory(Parse(%q)) holds %d orgs, want %d", s, d.Len(), len(orgs))
	}
	again, err := Parse(format(orgs))
	if err != nil {
		t.Fatalf("Parse(format(Parse(%q))): %v", s, err)
	}
	if !reflect.DeepEqual(orgs, again) {
		t.Fatalf("round trip of %q:\n  got  %+v\n  want %+v", s, again, orgs)
	}
}

// format writes orgs in the CREDITGATE_ORGS syntax, keys in the sha256: form.
func format(orgs []Org) string {
	var b strings.Builder
	for _, o := range orgs {
		b.WriteString(o.ID + ":edition=" + o.Edition)
		for _, name := range fieldNames {
			if p := intField(&o, name); p != nil && (name != "limit" || o.HasLimit) {
				b.WriteString("," + name + "=" + strconv.FormatInt(*p, 10))
			}
		}
		b.WriteString(",commercial=" + strconv.FormatBool(o.Commercial))
		for i, k := range o.Keys {
			sep := "|"
			if i == 0 {
				sep = ",keys="
			}
			b.WriteString(sep + keyPrefix + hex.EncodeToString(k.sum[:]))
		}
		b.WriteString(";")
	}
	return b.String()
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
