package aggregator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/eventually"
)

// TestUntypedCommandsAreAnsweredAndCounted publishes a command on
// orders.commands.<orderId>, without the type token, which no stream
// stores: a request is answered with an error naming the subject and the
// form to use, a JetStream publish fails with that error, a plain publish
// is counted, and nothing is stored or decided.
func TestUntypedCommandsAreAnsweredAndCounted(t *testing.T) {
	count := &counter{}
	h := startHarness(t, aggregator.Config{Observer: count})
	id := newID("ord")
	subject := contract.CommandsPrefix + id
	body := []byte(`{"customerId":"c"}`)
	want := subject + " has no command type, so nothing was stored: publish to orders.commands.<orderId>.<CommandType>"

	var reply *nats.Msg
	eventually.True(t, 10*time.Second, "the aggregator to answer an untyped command", func() bool {
		m, err := h.nc.Request(subject, body, time.Second)
		reply = m
		return err == nil
	})
	if got := string(reply.Data); !strings.Contains(got, want) || !strings.Contains(got, `"code":400`) {
		t.Fatalf("reply %s, want an API error saying %q", got, want)
	}
	if _, err := h.js.Publish(context.Background(), subject, body); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("JetStream publish: %v, want an error saying %q", err, want)
	}
	answered := count.untyped.Load()
	if err := h.nc.Publish(subject, body); err != nil {
		t.Fatal(err)
	}
	waitCount(t, &count.untyped, answered+1, "the plain publish to be counted")

	accepted(t, h.send(cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: id, Data: map[string]any{"customerId": "c"}}))
	if events := h.events(id); len(events) != 1 {
		t.Fatalf("%d events of %s, want only CreateOrder's", len(events), id)
	}
}
