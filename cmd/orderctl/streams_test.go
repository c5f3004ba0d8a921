package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natstest"
)

// TestStreamsApplyAndCheck: check fails on an empty server and names what
// is missing; apply creates everything; check passes; a changed setting is
// reported by check and put back by apply.
func TestStreamsApplyAndCheck(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	t.Setenv("NATS_URL", srv.ClientURL())
	t.Setenv("AGGREGATOR_LEASE_TTL", "3s")

	code, out, errOut := orderctl("streams", "check")
	if code != 1 || !strings.Contains(out, "ORDERS_EVENTS: missing") || !strings.Contains(out, "KV_JETSOURCE_AGGREGATOR_LEASES: missing") ||
		!strings.Contains(errOut, "5 differences") {
		t.Fatalf("check on an empty server: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := orderctl("streams", "apply"); code != 0 || !strings.Contains(out, "applied: ORDERS_COMMANDS: missing") {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := orderctl("streams", "check"); code != 0 || !strings.Contains(out, "as configured") {
		t.Fatalf("check after apply: exit %d\n%s%s", code, out, errOut)
	}
	applied := es.DefaultTopology()
	applied.LeaseTTL = 3 * time.Second
	if err := es.Verify(context.Background(), js, applied); err != nil {
		t.Fatalf("streams after apply: %v", err)
	}

	t.Setenv("JETSOURCE_RESULTS_MAX_AGE", "48h")
	t.Setenv("AGGREGATOR_LEASE_TTL", "4s")
	code, out, _ = orderctl("streams", "check")
	if code != 1 || !strings.Contains(out, "ORDERS_RESULTS: max age is 24h0m0s, want 48h0m0s") || !strings.Contains(out, "ttl is 3s, want 4s") {
		t.Fatalf("check with another max age and TTL: exit %d\n%s", code, out)
	}
	if code, out, errOut := orderctl("streams", "apply"); code != 0 || !strings.Contains(out, "applied: ORDERS_RESULTS: max age") {
		t.Fatalf("apply the new max age: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := orderctl("streams", "check"); code != 0 {
		t.Fatalf("check after the second apply: exit %d\n%s", code, out)
	}

	t.Setenv("JETSOURCE_PARTITIONS", "8")
	if code, _, errOut := orderctl("streams", "apply"); code != 2 || !strings.Contains(errOut, "the streams were created with 16 partitions; set JETSOURCE_PARTITIONS=16") {
		t.Fatalf("apply with another partition count: exit %d\n%s", code, errOut)
	}
}
