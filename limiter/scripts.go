package limiter

import (
	"embed"
	"regexp"
	"strings"
)

//go:embed lua/*.lua
var luaFS embed.FS

// libFunc is one helper of lua/lib.lua: its name, and its source with the comment above it.
type libFunc struct {
	name, src string
	use       *regexp.Regexp // a use of the name, as a word
}

// libFuncs are the helpers of lua/lib.lua, in its order (a helper uses only earlier ones).
var libFuncs = parseLib(mustRead("lib.lua"))

var libFuncName = regexp.MustCompile(`(?m)^local function ([a-z_]+)\(`)

// parseLib splits lib.lua at its blank lines into helpers; paragraphs that define none (its
// header, notes on a group) are left out.
func parseLib(src string) []libFunc {
	var fns []libFunc
	for _, para := range strings.Split(src, "\n\n") {
		if m := libFuncName.FindStringSubmatch(para); m != nil {
			fns = append(fns, libFunc{name: m[1], src: strings.TrimSpace(para), use: regexp.MustCompile(`\b` + m[1] + `\b`)})
		}
	}
	return fns
}

// withLib returns script preceded by the helpers of lua/lib.lua it uses, directly or through
// other helpers: a script cannot call another's functions, and each helper is a closure made
// again on every run, so a script carries only those it needs.
func withLib(script string) string {
	used := make([]bool, len(libFuncs))
	// A helper uses only earlier ones: walk the helpers newest first, so each is marked
	// before the helpers it uses are looked at.
	for i := len(libFuncs) - 1; i >= 0; i-- {
		if libFuncs[i].use.MatchString(script) {
			used[i] = true
			continue
		}
		for j := i + 1; j < len(libFuncs); j++ {
			if used[j] && libFuncs[i].use.MatchString(libFuncs[j].src) {
				used[i] = true
				break
			}
		}
	}
	var b strings.Builder
	for i, fn := range libFuncs {
		if used[i] {
			b.WriteString(fn.src)
			b.WriteString("\n\n")
		}
	}
	b.WriteString(script)
	return b.String()
}

// mustScript returns the script lua/name, built on the helpers of lua/lib.lua it uses. Its
// SHA1 (what EVALSHA and LoadScripts use) covers the helpers too.
func mustScript(name string) script {
	return newScript(withLib(mustRead(name)))
}

func mustRead(name string) string {
	src, err := luaFS.ReadFile("lua/" + name)
	if err != nil {
		panic("limiter: missing embedded script " + name)
	}
	return string(src)
}
