package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natsserver"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/workload"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpGet(url string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue sums the samples of a series whose name and labels match.
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + series + `(?:\{[^}]*\})? ([0-9.e+-]+)$`)
	sum := 0.0
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}

// TestAggregatorMetricsReadinessAndNATSRestart scrapes a running aggregator
// under load, stops NATS under it, and restarts NATS: readiness follows,
// and commands published after the restart are handled without operator
// action.
func TestAggregatorMetricsReadinessAndNATSRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := natsserver.Start(natsserver.Config{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown() }()
	_, ojs := natstest.Connect(t, srv)
	if err := es.Setup(context.Background(), ojs, natstest.Topology(natstest.Partitions)); err != nil {
		t.Fatal(err)
	}
	port := srv.Addr().(*net.TCPAddr).Port
	addr := freeAddr(t)
	agg := start(t, "aggregator", "NATS_URL="+srv.ClientURL(), "METRICS_ADDR="+addr, "LOG_LEVEL=warn")
	base := "http://" + addr

	eventually.True(t, 15*time.Second, "/readyz answers 200", func() bool { code, _ := httpGet(base + "/readyz"); return code == 200 })
	if code, _ := httpGet(base + "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	// Ready means one partition owned; the others follow within a lease tick.
	var before string
	eventually.True(t, 15*time.Second, "all 16 partitions owned", func() bool {
		_, before = httpGet(base + "/metrics")
		return metricValue(t, before, "jetsource_aggregator_partitions_owned") == 16
	})

	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cmds := workload.Waves("ops", 100)
	for _, c := range cmds {
		if _, err := js.PublishMsgAsync(c.Msg()); err != nil {
			t.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	waitResult(t, js, cmds[len(cmds)-1].ID)
	_, after := httpGet(base + "/metrics")
	for _, series := range []string{
		"jetsource_aggregator_commands_total",
		"jetsource_aggregator_command_duration_seconds_count",
		"jetsource_aggregator_append_duration_seconds_count",
		`jetsource_aggregator_cache_lookups_total`,
		`jetsource_aggregator_commands_settled_total\{by="purge"\}`,
		"jetsource_aggregator_settle_purges_total",
	} {
		if metricValue(t, after, series) <= metricValue(t, before, series) {
			t.Errorf("%s did not move under load", series)
		}
	}
	if v := metricValue(t, after, `jetsource_aggregator_commands_total\{code="invalid_state",replayed="false",status="rejected",type="PayOrder"\}`); v != 5 {
		t.Errorf("rejected wrong payments counted %v, want 5", v)
	}

	// A command sent without its type token is stored by no stream: the
	// aggregator answers a request, and logs and counts every one.
	untyped := contract.CommandsPrefix + "ops-untyped"
	if err := nc.Publish(untyped, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	reply, err := nc.Request(untyped, []byte(`{}`), 5*time.Second)
	if err != nil {
		t.Fatalf("request on %s: %v", untyped, err)
	}
	if !strings.Contains(string(reply.Data), untyped+" has no command type, so nothing was stored") {
		t.Fatalf("request on %s answered %s, want an error saying it has no command type", untyped, reply.Data)
	}
	eventually.True(t, 10*time.Second, "both untyped commands counted and logged", func() bool {
		_, body := httpGet(base + "/metrics")
		return metricValue(t, body, "jetsource_aggregator_commands_untyped_total") == 2 &&
			strings.Count(agg.out.String(), "command without a type token") == 2
	})

	srv.Shutdown()
	eventually.True(t, 10*time.Second, "/readyz answers 503 while NATS is down", func() bool { code, _ := httpGet(base + "/readyz"); return code == 503 })
	if code, _ := httpGet(base + "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d while NATS is down; liveness must not depend on NATS", code)
	}
	srv, err = natsserver.Start(natsserver.Config{StoreDir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 20*time.Second, "/readyz answers 200 after NATS is back", func() bool { code, _ := httpGet(base + "/readyz"); return code == 200 })

	later := workload.Lifecycle("after-restart", 1)
	for _, c := range later {
		if _, err := js.PublishMsgAsync(c.Msg()); err != nil {
			t.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	waitResult(t, js, later[len(later)-1].ID)
	agg.terminate(15 * time.Second)
}

func waitResult(t *testing.T, js jetstream.JetStream, commandID string) {
	t.Helper()
	ctx := context.Background()
	eventually.True(t, 30*time.Second, fmt.Sprintf("result of %s", commandID), func() bool {
		s, err := js.Stream(ctx, contract.ResultsStream)
		if err != nil {
			return false
		}
		_, err = s.GetLastMsgForSubject(ctx, contract.ResultSubject(commandID))
		return err == nil
	})
}

// TestProjectorMetricsAndReadiness scrapes a running projector under load
// and watches its readiness follow NATS going away and coming back.
func TestProjectorMetricsAndReadiness(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.run("aggregator", "aggregator", "AGGREGATOR_REPLICA_ID=agg-0")
	addr := freeAddr(t)
	s.run("projector", "projector", "PROJECTOR_PROJECTION=order_summary", "METRICS_ADDR="+addr)
	base := "http://" + addr
	eventually.True(t, 20*time.Second, "projector /readyz answers 200", func() bool { code, _ := httpGet(base + "/readyz"); return code == 200 })
	_, before := httpGet(base + "/metrics")
	if v := metricValue(t, before, "jetsource_projection_partitions_owned"); v != 16 {
		t.Fatalf("partitions owned = %v", v)
	}

	cmds := workload.Waves("projmetrics", 100)
	if err := s.publish(context.Background(), cmds, 0); err != nil {
		t.Fatal(err)
	}
	s.results(cmds, time.Minute)
	eventually.True(t, 30*time.Second, "events applied are counted", func() bool {
		_, body := httpGet(base + "/metrics")
		return metricValue(t, body, `jetsource_projection_events_total\{outcome="applied",projection="order_summary"\}`) >= float64(len(cmds)-5)
	})
	_, after := httpGet(base + "/metrics")
	for _, series := range []string{"jetsource_projection_batch_size_count", "jetsource_projection_batch_duration_seconds_count"} {
		if metricValue(t, after, series) <= metricValue(t, before, series) {
			t.Errorf("%s did not move under load", series)
		}
	}
	for _, series := range []string{`jetsource_projection_lag_events\{partition="3",projection="order_summary"\}`,
		`jetsource_projection_lag_seconds\{partition="3",projection="order_summary"\}`,
		`jetsource_projection_dead_letters\{projection="order_summary",status="failed"\}`} {
		if !regexp.MustCompile(`(?m)^` + series + ` `).MatchString(after) {
			t.Errorf("no series %s", series)
		}
	}
	if metricValue(t, after, `jetsource_projection_cursor`) == 0 {
		t.Error("cursors not reported")
	}

	s.nats.Shutdown()
	eventually.True(t, 10*time.Second, "projector /readyz answers 503 while NATS is down", func() bool { code, _ := httpGet(base + "/readyz"); return code == 503 })
	s.startNATS()
	eventually.True(t, 30*time.Second, "projector /readyz answers 200 after NATS is back", func() bool { code, _ := httpGet(base + "/readyz"); return code == 200 })
}
