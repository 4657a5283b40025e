// Command creditgate is a reverse proxy that charges every API call in credits against the
// calling org's rolling window and answers 429 when the credits run out.
//
// With no configuration it starts a demo: in-memory store, a built-in sample upstream, demo
// orgs and keys, and prints curl lines to try. With configuration (see the README) it is the
// production gateway.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/gateway"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal during the drain ends the process at once
	}()
	err := run(ctx, environ(), os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "creditgate: %v\n", err)
		os.Exit(1)
	}
}

func environ() map[string]string {
	m := make(map[string]string)
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// configError lists every configuration problem on its own line.
type configError struct{ err error }

func (e configError) Error() string {
	return "invalid configuration:\n  " + strings.ReplaceAll(e.err.Error(), "\n", "\n  ")
}
func (e configError) Unwrap() error { return e.err }

// run starts the gateway and serves until ctx is done, then shuts down gracefully: stop
// accepting, let calls in flight finish (up to CREDITGATE_SHUTDOWN_TIMEOUT), close the store.
func run(ctx context.Context, environ map[string]string, stdout io.Writer) error {
	cfg, err := loadConfig(environ)
	if err != nil {
		return configError{err}
	}
	log, err := newLogger(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	storeOpts := limiter.Options{Window: cfg.Window, Bucket: cfg.Bucket, LeaseTTL: cfg.LeaseTTL}
	var (
		store limiter.Store
		ready func(context.Context) error
	)
	if cfg.RedisURL != "" {
		redis.SetLogger(redisLogger{log.Named("redis").Sugar()})
		client, err := limiter.NewRedisClient(cfg.RedisURL)
		if err != nil {
			return configError{fmt.Errorf("CREDITGATE_REDIS_URL: %w", err)}
		}
		defer client.Close()
		rs, err := limiter.NewRedisStore(client, storeOpts)
		if err != nil {
			return err
		}
		startCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = rs.LoadScripts(startCtx)
		cancel()
		if err != nil {
			return fmt.Errorf("CREDITGATE_REDIS_URL: Redis is not reachable at start: %w", err)
		}
		store, ready = rs, rs.LoadScripts
	} else {
		ms, err := limiter.NewMemoryStore(storeOpts)
		if err != nil {
			return err
		}
		store = ms
	}

	upstream, orgList, adminTokens := cfg.upstream, cfg.orgList, cfg.adminTokens
	if cfg.demo {
		demoURL, closeDemo, err := startDemoUpstream()
		if err != nil {
			return err
		}
		defer closeDemo()
		upstream, orgList = demoURL, demoOrgs()
		cfg.orgList = orgList
		if adminTokens.Len() == 0 {
			adminTokens = demoAdminTokens()
		}
	}
	dir, err := orgs.NewDirectory(orgList)
	if err != nil {
		return configError{fmt.Errorf("CREDITGATE_ORGS: %w", err)}
	}

	gw, err := gateway.New(gateway.Config{
		Upstream:         upstream,
		UpstreamTimeout:  cfg.UpstreamTimeout,
		Store:            store,
		StoreTimeout:     cfg.RedisTimeout,
		FailOpen:         cfg.FailMode == "open",
		Costs:            cfg.costTable,
		Orgs:             dir,
		LimitOf:          limitOf,
		AdditionalOf:     additionalOf, // usage API: add-on part of the limit
		ConcurrencyOf:    concurrencyOf,
		HeavyConcurrency: cfg.HeavyConcurrency,
		Mode:             gateway.OrgMode(cfg.OrgMode),
		OrgHeader:        cfg.OrgHeader,
		StripCredentials: cfg.StripCredentials,
		Shadow:           cfg.Shadow,
		MaxBodyBytes:     cfg.MaxBodyBytes,
		Window:           cfg.Window,
		Logger:           log,
	})
	if err != nil {
		return err
	}

	proxyLn, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("CREDITGATE_LISTEN_ADDR: %w", err)
	}
	adminLn, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		proxyLn.Close()
		return fmt.Errorf("CREDITGATE_ADMIN_ADDR: %w", err)
	}
	errLog := zap.NewStdLog(log.Named("http").WithOptions(zap.IncreaseLevel(zap.WarnLevel)))
	proxySrv := &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errLog,
	}
	adminSrv := &http.Server{
		Handler:           gateway.NewAdminHandler(gateway.AdminConfig{Ready: ready, Gateway: gw, Tokens: adminTokens}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          errLog,
	}

	log.Info("creditgate listening", append([]zap.Field{
		zap.String("proxy_addr", proxyLn.Addr().String()), zap.String("admin_addr", adminLn.Addr().String()),
	}, cfg.logFields()...)...)
	if cfg.demo {
		printDemo(stdout, proxyLn.Addr().String(), adminLn.Addr().String())
	}

	if adminTokens.Len() == 0 {
		log.Warn("admin API disabled: CREDITGATE_ADMIN_TOKENS is not set")
	}

	serveErr := make(chan error, 2)
	go func() { serveErr <- proxySrv.Serve(proxyLn) }()
	go func() { serveErr <- adminSrv.Serve(adminLn) }()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
serve:
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down", zap.Duration("timeout", cfg.ShutdownTimeout))
			break serve
		case <-hup:
			reload(cfg, gw, log)
		case err := <-serveErr:
			log.Error("server stopped", zap.Error(err))
			_ = adminSrv.Close()
			_ = proxySrv.Close()
			return err
		}
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// The proxy first: no new calls, the calls in flight finish. Admin last, so /healthz
	// answers while the proxy drains.
	err = proxySrv.Shutdown(shutCtx)
	if aerr := adminSrv.Shutdown(shutCtx); err == nil {
		err = aerr
	}
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown timeout: calls still in flight were cut", zap.Duration("timeout", cfg.ShutdownTimeout))
		return nil
	}
	log.Info("stopped")
	return err
}

// reload reads the cost table file again on SIGHUP. A valid table takes effect for new
// requests at once (requests in flight keep the one they started with); an invalid one is
// refused with a log line and the running table stays.
func reload(cfg Config, gw *gateway.Gateway, log *zap.Logger) {
	if cfg.CostTableFile == "" {
		log.Info("SIGHUP: nothing to reload (no CREDITGATE_COST_TABLE_FILE)")
		return
	}
	tbl, err := costtable.LoadFile(cfg.CostTableFile)
	if err != nil {
		log.Error("SIGHUP: cost table refused, the running table stays", zap.Error(err))
		return
	}
	gw.SetCosts(tbl)
	log.Info("SIGHUP: cost table reloaded", zap.String("cost_table", tbl.Name()), zap.Int("rules", len(tbl.Rules())))
}

// redisLogger sends go-redis's own messages (pool dial failures, …) to zap as warnings, so
// they are structured like every other line.
type redisLogger struct{ s *zap.SugaredLogger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) { l.s.Warnf(format, v...) }

func newLogger(cfg Config) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(cfg.logLevel)
	zc.DisableStacktrace = true // errors here are operational, and each names its cause
	zc.EncoderConfig.TimeKey = "ts"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.EncoderConfig.EncodeDuration = zapcore.StringDurationEncoder
	if cfg.demo {
		zc.Encoding = "console"
		zc.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
	}
	return zc.Build()
}
