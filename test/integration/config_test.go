package integration

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natstest"
)

// TestBinariesRefuseBadConfiguration starts the binaries as a user would
// with bad configuration: each exits 2 with one message that names every
// problem by its variable, in the user's words (issue 14, item 5).
func TestBinariesRefuseBadConfiguration(t *testing.T) {
	t.Parallel()
	srv, _, _ := natstest.Streams(t, 16)
	nats := "NATS_URL=" + srv.ClientURL()
	tests := []struct {
		name, binary string
		env          []string
		code         int
		want         []string
	}{
		{"every problem at once", "aggregator",
			[]string{nats, "JETSOURCE_PARTITIONS=abc", "AGGREGATOR_LEASE_TTL=x", "LOG_LEVEL=verbose", "JETSOURCE_REPLICAS=2", "AGGREGATOR_ACK_WAIT=1ms"}, 2,
			[]string{`JETSOURCE_PARTITIONS="abc": not a whole number`, `AGGREGATOR_LEASE_TTL="x": not a duration`,
				`LOG_LEVEL="verbose": must be debug, info, warn or error`, `JETSOURCE_REPLICAS="2": must be 1, 3 or 5`,
				`AGGREGATOR_ACK_WAIT="1ms": must be at least 1s`}},
		{"TLS key without certificate", "aggregator", []string{nats, "NATS_TLS_KEY=/nonexistent"}, 2,
			[]string{`NATS_TLS_CERT is unset: must be set with the client key`, `NATS_TLS_KEY="/nonexistent": cannot be read`}},
		{"projector without database", "projector", []string{nats, "PROJECTOR_PROJECTION=orders", "PROJECTOR_BATCH_SIZE=0"}, 2,
			[]string{`PROJECTOR_PROJECTION="orders": must be one of order_summary, order_history, sales_daily`,
				`DATABASE_URL is unset`, `PROJECTOR_BATCH_SIZE="0": must be between 1 and 5000`}},
		{"query service", "query", []string{nats, "QUERY_TIMEOUT=soon", "JETSOURCE_PARTITIONS=0", "LOG_LEVEL=loud"}, 2,
			[]string{`QUERY_TIMEOUT="soon": not a duration`, `JETSOURCE_PARTITIONS="0": must be between 1 and 1024`,
				`LOG_LEVEL="loud": must be debug, info, warn or error`}},
		{"orderctl state ord-1", "orderctl", []string{nats, "JETSOURCE_PARTITIONS=abc", "JETSOURCE_REPLICAS=2", "AGGREGATOR_LEASE_TTL=x"}, 2,
			[]string{`JETSOURCE_PARTITIONS="abc": not a whole number`, `JETSOURCE_REPLICAS="2": must be 1, 3 or 5`, `AGGREGATOR_LEASE_TTL="x": not a duration`}},
		{"partition count differs from the streams'", "aggregator", []string{nats, "JETSOURCE_PARTITIONS=8", "METRICS_ADDR=127.0.0.1:0"}, 1,
			[]string{"partition count mismatch", `created with \"16\" partitions`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var args []string
			if tt.binary == "orderctl" {
				args = strings.Fields(strings.TrimPrefix(tt.name, "orderctl "))
			}
			p := startWith(t, tt.binary, args, tt.env...)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				t.Fatalf("the %s did not refuse to start", tt.binary)
			}
			if code := p.cmd.ProcessState.ExitCode(); code != tt.code {
				t.Errorf("exit code %d, want %d", code, tt.code)
			}
			for _, w := range tt.want {
				if strings.Count(p.out.String(), w) != 1 {
					t.Errorf("output does not say %q once:\n%s", w, p.out.String())
				}
			}
		})
	}
}

// TestHelpAndVersionStartNothing: with a NATS server running and every
// variable valid, --help and --version only print (issue 14, item 4).
func TestHelpAndVersionStartNothing(t *testing.T) {
	t.Parallel()
	srv, nc, js := natstest.Streams(t, 16)
	for _, binary := range []string{"aggregator", "projector", "query", "orderctl"} {
		for _, flag := range []string{"--help", "--version"} {
			p := startWith(t, binary, []string{flag}, "NATS_URL="+srv.ClientURL(), "METRICS_ADDR=127.0.0.1:0",
				"PROJECTOR_PROJECTION=order_summary", "DATABASE_URL="+postgres.DB(t))
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				t.Fatalf("%s %s is still running", binary, flag)
			}
			out := p.out.String()
			if code := p.cmd.ProcessState.ExitCode(); code != 0 || !strings.HasPrefix(out, binary+" ") || strings.Contains(out, `"msg"`) {
				t.Errorf("%s %s: exit %d, output:\n%s", binary, flag, code, out)
			}
		}
	}
	// Nothing joined: no query service, no member or lease in the lease
	// bucket, no consumer.
	if _, err := nc.Request("$SRV.PING."+contract.QueryService, nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("an %s service answers after --help: %v", contract.QueryService, err)
	}
	kv, err := js.KeyValue(t.Context(), es.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		t.Errorf("lease bucket key %s exists after --help", k)
	}
	for _, stream := range []string{contract.CommandsStream, contract.EventsStream} {
		s, err := js.Stream(t.Context(), stream)
		if err != nil {
			t.Fatal(err)
		}
		for c := range s.ConsumerNames(t.Context()).Name() {
			t.Errorf("consumer %s on %s exists after --help", c, stream)
		}
	}
}
