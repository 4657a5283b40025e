package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// load is what one run of a load generator measured.
type load struct {
	requests int64 // answered with 2xx
	failures int64 // errors and other statuses
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (l load) rps() float64 { return float64(l.requests) / l.elapsed.Seconds() }

// wrkRun drives url with wrk for d: threads threads, conns connections.
func wrkRun(url, key string, threads, conns int, d time.Duration) (load, error) {
	secs := max(int(d/time.Second), 1)
	name, value := credential(key)
	out, err := exec.Command("wrk", "-t"+strconv.Itoa(threads), "-c"+strconv.Itoa(conns),
		"-d"+strconv.Itoa(secs)+"s", "--latency", "-H", name+": "+value, url).CombinedOutput()
	if err != nil {
		return load{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	return parseWrk(string(out))
}

var (
	wrkTotal  = regexp.MustCompile(`(\d+) requests in ([\d.]+)(us|ms|s|m)`)
	wrkPct    = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkErrors = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func wrkDuration(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return time.Duration(f * float64(time.Microsecond))
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	case "m":
		return time.Duration(f * float64(time.Minute))
	}
	return time.Duration(f * float64(time.Second))
}

func parseWrk(out string) (load, error) {
	var l load
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return l, fmt.Errorf("wrk output not understood: %s", out)
	}
	total, _ := strconv.ParseInt(m[1], 10, 64)
	l.elapsed = wrkDuration(m[2], m[3])
	for _, p := range wrkPct.FindAllStringSubmatch(out, -1) {
		if p[1] == "50" {
			l.p50 = wrkDuration(p[2], p[3])
		} else {
			l.p99 = wrkDuration(p[2], p[3])
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		l.failures, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkErrors.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			l.failures += n
		}
	}
	l.requests = total - l.failures
	return l, nil
}

func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
		DisableCompression: true, Proxy: nil,
	}}
}

// fire sends one GET and reports whether it was answered 2xx.
func fire(ctx context.Context, c *http.Client, url, key string) bool {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	name, value := credential(key)
	req.Header[name] = []string{value}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode/100 == 2
}

// credential returns the header a call sends for key: key itself when it is a whole
// "Name: value" line (an access token), else X-Api-Key.
func credential(key string) (name, value string) {
	if n, v, ok := strings.Cut(key, ": "); ok {
		return n, v
	}
	return "X-Api-Key", key
}

// closedLoop is the load generator used without wrk: conns workers, each sending its next
// request when the last is answered, for d.
func closedLoop(url, key string, conns int, d time.Duration) load {
	c := newClient(conns)
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		mu       sync.Mutex
		lat      []time.Duration
		ok, fail atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for ctx.Err() == nil {
				t := time.Now()
				if fire(ctx, c, url, key) {
					ok.Add(1)
					mine = append(mine, time.Since(t))
				} else if ctx.Err() == nil {
					fail.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	l := load{requests: ok.Load(), failures: fail.Load(), elapsed: time.Since(start)}
	l.p50, l.p99 = percentiles(lat)
	return l
}

// openLoopConns is how many connections openLoop may open (one per request in flight).
const openLoopConns = 128

// openLoop sends rate requests per second for d, on schedule whatever the answers' pace, and
// measures each latency from its scheduled start (so a stall is not hidden by sending less).
func openLoop(url, key string, rate float64, d time.Duration) load {
	const workers = openLoopConns
	c := newClient(workers)
	defer c.CloseIdleConnections()
	n := int(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	sched := make(chan time.Time, n)
	var (
		mu       sync.Mutex
		lat      []time.Duration
		ok, fail atomic.Int64
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), d+5*time.Second)
	defer cancel()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for at := range sched {
				if w := time.Until(at); w > 0 {
					time.Sleep(w)
				}
				if fire(ctx, c, url, key) {
					ok.Add(1)
					mine = append(mine, time.Since(at))
				} else {
					fail.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	start := time.Now()
	for i := range n {
		sched <- start.Add(time.Duration(i) * interval)
	}
	close(sched)
	wg.Wait()
	l := load{requests: ok.Load(), failures: fail.Load(), elapsed: time.Since(start)}
	l.p50, l.p99 = percentiles(lat)
	return l
}

func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	if len(lat) == 0 {
		return 0, 0
	}
	slices.Sort(lat)
	return lat[len(lat)*50/100], lat[min(len(lat)*99/100, len(lat)-1)]
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 10*time.Microsecond:
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64) + "µs"
	case d >= 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
	case d >= time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 0, 64) + "µs"
}

func fmtInt(n float64) string {
	s := strconv.FormatInt(int64(n+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
