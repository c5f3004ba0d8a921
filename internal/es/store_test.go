package es_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natstest"
)

func newStore(t *testing.T) *es.Store {
	t.Helper()
	_, _, js := natstest.Streams(t, natstest.Partitions)
	return es.NewStore(js, natstest.Partitions)
}

func event(id string, version int64, typ, data string) contract.Event {
	return contract.Event{
		ID: es.NewEventID(time.Now()), AggregateType: "order", AggregateID: id, Type: typ, SchemaVersion: 1,
		Version: version, Data: json.RawMessage(data),
		Metadata: contract.EventMetadata{CausationID: fmt.Sprintf("cmd-%d", version), Timestamp: contract.Time{Time: time.Now()}},
	}
}

func TestAppendChecksTheExpectedSequence(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)

	seq1, err := store.Append(ctx, "ord-1", 0, []contract.Event{event("ord-1", 1, "OrderCreated", `{"customerId":"c"}`)})
	if err != nil {
		t.Fatalf("first append: %v", err)
	}
	if _, err := store.Append(ctx, "ord-1", 0, []contract.Event{event("ord-1", 1, "OrderCreated", `{}`)}); !errors.Is(err, es.ErrConflict) {
		t.Fatalf("append expecting an empty subject: %v, want ErrConflict", err)
	}
	// Another order's events move the stream, not ord-1's subject.
	if _, err := store.Append(ctx, "ord-2", 0, []contract.Event{event("ord-2", 1, "OrderCreated", `{}`)}); err != nil {
		t.Fatal(err)
	}
	seq2, err := store.Append(ctx, "ord-1", seq1, []contract.Event{event("ord-1", 2, "OrderSubmitted", `{}`)})
	if err != nil {
		t.Fatalf("append at the right sequence: %v", err)
	}
	if _, err := store.Append(ctx, "ord-1", seq1, []contract.Event{event("ord-1", 2, "OrderSubmitted", `{}`)}); !errors.Is(err, es.ErrConflict) {
		t.Fatalf("stale append: %v, want ErrConflict", err)
	}
	events, err := store.Read(ctx, "ord-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || events[0].Sequence != seq1 || events[1].Sequence != seq2 || events[1].Type != "OrderSubmitted" {
		t.Fatalf("read back %+v", events)
	}
	if last, err := store.LeaderLastSequence(ctx, "ord-1"); err != nil || last != seq2 {
		t.Fatalf("LeaderLastSequence = %d, %v; want %d", last, err, seq2)
	}
	if last, err := store.LeaderLastSequence(ctx, "nobody"); err != nil || last != 0 {
		t.Fatalf("LastSequence of an empty subject = %d, %v", last, err)
	}
}

func TestAppendOfSeveralEventsIsAtomic(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	batch := func(from int64, n int) []contract.Event {
		var out []contract.Event
		for i := range n {
			out = append(out, event("ord-1", from+int64(i), "ItemAdded", `{}`))
		}
		return out
	}
	seq, err := store.Append(ctx, "ord-1", 0, batch(1, 3))
	if err != nil {
		t.Fatalf("batch append: %v", err)
	}
	if _, err := store.Append(ctx, "ord-1", 1, batch(4, 5)); !errors.Is(err, es.ErrConflict) {
		t.Fatalf("batch append at a stale sequence: %v, want ErrConflict", err)
	}
	events, err := store.Read(ctx, "ord-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 || events[2].Sequence != seq {
		t.Fatalf("after a failed batch the subject holds %d events (want 3), last at %d want %d", len(events), events[len(events)-1].Sequence, seq)
	}
	if _, err := store.Append(ctx, "ord-1", seq, batch(4, es.MaxBatch)); err != nil {
		t.Fatalf("a batch of %d: %v", es.MaxBatch, err)
	}
	if _, err := store.Append(ctx, "ord-1", seq, batch(4, es.MaxBatch+1)); err == nil {
		t.Fatal("a batch over the limit was accepted")
	}
	events, err = store.Read(ctx, "ord-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3+es.MaxBatch {
		t.Fatalf("read %d events, want %d", len(events), 3+es.MaxBatch)
	}
	leader, err := store.ReadFromLeader(ctx, "ord-1", events[len(events)-3].Sequence)
	if err != nil || len(leader) != 2 || leader[1].ID != events[len(events)-1].ID {
		t.Fatalf("ReadFromLeader: %d events, %v", len(leader), err)
	}
}

// TestReadUpcastsStoredVersions: an OrderShipped stored at schema version
// 1 reads as version 2, from followers and from the leader; a version this
// build cannot read makes the history corrupt rather than misread.
func TestReadUpcastsStoredVersions(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	v1 := event("ord-1", 1, contract.TypeOrderShipped, `{"trackingNumber":"1Z999","carrier":"UPS"}`)
	if _, err := store.Append(ctx, "ord-1", 0, []contract.Event{v1}); err != nil {
		t.Fatal(err)
	}
	const v2 = `{"shipment":{"trackingNumber":"1Z999","carrier":"UPS"}}`
	for name, read := range map[string]func(context.Context, string, uint64) ([]contract.Event, error){
		"Read": store.Read, "ReadFromLeader": store.ReadFromLeader,
	} {
		events, err := read(ctx, "ord-1", 0)
		if err != nil || len(events) != 1 || string(events[0].Data) != v2 || events[0].SchemaVersion != 2 {
			t.Fatalf("%s: %+v %v", name, events, err)
		}
	}
	future := event("ord-2", 1, contract.TypeOrderShipped, v2)
	future.SchemaVersion = 3
	if _, err := store.Append(ctx, "ord-2", 0, []contract.Event{future}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Read(ctx, "ord-2", 0); !errors.Is(err, es.ErrCorrupt) || !errors.Is(err, contract.ErrSchemaVersion) {
		t.Fatalf("read of schema version 3: %v", err)
	}
}

func TestEventEnvelopeWireForm(t *testing.T) {
	e := contract.Event{ID: "evt-1", AggregateType: "order", AggregateID: "ord-1", Type: "ItemAdded", SchemaVersion: 1, Version: 3,
		Data: json.RawMessage(`{"productId":"sku-1"}`),
		Metadata: contract.EventMetadata{UserID: "u-7", CorrelationID: "corr-1", CausationID: "cmd-1",
			Timestamp: contract.Time{Time: time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)}}}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"evt-1","aggregateType":"order","aggregateId":"ord-1","type":"ItemAdded","schemaVersion":1,"version":3,` +
		`"data":{"productId":"sku-1"},"metadata":{"userId":"u-7","correlationId":"corr-1","causationId":"cmd-1","timestamp":"2026-11-23T10:00:00.123456Z"}}`
	if string(b) != want {
		t.Fatalf("envelope\n got %s\nwant %s", b, want)
	}
	back, err := contract.DecodeEvent("s", 9, b)
	if err != nil || back.Metadata.Timestamp.Nanosecond() != 123456000 || back.Sequence != 9 {
		t.Fatalf("decode: %+v %v", back, err)
	}
	if id := es.NewEventID(time.Now()); len(id) != 40 || !strings.HasPrefix(id, "evt-") || id[18] != '7' {
		t.Fatalf("NewEventID() = %q, want evt- and a UUIDv7", id)
	}
}
