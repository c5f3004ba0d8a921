package contract_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/natstest"
)

// TestPartitionMatchesServerTransform pins contract.Partition to what the
// server's {{partition(16,1)}} transform stores for the same order id.
func TestPartitionMatchesServerTransform(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Streams(t, natstest.Partitions)
	ids := []string{"a", "ord-1", "ORD_2", "0", "-", "_", strings.Repeat("z", 128)}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
	for range 300 {
		b := make([]byte, 1+rng.IntN(40))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		ids = append(ids, string(b))
	}
	for _, id := range ids {
		ack, err := js.Publish(ctx, contract.CommandSubject(id, "SubmitOrder"), []byte(`{}`))
		if err != nil {
			t.Fatalf("publish command for %s: %v", id, err)
		}
		stream, err := js.Stream(ctx, contract.CommandsStream)
		if err != nil {
			t.Fatal(err)
		}
		m, err := stream.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		p, orderID, typ, ok := contract.ParseStoredCommandSubject(m.Subject)
		if !ok || orderID != id || typ != "SubmitOrder" {
			t.Fatalf("stored subject %q does not parse back to %s", m.Subject, id)
		}
		if want := contract.Partition(id, natstest.Partitions); p != want {
			t.Fatalf("order %q: server put it in partition %d, contract.Partition says %d", id, p, want)
		}
		if got := contract.EventSubject(id, natstest.Partitions); got != fmt.Sprintf("orders.events.%d.%s", p, id) {
			t.Fatalf("EventSubject(%q) = %s, not in partition %d", id, got, p)
		}
	}
}
