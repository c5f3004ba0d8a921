package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
	"github.com/jetsource/jetsource/internal/workload"
)

// TestLostEventsStopTheProjector recreates the events stream under a
// running projector (as a restore of an older backup or a recreated stream
// would leave it: it ends below the projector's cursors) while new commands
// go on. The projector must stop the projection rather than skip what is
// missing: /readyz fails naming the loss, the metric shows it, the log
// carries both numbers, and `orderctl lag` reports it and fails. `orderctl
// rebuild` resets the projection, and the projector then goes on by itself
// to tables equal to a fresh projection of the stream.
func TestLostEventsStopTheProjector(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.run("aggregator", "aggregator", "AGGREGATOR_REPLICA_ID=agg-0", "AGGREGATOR_LEASE_TTL=2s")
	addr := freeAddr(t)
	s.run("projector", "projector", "PROJECTOR_PROJECTION=order_summary", "METRICS_ADDR="+addr)
	s.run("order_history", "projector", "PROJECTOR_PROJECTION=order_history")
	s.run("sales_daily", "projector", "PROJECTOR_PROJECTION=sales_daily")
	base := "http://" + addr
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, s.db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	before := workload.Waves("lossbefore", 40)
	if err := s.publish(ctx, before, 0); err != nil {
		t.Fatal(err)
	}
	s.results(before, time.Minute)
	s.caughtUp(pool, projections.DefaultSchema, readmodel.Names(), time.Minute)

	start := time.Now()
	if err := s.js.DeleteStream(ctx, contract.EventsStream); err != nil {
		t.Fatal(err)
	}
	if err := es.Setup(ctx, s.js, natstest.Topology(natstest.Partitions)); err != nil {
		t.Fatal(err)
	}
	after := workload.Waves("lossafter", 10)
	if err := s.publish(ctx, after, 0); err != nil {
		t.Fatal(err)
	}
	s.results(after, time.Minute)

	eventually.True(t, 30*time.Second, "/readyz to name the loss", func() bool {
		code, body := httpGet(base + "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "events are missing")
	})
	_, metrics := httpGet(base + "/metrics")
	if metricValue(t, metrics, "jetsource_projection_cursor_lost") < 1 {
		t.Errorf("no partition reported by jetsource_projection_cursor_lost:\n%s", metrics)
	}
	logged := false
	for _, line := range strings.Split(s.process("projector").out.String(), "\n") {
		logged = logged || strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, `"cursor":`) &&
			strings.Contains(line, `"stream_last_sequence":`)
	}
	if !logged {
		t.Errorf("no error log line with the cursor and the stream's last sequence:\n%s", s.process("projector").out.String())
	}
	orderctl := func(args ...string) *process {
		p := startWith(t, "orderctl", args, "NATS_URL="+s.natsURL, "DATABASE_URL="+s.db)
		<-p.done
		return p
	}
	lag := orderctl("lag", "--projection", "order_summary")
	if lag.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(lag.out.String(), projections.ErrEventsMissing.Error()) ||
		!strings.Contains(lag.out.String(), "orderctl rebuild --projection order_summary") {
		t.Fatalf("orderctl lag after the loss: exit %d\n%s", lag.cmd.ProcessState.ExitCode(), lag.out.String())
	}

	for _, name := range readmodel.Names() {
		rebuild := orderctl("rebuild", "--projection", name)
		if rebuild.cmd.ProcessState.ExitCode() != 0 {
			t.Fatalf("orderctl rebuild %s: exit %d\n%s", name, rebuild.cmd.ProcessState.ExitCode(), rebuild.out.String())
		}
	}
	eventually.True(t, 30*time.Second, "/readyz to recover", func() bool {
		code, _ := httpGet(base + "/readyz")
		return code == http.StatusOK
	})
	more := workload.Waves("lossmore", 10)
	if err := s.publish(ctx, more, 0); err != nil {
		t.Fatal(err)
	}
	cmds := append(after, more...)
	faultSummary{kind: "events stream recreated below the projector's cursors", injection: "stream deleted and recreated under a running projector",
		fsync: "one embedded server, R1", orders: 20, faults: []string{"ORDERS_EVENTS"},
		v: s.checkOutcomes(cmds, s.results(cmds, time.Minute)), took: time.Since(start), extra: "detected, the projection stopped; orderctl rebuild reset it"}.finish(t, s)
}
