// Package process holds what every JetSource service process opens around
// its service and closes after it: the NATS connection, tracing, the
// Prometheus registry and the ops server. The composition roots
// (aggregatord, projectord, queryd) wire their service between Open and
// Close.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetsource/jetsource/internal/natsconn"
	"github.com/jetsource/jetsource/internal/opsserver"
	"github.com/jetsource/jetsource/internal/tracing"
)

// Process is one service process's shared resources.
type Process struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Tracer   trace.TracerProvider
	Registry *prometheus.Registry

	log         *slog.Logger
	ops         *opsserver.Server
	stopOps     func() error
	stopTracing func(context.Context) error
}

// Open connects to NATS as client, starts tracing for service and makes a
// registry with the Go and process collectors. On an error the Process
// holds what was opened: Close it in either case.
func Open(ctx context.Context, natsCfg natsconn.Config, client string, exporter tracing.Exporter, service string, log *slog.Logger) (*Process, error) {
	p := &Process{log: log}
	nc, err := natsconn.Connect(natsCfg, client, log)
	if err != nil {
		return p, err
	}
	p.NC = nc
	if p.JS, err = jetstream.New(nc); err != nil {
		return p, fmt.Errorf("jetstream: %w", err)
	}
	if p.Tracer, p.stopTracing, err = tracing.Provider(ctx, exporter, service); err != nil {
		return p, err
	}
	p.Registry = prometheus.NewRegistry()
	p.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return p, nil
}

// Serve starts /metrics, /healthz and /readyz on addr (port 0 picks one);
// an empty addr serves nothing.
func (p *Process) Serve(addr string, ready opsserver.ReadyFunc) error {
	if addr == "" {
		return nil
	}
	ops, err := opsserver.Listen(addr, p.Registry, ready, p.log)
	if err != nil {
		return err
	}
	// The ops server outlives the service's drain, so probes and scrapes
	// see it until Close.
	p.ops, p.stopOps = ops, ops.Background()
	return nil
}

// MetricsAddr is the address Serve listens on; empty before it or without
// one.
func (p *Process) MetricsAddr() string {
	if p == nil || p.ops == nil {
		return ""
	}
	return p.ops.Addr()
}

// Close flushes what is left to send and closes the NATS connection, stops
// the ops server and flushes traces. Call it after the service stopped. It
// returns what went wrong on the way.
func (p *Process) Close() error {
	if p == nil {
		return nil
	}
	var errs []error
	if p.NC != nil {
		if p.NC.IsConnected() {
			if err := p.NC.FlushTimeout(5 * time.Second); err != nil {
				errs = append(errs, fmt.Errorf("flush the NATS connection: %w", err))
			}
		}
		p.NC.Close()
	}
	if p.stopOps != nil {
		errs = append(errs, p.stopOps())
	}
	if p.stopTracing != nil {
		if err := p.stopTracing(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("flush traces: %w", err))
		}
	}
	return errors.Join(errs...)
}
