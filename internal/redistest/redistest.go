// Package redistest starts a real redis-server for tests, on a free loopback port.
//
// Tests that need Redis call Start. Without a redis-server binary they are skipped with a
// message, unless CI=true or CREDITGATE_REQUIRE_REDIS=1, where a missing server fails the test.
// CREDITGATE_TEST_REDIS_URL points the tests at a server that is already running instead.
package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process (or an external server) for one test.
type Server struct {
	// Addr is host:port.
	Addr string
	// URL is redis://Addr.
	URL string
	// Client is connected to the server; it is closed when the test ends.
	Client *redis.Client

	t    testing.TB
	args []string
	cmd  *exec.Cmd
	dir  string
}

// Required reports whether a missing redis-server must fail tests rather than skip them.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("CREDITGATE_REQUIRE_REDIS") == "1"
}

// Binary returns the path of redis-server, or skips (or fails, when Required) the test.
func Binary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if Required() {
			t.Fatalf("%s not found on PATH, and CI requires it: install it (apt-get install -y redis-server)", name)
		}
		t.Skipf("%s not found on PATH: skipping (install redis-server, or set CREDITGATE_TEST_REDIS_URL)", name)
	}
	return p
}

// Start returns a running server with persistence off, stopped when the test ends.
// Extra arguments are passed to redis-server (e.g. "--appendonly", "yes").
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	if u := os.Getenv("CREDITGATE_TEST_REDIS_URL"); u != "" && len(extra) == 0 {
		opts, err := redis.ParseURL(u)
		if err != nil {
			t.Fatalf("CREDITGATE_TEST_REDIS_URL: %v", err)
		}
		s := &Server{Addr: opts.Addr, URL: u, Client: redis.NewClient(opts), t: t}
		t.Cleanup(func() { s.Client.Close() })
		return s
	}
	bin := Binary(t, "redis-server")
	port := FreePort(t)
	s := &Server{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		t:    t,
		dir:  t.TempDir(),
	}
	s.URL = "redis://" + s.Addr
	s.args = append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--daemonize", "no", "--loglevel", "warning",
	}, extra...)
	s.start(bin)
	s.Client = redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() {
		s.Client.Close()
		s.Kill()
	})
	return s
}

func (s *Server) start(bin string) {
	s.t.Helper()
	s.cmd = exec.Command(bin, s.args...)
	s.cmd.Dir = s.dir
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	if err := WaitPing(s.Addr, 10*time.Second); err != nil {
		s.Kill()
		s.t.Fatalf("redis-server on %s: %v", s.Addr, err)
	}
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Pause stops the server's process (SIGSTOP): its connections stay open but nothing is
// answered, as with a hung or partitioned Redis. Resume undoes it. Where the process's state
// can be read (Linux), Pause returns once it is stopped: a command sent after Pause is not
// served before Resume.
func (s *Server) Pause() {
	s.signal(syscall.SIGSTOP)
	stat := "/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/stat"
	for {
		b, err := os.ReadFile(stat)
		if err != nil {
			return
		}
		// pid (comm) state ...: the state follows the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) || b[i+2] == 'T' || b[i+2] == 't' {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.t.Helper()
	if s.cmd == nil || s.cmd.Process == nil {
		s.t.Fatal("redistest: no server process to signal")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("redistest: signal %v: %v", sig, err)
	}
}

// Restart starts the server again on the same port and data directory after Kill.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("redistest: Restart without Kill")
	}
	s.start(Binary(s.t, "redis-server"))
}

// WaitPing waits until a server answers PING on addr. It speaks RESP by hand so that the
// refused dials of a server still starting do not fill the test log.
func WaitPing(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ping(addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PING answer within %s: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", buf[:n])
	}
	return nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
