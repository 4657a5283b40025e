package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

var (
	mdLink   = regexp.MustCompile(`\]\(([^()\s]+)\)`)
	codeSpan = regexp.MustCompile("`[^`]*`")
)

// TestDocLinks: every relative link in README.md and docs/*.md names a file that exists, and
// every #anchor names a heading of its target, spelled as GitHub spells heading anchors.
func TestDocLinks(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := append([]string{filepath.Join(repoRoot, "README.md")}, docs...)
	anchors := map[string]map[string]bool{} // cleaned path → its anchors
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		a := headingAnchors(string(b))
		anchors[path] = a
		return a
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		name, _ := filepath.Rel(repoRoot, file)
		for i, line := range proseLines(string(b)) {
			for _, m := range mdLink.FindAllStringSubmatch(codeSpan.ReplaceAllString(line, "code"), -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				path, anchor, _ := strings.Cut(target, "#")
				dest := file
				if path != "" {
					dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
					if _, err := os.Stat(dest); err != nil {
						t.Errorf("%s:%d: link %q: no such file", name, i+1, target)
						continue
					}
				}
				if anchor == "" {
					continue
				}
				if !strings.HasSuffix(dest, ".md") {
					t.Errorf("%s:%d: link %q: an anchor into a file that is not Markdown", name, i+1, target)
					continue
				}
				if !anchorsOf(filepath.Clean(dest))[anchor] {
					t.Errorf("%s:%d: link %q: no heading with that anchor", name, i+1, target)
				}
			}
		}
	}
}

// proseLines returns the lines of a Markdown text with the lines of fenced code blocks
// blanked, so line numbers stay those of the file.
func proseLines(s string) []string {
	lines := strings.Split(s, "\n")
	fenced := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			lines[i] = ""
			continue
		}
		if fenced {
			lines[i] = ""
		}
	}
	return lines
}

// headingAnchors returns the anchors GitHub gives the ATX headings of a Markdown text: lower
// case, spaces to hyphens, every character but letters, digits, '-' and '_' dropped, and
// -1, -2, … appended to repeats.
func headingAnchors(s string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, l := range proseLines(s) {
		text, ok := headingText(l)
		if !ok {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(text)) {
			switch {
			case r == ' ':
				b.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// headingText returns the text of an ATX heading line ("## Text"), and false for any other line.
func headingText(l string) (string, bool) {
	rest := strings.TrimLeft(l, "#")
	level := len(l) - len(rest)
	if level < 1 || level > 6 || (rest != "" && rest[0] != ' ') {
		return "", false
	}
	return strings.TrimRight(strings.TrimSpace(rest), "# "), true
}
