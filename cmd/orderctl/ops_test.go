package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/order"
	"github.com/jetsource/jetsource/internal/projectord"
	"github.com/jetsource/jetsource/internal/servicetest"
)

// opsEnv is a running system for the operator commands: NATS with the
// aggregator, Postgres with an order_summary runner (nobody runs the other
// projections), and orderctl's environment pointing at both.
type opsEnv struct {
	store *es.Store
	db    *pgxpool.Pool
}

func startOps(t *testing.T) *opsEnv {
	t.Helper()
	srv, _, js := natstest.Streams(t, natstest.Partitions)
	url := cluster.DB(t)
	servicetest.Aggregator(t, srv.ClientURL())
	servicetest.Projector(t, srv.ClientURL(), url, "order_summary", func(c *projectord.Config) {
		c.Runner.MaxAttempts, c.Runner.Heartbeat, c.Runner.ReplicaTTL = 2, 100*time.Millisecond, 500*time.Millisecond
	})
	db, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	t.Setenv("NATS_URL", srv.ClientURL())
	t.Setenv("DATABASE_URL", url)
	t.Setenv("JETSOURCE_SCHEMA", "jetsource")
	return &opsEnv{store: es.NewStore(js, natstest.Partitions), db: db}
}

// appendRaw stores events as the aggregator never would, to make the
// projection reject them.
func (e *opsEnv) appendRaw(t *testing.T, orderID string, events ...order.Event) {
	t.Helper()
	ctx := context.Background()
	last, err := e.store.LeaderLastSequence(ctx, orderID)
	if err != nil {
		t.Fatal(err)
	}
	var version int64
	if evs, err := e.store.Read(ctx, orderID, 0); err == nil && len(evs) > 0 {
		version = evs[len(evs)-1].Version
	}
	next := version + 1
	if version == 0 {
		next = 2 // an order that was never created
	}
	envs := make([]contract.Event, len(events))
	for i, data := range events {
		body, _ := json.Marshal(data)
		v := next
		if _, created := data.(order.OrderCreated); created {
			v = 1 // a repeated creation
		} else {
			next++
		}
		envs[i] = contract.Event{ID: es.NewEventID(time.Now()), AggregateType: order.AggregateType, AggregateID: orderID, Type: data.EventType(),
			SchemaVersion: contract.SchemaVersion(data.EventType()), Version: v, Data: body, Metadata: contract.EventMetadata{Timestamp: contract.Time{Time: time.Now()}}}
	}
	if _, err := e.store.Append(ctx, orderID, last, envs); err != nil {
		t.Fatal(err)
	}
}

