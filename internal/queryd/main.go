// Package queryd is the orders-query process, wired once: NATS, the query
// service, metrics and health checks, from one Config. cmd/query, the dev
// stack and the tests all start a query service through Main.
package queryd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/config"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natsconn"
	"github.com/jetsource/jetsource/internal/opsserver"
	"github.com/jetsource/jetsource/internal/process"
	"github.com/jetsource/jetsource/internal/query"
	"github.com/jetsource/jetsource/internal/startup"
	"github.com/jetsource/jetsource/internal/tracing"
)

// Config is a query process's configuration. DefaultConfig is the home of
// its defaults; cmd/query maps the environment onto it.
type Config struct {
	NATS  natsconn.Config
	Query query.Config
	// MetricsAddr is the host:port of /metrics, /healthz and /readyz (port
	// 0 picks one); empty turns the server off.
	MetricsAddr string
	Tracing     tracing.Exporter
}

// DefaultConfig returns the defaults of every part.
func DefaultConfig() Config {
	return Config{NATS: natsconn.DefaultConfig(), Query: query.DefaultConfig(), MetricsAddr: ":9090"}
}

// Validate reports every problem at once, as config.FieldErrors named by
// their path in Config.
func (c Config) Validate() error {
	return errors.Join(
		config.Nest("NATS", c.NATS.Validate()),
		config.Nest("Query", c.Query.Validate()),
		opsserver.ValidateAddr("MetricsAddr", c.MetricsAddr),
	)
}

// Main is one query process. Run starts it, Close stops it.
type Main struct {
	cfg Config
	log *slog.Logger

	proc *process.Process
	// svc is set once the service answers; /readyz reads it meanwhile.
	svc  atomic.Pointer[query.Service]
	done chan struct{}
}

// NewMain checks cfg and returns a Main that logs to log.
func NewMain(cfg Config, log *slog.Logger) (*Main, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Main{cfg: cfg, log: log, done: make(chan struct{})}, nil
}

// Run connects to NATS, serves /healthz at once and /readyz, waits for the
// events stream and starts answering. It returns once the service answers,
// or with what keeps it from answering (ctx bounds the wait); call Close in
// either case.
func (m *Main) Run(ctx context.Context) error {
	cfg := m.cfg
	proc, err := process.Open(ctx, cfg.NATS, "jetsource-query", cfg.Tracing, "jetsource-query", m.log)
	m.proc = proc
	if err != nil {
		return err
	}
	js := proc.JS
	if err := proc.Serve(cfg.MetricsAddr, m.ready(js)); err != nil {
		return err
	}

	// A partition mismatch is fatal: waiting cannot fix it.
	partitions := cfg.Query.Partitions
	if err := startup.Wait(ctx, m.log, "event stream", func(err error) bool { return errors.Is(err, es.ErrPartitionMismatch) },
		func(ctx context.Context) error { return es.RequireStreams(ctx, js, partitions, contract.EventsStream) }); err != nil {
		return err
	}
	qcfg := cfg.Query
	qcfg.Logger, qcfg.Observer, qcfg.Tracer = m.log, query.NewMetrics(proc.Registry), proc.Tracer
	svc, err := query.Start(proc.NC, js, qcfg)
	if err != nil {
		return err
	}
	m.svc.Store(svc)
	m.log.Info("query service started", "nats", proc.NC.ConnectedUrlRedacted(), "partitions", partitions, "metrics", m.MetricsAddr())
	return nil
}

// ready is what /readyz asks: connected to NATS, the events stream there,
// the service answering.
func (m *Main) ready(js jetstream.JetStream) opsserver.ReadyFunc {
	return func(ctx context.Context) error {
		if !m.proc.NC.IsConnected() {
			return errors.New("not connected to NATS")
		}
		if err := es.RequireStreams(ctx, js, m.cfg.Query.Partitions, contract.EventsStream); err != nil {
			return err
		}
		if svc := m.svc.Load(); svc == nil || svc.Stopped() {
			return errors.New("the query service is not answering")
		}
		return nil
	}
}

// MetricsAddr is the address of /metrics, /healthz and /readyz, once Run
// has started serving them; empty otherwise.
func (m *Main) MetricsAddr() string { return m.proc.MetricsAddr() }

// Done is closed once Close has stopped the service: it has no work of its
// own that could end, and its connection reconnects for ever.
func (m *Main) Done() <-chan struct{} { return m.done }

// Err is nil: the service stops only on Close.
func (m *Main) Err() error { return nil }

// Close stops taking requests, closes the NATS connection, stops the ops
// server and flushes traces. It returns what went wrong on the way.
func (m *Main) Close() error {
	var errs []error
	if svc := m.svc.Load(); svc != nil {
		if err := svc.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop the query service: %w", err))
		}
		m.log.Info("query service stopped")
	}
	errs = append(errs, m.proc.Close())
	select {
	case <-m.done:
	default:
		close(m.done)
	}
	return errors.Join(errs...)
}
