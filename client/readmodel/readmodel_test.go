package readmodel_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/client/readmodel"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/pgtest"
	"github.com/jetsource/jetsource/internal/projectord"
	"github.com/jetsource/jetsource/internal/servicetest"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { pgtest.Main(m, &cluster) }

// TestWaitForProjectionReadsYourWrites sends commands and reads the
// order_summary row right after WaitForProjection returns: it must be there.
// Rejections return at once; a projection nobody runs times out.
func TestWaitForProjectionReadsYourWrites(t *testing.T) {
	srv, nc, _ := natstest.Streams(t, natstest.Partitions)
	dbURL := cluster.DB(t)
	servicetest.Aggregator(t, srv.ClientURL())
	servicetest.Projector(t, srv.ClientURL(), dbURL, "order_summary", func(c *projectord.Config) { c.Runner.MaxAttempts = 2 })
	db, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for i := range 20 {
		id := fmt.Sprintf("ord-ryw-%d", i)
		r, err := c.Send(ctx, client.NewEnvelope(id, contract.CreateOrder{CustomerID: "c", Currency: "EUR"}))
		if err != nil {
			t.Fatal(err)
		}
		if err := readmodel.WaitForProjection(ctx, db, "jetsource", "order_summary", natstest.Partitions, r); err != nil {
			t.Fatal(err)
		}
		var status string
		if err := db.QueryRow(ctx, "SELECT status FROM jetsource.orders WHERE id = $1", id).Scan(&status); err != nil || status != "draft" {
			t.Fatalf("order %s right after the wait: status %q, %v", id, status, err)
		}
	}

	accepted, err := c.Send(ctx, client.NewEnvelope("ord-ryw-0", contract.CancelOrder{Reason: "test"}))
	if err != nil {
		t.Fatal(err)
	}
	rejected, err := c.Send(ctx, client.NewEnvelope("ord-ryw-0", contract.SubmitOrder{}))
	if !errors.Is(err, client.ErrRejected) {
		t.Fatalf("submit of a canceled order: %v", err)
	}
	// Nobody runs sales_daily: a rejection has nothing to wait for, an
	// accepted command waits until ctx ends.
	if err := readmodel.WaitForProjection(ctx, db, "jetsource", "sales_daily", natstest.Partitions, rejected); err != nil {
		t.Fatalf("rejected: %v", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if err := readmodel.WaitForProjection(short, db, "jetsource", "sales_daily", natstest.Partitions, accepted); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("projection without a runner: %v; want the deadline", err)
	}

	for name, r := range map[string]contract.Result{
		"accepted without a sequence": {CommandID: "c", OrderID: "o", Status: "accepted"},
		"no status":                   {CommandID: "c"},
	} {
		if err := readmodel.WaitForProjection(ctx, db, "jetsource", "order_summary", natstest.Partitions, r); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := readmodel.WaitForProjection(ctx, db, "no_such_schema", "order_summary", natstest.Partitions, accepted); err == nil {
		t.Error("missing schema: no error")
	}

	// The order's row is gone: the projection dead-letters its next event
	// and parks the one after. The cursor passes both, but the read model
	// shows neither: the wait says so.
	if _, err := db.Exec(ctx, "DELETE FROM jetsource.orders WHERE id = 'ord-ryw-1'"); err != nil {
		t.Fatal(err)
	}
	var results []contract.Result
	for _, product := range []string{"a", "b"} {
		r, err := c.Send(ctx, client.NewEnvelope("ord-ryw-1", contract.AddItem{ProductID: product, Quantity: 1, UnitPriceCents: 1}))
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, r)
	}
	for i, r := range results {
		err := readmodel.WaitForProjection(ctx, db, "jetsource", "order_summary", natstest.Partitions, r)
		var dead *readmodel.DeadLetteredError
		if !errors.As(err, &dead) || !errors.Is(err, readmodel.ErrDeadLettered) || dead.Sequence != results[0].StreamSequence ||
			dead.Status != "failed" || dead.OrderID != "ord-ryw-1" || dead.CommandID != r.CommandID {
			t.Fatalf("command %d after the lost row: %v (%+v)", i, err, dead)
		}
	}
}