func TestReadYourWritesAndLag(t *testing.T) {
	e := startOps(t)
	mustRun(t, 0, "send", "--id", "c-1", "ord-1", "CreateOrder", `{"customerId":"cust","currency":"EUR"}`)
	out, _ := mustRun(t, 0, "wait", "--projection", "order_summary", "c-1")
	if !strings.Contains(out, "order_summary has projected command c-1 (order ord-1, stream sequence 1); waited") {
		t.Fatalf("wait: %s", out)
	}
	var status string
	if err := e.db.QueryRow(context.Background(), "SELECT status FROM jetsource.orders WHERE id = 'ord-1'").Scan(&status); err != nil || status != "draft" {
		t.Fatalf("right after wait: %q %v", status, err)
	}
	mustRun(t, 3, "send", "--id", "c-2", "ord-1", "SubmitOrder")
	if out, _ := mustRun(t, 3, "wait", "--projection", "order_summary", "c-2"); !strings.Contains(out, "c-2 was rejected (invalid_state") {
		t.Fatalf("wait for a rejected command: %s", out)
	}
	mustRun(t, 0, "send", "--id", "c-3", "ord-1", "AddItem", `{"productId":"sku","quantity":2,"unitPriceCents":150}`)
	// Nobody runs sales_daily.
	if _, errOut := mustRun(t, 1, "wait", "--timeout", "300ms", "--projection", "sales_daily", "c-3"); !strings.Contains(errOut, "is its projector running?") {
		t.Fatalf("wait for a projection nobody runs: %s", errOut)
	}
	if _, errOut := mustRun(t, 1, "wait", "--timeout", "300ms", "--projection", "order_summary", "c-unknown"); !strings.Contains(errOut, "no result for command c-unknown") {
		t.Fatalf("wait for an unknown command: %s", errOut)
	}
	mustRun(t, 0, "wait", "--projection", "order_summary", "c-3")

	partition := strconv.Itoa(contract.Partition("ord-1", natstest.Partitions))
	out, _ = mustRun(t, 0, "lag")
	mustMatch(t, out, `^PROJECTION\s+EVENTS BEHIND\s+SECONDS BEHIND\s+PARTITIONS BEHIND\s+LAST EVENT AT\s+EVENTS MISSING\n`,
		`(?m)^order_summary\s+0\s+0\.0\s+0 of 16\s+20\d\d-\S+\s+-$`, `(?m)^sales_daily\s+2\s+\d+\.\d\s+1 of 16\s+-\s+-$`)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 {
		t.Fatalf("lag: want a header and a line per projection:\n%s", out)
	}
	out, _ = mustRun(t, 0, "lag", "--projection", "order_summary", "--partitions")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1+natstest.Partitions {
		t.Fatalf("lag --partitions: want a header and 16 partitions:\n%s", out)
	}
	mustMatch(t, out, `(?m)^order_summary\s+`+partition+`\s+2\s+0\s+0\.0\s+20\d\d-`)
	out, _ = mustRun(t, 0, "lag", "--json")
	var reports []lagReport
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r lagReport
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("lag --json: %v\n%s", err, out)
		}
		reports = append(reports, r)
	}
	if len(reports) != 3 || reports[0].Projection != "order_summary" || reports[0].EventsBehind != 0 ||
		reports[2].Projection != "sales_daily" || reports[2].EventsBehind != 2 || reports[2].SecondsBehind <= 0 ||
		len(reports[2].Partitions) != natstest.Partitions {
		t.Fatalf("lag --json: %+v", reports)
	}

	out, _ = mustRun(t, 0, "checkpoints", "--projection", "order_summary")
	mustMatch(t, out, `(?m)^`+partition+`\s+2\s+20\d\d-\S+\s+20\d\d-`)
	out, _ = mustRun(t, 0, "checkpoints", "--projection", "order_summary", "--json")
	var cps []checkpoint
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var cp checkpoint
		if err := json.Unmarshal([]byte(line), &cp); err != nil {
			t.Fatalf("checkpoints --json: %v\n%s", err, out)
		}
		cps = append(cps, cp)
	}
	if p, _ := strconv.Atoi(partition); len(cps) != natstest.Partitions || cps[p].Cursor != 2 || cps[p].UpdatedAt == nil {
		t.Fatalf("checkpoints --json:\n%s", out)
	}
	if out, _ := mustRun(t, 0, "checkpoints", "--projection", "sales_daily"); !strings.Contains(out, "never ran") {
		t.Fatalf("checkpoints of a projection nobody runs:\n%s", out)
	}

	// The order's row is lost: its next event fails and is dead-lettered,
	// and the one after it is parked. wait says so instead of reporting the
	// command projected (issue 14, item 3).
	if _, err := e.db.Exec(context.Background(), "DELETE FROM jetsource.orders WHERE id = 'ord-1'"); err != nil {
		t.Fatal(err)
	}
	mustRun(t, 0, "send", "--id", "c-4", "ord-1", "AddItem", `{"productId":"sku-2","quantity":1,"unitPriceCents":100}`)
	mustRun(t, 0, "send", "--id", "c-5", "ord-1", "AddItem", `{"productId":"sku-3","quantity":1,"unitPriceCents":100}`)
	for _, id := range []string{"c-4", "c-5"} {
		_, errOut := mustRun(t, 1, "wait", "--projection", "order_summary", id)
		mustMatch(t, errOut, `order_summary cannot show command `+id+`: the event of order ord-1 at stream sequence \d+ is dead letter \d+ \(failed: .*no row`,
			`; see orderctl dlq list --projection order_summary --order ord-1, then retry or skip it\n$`)
	}

	t.Setenv("JETSOURCE_SCHEMA", "elsewhere")
	if _, errOut := mustRun(t, 1, "lag"); !strings.Contains(errOut, `schema "elsewhere" of DATABASE_URL has no projection tables`) {
		t.Fatalf("wrong schema: %s", errOut)
	}
	t.Setenv("DATABASE_URL", "")
	if _, errOut := mustRun(t, 1, "checkpoints", "--projection", "order_summary"); !strings.Contains(errOut, "DATABASE_URL is not set") {
		t.Fatalf("no DATABASE_URL: %s", errOut)
	}
}

