package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natsconn"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/order"
	"github.com/jetsource/jetsource/internal/pgtest"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { pgtest.Main(m, &cluster) }

func TestLoadConfigDefaults(t *testing.T) {
	for _, k := range []string{"PROJECTOR_PROJECTION", "NATS_URL", "JETSOURCE_SCHEMA", "JETSOURCE_PARTITIONS",
		"PROJECTOR_BATCH_SIZE", "PROJECTOR_MAX_ATTEMPTS", "METRICS_ADDR"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("DATABASE_URL", "postgres://localhost/db")
	t.Setenv("PROJECTOR_PROJECTION", "sales_daily")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Config: natsconn.Config{URL: "nats://127.0.0.1:4222"}, Projection: "sales_daily", DatabaseURL: "postgres://localhost/db",
		Schema: "jetsource", Partitions: 16, BatchSize: 500, MaxAttempts: 5, MetricsAddr: ":9090"}
	if cfg != want {
		t.Errorf("config %+v\nwant   %+v", cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := Config{Config: natsconn.Config{URL: " ", TLSCert: "/missing/cert.pem"}, Projection: "nope", Schema: "Bad-Schema",
		Partitions: 0, BatchSize: 100000, MaxAttempts: 0, MetricsAddr: "9090"}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config validated")
	}
	for _, want := range []string{"unknown projection", "NATS_URL", "NATS_TLS_CERT", "NATS_TLS_KEY", "DATABASE_URL is required",
		"JETSOURCE_SCHEMA", "JETSOURCE_PARTITIONS", "PROJECTOR_BATCH_SIZE", "PROJECTOR_MAX_ATTEMPTS", "METRICS_ADDR"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not mention %s:\n%v", want, err)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func quiet() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

// TestRunProjectsAndDrains runs the projector against embedded NATS and a
// fresh database: it migrates the schema, projects appended events,
// answers /readyz, and on cancellation drains and leaves the replica
// table.
func TestRunProjectsAndDrains(t *testing.T) {
	srv, _, js := natstest.Streams(t, natstest.Partitions)
	db := cluster.DB(t)
	store := es.NewStore(js, natstest.Partitions)
	addr := freeAddr(t)
	cfg := Config{Config: natsconn.Config{URL: srv.ClientURL()}, DatabaseURL: db, Schema: "jetsource", Partitions: natstest.Partitions,
		BatchSize: 100, MaxAttempts: 3, MetricsAddr: addr}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--projection", "order_history"}, cfg, quiet()) }()

	for i := range 20 {
		id := fmt.Sprintf("ord-%d", i)
		data, _ := json.Marshal(order.OrderCreated{CustomerID: "c", Currency: "USD"})
		ev := contract.Event{ID: es.NewEventID(time.Now()), AggregateType: order.AggregateType, AggregateID: id, Type: order.TypeOrderCreated,
			SchemaVersion: contract.SchemaVersion(order.TypeOrderCreated), Version: 1, Data: data,
			Metadata: contract.EventMetadata{CausationID: "cmd-" + id, Timestamp: contract.Time{Time: time.Now()}}}
		if _, err := store.Append(ctx, id, 0, []contract.Event{ev}); err != nil {
			t.Fatal(err)
		}
	}

	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM jetsource.order_history").Scan(&n)
		resp, herr := http.Get("http://" + addr + "/readyz")
		ready := herr == nil && resp.StatusCode == http.StatusOK
		if resp != nil {
			resp.Body.Close()
		}
		if err == nil && n == 20 && ready {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("projector exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("projected %d of 20 events (%v), ready %v", n, err, ready)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The replica is named after the host (the pod in Kubernetes), with a
	// random suffix.
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	var id string
	if err := conn.QueryRow(ctx, "SELECT replica_id FROM jetsource.projection_replicas").Scan(&id); err != nil ||
		!regexp.MustCompile(`^`+regexp.QuoteMeta(host)+`-[0-9a-f]{8}$`).MatchString(id) {
		t.Errorf("replica id %q, %v; want %s-<8 hex digits>", id, err, host)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("projector after cancel: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("projector did not drain")
	}
	var replicas int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM jetsource.projection_replicas").Scan(&replicas); err != nil || replicas != 0 {
		t.Errorf("%d replica rows after the drain, %v", replicas, err)
	}
}

func TestRunRefusesAPartitionMismatch(t *testing.T) {
	srv, _, _ := natstest.Streams(t, natstest.Partitions)
	cfg := Config{Config: natsconn.Config{URL: srv.ClientURL()}, Projection: "order_summary", DatabaseURL: cluster.DB(t), Schema: "jetsource",
		Partitions: 8, BatchSize: 100, MaxAttempts: 3}
	err := run(context.Background(), nil, cfg, quiet())
	if !errors.Is(err, es.ErrPartitionMismatch) {
		t.Fatalf("run with 8 partitions against streams of 16: %v; want ErrPartitionMismatch", err)
	}
}

func TestRunRefusesInvalidConfig(t *testing.T) {
	err := run(context.Background(), []string{"--projection", "nope"}, Config{}, quiet())
	if err == nil || !strings.Contains(err.Error(), "invalid configuration") || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("run with an invalid config: %v", err)
	}
}
