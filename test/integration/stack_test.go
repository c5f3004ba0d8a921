package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natsserver"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/migrations"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
	"github.com/jetsource/jetsource/internal/workload"
)

// stack is a whole JetSource deployment on this machine: NATS (an
// embedded server that can be restarted on the same port and data, or a
// cluster of server processes), a database of the package's PostgreSQL,
// and the binaries as processes.
type stack struct {
	t        *testing.T
	natsDir  string
	natsPort int
	nats     *natsserver.Server
	natsURL  string
	db       string
	nc       *nats.Conn
	js       jetstream.JetStream
	// env is given to every process, before its own.
	env []string

	mu    sync.Mutex
	specs map[string][]string // process name → binary and environment
	procs map[string]*process
	// outputs keeps every process's output, also of killed ones, for the
	// summary.
	outputs []*lockedBuffer
}

// newStack starts NATS and takes a database of the package's PostgreSQL.
func newStack(t *testing.T) *stack {
	t.Helper()
	return newStackOn(t, postgres.DB(t))
}

// newStackOn is newStack over the database at db.
func newStackOn(t *testing.T, db string) *stack {
	t.Helper()
	s := &stack{t: t, natsDir: t.TempDir(), db: db, specs: map[string][]string{}, procs: map[string]*process{}}
	s.startNATS()
	s.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", s.natsPort)
	t.Cleanup(func() {
		if s.nats != nil {
			s.nats.Shutdown()
		}
	})
	s.connect(natstest.Topology(natstest.Partitions))
	return s
}

// newClusterStack is a stack over a cluster of NATS server processes, with
// R3 streams as in production.
func newClusterStack(t *testing.T, c *natsCluster) *stack {
	t.Helper()
	s := &stack{t: t, natsURL: c.url(), db: postgres.DB(t), env: []string{"JETSOURCE_REPLICAS=3"},
		specs: map[string][]string{}, procs: map[string]*process{}}
	topology := natstest.Topology(natstest.Partitions)
	topology.Replicas = 3
	s.connect(topology)
	return s
}

// connect opens the test's own connection and creates the streams and the
// lease bucket, as the operator would, retrying while a cluster elects its
// first leaders. The lease TTL is short, so that a killed aggregator's
// partitions are taken over quickly; the aggregators get the same.
func (s *stack) connect(topology es.Topology) {
	s.t.Helper()
	topology.LeaseTTL = 2 * time.Second
	s.env = append(s.env, "AGGREGATOR_LEASE_TTL="+topology.LeaseTTL.String())
	s.t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, p := range s.procs {
			p.kill()
		}
	})
	nc, err := nats.Connect(s.natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	s.nc = nc
	s.js, _ = jetstream.New(nc)
	retry(s.t, 30*time.Second, "create the streams", func() error {
		op, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return es.Setup(op, s.js, topology)
	})
}

func (s *stack) startNATS() {
	s.t.Helper()
	srv, err := natsserver.Start(natsserver.Config{StoreDir: s.natsDir, Port: s.natsPort})
	if err != nil {
		s.t.Fatal(err)
	}
	s.nats = srv
	s.natsPort = srv.Addr().(*net.TCPAddr).Port
}

// restartNATS stops the server and starts it again on the same port and
// data after pause.
func (s *stack) restartNATS(pause time.Duration) {
	s.nats.Shutdown()
	time.Sleep(pause) // the outage, part of the fault
	s.startNATS()
}

// run starts a binary under a name; restart and kill use the name.
func (s *stack) run(name, binary string, env ...string) *process {
	s.t.Helper()
	spec := append(append([]string{binary, "NATS_URL=" + s.natsURL, "METRICS_ADDR=127.0.0.1:0", "LOG_LEVEL=info"}, s.env...), env...)
	if binary == "projector" {
		spec = append(spec, "DATABASE_URL="+s.db)
	}
	s.mu.Lock()
	s.specs[name] = spec
	s.mu.Unlock()
	return s.restart(name)
}

// restart starts the named process again with its first configuration.
func (s *stack) restart(name string) *process {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	spec := s.specs[name]
	p := start(s.t, spec[0], spec[1:]...)
	s.procs[name] = p
	s.outputs = append(s.outputs, p.out)
	return p
}

func (s *stack) process(name string) *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[name]
}

