package orgs

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// hexOf returns the lower-case hex SHA-256 of s.
func hexOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// mixedCase upper-cases every other letter of s.
func mixedCase(s string) string {
	b := []byte(s)
	for i := 0; i < len(b); i += 2 {
		if 'a' <= b[i] && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	return string(b)
}

func TestParseKey(t *testing.T) {
	tests := []struct {
		name string
		give string
		want Key
	}{
		{name: "plain", give: secret + "-plain", want: plainKey(secret + "-plain")},
		{name: "plain with =", give: secret + "+/x==", want: plainKey(secret + "+/x==")},
		{name: "plain not trimmed", give: " " + secret + " ", want: plainKey(" " + secret + " ")},
		{name: "plain mentioning sha256 later", give: secret + "sha256:", want: plainKey(secret + "sha256:")},
		{name: "short plain", give: "s", want: plainKey("s")},
		{name: "sha256 lower hex", give: "sha256:" + hexOf(secret), want: plainKey(secret)},
		{name: "sha256 upper hex", give: "sha256:" + strings.ToUpper(hexOf(secret)), want: plainKey(secret)},
		{name: "sha256 mixed hex", give: "sha256:" + mixedCase(hexOf(secret)), want: plainKey(secret)},
		{name: "prefix in upper case", give: "SHA256:" + hexOf(secret), want: plainKey(secret)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKey(tt.give)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseKey(%q) = %v, want %v", tt.give, got, tt.want)
			}
		})
	}
}

func TestParseKeyErrors(t *testing.T) {
	tests := []struct {
		name string
		give string
		want error
	}{
		{name: "empty", give: "", want: errKeyEmpty},
		{name: "prefix only", give: "sha256:", want: errKeyDigest},
		{name: "not hex", give: "sha256:" + secret, want: errKeyDigest},
		{name: "63 digits", give: "sha256:" + hexOf(secret)[:63], want: errKeyDigest},
		{name: "65 digits", give: "sha256:" + hexOf(secret) + "a", want: errKeyDigest},
		{name: "non-hex digit", give: "sha256:" + hexOf(secret)[:63] + "g", want: errKeyDigest},
		{name: "space inside", give: "sha256: " + hexOf(secret)[:63], want: errKeyDigest},
		{name: "upper-case prefix, bad digest", give: "Sha256:" + secret, want: errKeyDigest},
		{name: "hash of the empty key", give: "sha256:" + hexOf(""), want: errKeyEmptyHash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKey(tt.give)
			if err != tt.want {
				t.Fatalf("ParseKey(%q) error = %v, want %v", tt.give, err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows key text: %q", err)
			}
		})
	}
}

func TestKeyString(t *testing.T) {
	k := plainKey(secret)
	want := "sha256:" + hexOf(secret)[:8] + "…"
	if got := k.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (Key{}).String(); got != "sha256:none" {
		t.Errorf("zero Key String() = %q, want %q", got, "sha256:none")
	}
}
