package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// manyOrgs is what starting the gateway with a large orgs file measured.
type manyOrgs struct {
	orgs      int
	fileBytes int64
	ready     time.Duration // from exec to the first 200 from /readyz
	timedOut  bool          // not ready within manyOrgsWait: ready is that wait, rss and peak at its end
	rss, peak int64         // bytes resident when ready, and the peak until then (VmRSS, VmHWM)
}

// manyOrgsWait bounds the wait for readiness, so a slow start costs the bench a minute at most.
const manyOrgsWait = time.Minute

// writeOrgsFile writes n orgs as CREDITGATE_ORGS_FILE JSON to path, shaped as the orgs
// package's load benchmark shapes them: an edition, users, and two keys each, the first
// plain, the second as its SHA-256 digest.
func writeOrgsFile(path string, n int) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	_, _ = w.WriteString("{\"orgs\": [\n")
	var digest [sha256.Size]byte
	var hexed [2 * sha256.Size]byte
	for i := range n {
		if i > 0 {
			_, _ = w.WriteString(",\n")
		}
		id := strconv.Itoa(i)
		k0 := "key-" + id + "-0-0123456789abcdefghijklmnopqrstuv"
		k1 := "key-" + id + "-1-0123456789abcdefghijklmnopqrstuv"
		digest = sha256.Sum256([]byte(k1))
		hex.Encode(hexed[:], digest[:])
		_, _ = w.WriteString(`  {"id": "org-` + id + `", "edition": "crm-professional", "users": ` +
			strconv.Itoa(i%500) + `, "keys": ["` + k0 + `", "sha256:` + string(hexed[:]) + `"]}`)
	}
	_, _ = w.WriteString("\n]}\n")
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, err
	}
	return st.Size(), f.Close()
}

// startManyOrgs writes n orgs to a file in dir, starts the gateway binary with it (memory
// store) in front of upstream, and measures the time until its /readyz answers 200 and its
// memory then. The gateway is stopped before it returns.
func startManyOrgs(bin, dir, upstream string, n int) (manyOrgs, error) {
	m := manyOrgs{orgs: n}
	file := filepath.Join(dir, "many-orgs.json")
	size, err := writeOrgsFile(file, n)
	if err != nil {
		return m, err
	}
	defer os.Remove(file)
	m.fileBytes = size
	cmd, _, admin, err := gatewayCmd(bin, upstream, "", "", "CREDITGATE_ORGS_FILE="+file)
	if err != nil {
		return m, err
	}
	var errOut strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &limitedWriter{w: &errOut, n: 4096}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return m, err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	ctx, cancel := context.WithTimeout(context.Background(), manyOrgsWait)
	defer cancel()
	c := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+admin+"/readyz", nil)
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			return m, fmt.Errorf("gateway with %d orgs exited before ready: %s", n, errOut.String())
		case <-ctx.Done():
			m.timedOut = true
		case <-time.After(10 * time.Millisecond):
		}
		if m.timedOut {
			break
		}
	}
	m.ready = time.Since(start)
	m.rss, m.peak = procMemory(cmd.Process.Pid)
	return m, nil
}

// procMemory returns VmRSS and VmHWM of pid in bytes, from /proc/<pid>/status (Linux).
func procMemory(pid int) (rss, peak int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(v) // "123456 kB"
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return rss, peak
}