// countLog counts log lines with msg across every process that ran.
func (s *stack) countLog(msg string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, out := range s.outputs {
		n += strings.Count(out.String(), `"msg":"`+msg+`"`)
	}
	return n
}

// publish sends commands in order, retrying each until JetStream stores
// it: Nats-Msg-Id makes a retried publish harmless. pace is the pause after
// every 50 commands.
func (s *stack) publish(ctx context.Context, cmds []workload.Command, pace time.Duration) error {
	for i, c := range cmds {
		for {
			op, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := s.js.PublishMsg(op, c.Msg())
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("publish %s: %w", c.ID, err)
			}
			time.Sleep(50 * time.Millisecond) // a client's retry pause while NATS is away
		}
		if pace > 0 && i%50 == 49 {
			time.Sleep(pace) // paces the load
		}
	}
	return nil
}

// results waits for the result of every command.
func (s *stack) results(cmds []workload.Command, within time.Duration) map[string]contract.Result {
	s.t.Helper()
	ctx := context.Background()
	out := make(map[string]contract.Result, len(cmds))
	deadline := time.Now().Add(within)
	for _, c := range cmds {
		eventually.Holds(s.t, time.Until(deadline), "the result of "+c.ID, func() (bool, string) {
			r, ok, err := s.lookup(ctx, c.ID)
			out[c.ID] = r
			return ok, fmt.Sprint(err)
		})
	}
	return out
}

func (s *stack) lookup(ctx context.Context, commandID string) (contract.Result, bool, error) {
	stream, err := s.js.Stream(ctx, contract.ResultsStream)
	if err != nil {
		return contract.Result{}, false, err
	}
	m, err := stream.GetLastMsgForSubject(ctx, contract.ResultSubject(commandID))
	if err != nil {
		return contract.Result{}, false, err
	}
	var r contract.Result
	return r, json.Unmarshal(m.Data, &r) == nil, nil
}

// lastSequences is the newest event sequence of every partition.
func (s *stack) lastSequences(ctx context.Context) map[int]uint64 {
	s.t.Helper()
	stream, err := s.js.Stream(ctx, contract.EventsStream)
	if err != nil {
		s.t.Fatal(err)
	}
	out := map[int]uint64{}
	for p := range natstest.Partitions {
		m, err := stream.GetLastMsgForSubject(ctx, contract.EventPartitionFilter(p))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			s.t.Fatal(err)
		}
		out[p] = m.Sequence
	}
	return out
}

// caughtUp waits until the projections' cursors reach the newest event of
// every partition.
func (s *stack) caughtUp(pool *pgxpool.Pool, schema string, names []string, within time.Duration) {
	s.t.Helper()
	ctx := context.Background()
	want := s.lastSequences(ctx)
	admin, err := projections.NewAdmin(pool, s.js, projections.AdminConfig{Schema: schema, Partitions: natstest.Partitions})
	if err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(within)
	for _, name := range names {
		eventually.Holds(s.t, time.Until(deadline), schema+"."+name+" to catch up", func() (bool, string) {
			cps, err := admin.Checkpoints(ctx, name)
			behind := []int{}
			for p, seq := range want {
				if err != nil || cps[p].LastSequence < seq {
					behind = append(behind, p)
				}
			}
			return len(behind) == 0, fmt.Sprintf("partitions %v behind (%v)", behind, err)
		})
	}
}

// verification is what checkOutcomes found: the counts of the summary.
type verification struct {
	commands, accepted, rejected, events int
	// wrong counts commands whose outcome is not the one the workload
	// intends; lost, doubled and reordered count events.
	wrong, lost, doubled, reordered int
}

func (v verification) clean() bool { return v.wrong+v.lost+v.doubled+v.reordered == 0 }

