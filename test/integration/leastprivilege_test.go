package integration

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natsserver"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/projections/migrations"
)

// roleEnv is what a binary running as a NATS role of auth.conf needs.
func roleEnv(role string) []string {
	return []string{"NATS_USER=" + role, "NATS_PASSWORD=" + rolePassword(role), "NATS_INBOX_PREFIX=_INBOX." + role}
}

// orderctlAs runs orderctl to completion with env and fails the test if it
// fails.
func orderctlAs(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "orderctl"), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("orderctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// dbAs is url with role as its user.
func dbAs(dbURL, role string) string {
	u, _ := url.Parse(dbURL)
	u.User = url.User(role)
	return u.String()
}

// TestLeastPrivilegeLifecycle deploys JetSource as production does, with
// every part holding only its grants: nats-server loads
// deploy/nats/auth.conf; the operator applies the streams (orderctl streams
// apply as the NATS user operator); deploy/postgres/roles.sql creates the
// roles and the migrating role migrates (orderctl migrate); the aggregator
// binary runs as the NATS user aggregator, and an order_summary projector
// binary as the NATS user projector and the PostgreSQL role
// jetsource_projector_order_summary, without migrating. A publisher sends
// an order through its lifecycle, the payment service pays it, and the
// reader role reads the read model. No part hits a permission it lacks,
// and the projector's role cannot drop a table or write another
// projection's rows.
func TestLeastPrivilegeLifecycle(t *testing.T) {
	ctx := context.Background()
	srv := startAuthNATS(t)
	natsURL := "NATS_URL=" + srv.ClientURL()
	out := orderctlAs(t, append(roleEnv("operator"), natsURL), "streams", "apply")
	if !strings.Contains(out, "applied: ORDERS_EVENTS: missing") {
		t.Fatalf("streams apply:\n%s", out)
	}

	admin := postgres.DB(t)
	roles, err := os.ReadFile("../../deploy/postgres/roles.sql")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, string(roles)); err != nil {
		t.Fatalf("roles.sql: %v", err)
	}
	orderctlAs(t, []string{"DATABASE_URL=" + dbAs(admin, "jetsource_migrator")}, "migrate")

	runtimeRole := migrations.ProjectorRole("order_summary")
	agg := start(t, "aggregator", append(roleEnv("aggregator"), natsURL, "METRICS_ADDR=127.0.0.1:0")...)
	proj := start(t, "projector", append(roleEnv("projector"), natsURL, "METRICS_ADDR=127.0.0.1:0",
		"PROJECTOR_PROJECTION=order_summary", "PROJECTOR_MIGRATE=false", "DATABASE_URL="+dbAs(admin, runtimeRole))...)

	const orderID = "least-privilege"
	sendAs(t, srv, "publisher", orderID, contract.CreateOrder{CustomerID: "c-1", Currency: "EUR"})
	sendAs(t, srv, "publisher", orderID, contract.AddItem{ProductID: "sku-1", Quantity: 2, UnitPriceCents: 250})
	sendAs(t, srv, "publisher", orderID, contract.SubmitOrder{})
	sendAs(t, srv, "payments", orderID, contract.PayOrder{PaymentID: "p-1", AmountCents: 500, Method: "card"})
	sendAs(t, srv, "publisher", orderID, contract.ShipOrder{TrackingNumber: "t-1", Carrier: "ups"})
	sendAs(t, srv, "publisher", orderID, contract.DeliverOrder{})

	reader, err := pgx.Connect(ctx, dbAs(admin, migrations.ReaderRole))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close(ctx)
	eventually.True(t, 30*time.Second, "the read model shows the order delivered", func() bool {
		var status string
		err := reader.QueryRow(ctx, "SELECT status FROM jetsource.orders WHERE id = $1", orderID).Scan(&status)
		return err == nil && status == "delivered"
	})
	waitCommandsSettled(t, srv)
	for name, p := range map[string]*process{"aggregator": agg, "projector": proj} {
		if strings.Contains(p.out.String(), "Permissions Violation") {
			t.Errorf("the %s hit a permission it lacks:\n%s", name, p.out.String())
		}
	}

	// The projector's role: its own table it writes, the schema and the
	// other projections' rows it cannot touch.
	runtime, err := pgx.Connect(ctx, dbAs(admin, runtimeRole))
	if err != nil {
		t.Fatal(err)
	}
	defer runtime.Close(ctx)
	for _, q := range []string{
		"DROP TABLE jetsource.orders",
		"TRUNCATE jetsource.order_history",
		"INSERT INTO jetsource.projection_checkpoints (projection, partition) VALUES ('order_history', 0)",
	} {
		_, err := runtime.Exec(ctx, q)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s as %s: %v, want insufficient privilege", q, runtimeRole, err)
		}
	}
}

