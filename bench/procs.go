package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/creditgate/creditgate/gateway"
)

// roleEnv names the role a re-executed bench binary plays: each server under test runs in a
// process of its own, so its CPU time can be read from /proc.
const roleEnv = "CREDITGATE_BENCH_ROLE"

// runRole serves one role on a free loopback port, prints the address on stdout and serves
// until killed. It returns false when no role was asked for.
func runRole() bool {
	role := os.Getenv(roleEnv)
	if role == "" {
		return false
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var h http.Handler
	switch role {
	case "upstream":
		body := []byte(`{"users":[{"id":"1","full_name":"Bench User"}],"info":{"count":1}}`)
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header()["Content-Type"] = []string{"application/json"}
			_, _ = w.Write(body)
		})
	case "stock", "tuned":
		up, err := url.Parse(os.Getenv("CREDITGATE_BENCH_UPSTREAM"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		p := httputil.NewSingleHostReverseProxy(up)
		// Its log off: the load generator's connections cut at the end of each run would
		// fill the terminal.
		p.ErrorLog = log.New(io.Discard, "", 0)
		switch role {
		case "stock":
			// http.DefaultTransport but for its idle pool, which keeps 2 connections per
			// host: under a load of more connections it would measure TCP set-up, not a proxy.
			idle, err := strconv.Atoi(os.Getenv(idleConnsEnv))
			if err != nil || idle < 1 {
				fmt.Fprintf(os.Stderr, "%s: want a positive number, got %q\n", idleConnsEnv, os.Getenv(idleConnsEnv))
				os.Exit(2)
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.MaxIdleConnsPerHost, tr.MaxIdleConns = idle, max(tr.MaxIdleConns, idle)
			p.Transport = tr
		case "tuned":
			p.Transport = gateway.NewTransport(time.Minute)
			p.BufferPool = &bufferPool{p: sync.Pool{New: func() any { return make([]byte, 32<<10) }}}
		}
		h = p
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", roleEnv, role)
		os.Exit(2)
	}
	fmt.Println(ln.Addr().String())
	_ = (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
	return true
}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return b.p.Get().([]byte) }
func (b *bufferPool) Put(p []byte) { b.p.Put(p) } //nolint:staticcheck // as the gateway's pool

// proc is a child process serving on addr.
type proc struct {
	name string
	addr string
	cmd  *exec.Cmd
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) stop() {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// startRole re-executes this binary in a role and reads the address it serves on.
func startRole(role string, env ...string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s: no address: %w", role, err)
	}
	return &proc{name: role, addr: strings.TrimSpace(line), cmd: cmd}, nil
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// buildGateway builds the production binary, so the gateway is measured as it ships.
func buildGateway(dir string) (string, error) {
	bin := filepath.Join(dir, "creditgate")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/creditgate/creditgate/cmd/creditgate")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/creditgate (run the bench from the repository): %w", err)
	}
	return bin, nil
}

// gatewayCmd returns the creditgate binary set to serve on free loopback addresses in front of
// upstream with orgs (CREDITGATE_ORGS); redisURL "" means the in-memory store; env adds to or
// overrides the settings. It returns the proxy's and the admin listener's addresses.
func gatewayCmd(bin, upstream, redisURL, orgs string, env ...string) (cmd *exec.Cmd, addr, admin string, err error) {
	if addr, err = freeAddr(); err != nil {
		return nil, "", "", err
	}
	if admin, err = freeAddr(); err != nil {
		return nil, "", "", err
	}
	cmd = exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"CREDITGATE_UPSTREAM_URL=http://"+upstream,
		"CREDITGATE_LISTEN_ADDR="+addr,
		"CREDITGATE_ADMIN_ADDR="+admin,
		"CREDITGATE_ORGS="+orgs,
		"CREDITGATE_LOG_LEVEL=warn", // error would make zap complain about the proxy's warn-level log
		"CREDITGATE_REDIS_URL="+redisURL,
		"CREDITGATE_ADMIN_TOKENS=viewer:bench-viewer-token", // else a warning per gateway
	)
	cmd.Env = append(cmd.Env, env...)
	return cmd, addr, admin, nil
}

// startGateway runs the creditgate binary in front of upstream; redisURL "" means the
// in-memory store. key is the credential it is checked with (see credential).
func startGateway(bin, name, upstream, redisURL, orgs, key string, env ...string) (*proc, error) {
	cmd, addr, _, err := gatewayCmd(bin, upstream, redisURL, orgs, env...)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{name: name, addr: addr, cmd: cmd}
	if err := waitHTTP("http://"+addr+benchPath, key, 15*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// startRedis runs a redis-server without persistence on a free loopback port.
func startRedis(dir string) (*proc, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found: install it (apt-get install -y redis-server)")
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{name: "redis-server", addr: addr, cmd: cmd}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("redis-server on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitHTTP polls url until it answers 200.
func waitHTTP(url, key string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		name, value := credential(key)
		req.Header.Set(name, value)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not serving %s within %s: %w", url, timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cpuTicks returns the user+system CPU time of pid from /proc (Linux), in clock ticks.
func cpuTicks(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return u + st, true
}

// tick is one clock tick of /proc/<pid>/stat (USER_HZ, 100 on Linux).
const tick = 10 * time.Millisecond

// schedWait returns how long the threads of pid have waited on a run queue, ready but not
// running, from /proc/<pid>/task/*/schedstat (Linux; 0 elsewhere).
func schedWait(pid int) time.Duration {
	dirs, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	var total time.Duration
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		ns, _ := strconv.ParseInt(f[1], 10, 64)
		total += time.Duration(ns)
	}
	return total
}
