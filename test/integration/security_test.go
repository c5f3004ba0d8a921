package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natsserver"
	"github.com/jetsource/jetsource/internal/natstest"
)

// authConf is the NATS users and permissions as deployed.
const authConf = "../../deploy/nats/auth.conf"

// authRoles are the users of auth.conf.
var authRoles = []string{"aggregator", "projector", "publisher", "payments", "reader", "query", "operator"}

func rolePassword(role string) string { return role + "-s3cret" }

// startAuthNATS starts an embedded server that loads deploy/nats/auth.conf
// itself, with a password per role in the environment, as deployed.
func startAuthNATS(t *testing.T) *natsserver.Server {
	t.Helper()
	return startAuthNATSWith(t, authConf)
}

// startAuthNATSWith is startAuthNATS with the users and permissions of the
// file conf.
func startAuthNATSWith(t *testing.T, conf string) *natsserver.Server {
	t.Helper()
	for _, r := range authRoles {
		t.Setenv("JETSOURCE_"+strings.ToUpper(r)+"_PASSWORD", rolePassword(r))
	}
	srv, err := natsserver.Start(natsserver.Config{ConfigFile: conf, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// roleConn is a connection as one role. violations receives the server's
// permission errors.
type roleConn struct {
	role       string
	nc         *nats.Conn
	js         jetstream.JetStream
	violations chan error
}

func connectAs(t *testing.T, srv *natsserver.Server, role string) *roleConn {
	t.Helper()
	c := &roleConn{role: role, violations: make(chan error, 100)}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(role, rolePassword(role)), nats.CustomInboxPrefix("_INBOX."+role),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				c.violations <- err
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	c.js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// attempt runs op and reports the permission violation it caused, if any.
// A denied request gets no reply, so op is abandoned once the violation
// arrives; a denied subscription is reported before the flush after it
// completes. c must be a fresh connection.
func (c *roleConn) attempt(op func(ctx context.Context) error) (violation, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	select {
	case v := <-c.violations:
		return v, nil
	case err = <-done:
	}
	if ferr := c.nc.FlushTimeout(5 * time.Second); ferr != nil && err == nil {
		err = ferr
	}
	if last := c.nc.LastError(); errors.Is(last, nats.ErrPermissionViolation) {
		return last, err
	}
	return nil, err
}

// cell is one entry of the permission matrix of docs/security.md.
type cell struct {
	role string
	may  bool
	what string
	do   func(ctx context.Context, c *roleConn) error
	// stored reports whether the action left a mark in the streams (a
	// message, a consumer, a changed stream). A denied action must leave
	// none; nil when there is nothing to look for.
	stored func(ctx context.Context) bool
}

func (c cell) name() string {
	verb := " may not "
	if c.may {
		verb = " may "
	}
	return c.role + verb + c.what
}

// TestNATSPermissions proves the NATS side of the permission matrix in
// docs/security.md against deploy/nats/auth.conf: each allowed action
// succeeds; each denied one is refused by the server and stores nothing.
func TestNATSPermissions(t *testing.T) {
	srv := startAuthNATS(t)
	ctx := context.Background()
	ojs := connectAs(t, srv, "operator").js
	topo := natstest.Topology(natstest.Partitions)
	if err := es.Setup(ctx, ojs, topo); err != nil {
		t.Fatalf("operator sets the streams and the lease bucket up: %v", err)
	}
	// One event, result and snapshot to read.
	seed := "seed-order"
	for _, subject := range []string{contract.EventSubject(seed, natstest.Partitions), contract.ResultSubject(seed), contract.SnapshotSubject(seed)} {
		if _, err := connectAs(t, srv, "aggregator").js.Publish(ctx, subject, []byte(`{}`)); err != nil {
			t.Fatalf("aggregator writes %s: %v", subject, err)
		}
	}

	cells := permissionCells(seed, ojs, topo)
	for i, c := range cells {
		t.Run(c.name(), func(t *testing.T) {
			rc := connectAs(t, srv, c.role)
			violation, err := rc.attempt(func(ctx context.Context) error { return c.do(ctx, rc) })
			if c.may {
				if violation != nil || err != nil {
					t.Fatalf("cell %d: refused: violation %v, error %v", i, violation, err)
				}
				if c.stored != nil && !c.stored(ctx) {
					t.Fatalf("cell %d: allowed action left no mark", i)
				}
				return
			}
			if violation == nil {
				t.Fatalf("cell %d: no permission violation (error %v)", i, err)
			}
			if c.stored != nil && c.stored(ctx) {
				t.Fatalf("cell %d: denied action (%v) stored something", i, violation)
			}
		})
	}
	if err := es.Verify(ctx, ojs, topo); err != nil {
		t.Errorf("streams after the matrix: %v", err)
	}

	// docs/security.md names the test of every cell.
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cells {
		if !strings.Contains(string(doc), c.name()) {
			t.Errorf("docs/security.md does not list the cell %q", c.name())
		}
	}
}

// TestNATSRefusesUnknownClients: anonymous connections and wrong passwords
// are refused for every role.
func TestNATSRefusesUnknownClients(t *testing.T) {
	srv := startAuthNATS(t)
	if nc, err := nats.Connect(srv.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("anonymous connection accepted")
	}
	for _, r := range authRoles {
		if nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(r, rolePassword(r)+"x")); err == nil {
			nc.Close()
			t.Fatalf("%s with a wrong password accepted", r)
		}
		if nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(r, rolePassword(r))); err != nil {
			t.Fatalf("%s with its password: %v", r, err)
		} else {
			nc.Close()
		}
	}
}

// permissionCells is the matrix. Ids are unique per cell, so each cell's
// stored check sees only its own action.
func permissionCells(seed string, ojs jetstream.JetStream, topo es.Topology) []cell {
	n := 0
	newID := func() string { n++; return "sec-" + strconv.Itoa(n) }
	parts := natstest.Partitions
	lastMsg := func(stream, subject string) bool {
		s, err := ojs.Stream(context.Background(), stream)
		if err != nil {
			return false
		}
		_, err = s.GetLastMsgForSubject(context.Background(), subject)
		return err == nil
	}
	storedCommand := func(id, typ string) bool {
		return lastMsg(contract.CommandsStream, contract.CommandsPrefix+strconv.Itoa(contract.Partition(id, parts))+"."+id+"."+typ)
	}
	body := []byte(`{}`)

	publish := func(subject string) func(context.Context, *roleConn) error {
		return func(ctx context.Context, c *roleConn) error { _, err := c.js.Publish(ctx, subject, body); return err }
	}
	write := func(role string, may bool) []cell {
		e, r, s := newID(), newID(), newID()
		return []cell{
			{role: role, may: may, what: "publish events", do: publish(contract.EventSubject(e, parts)),
				stored: func(context.Context) bool { return lastMsg(contract.EventsStream, contract.EventSubject(e, parts)) }},
			{role: role, may: may, what: "publish results", do: publish(contract.ResultSubject(r)),
				stored: func(context.Context) bool { return lastMsg(contract.ResultsStream, contract.ResultSubject(r)) }},
			{role: role, may: may, what: "publish snapshots", do: publish(contract.SnapshotSubject(s)),
				stored: func(context.Context) bool { return lastMsg(contract.SnapshotsStream, contract.SnapshotSubject(s)) }},
		}
	}
	command := func(role string, may bool, typ string) cell {
		id := newID()
		return cell{role: role, may: may, what: "send " + typ + " commands", do: publish(contract.CommandSubject(id, typ)),
			stored: func(context.Context) bool { return storedCommand(id, typ) }}
	}
	// The aggregator settles handled commands by purging them; the
	// request names the partition and the sequence below which to purge.
	purgeQueue := func(role string, may bool) cell {
		id := newID()
		return cell{role: role, may: may, what: "purge the command queue", do: func(ctx context.Context, c *roleConn) error {
			ack, err := ojs.Publish(ctx, contract.CommandSubject(id, "CreateOrder"), body)
			if err != nil {
				return err
			}
			req := fmt.Sprintf(`{"filter":%q,"seq":%d}`, contract.CommandPartitionFilter(contract.Partition(id, parts)), ack.Sequence+1)
			_, err = c.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+contract.CommandsStream, []byte(req))
			return err
		}, stored: func(context.Context) bool { return !storedCommand(id, "CreateOrder") }}
	}
	unchanged := func(ctx context.Context) bool { return es.Verify(ctx, ojs, topo) != nil }
	admin := func(role string) []cell {
		snoop := "SNOOP_" + role
		cells := []cell{
			{role: role, what: "create streams", do: func(ctx context.Context, c *roleConn) error {
				_, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: snoop, Subjects: []string{"snoop." + role + ".>"}})
				return err
			}, stored: func(ctx context.Context) bool { _, err := ojs.Stream(ctx, snoop); return err == nil }},
			{role: role, what: "update streams", do: func(ctx context.Context, c *roleConn) error {
				cfg := topo.StreamConfigs()[1]
				cfg.DenyDelete, cfg.DenyPurge = false, false
				_, err := c.js.UpdateStream(ctx, cfg)
				return err
			}, stored: unchanged},
			{role: role, what: "purge streams", do: func(ctx context.Context, c *roleConn) error {
				_, err := c.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+contract.ResultsStream, []byte(`{}`))
				return err
			}, stored: func(context.Context) bool { return !lastMsg(contract.ResultsStream, contract.ResultSubject(seed)) }},
			{role: role, what: "delete streams", do: func(ctx context.Context, c *roleConn) error {
				return c.js.DeleteStream(ctx, contract.EventsStream)
			}, stored: unchanged},
		}
		if role == "aggregator" {
			return cells
		}
		return append(cells, purgeQueue(role, false), cell{role: role, what: "create consumers on the command queue", do: func(ctx context.Context, c *roleConn) error {
			_, err := c.js.CreateConsumer(ctx, contract.CommandsStream, jetstream.ConsumerConfig{Durable: "snoop-" + role, AckPolicy: jetstream.AckExplicitPolicy})
			return err
		}, stored: func(ctx context.Context) bool {
			_, err := ojs.Consumer(ctx, contract.CommandsStream, "snoop-"+role)
			return err == nil
		}})
	}
	leaderGet := func(role string) cell {
		return cell{role: role, may: true, what: "read events from the stream leader", do: func(ctx context.Context, c *roleConn) error {
			_, err := es.LeaderMsg(ctx, c.js, contract.EventsStream, 1)
			return err
		}}
	}
	readEvents := func(role string, may bool) cell {
		return cell{role: role, may: may, what: "read events by direct get", do: func(ctx context.Context, c *roleConn) error {
			_, err := c.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+contract.EventsStream+"."+contract.EventSubject(seed, parts), nil)
			return err
		}}
	}
	readResults := func(role string, may bool) []cell {
		return []cell{
			{role: role, may: may, what: "read results by direct get", do: func(ctx context.Context, c *roleConn) error {
				// Both forms: the subject in the request's subject, and in
				// its body (what batch gets use).
				if _, err := c.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+contract.ResultsStream+"."+contract.ResultSubject(seed), nil); err != nil {
					return err
				}
				_, err := c.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+contract.ResultsStream, []byte(`{"last_by_subj":"`+contract.ResultSubject(seed)+`"}`))
				return err
			}},
			{role: role, may: may, what: "subscribe to results", do: subscribe(contract.ResultsPrefix + ">")},
		}
	}
	consumeEvents := func(role string) cell {
		return cell{role: role, may: true, what: "consume events through a consumer of its own", do: func(ctx context.Context, c *roleConn) error {
			return consumeOne(ctx, c, contract.EventsStream, role+"-events", contract.EventPartitionFilter(contract.Partition(seed, parts)))
		}}
	}

	var cells []cell
	// aggregator
	cells = append(cells, write("aggregator", true)...)
	cells = append(cells,
		cell{role: "aggregator", may: true, what: "consume its partitions of the command queue", do: func(ctx context.Context, c *roleConn) error {
			id := newID()
			if _, err := ojs.Publish(ctx, contract.CommandSubject(id, "CreateOrder"), body); err != nil {
				return err
			}
			p := contract.Partition(id, parts)
			return consumeOne(ctx, c, contract.CommandsStream, "aggregator-"+strconv.Itoa(p), contract.CommandPartitionFilter(p))
		}},
		purgeQueue("aggregator", true),
		cell{role: "aggregator", may: true, what: "use its lease bucket", do: useLeaseBucket},
		cell{role: "aggregator", may: true, what: "answer commands sent without a type token", do: subscribe(contract.UntypedCommandSubjects)},
		readEvents("aggregator", true),
		leaderGet("aggregator"),
		cell{role: "aggregator", may: true, what: "read results and snapshots by direct get", do: func(ctx context.Context, c *roleConn) error {
			for _, r := range [][2]string{{contract.ResultsStream, contract.ResultSubject(seed)}, {contract.SnapshotsStream, contract.SnapshotSubject(seed)}} {
				if _, err := c.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+r[0]+"."+r[1], nil); err != nil {
					return err
				}
			}
			return nil
		}},
		command("aggregator", false, "CreateOrder"),
		cell{role: "aggregator", what: "create consumers on the event store", do: func(ctx context.Context, c *roleConn) error {
			_, err := c.js.CreateConsumer(ctx, contract.EventsStream, jetstream.ConsumerConfig{Durable: "agg-snoop"})
			return err
		}},
	)
	cells = append(cells, admin("aggregator")...)
	// projector
	cells = append(cells, consumeEvents("projector"), readEvents("projector", true), leaderGet("projector"))
	cells = append(cells, write("projector", false)...)
	cells = append(cells, command("projector", false, "CreateOrder"))
	cells = append(cells, admin("projector")...)
	// publisher and payments
	cells = append(cells, command("publisher", true, "CreateOrder"),
		cell{role: "publisher", what: "send commands without a type token", do: func(_ context.Context, c *roleConn) error {
			return c.nc.Publish(contract.CommandsPrefix+newID(), body)
		}})
	cells = append(cells, readResults("publisher", true)...)
	cells = append(cells, write("publisher", false)...)
	cells = append(cells, readEvents("publisher", false),
		cell{role: "publisher", what: "subscribe to events", do: subscribe(contract.EventsPrefix + ">")},
		cell{role: "publisher", what: "receive another role's replies", do: subscribe("_INBOX.aggregator.>")},
	)
	cells = append(cells, admin("publisher")...)
	cells = append(cells, command("payments", true, "PayOrder"), command("payments", false, "CreateOrder"), command("payments", false, "CancelOrder"))
	cells = append(cells, readResults("payments", true)...)
	cells = append(cells, write("payments", false)...)
	cells = append(cells, admin("payments")...)
	// reader
	cells = append(cells,
		cell{role: "reader", may: true, what: "subscribe to events", do: subscribe(contract.EventsPrefix + ">")},
		consumeEvents("reader"),
		cell{role: "reader", may: true, what: "follow events with an ordered consumer", do: func(ctx context.Context, c *roleConn) error {
			oc, err := c.js.OrderedConsumer(ctx, contract.EventsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{contract.EventSubject(seed, parts)}})
			if err != nil {
				return err
			}
			_, err = oc.Next(jetstream.FetchMaxWait(5 * time.Second))
			return err
		}},
		readEvents("reader", true),
		cell{role: "reader", may: true, what: "ask orders-query", do: func(ctx context.Context, c *roleConn) error {
			return askQuery(ctx, c)
		}},
	)
	cells = append(cells, readResults("reader", false)...)
	cells = append(cells, write("reader", false)...)
	cells = append(cells, command("reader", false, "CreateOrder"))
	cells = append(cells, admin("reader")...)
	// query
	cells = append(cells,
		cell{role: "query", may: true, what: "answer requests on orders.query", do: func(ctx context.Context, c *roleConn) error {
			return answerQuery(ctx, c)
		}},
		readEvents("query", true),
	)
	cells = append(cells, write("query", false)...)
	cells = append(cells, command("query", false, "CreateOrder"))
	cells = append(cells, admin("query")...)
	// operator
	cells = append(cells, write("operator", false)...)
	cells = append(cells,
		command("operator", true, "CreateOrder"),
		cell{role: "operator", may: true, what: "administer streams and consumers", do: func(ctx context.Context, c *roleConn) error {
			if err := es.Setup(ctx, c.js, topo); err != nil {
				return err
			}
			s, err := c.js.Stream(ctx, contract.SnapshotsStream)
			if err != nil {
				return err
			}
			if err := s.Purge(ctx); err != nil {
				return err
			}
			if err := c.js.DeleteStream(ctx, contract.SnapshotsStream); err != nil {
				return err
			}
			if _, err := c.js.CreateConsumer(ctx, contract.CommandsStream, jetstream.ConsumerConfig{Durable: "operator-probe", FilterSubject: "orders.commands.0.>"}); err != nil {
				return err
			}
			if err := c.js.DeleteConsumer(ctx, contract.CommandsStream, "operator-probe"); err != nil {
				return err
			}
			return es.Setup(ctx, c.js, topo)
		}},
	)
	return cells
}

