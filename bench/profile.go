package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"time"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/gateway"
	"github.com/creditgate/creditgate/orgs"
)

// profileGateway serves a gateway in this process, wired as cmd/creditgate wires it (default
// transport, the given store), drives it with load for d, and writes a CPU profile of that
// time to path: the hot path under load, for go tool pprof. inProcess says the store answers
// within the process (the memory store).
func profileGateway(path, upstream string, store gateway.Store, inProcess bool, timeout time.Duration,
	drive func(url string) error) error {
	up, err := url.Parse("http://" + upstream)
	if err != nil {
		return err
	}
	list, err := orgs.Parse(benchOrgs)
	if err != nil {
		return err
	}
	dir, err := orgs.NewDirectory(list)
	if err != nil {
		return err
	}
	costs, err := costtable.Builtin("zoho-crm")
	if err != nil {
		return err
	}
	gw, err := gateway.New(gateway.Config{
		Upstream: up, Store: store, StoreInProcess: inProcess, StoreTimeout: timeout, FailOpen: true, Costs: costs, Orgs: dir,
		LimitOf: func(o *orgs.Org) int64 { return o.Limit },
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	base := "http://" + ln.Addr().String() + benchPath
	if err := waitHTTP(base, benchKey, 5*time.Second); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	err = drive(base)
	pprof.StopCPUProfile()
	if err != nil {
		return fmt.Errorf("profile %s: %w", path, err)
	}
	return nil
}
