package limiter

import (
	"embed"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/*.lua
var luaFS embed.FS

// libSource is lua/lib.lua, the helpers every script shares: a script cannot call another's
// functions, so each script is built as this source followed by its own.
var libSource = mustRead("lib.lua")

// mustScript returns the script lua/name, built on the shared helpers. Its SHA1 (what EVALSHA
// and LoadScripts use) covers the helpers too.
func mustScript(name string) *redis.Script {
	return redis.NewScript(libSource + "\n" + mustRead(name))
}

func mustRead(name string) string {
	src, err := luaFS.ReadFile("lua/" + name)
	if err != nil {
		panic("limiter: missing embedded script " + name)
	}
	return string(src)
}
