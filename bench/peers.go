package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The peers: general-purpose gateways with a rate limiter, measured beside creditgate in the
// same rounds on the same upstream. Each is configured with a limit no run reaches, keyed by
// the API key header the load sends, so every call is admitted and counted. bench/peers/build.sh
// builds the versions the figures name.

// peerLimit is the limit the bench gives every peer: calls per window that no run can reach.
type peerLimit struct {
	calls  int64
	window time.Duration
}

var (
	// Traefik: a token bucket refilling at calls per window, with as many tokens as calls.
	traefikNeverReached = peerLimit{calls: 1_000_000_000, window: time.Second}
	// caddy-ratelimit keeps a ring of one timestamp per allowed call of the window, allocated
	// whole when a key is first seen (24 MB here): a million calls a second is out of reach of
	// this load and small enough to allocate.
	caddyNeverReached = peerLimit{calls: 1_000_000, window: time.Second}
)

// peerPaths are the peers' binaries; "" means absent.
type peerPaths struct {
	traefik, caddy string
}

// findPeer returns the binary named by flag, else by the environment variable env, else
// name on PATH; "" when none is there. A path given explicitly must exist.
func findPeer(flagValue, env, name string) (string, error) {
	for _, p := range []string{flagValue, os.Getenv(env)} {
		if p == "" {
			continue
		}
		abs, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		return abs, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", nil
}

// peerVersion runs bin with args and returns the first line of what it prints that holds a
// version ("v" and a digit), or "version unknown".
func peerVersion(bin string, args ...string) string {
	out, _ := exec.Command(bin, args...).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if len(f) > 1 && f[0] == 'v' && f[1] >= '0' && f[1] <= '9' {
				return f
			}
		}
	}
	return "version unknown"
}

// caddyHasRateLimit reports whether the caddy binary has the rate_limit handler of
// github.com/mholt/caddy-ratelimit.
func caddyHasRateLimit(bin string) bool {
	out, err := exec.Command(bin, "list-modules").Output()
	return err == nil && strings.Contains(string(out), "http.handlers.rate_limit")
}

// traefikConfig returns Traefik's static and dynamic configuration: one entry point on addr,
// a router for every path through the rateLimit middleware (keyed by the X-Api-Key header,
// in Redis at redisAddr, or in process when redisAddr is "") to upstream. idle is the idle
// pool per upstream host (Traefik's default is 200).
func traefikConfig(addr, upstream, redisAddr, dynamicFile string, lim peerLimit, idle int) (static, dynamic string) {
	static = `global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: ERROR
serversTransport:
  maxIdleConnsPerHost: ` + strconv.Itoa(max(idle, 200)) + `
entryPoints:
  web:
    address: "` + addr + `"
providers:
  file:
    filename: "` + dynamicFile + `"
    watch: false
`
	store := ""
	if redisAddr != "" {
		store = `
        redis:
          endpoints: ["` + redisAddr + `"]`
	}
	dynamic = `http:
  routers:
    bench:
      entryPoints: [web]
      rule: "PathPrefix(` + "`/`" + `)"
      middlewares: [limit]
      service: upstream
  middlewares:
    limit:
      rateLimit:
        average: ` + strconv.FormatInt(lim.calls, 10) + `
        period: "` + lim.window.String() + `"
        burst: ` + strconv.FormatInt(lim.calls, 10) + `
        sourceCriterion:
          requestHeaderName: X-Api-Key` + store + `
  services:
    upstream:
      loadBalancer:
        servers:
          - url: "http://` + upstream + `"
`
	return static, dynamic
}

// caddyConfig returns a Caddyfile serving addr: rate_limit keyed by the X-Api-Key header
// (in process; caddy-ratelimit's distributed mode shares state through Caddy's storage,
// periodically, not per call), then reverse_proxy to upstream with an idle pool of idle
// connections (Caddy's default is 32).
func caddyConfig(addr, upstream, dataDir string, lim peerLimit, idle int) string {
	return `{
	admin off
	auto_https off
	persist_config off
	skip_install_trust
	storage file_system ` + strconv.Quote(dataDir) + `
	log {
		output discard
	}
}

http://` + addr + ` {
	rate_limit {
		zone per_key {
			key {http.request.header.X-Api-Key}
			events ` + strconv.FormatInt(lim.calls, 10) + `
			window ` + lim.window.String() + `
		}
	}
	reverse_proxy ` + upstream + ` {
		transport http {
			keepalive_idle_conns_per_host ` + strconv.Itoa(max(idle, 32)) + `
		}
	}
}
`
}

// startTraefik runs Traefik in front of upstream, its rateLimit middleware in Redis at
// redisAddr or in process ("").
func startTraefik(bin, dir, name, upstream, redisAddr string, lim peerLimit, idle int) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dynFile := filepath.Join(dir, name+"-dynamic.yml")
	staticFile := filepath.Join(dir, name+".yml")
	static, dynamic := traefikConfig(addr, upstream, redisAddr, dynFile, lim, idle)
	if err := os.WriteFile(dynFile, []byte(dynamic), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(staticFile, []byte(static), 0o600); err != nil {
		return nil, err
	}
	return startPeer(name, addr, exec.Command(bin, "--configFile="+staticFile))
}

// startCaddy runs Caddy with caddy-ratelimit in front of upstream.
func startCaddy(bin, dir, name, upstream string, lim peerLimit, idle int) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	home := filepath.Join(dir, name)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	file := filepath.Join(dir, name+".Caddyfile")
	if err := os.WriteFile(file, []byte(caddyConfig(addr, upstream, filepath.Join(home, "data"), lim, idle)), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	// Caddy's own files (autosave, certificates) stay in the bench's directory.
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
	return startPeer(name, addr, cmd)
}

// startPeer starts cmd and waits until addr proxies the bench's path with the bench's key.
func startPeer(name, addr string, cmd *exec.Cmd) (*proc, error) {
	var errOut strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &limitedWriter{w: &errOut, n: 4096}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, addr: addr, cmd: cmd}
	if err := waitHTTP("http://"+addr+benchPath, benchKey, 15*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w; its output: %s", name, err, errOut.String())
	}
	return p, nil
}

// limitedWriter keeps the first n bytes written to it and drops the rest.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		_, _ = l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