// checkOutcomes checks that every command got exactly the outcome the
// workload intends and every order's events are exact: versions 1..n
// without gaps, each command's event stored once, at the stream sequence
// its result acknowledged, and in the order the commands were published.
// It reports the first problems as test errors and counts them all.
func (s *stack) checkOutcomes(cmds []workload.Command, results map[string]contract.Result) verification {
	s.t.Helper()
	ctx := context.Background()
	v := verification{commands: len(cmds)}
	reported := 0
	report := func(format string, args ...any) {
		if reported++; reported <= 20 {
			s.t.Errorf(format, args...)
		}
	}
	perOrder := map[string][]string{} // accepted command ids in publish order
	for _, c := range cmds {
		r := results[c.ID]
		if (r.Status == contract.StatusAccepted) != c.WantAccepted {
			v.wrong++
			report("command %s (%s): %+v %+v, want accepted=%v", c.ID, c.Type, r, r.Error, c.WantAccepted)
		}
		if r.Status == contract.StatusAccepted {
			v.accepted++
			perOrder[c.OrderID] = append(perOrder[c.OrderID], c.ID)
		} else {
			v.rejected++
		}
	}
	store := es.NewStore(s.js, natstest.Partitions)
	for orderID, accepted := range perOrder {
		var events []contract.Event
		retry(s.t, time.Minute, "read "+orderID+" from the leader", func() error {
			var err error
			events, err = store.ReadFromLeader(ctx, orderID, 0)
			return err
		})
		seen := map[string]bool{}
		for i, e := range events {
			r := results[e.Metadata.CausationID]
			switch {
			case e.Version != int64(i+1):
				v.lost += max(int(e.Version)-i-1, 0)
				v.doubled += max(i+1-int(e.Version), 0)
				report("order %s: event %d has version %d (lost or duplicated event)", orderID, i, e.Version)
			case seen[e.Metadata.CausationID]:
				v.doubled++
				report("order %s: command %s stored twice", orderID, e.Metadata.CausationID)
			case r.Status != contract.StatusAccepted || r.Version != e.Version || r.EventIDs[0] != e.ID || r.StreamSequence != e.Sequence:
				v.lost++
				report("order %s: event %s at %d does not match its command's result %+v", orderID, e.ID, e.Sequence, r)
			case i < len(accepted) && accepted[i] != e.Metadata.CausationID:
				v.reordered++
				report("order %s: event %d is from command %s, where %s was published first (reordered)", orderID, i, e.Metadata.CausationID, accepted[i])
			}
			seen[e.Metadata.CausationID] = true
		}
		switch {
		case len(events) < len(accepted):
			v.lost += len(accepted) - len(events)
			report("order %s: %d events for %d accepted commands", orderID, len(events), len(accepted))
		case len(events) > len(accepted):
			v.doubled += len(events) - len(accepted)
			report("order %s: %d events for %d accepted commands", orderID, len(events), len(accepted))
		}
		v.events += len(events)
	}
	return v
}

// checkReadModels projects every event afresh into another schema of the
// same database and asserts the live tables equal it row for row: what a
// rebuild would produce.
func (s *stack) checkReadModels() {
	s.t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, s.db)
	if err != nil {
		s.t.Fatal(err)
	}
	defer pool.Close()
	s.caughtUp(pool, projections.DefaultSchema, readmodel.Names(), 2*time.Minute)

	const fresh = "verify"
	if _, err := migrations.Apply(ctx, pool, fresh); err != nil {
		s.t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, name := range readmodel.Names() {
		p, _ := readmodel.New(name)
		r, err := projections.NewRunner(pool, s.js, projections.Config{Projection: p, Schema: fresh, Partitions: natstest.Partitions,
			ReplicaID: "verify-" + name, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			s.t.Fatal(err)
		}
		wg.Go(func() { _ = r.Run(runCtx) })
	}
	s.caughtUp(pool, fresh, readmodel.Names(), 2*time.Minute)
	stop()
	wg.Wait()

	for _, name := range readmodel.Names() {
		p, _ := readmodel.New(name)
		for _, table := range p.Tables() {
			var live, differ int
			err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT (SELECT count(*) FROM %[1]s.%[3]s),
				(SELECT count(*) FROM ((SELECT * FROM %[1]s.%[3]s EXCEPT ALL SELECT * FROM %[2]s.%[3]s)
					UNION ALL (SELECT * FROM %[2]s.%[3]s EXCEPT ALL SELECT * FROM %[1]s.%[3]s)) d)`,
				projections.DefaultSchema, fresh, table)).Scan(&live, &differ)
			if err != nil {
				s.t.Fatal(err)
			}
			if differ != 0 {
				s.t.Fatalf("table %s: %d rows differ from a fresh projection of the events (%d rows live)", table, differ, live)
			}
		}
	}
}
