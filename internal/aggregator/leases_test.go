package aggregator_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/netfault"
)

// TestStartsAgainstASlowNATS starts a replica whose NATS answers every
// request later than the lease tick allows: the lease bucket and the
// membership watch come up (their calls wait long enough), but every
// heartbeat and lease request times out, so the replica never sees itself
// as a member. It must neither crash nor run a partition without a lease,
// and once NATS answers in time it takes every partition and handles the
// commands that waited.
func TestStartsAgainstASlowNATS(t *testing.T) {
	srv, _, js := natstest.Streams(t, natstest.Partitions)
	h := &harness{t: t, js: js, store: es.NewStore(js, natstest.Partitions)}
	u, err := url.Parse(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := netfault.Start(t, u.Host)
	nc, err := nats.Connect("nats://"+proxy.Addr(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	slow, err := jetstream.New(nc, jetstream.WithDefaultTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// LeaseTTL 1s: heartbeats and lease requests time out after 200ms; a
	// round trip takes 600ms.
	proxy.SetDelay(300 * time.Millisecond)
	own := &ownership{t: t, owner: map[int]string{}, count: map[string]int{}}
	stop := h.runOn(slow, aggregator.Config{ReplicaID: "slow", LeaseTTL: time.Second, Observer: own.observer("slow")}, nil)
	t.Cleanup(stop)

	orderID := newID("ord")
	create := newID("cmd")
	h.publish(contract.CommandSubject(orderID, "CreateOrder"), create,
		[]byte(`{"id":"`+create+`","type":"CreateOrder","orderId":"`+orderID+`","data":{"customerId":"c"}}`))
	// A heartbeat reaches the server 300ms after it was sent, 100ms after
	// the replica gave up on it; the second one is sent after the replica
	// rebalanced on the failure of the first.
	var kv jetstream.KeyValue
	eventually.True(t, 30*time.Second, "the lease bucket exists", func() bool {
		kv, err = js.KeyValue(context.Background(), es.LeaseBucket)
		return err == nil
	})
	heartbeats := func() uint64 {
		e, err := kv.Get(context.Background(), "members.slow")
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return e.Revision()
	}
	eventually.True(t, 30*time.Second, "a first heartbeat reaches the server", func() bool { return heartbeats() > 0 })
	first := heartbeats()
	eventually.True(t, 30*time.Second, "a second heartbeat reaches the server", func() bool { return heartbeats() > first })
	if n := own.snapshot()["slow"]; n != 0 {
		t.Fatalf("the replica runs %d partitions without having renewed a lease", n)
	}

	proxy.SetDelay(0)
	eventually.True(t, 30*time.Second, "the replica runs all 16 partitions", func() bool {
		return own.snapshot()["slow"] == natstest.Partitions
	})
	accepted(t, h.waitResult(contract.ResultSubject(create)))
}
