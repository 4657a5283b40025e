package gateway

import (
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// heldUpstream answers with head, then waits for release before it sends tail. Its
// Content-Length is declared unless chunked.
func heldUpstream(head, tail string, chunked bool, release <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(len(head)+len(tail)))
		}
		w.WriteHeader(200)
		_, _ = io.WriteString(w, head)
		http.NewResponseController(w).Flush()
		<-release
		_, _ = io.WriteString(w, tail)
	}
}

// TestFlushWhileUpstreamWaits: what the upstream has sent reaches the client while the
// upstream holds the rest, with a declared length (the gateway's flush policy) and without
// one (ReverseProxy's own flushing). The upstream is released only once the client has read
// the first bytes; a gateway that held them would never get there, and the watchdog, which
// releases it late, fails the test instead of letting it hang.
func TestFlushWhileUpstreamWaits(t *testing.T) {
	tests := []struct {
		name    string
		chunked bool
		wantLen int64
	}{
		{"content-length", false, 10},
		{"chunked", true, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			release := make(chan struct{})
			var once sync.Once
			var late atomic.Bool
			open := func() { once.Do(func() { close(release) }) }
			watchdog := time.AfterFunc(30*time.Second, func() { late.Store(true); open() })
			defer watchdog.Stop()
			defer open()
			f.up.handler = heldUpstream("abc", "defghij", tt.chunked, release)

			req, _ := http.NewRequest("GET", f.url+"/crm/v2/users", nil)
			req.Header.Set("X-Api-Key", "acme-key")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			head := make([]byte, 3)
			if _, err := io.ReadFull(resp.Body, head); err != nil {
				t.Fatal(err)
			}
			if late.Load() {
				t.Fatal("the headers and first bytes came only after the upstream was released")
			}
			open()
			tail, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(head) + string(tail); got != "abcdefghij" {
				t.Errorf("body %q", got)
			}
			if resp.ContentLength != tt.wantLen {
				t.Errorf("Content-Length %d, want %d", resp.ContentLength, tt.wantLen)
			}
			if got := resp.Header.Get("X-Credits-Charged"); got != "1" {
				t.Errorf("X-Credits-Charged %q, want 1", got)
			}
		})
	}
}
