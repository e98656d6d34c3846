// Package health serves /healthz, /readyz and /metrics for a service and
// implements the `healthcheck` subcommand that probes them from inside a
// shell-less container image.
package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/sdnotify"
)

// Check returns nil when the probed condition holds, or the reason it does not.
type Check func() error

// Server is the health and metrics HTTP server.
type Server struct {
	log      *zap.Logger
	Registry *prometheus.Registry

	mu    sync.RWMutex
	live  Check
	ready Check

	srv *http.Server
	ln  net.Listener

	// The systemd watchdog feeder (shared/sdnotify), owned by Start and
	// stopped by Shutdown.
	stopWatchdog context.CancelFunc
	watchdogDone chan struct{}
}

// New builds a server with a fresh registry holding the Go and process
// collectors. Register service metrics on Registry.
func New(log *zap.Logger) *Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Server{log: log, Registry: reg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.handle(func() Check { return s.live }))
	mux.HandleFunc("GET /readyz", s.handle(func() Check { return s.ready }))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s
}

// SetLive sets the liveness check; nil means always live.
func (s *Server) SetLive(c Check) { s.mu.Lock(); s.live = c; s.mu.Unlock() }

// SetReady sets the readiness check; nil means always ready.
func (s *Server) SetReady(c Check) { s.mu.Lock(); s.ready = c; s.mu.Unlock() }

func (s *Server) handle(pick func() Check) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		s.mu.RLock()
		c := pick()
		s.mu.RUnlock()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if c != nil {
			if err := c(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ok: %v\n", err)
				return
			}
		}
		io.WriteString(w, "ok\n")
	}
}

// Start listens on addr (":8080", "127.0.0.1:0") and serves in the background.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health listen %s: %w", addr, err)
	}
	s.ln = ln
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("health server stopped", zap.Error(err))
		}
	}()
	s.log.Info("health server listening", zap.String("addr", ln.Addr().String()))
	// Under systemd (Type=notify) the service counts as started once it
	// serves its health endpoints; from then on the watchdog is fed while
	// the liveness check passes.
	if _, err := sdnotify.Ready(); err != nil {
		s.log.Warn("systemd readiness notification failed", zap.Error(err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopWatchdog, s.watchdogDone = cancel, make(chan struct{})
	go func() {
		defer close(s.watchdogDone)
		sdnotify.Watchdog(ctx, s.checkLive, s.log)
	}()
	return nil
}

func (s *Server) checkLive() error {
	s.mu.RLock()
	c := s.live
	s.mu.RUnlock()
	if c == nil {
		return nil
	}
	return c()
}

// Addr is the bound address, valid after Start.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops the server.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.stopWatchdog != nil {
		_, _ = sdnotify.Stopping()
		s.stopWatchdog()
		<-s.watchdogDone
	}
	return s.srv.Shutdown(ctx)
}

// Probe GETs path on the server at addr (as configured, e.g. ":8080") and
// returns nil on a 200. It is the body of the `healthcheck` subcommand.
func Probe(addr, path string, timeout time.Duration) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get("http://" + net.JoinHostPort(host, port) + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