// sendAs sends cmd for orderID as the NATS user role, through the Go
// client, and fails the test unless it is accepted.
func sendAs(t *testing.T, srv *natsserver.Server, role, orderID string, cmd contract.Command) {
	t.Helper()
	cl, err := client.New(connectAs(t, srv, role).nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := cl.Send(ctx, client.NewEnvelope(orderID, cmd))
	if err != nil || r.Status != contract.StatusAccepted {
		t.Fatalf("%s sends %T: %+v, %v", role, cmd, r, err)
	}
}

// waitCommandsSettled waits until ORDERS_COMMANDS holds no command.
func waitCommandsSettled(t *testing.T, srv *natsserver.Server) {
	t.Helper()
	operator := connectAs(t, srv, "operator")
	eventually.Holds(t, 30*time.Second, "the command queue settled", func() (bool, string) {
		s, err := operator.js.Stream(context.Background(), contract.CommandsStream)
		if err != nil {
			return false, err.Error()
		}
		n := s.CachedInfo().State.Msgs
		return n == 0, fmt.Sprintf("%d commands stored", n)
	})
}

// TestAggregatorWithoutThePurgeGrant: an aggregator whose NATS user may not
// purge ORDERS_COMMANDS (an auth.conf from before the aggregator settled
// handled commands by purging them) acks them one by one instead, and says
// so.
func TestAggregatorWithoutThePurgeGrant(t *testing.T) {
	conf, err := os.ReadFile(authConf)
	if err != nil {
		t.Fatal(err)
	}
	const grant = `"$JS.API.STREAM.PURGE.ORDERS_COMMANDS"`
	if !strings.Contains(string(conf), grant) {
		t.Fatalf("auth.conf does not grant %s", grant)
	}
	old := filepath.Join(t.TempDir(), "auth.conf")
	if err := os.WriteFile(old, []byte(strings.Replace(string(conf), grant, "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startAuthNATSWith(t, old)
	natsURL := "NATS_URL=" + srv.ClientURL()
	orderctlAs(t, append(roleEnv("operator"), natsURL), "streams", "apply")
	metrics := freeAddr(t)
	agg := start(t, "aggregator", append(roleEnv("aggregator"), natsURL, "METRICS_ADDR="+metrics)...)

	const orderID = "no-purge-grant"
	for _, cmd := range []contract.Command{contract.CreateOrder{CustomerID: "c-1", Currency: "EUR"},
		contract.AddItem{ProductID: "sku-1", Quantity: 1, UnitPriceCents: 100}, contract.SubmitOrder{}} {
		sendAs(t, srv, "publisher", orderID, cmd)
	}
	waitCommandsSettled(t, srv)
	if out := agg.out.String(); !strings.Contains(out, "purging handled commands failed; acking them one by one") {
		t.Errorf("the aggregator did not say that it acks instead:\n%s", out)
	}
	_, body := httpGet("http://" + metrics + "/metrics")
	if acked, purged := metricValue(t, body, `jetsource_aggregator_commands_settled_total\{by="ack"\}`),
		metricValue(t, body, `jetsource_aggregator_commands_settled_total\{by="purge"\}`); acked < 3 || purged != 0 {
		t.Errorf("commands settled: %v by ack, %v by purge; want the 3 sent by ack, none by purge", acked, purged)
	}
}

// TestServicesRefuseStreamsTheyWouldChange: an aggregator configured for R3
// streams where the operator created R1 ones refuses to start and names the
// difference of each stream, and the streams stay R1; a projector does the
// same for ORDERS_EVENTS.
func TestServicesRefuseStreamsTheyWouldChange(t *testing.T) {
	t.Parallel()
	srv, _, js := natstest.Streams(t, natstest.Partitions)
	for _, binary := range []string{"aggregator", "projector"} {
		env := []string{"NATS_URL=" + srv.ClientURL(), "JETSOURCE_REPLICAS=3", "METRICS_ADDR=127.0.0.1:0"}
		want := []string{"ORDERS_EVENTS: replicas is 1, want 3"}
		if binary == "projector" {
			env = append(env, "PROJECTOR_PROJECTION=order_summary", "DATABASE_URL="+postgres.DB(t))
		} else {
			want = append(want, "ORDERS_COMMANDS: replicas is 1, want 3", "ORDERS_RESULTS: replicas is 1, want 3",
				"ORDERS_SNAPSHOTS: replicas is 1, want 3", "KV_JETSOURCE_AGGREGATOR_LEASES: replicas is 1, want 3")
		}
		p := start(t, binary, env...)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("the %s did not refuse the R1 streams", binary)
		}
		if code := p.cmd.ProcessState.ExitCode(); code != 1 {
			t.Errorf("%s: exit code %d, want 1", binary, code)
		}
		for _, w := range want {
			if !strings.Contains(p.out.String(), w) {
				t.Errorf("%s: output does not say %q:\n%s", binary, w, p.out.String())
			}
		}
	}
	if err := es.Verify(context.Background(), js, natstest.Topology(natstest.Partitions)); err != nil {
		t.Fatalf("the streams changed: %v", err)
	}
}
