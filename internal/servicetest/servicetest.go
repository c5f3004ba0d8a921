// Package servicetest starts JetSource's services in a test's process,
// through their composition roots (aggregatord, projectord), as their
// binaries would: tests that need a running aggregator or projector use it
// rather than wiring the components themselves.
package servicetest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/internal/aggregatord"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/projectord"
	"github.com/jetsource/jetsource/internal/queryd"
)

// Aggregator sets up the streams and the lease bucket of its configuration
// on the NATS server at natsURL, as the operator would (orderctl streams
// apply), and runs an aggregator there, with the defaults (no metrics
// server, logs discarded) changed by edit, until the test ends.
func Aggregator(tb testing.TB, natsURL string, edit ...func(*aggregatord.Config)) *aggregatord.Main {
	tb.Helper()
	cfg := aggregatord.DefaultConfig()
	cfg.NATS.URL, cfg.MetricsAddr = natsURL, ""
	for _, e := range edit {
		e(&cfg)
	}
	setUpStreams(tb, natsURL, cfg.Streams)
	m, err := aggregatord.NewMain(cfg, discard())
	if err != nil {
		tb.Fatal(err)
	}
	start(tb, m)
	return m
}

// Projector runs a projector of projection on the NATS server at natsURL
// and the database at dbURL, with the defaults (no metrics server, logs
// discarded) changed by edit, until the test ends.
func Projector(tb testing.TB, natsURL, dbURL, projection string, edit ...func(*projectord.Config)) *projectord.Main {
	tb.Helper()
	cfg := projectord.DefaultConfig()
	cfg.NATS.URL, cfg.DatabaseURL, cfg.Projection, cfg.MetricsAddr = natsURL, dbURL, projection, ""
	for _, e := range edit {
		e(&cfg)
	}
	m, err := projectord.NewMain(cfg, discard())
	if err != nil {
		tb.Fatal(err)
	}
	start(tb, m)
	return m
}

// Query runs an orders-query service on the NATS server at natsURL, with
// the defaults (no metrics server, logs discarded) changed by edit, until
// the test ends.
func Query(tb testing.TB, natsURL string, edit ...func(*queryd.Config)) *queryd.Main {
	tb.Helper()
	cfg := queryd.DefaultConfig()
	cfg.NATS.URL, cfg.MetricsAddr = natsURL, ""
	for _, e := range edit {
		e(&cfg)
	}
	m, err := queryd.NewMain(cfg, discard())
	if err != nil {
		tb.Fatal(err)
	}
	start(tb, m)
	return m
}

// setUpStreams creates or updates the streams and the lease bucket to t.
func setUpStreams(tb testing.TB, natsURL string, t es.Topology) {
	tb.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := es.Setup(ctx, js, t); err != nil {
		tb.Fatalf("set up the streams: %v", err)
	}
}

// main is a composition root.
type main interface {
	Run(context.Context) error
	Close() error
}

func start(tb testing.TB, m main) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tb.Cleanup(func() {
		if err := m.Close(); err != nil {
			tb.Errorf("stop the service: %v", err)
		}
	})
	if err := m.Run(ctx); err != nil {
		tb.Fatalf("start the service: %v", err)
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
