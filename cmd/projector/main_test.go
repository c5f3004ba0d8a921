package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/order"
	"github.com/jetsource/jetsource/internal/pgtest"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { pgtest.Main(m, &cluster) }

// environ is a lookup over a fixed environment.
func environ(vars ...string) func(string) (string, bool) {
	m := map[string]string{}
	for _, kv := range vars {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// syncBuffer is an output a test reads while the projector writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runOnce runs the projector with a context that is already canceled: one
// that gets past its flags and configuration stops at once.
func runOnce(args []string, env ...string) (code int, stdout, stderr string) {
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	code = run(ctx, args, environ(env...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpAndVersionStartNothing(t *testing.T) {
	code, out, errOut := runOnce([]string{"--help"}, "NATS_URL=nats://127.0.0.1:1")
	if code != 0 || errOut != "" || !regexp.MustCompile(`PROJECTOR_BATCH_SIZE\s+500\s`).MatchString(out) ||
		!strings.Contains(out, "-projection string") {
		t.Fatalf("--help: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	if code, out, _ := runOnce([]string{"--version"}); code != 0 || !strings.HasPrefix(out, "projector ") {
		t.Fatalf("--version: exit %d, %q", code, out)
	}
}

func TestConfigurationErrorsNameEveryVariableOrFlag(t *testing.T) {
	code, _, errOut := runOnce([]string{"--projection", "nope"}, "NATS_URL= ", "NATS_TLS_CERT=/missing/cert.pem",
		"JETSOURCE_SCHEMA=Bad-Schema", "JETSOURCE_PARTITIONS=0", "PROJECTOR_BATCH_SIZE=100000", "PROJECTOR_MAX_ATTEMPTS=many", "METRICS_ADDR=9090",
		"DATABASE_URL=postgres://u:secret@host/db?sslmode=bogus")
	if code != 2 {
		t.Fatalf("exit %d; want 2:\n%s", code, errOut)
	}
	for _, want := range []string{`--projection="nope": must be one of order_summary, order_history, sales_daily`, `NATS_URL=`,
		`NATS_TLS_CERT="/missing/cert.pem": cannot be read`, `NATS_TLS_KEY is unset: must be set with the client certificate`,
		`JETSOURCE_SCHEMA="Bad-Schema"`, `JETSOURCE_PARTITIONS="0": must be between 1 and 1024`, `PROJECTOR_BATCH_SIZE="100000": must be between 1 and 5000`,
		`PROJECTOR_MAX_ATTEMPTS="many": not a whole number`, `METRICS_ADDR="9090"`, `DATABASE_URL="postgres://u:xxxxx@host/db?sslmode=bogus": is not a Postgres URL`} {
		if strings.Count(errOut, want) != 1 {
			t.Errorf("the message does not say %q once:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "secret") {
		t.Errorf("the message shows the database password:\n%s", errOut)
	}
	if code, _, errOut := runOnce(nil, "PROJECTOR_PROJECTION=order_summary"); code != 2 ||
		!strings.Contains(errOut, "DATABASE_URL is unset: must be set to the read models' database") {
		t.Errorf("no DATABASE_URL: exit %d, %s", code, errOut)
	}
}

// TestRunProjectsAndDrains runs the projector against embedded NATS and a
// fresh database: it migrates the schema, projects appended events,
// answers /readyz, and on cancellation drains and leaves the replica
// table.
func TestRunProjectsAndDrains(t *testing.T) {
	srv, _, js := natstest.Streams(t, natstest.Partitions)
	db := cluster.DB(t)
	store := es.NewStore(js, natstest.Partitions)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, logs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--projection", "order_history"}, environ("NATS_URL="+srv.ClientURL(), "DATABASE_URL="+db,
			"PROJECTOR_BATCH_SIZE=100", "METRICS_ADDR="+addr), &out, &logs)
	}()

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
	eventually.Holds(t, 30*time.Second, "20 events projected and /readyz answering 200", func() (bool, string) {
		select {
		case code := <-done:
			t.Fatalf("projector exited with %d:\n%s", code, logs.String())
		default:
		}
		var n int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM jetsource.order_history").Scan(&n)
		resp, herr := http.Get("http://" + addr + "/readyz")
		ready := herr == nil && resp.StatusCode == http.StatusOK
		if resp != nil {
			resp.Body.Close()
		}
		return err == nil && n == 20 && ready, fmt.Sprintf("%d rows (%v), ready %v", n, err, ready)
	})

	// The replica is named after the host (the pod in Kubernetes), with a
	// random suffix; every log line names the projection.
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	var id string
	if err := conn.QueryRow(ctx, "SELECT replica_id FROM jetsource.projection_replicas").Scan(&id); err != nil ||
		!regexp.MustCompile(`^`+regexp.QuoteMeta(strings.ReplaceAll(host, ".", "_"))+`-[0-9a-f]{8}$`).MatchString(id) {
		t.Errorf("replica id %q, %v; want %s-<8 hex digits>", id, err, host)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("projector after cancel: exit %d:\n%s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("projector did not drain")
	}
	var replicas int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM jetsource.projection_replicas").Scan(&replicas); err != nil || replicas != 0 {
		t.Errorf("%d replica rows after the drain, %v", replicas, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.Contains(line, `"projection":"order_history"`) {
			t.Errorf("a log line does not name the projection: %s", line)
		}
	}
}

func TestRunRefusesAPartitionMismatch(t *testing.T) {
	srv, _, _ := natstest.Streams(t, natstest.Partitions)
	var out, logs syncBuffer
	code := run(context.Background(), nil, environ("NATS_URL="+srv.ClientURL(), "PROJECTOR_PROJECTION=order_summary", "DATABASE_URL="+cluster.DB(t),
		"JETSOURCE_PARTITIONS=8", "METRICS_ADDR="), &out, &logs)
	if code != 1 || !strings.Contains(logs.String(), "partition count mismatch") {
		t.Fatalf("run with 8 partitions against streams of 16: exit %d:\n%s", code, logs.String())
	}
}
