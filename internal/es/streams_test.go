package es_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natstest"
)

func TestSetupIsIdempotentAndRefusesAnotherPartitionCount(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Streams(t, 16)
	if err := es.Setup(ctx, js, natstest.Topology(16)); err != nil {
		t.Fatalf("second Setup: %v", err)
	}
	for _, name := range []string{contract.CommandsStream, contract.EventsStream, contract.SnapshotsStream, contract.ResultsStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if got := s.CachedInfo().Config.Metadata[es.PartitionsKey]; got != "16" {
			t.Fatalf("stream %s records %q partitions", name, got)
		}
	}
	events, _ := js.Stream(ctx, contract.EventsStream)
	cfg := events.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || !cfg.AllowDirect || !cfg.AllowAtomicPublish || cfg.MaxAge != 0 || cfg.Storage != jetstream.FileStorage {
		t.Fatalf("events stream config: %+v", cfg)
	}
	err := es.Setup(ctx, js, natstest.Topology(8))
	if !errors.Is(err, es.ErrPartitionMismatch) {
		t.Fatalf("Setup with 8 partitions over 16: %v, want ErrPartitionMismatch", err)
	}
	if err := es.RequireStreams(ctx, js, 8); !errors.Is(err, es.ErrPartitionMismatch) {
		t.Fatalf("RequireStreams(8): %v", err)
	}
	if err := es.RequireStreams(ctx, js, 16); err != nil {
		t.Fatalf("RequireStreams(16): %v", err)
	}
}

func TestTopologyValidate(t *testing.T) {
	err := es.Topology{Partitions: 0, Replicas: 2, ResultsMaxAge: time.Second, DuplicateWindow: time.Second}.Validate()
	for _, want := range []string{"Partitions is 0", "Replicas is 2", "ResultsMaxAge is 1s", "DuplicateWindow is 1s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
	if err := natstest.Topology(16).Validate(); err != nil {
		t.Fatalf("dev topology: %v", err)
	}
}

func TestParseSubjects(t *testing.T) {
	if p, id, ok := contract.ParseEventSubject("orders.events.7.ord-1"); !ok || p != 7 || id != "ord-1" {
		t.Fatalf("ParseEventSubject = %d %q %v", p, id, ok)
	}
	for _, bad := range []string{"orders.events.x.ord", "orders.events.1", "orders.events.1.a.b", "orders.commands.1.a", "orders.events.1."} {
		if _, _, ok := contract.ParseEventSubject(bad); ok {
			t.Errorf("ParseEventSubject(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"orders.commands.1.a", "orders.commands.x.a.B", "orders.commands.1.a.B.c"} {
		if _, _, _, ok := contract.ParseStoredCommandSubject(bad); ok {
			t.Errorf("ParseStoredCommandSubject(%q) accepted", bad)
		}
	}
}
