package main

import (
	"testing"
	"time"
)

// A wrk 4.1 report, as the bench runs it (--latency).
const wrkReport = `Running 5s test @ http://127.0.0.1:41011/crm/v2/users
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.10ms    2.01ms  40.12ms   88.10%
    Req/Sec     5.79k   512.33     6.90k    71.00%
  Latency Distribution
     50%    2.52ms
     75%    3.40ms
     90%    4.99ms
     99%   11.10ms
  57623 requests in 5.00s, 21.21MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  11523.71
Transfer/sec:      4.24MB
`

func TestParseWrk(t *testing.T) {
	l, err := parseWrk(wrkReport)
	if err != nil {
		t.Fatal(err)
	}
	want := load{requests: 57620, failures: 3, elapsed: 5 * time.Second, p50: 2520 * time.Microsecond, p99: 11100 * time.Microsecond}
	if l != want {
		t.Fatalf("parseWrk = %+v, want %+v", l, want)
	}
	if _, err := parseWrk("wrk: connection refused"); err == nil {
		t.Fatal("parseWrk accepted a report without totals")
	}
}

func TestPercentilesAndMedian(t *testing.T) {
	var lat []time.Duration
	for i := range 100 {
		lat = append(lat, time.Duration(100-i)*time.Millisecond)
	}
	if p50, p99 := percentiles(lat); p50 != 51*time.Millisecond || p99 != 100*time.Millisecond {
		t.Fatalf("percentiles = %s, %s", p50, p99)
	}
	tests := []struct {
		give []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{nil, 0},
	}
	for _, tt := range tests {
		if got := median(tt.give); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.give, got, tt.want)
		}
	}
}
