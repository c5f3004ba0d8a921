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

func TestVerifyAcceptsWhatSetupCreated(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Streams(t, natstest.Partitions)
	if err := es.Verify(ctx, js, natstest.Topology(natstest.Partitions)); err != nil {
		t.Fatalf("Verify after Setup: %v", err)
	}
	if err := es.Verify(ctx, js, natstest.Topology(natstest.Partitions), contract.EventsStream); err != nil {
		t.Fatalf("Verify(events) after Setup: %v", err)
	}
}

// TestVerifyNamesEveryDifference changes streams behind the configuration's
// back and expects Verify to name each change, and to change nothing.
func TestVerifyNamesEveryDifference(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Streams(t, natstest.Partitions)
	topo := natstest.Topology(natstest.Partitions)

	update := func(name string, change func(*jetstream.StreamConfig)) {
		t.Helper()
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		change(&cfg)
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatalf("update %s: %v", name, err)
		}
	}
	update(contract.ResultsStream, func(c *jetstream.StreamConfig) { c.MaxAge = 2 * time.Hour; c.MaxMsgSize = -1 })
	update(contract.CommandsStream, func(c *jetstream.StreamConfig) { c.Duplicates = 5 * time.Minute; c.Metadata[es.PartitionsKey] = "8" })
	update(contract.EventsStream, func(c *jetstream.StreamConfig) { c.MaxMsgs = 1000; c.AllowDirect = false })
	if err := js.DeleteStream(ctx, contract.SnapshotsStream); err != nil {
		t.Fatal(err)
	}
	// The lease bucket, with a TTL other than the aggregators' lease TTL.
	bucket := topo.LeaseBucketConfig()
	bucket.TTL, bucket.LimitMarkerTTL = 2*time.Second, 2*time.Second
	if _, err := js.UpdateKeyValue(ctx, bucket); err != nil {
		t.Fatal(err)
	}

	err := es.Verify(ctx, js, topo)
	if !errors.Is(err, es.ErrStreamMismatch) || !errors.Is(err, es.ErrPartitionMismatch) {
		t.Fatalf("Verify = %v, want ErrStreamMismatch and ErrPartitionMismatch", err)
	}
	for _, want := range []string{
		"ORDERS_RESULTS: max age is 2h0m0s, want 24h0m0s",
		"ORDERS_RESULTS: max message size is none, want 65536",
		"ORDERS_COMMANDS: duplicate window is 5m0s, want 2m0s",
		`ORDERS_COMMANDS: created with "8" partitions, this binary is configured for 16 (partition count mismatch)`,
		"ORDERS_EVENTS: max messages is 1000, want none",
		"ORDERS_EVENTS: allow direct is false, want true",
		"KV_JETSOURCE_AGGREGATOR_LEASES: ttl is 2s, want 5s",
		"KV_JETSOURCE_AGGREGATOR_LEASES: limit marker ttl is 2s, want 5s",
		"ORDERS_SNAPSHOTS: missing",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Verify error lacks %q:\n%v", want, err)
		}
	}
	var ve *es.VerifyError
	if !errors.As(err, &ve) || len(ve.Differences) != 9 {
		t.Errorf("want exactly 9 differences, got %v", err)
	}
	// Verify changed nothing.
	s, err := js.Stream(ctx, contract.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if s.CachedInfo().Config.MaxMsgs != 1000 {
		t.Fatal("Verify changed the events stream")
	}

	// Only the snapshot stream missing: not a mismatch, something to wait for.
	if err := es.Setup(ctx, js, topo); !errors.Is(err, es.ErrPartitionMismatch) {
		t.Fatalf("Setup over 8 recorded partitions: %v", err)
	}
	update(contract.CommandsStream, func(c *jetstream.StreamConfig) { c.Metadata[es.PartitionsKey] = "16" })
	if err := es.Setup(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, contract.SnapshotsStream); err != nil {
		t.Fatal(err)
	}
	err = es.Verify(ctx, js, topo)
	if !errors.Is(err, es.ErrStreamMissing) || errors.Is(err, es.ErrStreamMismatch) {
		t.Fatalf("Verify with a missing stream = %v, want ErrStreamMissing only", err)
	}
	if err := es.Verify(ctx, js, topo, contract.EventsStream, contract.CommandsStream); err != nil {
		t.Fatalf("Verify of the streams present: %v", err)
	}
}

func TestVerifyReplicas(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Streams(t, natstest.Partitions)
	r3 := natstest.Topology(natstest.Partitions)
	r3.Replicas = 3
	err := es.Verify(ctx, js, r3, contract.EventsStream)
	if !errors.Is(err, es.ErrStreamMismatch) || !strings.Contains(err.Error(), "ORDERS_EVENTS: replicas is 1, want 3") {
		t.Fatalf("Verify R3 over R1 = %v", err)
	}
}

// TestStreamLimits: the server refuses a command above the size limit, and
// the limit leaves room for the largest body the aggregator accepts plus
// its headers.
func TestStreamLimits(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Streams(t, natstest.Partitions)
	if _, err := js.Publish(ctx, contract.CommandSubject("ord-1", "AddItem"), make([]byte, es.CommandMaxMsgSize+1)); err == nil {
		t.Fatal("a command above CommandMaxMsgSize was stored")
	}
	if _, err := js.Publish(ctx, contract.CommandSubject("ord-1", "AddItem"), make([]byte, 64<<10)); err != nil {
		t.Fatalf("a 64 KiB command: %v", err)
	}
	if _, err := js.Publish(ctx, contract.ResultSubject("cmd-1"), make([]byte, es.ResultMaxMsgSize+1)); err == nil {
		t.Fatal("a result above ResultMaxMsgSize was stored")
	}
	if _, err := js.Publish(ctx, contract.SnapshotSubject("ord-1"), make([]byte, es.SnapshotMaxMsgSize+1)); err == nil {
		t.Fatal("a snapshot above SnapshotMaxMsgSize was stored")
	}
}
