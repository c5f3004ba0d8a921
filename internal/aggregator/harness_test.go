package aggregator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
)

// harness runs an aggregator over an embedded NATS server and talks to it
// the way other services do: JSON on the contract subjects.
type harness struct {
	t     *testing.T
	nc    *nats.Conn
	js    jetstream.JetStream
	store *es.Store
	stop  func()
}

var commandSeq atomic.Int64

func newID(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), commandSeq.Add(1))
}

func startHarness(t *testing.T, cfg aggregator.Config) *harness {
	t.Helper()
	_, nc, js := natstest.Streams(t, natstest.Partitions)
	h := &harness{t: t, nc: nc, js: js, store: es.NewStore(js, natstest.Partitions)}
	h.stop = h.run(cfg)
	t.Cleanup(func() { h.stop() })
	return h
}

// run starts an aggregator and returns a function that stops it and waits.
func (h *harness) run(cfg aggregator.Config) func() {
	h.t.Helper()
	return h.runOn(h.js, cfg, nil)
}

// runOn starts an aggregator on its own JetStream handle with a test hook.
// Of set, it takes the fields tests vary (ReplicaID, LeaseTTL, AckWait,
// MaxInFlight, SnapshotEvery, Observer, Tracer, Logger) where they are not
// zero; the rest are the defaults.
func (h *harness) runOn(js jetstream.JetStream, set aggregator.Config, hook func(point, commandID string) error) func() {
	h.t.Helper()
	cfg := aggregator.DefaultConfig()
	cfg.Partitions = natstest.Partitions
	cfg.LeaseTTL = 2 * time.Second // a crashed test replica's leases lapse quickly
	if set.LeaseTTL != 0 {
		cfg.LeaseTTL = set.LeaseTTL
	}
	if set.ReplicaID != "" {
		cfg.ReplicaID = set.ReplicaID
	}
	if set.AckWait != 0 {
		cfg.AckWait = set.AckWait
	}
	if set.MaxInFlight != 0 {
		cfg.MaxInFlight = set.MaxInFlight
	}
	if set.SnapshotEvery != 0 {
		cfg.SnapshotEvery = set.SnapshotEvery
	}
	cfg.Observer, cfg.Tracer, cfg.Logger = set.Observer, set.Tracer, set.Logger
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	// The lease bucket's TTL is the replicas' lease TTL, as the operator
	// sets it up.
	topo := natstest.Topology(natstest.Partitions)
	topo.LeaseTTL = cfg.LeaseTTL
	if _, err := js.CreateOrUpdateKeyValue(context.Background(), topo.LeaseBucketConfig()); err != nil {
		h.t.Fatal(err)
	}
	svc, err := aggregator.New(js, cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	if hook != nil {
		aggregator.SetHook(svc, hook)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = svc.Run(ctx)
	}()
	stopped := false
	return func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// cmd is a command envelope as other services write it.
type cmd struct {
	ID       string         `json:"id,omitempty"`
	Type     string         `json:"type"`
	OrderID  string         `json:"orderId"`
	Data     any            `json:"data,omitempty"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

// send publishes c on its contract subject with Nats-Msg-Id = c.ID and
// waits for its result.
func (h *harness) send(c cmd) contract.Result {
	h.t.Helper()
	body, err := json.Marshal(c)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.sendRaw(contract.CommandSubject(c.OrderID, c.Type), c.ID, body)
}

// sendRaw publishes body on subject and waits for the result, which is
// looked up by id or, without a usable id, by the command's sequence.
func (h *harness) sendRaw(subject, msgID string, body []byte) contract.Result {
	h.t.Helper()
	ack := h.publish(subject, msgID, body)
	resultSubject := contract.ResultSubject(msgID)
	if msgID == "" {
		resultSubject = contract.UnaddressableResultSubject(ack.Sequence)
	}
	return h.waitResult(resultSubject)
}

func (h *harness) publish(subject, msgID string, body []byte) *jetstream.PubAck {
	h.t.Helper()
	m := nats.NewMsg(subject)
	m.Data = body
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := h.js.PublishMsg(ctx, m)
	if err != nil {
		h.t.Fatalf("publish %s: %v", subject, err)
	}
	return ack
}

func (h *harness) waitResult(subject string) contract.Result {
	h.t.Helper()
	r, err := h.lookup(subject, 15*time.Second)
	if err != nil {
		h.t.Fatalf("result on %s: %v", subject, err)
	}
	return r
}

func (h *harness) lookup(subject string, within time.Duration) (contract.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	stream, err := h.js.Stream(ctx, contract.ResultsStream)
	if err != nil {
		return contract.Result{}, err
	}
	for {
		m, err := stream.GetLastMsgForSubject(ctx, subject)
		if err == nil {
			var r contract.Result
			return r, json.Unmarshal(m.Data, &r)
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return contract.Result{}, err
		}
		select {
		case <-ctx.Done():
			return contract.Result{}, fmt.Errorf("no result within %s", within)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// events reads an order's stored events.
func (h *harness) events(orderID string) []contract.Event {
	h.t.Helper()
	ev, err := h.store.Read(context.Background(), orderID, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return ev
}

// totalEvents counts every stored event.
func (h *harness) totalEvents() uint64 { return h.streamMessages(contract.EventsStream) }

// waitSettled waits until the command queue is empty: every command
// handled, and purged off the queue.
func (h *harness) waitSettled() {
	h.t.Helper()
	eventually.Holds(h.t, 10*time.Second, "the command queue settled", func() (bool, string) {
		n := h.streamMessages(contract.CommandsStream)
		return n == 0, fmt.Sprintf("%d commands stored", n)
	})
}

func (h *harness) streamMessages(name string) uint64 {
	h.t.Helper()
	s, err := h.js.Stream(context.Background(), name)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Msgs
}

func accepted(t *testing.T, r contract.Result) contract.Result {
	t.Helper()
	if r.Status != contract.StatusAccepted {
		t.Fatalf("command %s rejected: %+v", r.CommandID, r.Error)
	}
	return r
}

func rejectedWith(t *testing.T, r contract.Result, code contract.Code) {
	t.Helper()
	if r.Status != contract.StatusRejected || r.Error == nil || r.Error.Code != code {
		t.Fatalf("result %+v (error %+v), want rejected with %s", r, r.Error, code)
	}
	if r.Error.Message == "" {
		t.Fatal("rejection without a message")
	}
}

// counter is an Observer that counts what tests assert on.
type counter struct {
	appends, replayed, snapshotsIgnored, untyped atomic.Int64
}

func (c *counter) CommandHandled(_, _, _ string, replayed bool, _ time.Duration) {
	if replayed {
		c.replayed.Add(1)
	}
}
func (c *counter) CacheLookup(bool)            {}
func (c *counter) Append(time.Duration, error) { c.appends.Add(1) }
func (c *counter) Retry()                      {}
func (c *counter) SnapshotIgnored(string)      { c.snapshotsIgnored.Add(1) }
func (c *counter) UntypedCommand()             { c.untyped.Add(1) }
func (c *counter) Settled(int, bool)           {}
func (c *counter) Partition(int, bool)         {}

// waitCount waits until n reaches at least want.
func waitCount(t *testing.T, n *atomic.Int64, want int64, what string) {
	t.Helper()
	eventually.Holds(t, 10*time.Second, what, func() (bool, string) { return n.Load() >= want, fmt.Sprintf("%d, want %d", n.Load(), want) })
}