func TestDeadLetterRetryAndSkip(t *testing.T) {
	e := startOps(t)
	ctx := context.Background()
	// ord-ghost was never created: its ItemAdded fails, the next is parked.
	e.appendRaw(t, "ord-ghost", order.ItemAdded{ProductID: "sku", Quantity: 1, UnitPriceCents: 100},
		order.ItemAdded{ProductID: "sku", Quantity: 2, UnitPriceCents: 100})
	// ord-dup is created twice: the repeat fails, the item after it is parked.
	mustRun(t, 0, "send", "ord-dup", "CreateOrder", `{"customerId":"cust"}`)
	mustRun(t, 0, "send", "--id", "c-dup", "ord-dup", "AddItem", `{"productId":"a","quantity":1,"unitPriceCents":500}`)
	mustRun(t, 0, "wait", "--projection", "order_summary", "c-dup")
	e.appendRaw(t, "ord-dup", order.OrderCreated{CustomerID: "cust", Currency: "USD"}, order.ItemAdded{ProductID: "b", Quantity: 3, UnitPriceCents: 10})

	failed := map[string]deadLetter{}
	eventually.Holds(t, 20*time.Second, "two failed dead letters", func() (bool, string) {
		out, _ := mustRun(t, 0, "dlq", "list", "--status", "failed", "--json")
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			var l deadLetter
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("dlq list --json: %v: %s", err, line)
			}
			failed[l.OrderID] = l
		}
		return len(failed) >= 2, fmt.Sprint(failed)
	})
	ghost, dup := failed["ord-ghost"], failed["ord-dup"]
	if ghost.EventType != "ItemAdded" || ghost.EventVersion != 2 || ghost.Attempts != 2 || !strings.Contains(ghost.Error, "no row") ||
		!strings.Contains(string(ghost.Body), `"type":"ItemAdded"`) || dup.EventType != "OrderCreated" {
		t.Fatalf("failed letters: %+v", failed)
	}
	out, _ := mustRun(t, 0, "dlq", "list", "--projection", "order_summary", "--order", "ord-ghost")
	for _, re := range []string{
		fmt.Sprintf(`(?m)^%d\s+order_summary\s+\d+\s+\d+\s+ord-ghost\s+2\s+ItemAdded\s+failed\s+2\s`, ghost.ID),
		`(?m)^\d+\s+order_summary\s+\d+\s+\d+\s+ord-ghost\s+3\s+ItemAdded\s+parked\s+0\s`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Fatalf("dlq list: no line matches %s:\n%s", re, out)
		}
	}
	if _, errOut := mustRun(t, 0, "dlq", "list", "--limit", "1"); !strings.Contains(errOut, "--after") {
		t.Fatalf("a full page should say how to get the next: %s", errOut)
	}

	ghostID := strconv.FormatInt(ghost.ID, 10)
	out, errOut := mustRun(t, 1, "dlq", "retry", "--projection", "order_summary", ghostID)
	if !strings.Contains(out, "0 events applied, then dead letter "+ghostID+" failed again; 1 event still parked") ||
		!strings.Contains(errOut, "event still fails") {
		t.Fatalf("retry while the cause persists:\n%s\n%s", out, errOut)
	}
	// The operator fixes the data: the order's row, as its creation would
	// have written it.
	if _, err := e.db.Exec(ctx, `INSERT INTO jetsource.orders (id, customer_id, currency, status, total_cents, item_count,
		created_at, updated_at, version, last_sequence) VALUES ('ord-ghost', 'cust', 'EUR', 'draft', 0, 0, now(), now(), 1, 0)`); err != nil {
		t.Fatal(err)
	}
	if out, _ := mustRun(t, 0, "dlq", "retry", "--projection", "order_summary", ghostID); out != "dead letter "+ghostID+" of order_summary retried: 2 events applied; the order is unblocked\n" {
		t.Fatalf("retry: %q", out)
	}
	var version, quantity int64
	if err := e.db.QueryRow(ctx, `SELECT o.version, i.quantity FROM jetsource.orders o JOIN jetsource.order_items i ON i.order_id = o.id
		WHERE o.id = 'ord-ghost'`).Scan(&version, &quantity); err != nil || version != 3 || quantity != 3 {
		t.Fatalf("ord-ghost after the retry: version %d, quantity %d, %v", version, quantity, err)
	}

	dupID := strconv.FormatInt(dup.ID, 10)
	if out, _ := mustRun(t, 0, "dlq", "skip", "--projection", "order_summary", dupID); out != "dead letter "+dupID+" of order_summary skipped: 1 event applied; the order is unblocked\n" {
		t.Fatalf("skip: %q", out)
	}
	if _, errOut := mustRun(t, 1, "dlq", "skip", "--projection", "order_summary", dupID); !strings.Contains(errOut, "not failed") {
		t.Fatalf("skip twice: %s", errOut)
	}
	if _, errOut := mustRun(t, 1, "dlq", "retry", "--projection", "order_summary", "999999"); !strings.Contains(errOut, "not found") {
		t.Fatalf("retry of an unknown id: %s", errOut)
	}
	if out, _ := mustRun(t, 0, "dlq", "list", "--status", "failed"); strings.Count(out, "\n") != 1 {
		t.Fatalf("failed letters left:\n%s", out)
	}

	// A rebuild replays everything: the two bad events fail again in the
	// new tables, and the rest is projected as before.
	out, errOut = mustRun(t, 0, "rebuild", "--projection", "order_summary")
	if !regexp.MustCompile(`^rebuilt order_summary: 6 events in \S+ \(\d+ events/s\); the new tables are live\n$`).MatchString(out) ||
		!strings.Contains(errOut, "rebuild order_summary: 6 events, swapped in") {
		t.Fatalf("rebuild:\nstdout: %s\nstderr: %s", out, errOut)
	}
	var orders int
	if err := e.db.QueryRow(ctx, "SELECT count(*) FROM jetsource.orders").Scan(&orders); err != nil || orders != 1 {
		t.Fatalf("orders after the rebuild: %d, %v (want ord-dup only)", orders, err)
	}

	// Ctrl-C: the rebuild stops, the live tables stay.
	abort, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	code, out, errOut := orderctlCtx(abort, "rebuild", "--projection", "order_summary")
	if code != 1 || out != "" || !strings.Contains(errOut, "interrupted after") || !strings.Contains(errOut, "live tables are unchanged") {
		t.Fatalf("interrupted rebuild: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if err := e.db.QueryRow(ctx, "SELECT count(*) FROM jetsource.orders").Scan(&orders); err != nil || orders != 1 {
		t.Fatalf("orders after the interrupted rebuild: %d, %v", orders, err)
	}
	mustRun(t, 0, "rebuild", "--projection", "order_summary")
}
