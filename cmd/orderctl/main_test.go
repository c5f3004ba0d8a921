package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/pgtest"
	"github.com/jetsource/jetsource/internal/servicetest"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { pgtest.Main(m, &cluster) }

// orderctl runs one command line and returns its exit code and output.
func orderctl(args ...string) (int, string, string) {
	return orderctlCtx(context.Background(), args...)
}

func orderctlCtx(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestSendHistoryAndState(t *testing.T) {
	srv, _, _ := natstest.Streams(t, natstest.Partitions)
	servicetest.Aggregator(t, srv.ClientURL())
	servicetest.Query(t, srv.ClientURL())
	t.Setenv("NATS_URL", srv.ClientURL())

	code, out, errOut := orderctl("send", "--id", "c-1", "--user", "u-1", "ord-9", "CreateOrder", `{"customerId":"cust"}`)
	if code != 0 || !strings.Contains(out, `"status": "accepted"`) {
		t.Fatalf("send create: %d %s %s", code, out, errOut)
	}
	if code, out, _ := orderctl("send", "ord-9", "AddItem", `{"productId":"sku","quantity":3,"unitPriceCents":250}`); code != 0 {
		t.Fatalf("send add: %d %s", code, out)
	}
	if code, out, _ := orderctl("send", "ord-9", "PayOrder", `{"paymentId":"p","amountCents":1,"method":"card"}`); code != 3 || !strings.Contains(out, "invalid_state") {
		t.Fatalf("rejected pay: exit %d, output %s", code, out)
	}
	if code, _, errOut := orderctl("send", "ord-9", "AddItem", `{"productId":"a.b","quantity":1,"unitPriceCents":1}`); code != 2 || !strings.Contains(errOut, "productId") {
		t.Fatalf("invalid command: exit %d, %s", code, errOut)
	}
	code, out, _ = orderctl("history", "ord-9")
	if code != 0 || !strings.Contains(out, "OrderCreated") || !strings.Contains(out, "ItemAdded") || !strings.Contains(out, "c-1") {
		t.Fatalf("history: %d\n%s", code, out)
	}
	code, out, _ = orderctl("state", "--version", "1", "ord-9")
	var state struct {
		Status     string `json:"status"`
		TotalCents int64  `json:"totalCents"`
		Version    int64  `json:"version"`
	}
	if err := json.Unmarshal([]byte(out), &state); code != 0 || err != nil || state.Version != 1 || state.TotalCents != 0 {
		t.Fatalf("state at version 1: %d %s %v", code, out, err)
	}
	code, out, _ = orderctl("state", "ord-9")
	if err := json.Unmarshal([]byte(out), &state); code != 0 || err != nil || state.Version != 2 || state.TotalCents != 750 {
		t.Fatalf("state now: %d %s %v", code, out, err)
	}
	if code, _, _ := orderctl("state", "--at", "yesterday", "ord-9"); code != 2 {
		t.Fatalf("bad --at: exit %d", code)
	}
	if code, _, errOut := orderctl("state", "--at", "2026-11-23T10:00:00Z", "--version", "1", "ord-9"); code != 2 || !strings.Contains(errOut, "not both") {
		t.Fatalf("--at and --version: exit %d %s", code, errOut)
	}
	// Issue 14, items 6 and 7: an order that never existed is not one that
	// did not exist then, and a version beyond the last is not the last.
	if code, _, errOut := orderctl("state", "ord-never"); code != 1 || !strings.Contains(errOut, "no such order ord-never") {
		t.Fatalf("state of an order that never existed: exit %d %s", code, errOut)
	}
	if code, _, errOut := orderctl("state", "--version", "5", "ord-9"); code != 1 || !strings.Contains(errOut, "order ord-9 is at version 2; it has no version 5") {
		t.Fatalf("state at a version beyond the last: exit %d %s", code, errOut)
	}
	if code, _, _ := orderctl("frobnicate"); code != 2 {
		t.Fatalf("unknown command: exit %d", code)
	}
}