// subscribe subscribes and waits for the server to have seen it.
func subscribe(subject string) func(context.Context, *roleConn) error {
	return func(_ context.Context, c *roleConn) error {
		sub, err := c.nc.SubscribeSync(subject)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
		return c.nc.Flush()
	}
}

// consumeOne creates a durable pull consumer, fetches and acknowledges one
// message, and deletes the consumer.
func consumeOne(ctx context.Context, c *roleConn, stream, name, filter string) error {
	cons, err := c.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: name, FilterSubject: filter, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		return err
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		return err
	}
	got := 0
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			return err
		}
		got++
	}
	if err := batch.Error(); err != nil {
		return err
	}
	if got != 1 {
		return fmt.Errorf("fetched %d messages from %s, want 1", got, stream)
	}
	return c.js.DeleteConsumer(ctx, stream, name)
}

// useLeaseBucket does what the aggregator's coordinator does with its
// bucket: create, read, watch and delete keys.
func useLeaseBucket(ctx context.Context, c *roleConn) error {
	kv, err := c.js.KeyValue(ctx, es.LeaseBucket)
	if err != nil {
		return err
	}
	if _, err := kv.Create(ctx, "partitions.99", []byte("probe")); err != nil {
		return err
	}
	if _, err := kv.Get(ctx, "partitions.99"); err != nil {
		return err
	}
	w, err := kv.Watch(ctx, "partitions.*")
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	select {
	case e := <-w.Updates():
		if e == nil {
			return errors.New("watch: no current value before the end marker")
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	return kv.Delete(ctx, "partitions.99")
}

// answerQuery serves one request on orders.query.state, which the reader
// sends.
func answerQuery(ctx context.Context, c *roleConn) error {
	sub, err := c.nc.SubscribeSync("orders.query.state")
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := c.nc.Flush(); err != nil {
		return err
	}
	reader := make(chan error, 1)
	go func() {
		nc, err := nats.Connect(c.nc.ConnectedUrl(), nats.UserInfo("reader", rolePassword("reader")), nats.CustomInboxPrefix("_INBOX.reader"))
		if err != nil {
			reader <- err
			return
		}
		defer nc.Close()
		_, err = nc.RequestWithContext(ctx, "orders.query.state", []byte(`{"orderId":"x"}`))
		reader <- err
	}()
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		return err
	}
	if err := m.Respond([]byte(`{}`)); err != nil {
		return err
	}
	return <-reader
}

// askQuery sends a request that a query-role responder answers.
func askQuery(ctx context.Context, c *roleConn) error {
	q, err := nats.Connect(c.nc.ConnectedUrl(), nats.UserInfo("query", rolePassword("query")), nats.CustomInboxPrefix("_INBOX.query"))
	if err != nil {
		return err
	}
	defer q.Close()
	sub, err := q.Subscribe("orders.query.history", func(m *nats.Msg) { _ = m.Respond([]byte(`{"events":[]}`)) })
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := q.Flush(); err != nil {
		return err
	}
	_, err = c.nc.RequestWithContext(ctx, "orders.query.history", []byte(`{"orderId":"x"}`))
	return err
}
