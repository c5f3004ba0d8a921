package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/jetsource/jetsource/internal/natstest"
)

func TestAggregatorRefusesBadConfiguration(t *testing.T) {
	srv, _, _ := natstest.Streams(t, 16)
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"invalid values", []string{"NATS_URL=" + srv.ClientURL(), "JETSOURCE_PARTITIONS=0", "JETSOURCE_REPLICAS=2", "AGGREGATOR_ACK_WAIT=1ms"},
			[]string{"partitions is 0", "replicas is 2", "ack wait is 1ms"}},
		{"unparsable value", []string{"NATS_URL=" + srv.ClientURL(), "AGGREGATOR_CACHE_SIZE=lots"}, []string{"AGGREGATOR_CACHE_SIZE"}},
		{"partition count differs from the streams'", []string{"NATS_URL=" + srv.ClientURL(), "JETSOURCE_PARTITIONS=8"},
			[]string{"partition count mismatch", `created with "16" partitions`}},
		{"TLS key without certificate", []string{"NATS_URL=" + srv.ClientURL(), "NATS_TLS_KEY=/nonexistent"}, []string{"NATS_TLS_CERT and NATS_TLS_KEY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, "aggregator", tt.env...)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				t.Fatal("the aggregator did not refuse to start")
			}
			if p.cmd.ProcessState.ExitCode() == 0 {
				t.Fatal("exit code 0")
			}
			for _, w := range tt.want {
				if !strings.Contains(p.out.String(), w) {
					t.Errorf("output does not mention %q:\n%s", w, p.out.String())
				}
			}
		})
	}
}
