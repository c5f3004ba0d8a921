// Package opsserver serves what operators and orchestrators ask a JetSource
// process: /metrics for Prometheus, /healthz for liveness and /readyz for
// readiness.
package opsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jetsource/jetsource/internal/config"
)

// ReadyFunc reports why the process cannot serve yet, or nil when it can.
type ReadyFunc func(context.Context) error

// Server is the operations HTTP server of one process.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr (host:port; port 0 picks one). /healthz answers 200 as
// long as the process serves HTTP: liveness must not depend on NATS or
// PostgreSQL, or their outage would restart every pod. /readyz answers 200
// only when ready returns nil.
func Listen(addr string, gatherer prometheus.Gatherer, ready ReadyFunc, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		// HTTP errors go to the process's JSON log, not bare to stderr.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return &Server{srv: srv, ln: ln}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Background serves in a goroutine until stop is called; stop shuts the
// server down within five seconds and returns what went wrong, if anything.
func (s *Server) Background() (stop func() error) {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := s.srv.Shutdown(ctx)
		if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
			err = errors.Join(err, serveErr)
		}
		if err != nil {
			return fmt.Errorf("ops server: %w", err)
		}
		return nil
	}
}

// ValidateAddr checks a listen address of configuration field field: empty
// (no server) or host:port.
func ValidateAddr(field, addr string) error {
	if addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return config.Invalid(field, addr, "must be host:port, such as :9090 or 127.0.0.1:9090, or empty for no server")
	}
	return nil
}
