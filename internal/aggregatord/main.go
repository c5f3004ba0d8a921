// Package aggregatord is the aggregator process, wired once: NATS, the
// streams, the aggregator service, metrics, health checks and tracing,
// from one Config. cmd/aggregator, the dev stack and the tests all start an
// aggregator through Main.
package aggregatord

import (
	"context"
	"errors"
	"log/slog"

	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/config"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natsconn"
	"github.com/jetsource/jetsource/internal/opsserver"
	"github.com/jetsource/jetsource/internal/process"
	"github.com/jetsource/jetsource/internal/startup"
	"github.com/jetsource/jetsource/internal/tracing"
)

// Config is an aggregator process's configuration. DefaultConfig is the
// home of its defaults; cmd/aggregator maps the environment onto it.
type Config struct {
	NATS       natsconn.Config
	Streams    es.Topology
	Aggregator aggregator.Config
	// MetricsAddr is the host:port of /metrics, /healthz and /readyz (port
	// 0 picks one); empty turns the server off.
	MetricsAddr string
	Tracing     tracing.Exporter
}

// DefaultConfig returns the defaults of every part.
func DefaultConfig() Config {
	return Config{
		NATS:        natsconn.DefaultConfig(),
		Streams:     es.DefaultTopology(),
		Aggregator:  aggregator.DefaultConfig(),
		MetricsAddr: ":9090",
	}
}

// Validate reports every problem at once, as config.FieldErrors named by
// their path in Config.
func (c Config) Validate() error {
	errs := []error{
		config.Nest("NATS", c.NATS.Validate()),
		config.Nest("Streams", c.Streams.Validate()),
		config.Nest("Aggregator", c.Aggregator.Validate()),
		opsserver.ValidateAddr("MetricsAddr", c.MetricsAddr),
	}
	if c.Aggregator.Partitions != c.Streams.Partitions {
		errs = append(errs, config.Invalid("Aggregator.Partitions", c.Aggregator.Partitions,
			"must equal the streams' partition count (%d)", c.Streams.Partitions))
	}
	if c.Aggregator.LeaseTTL != c.Streams.LeaseTTL {
		errs = append(errs, config.Invalid("Aggregator.LeaseTTL", c.Aggregator.LeaseTTL,
			"must equal the lease bucket's TTL (%s)", c.Streams.LeaseTTL))
	}
	return errors.Join(errs...)
}

// Main is one aggregator process. Run starts it, Done reports that it
// stopped on its own, Close drains and stops it.
type Main struct {
	cfg Config
	log *slog.Logger

	proc        *process.Process
	stopService context.CancelFunc
	done        chan struct{}
	err         error // the service's, set before done is closed
}

// NewMain checks cfg and returns a Main that logs to log.
func NewMain(cfg Config, log *slog.Logger) (*Main, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Main{cfg: cfg, log: log, done: make(chan struct{})}, nil
}

// Run connects to NATS, serves /healthz at once and /readyz, waits for the
// streams and verifies them, and starts handling commands. It returns once the aggregator
// runs, or with what keeps it from running (ctx bounds the wait); call
// Close in either case.
func (m *Main) Run(ctx context.Context) error {
	cfg := m.cfg
	proc, err := process.Open(ctx, cfg.NATS, "jetsource-aggregator", cfg.Tracing, "jetsource-aggregator", m.log)
	m.proc = proc
	if err != nil {
		return err
	}
	js := proc.JS
	svcCfg := cfg.Aggregator
	svcCfg.Logger, svcCfg.Observer, svcCfg.Tracer = m.log, aggregator.NewMetrics(proc.Registry), proc.Tracer
	svc, err := aggregator.New(js, svcCfg)
	if err != nil {
		return err
	}
	if err := proc.Serve(cfg.MetricsAddr, svc.Ready); err != nil {
		return err
	}

	// Liveness is served from here on; readiness waits for the streams and
	// the lease bucket, which the operator creates (orderctl streams
	// apply). The aggregator never changes them: if they differ from its
	// configuration it refuses to start, since waiting cannot fix that.
	if err := startup.Wait(ctx, m.log, "streams", func(err error) bool { return errors.Is(err, es.ErrStreamMismatch) },
		func(ctx context.Context) error { return es.Verify(ctx, js, cfg.Streams) }); err != nil {
		return err
	}

	run, stop := context.WithCancel(context.WithoutCancel(ctx))
	m.stopService = stop
	go func() {
		defer close(m.done)
		m.err = svc.Run(run)
	}()
	m.log.Info("aggregator started", "nats", proc.NC.ConnectedUrlRedacted(), "partitions", cfg.Streams.Partitions,
		"replica", cfg.Aggregator.ReplicaID, "metrics", m.MetricsAddr())
	return nil
}

// MetricsAddr is the address of /metrics, /healthz and /readyz, once Run
// has started serving them; empty otherwise.
func (m *Main) MetricsAddr() string { return m.proc.MetricsAddr() }

// Done is closed when the service stops: on its own (Err says why), or
// after Close.
func (m *Main) Done() <-chan struct{} { return m.done }

// Err is why the service stopped, once Done is closed.
func (m *Main) Err() error { return m.err }

// Close drains: the service stops fetching and finishes the commands in
// hand; then the NATS connection is flushed and closed, the ops server stops and traces
// are flushed. It returns what went wrong on the way.
func (m *Main) Close() error {
	if m.stopService != nil {
		m.stopService()
		<-m.done
		m.log.Info("aggregator stopped", "error", m.err)
	}
	// The service has its publications acknowledged; what is left to send
	// is flushed before the connection closes.
	return m.proc.Close()
}
