package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jetsource/jetsource/internal/workload"
)

// chaosSettings come from the environment so that `make chaos` can run the
// long version of the same test: <prefix>_ORDERS and <prefix>_KILLS (the
// prefix names the kind of fault), and JETSOURCE_CHAOS_SEED for all.
type chaosSettings struct {
	orders, kills int
	seed          uint64
}

// chaosFromEnv reads the settings of the fault tests whose variables start
// with prefix; orders and kills are the short defaults of `make test`.
func chaosFromEnv(t *testing.T, prefix string, orders, kills int) chaosSettings {
	t.Helper()
	c := chaosSettings{orders: orders, kills: kills, seed: uint64(time.Now().UnixNano())}
	for name, dst := range map[string]*int{prefix + "_ORDERS": &c.orders, prefix + "_KILLS": &c.kills} {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				t.Fatalf("%s=%q: want a positive integer", name, v)
			}
			*dst = n
		}
	}
	if v := os.Getenv("JETSOURCE_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("JETSOURCE_CHAOS_SEED=%q: %v", v, err)
		}
		c.seed = n
	}
	return c
}

// TestChaos runs two aggregators and four projectors as processes while
// commands stream in, kills them with SIGKILL at random points (seeded:
// the seed is printed, JETSOURCE_CHAOS_SEED replays the schedule) and
// restarts them, then checks that every command got exactly one outcome,
// no event was lost or stored twice, and every read model equals a fresh
// projection of the events.
func TestChaos(t *testing.T) {
	t.Parallel()
	cfg := chaosFromEnv(t, "JETSOURCE_CHAOS", 150, 6)
	rng := rand.New(rand.NewPCG(cfg.seed, 1))
	s := newStack(t)
	names := []string{"aggregator-0", "aggregator-1", "summary-0", "summary-1", "history-0", "sales-0"}
	for i := range 2 {
		s.run(fmt.Sprintf("aggregator-%d", i), "aggregator", fmt.Sprintf("AGGREGATOR_REPLICA_ID=agg-%d", i),
			"AGGREGATOR_LEASE_TTL=2s", "AGGREGATOR_SNAPSHOT_EVERY=4")
	}
	s.run("summary-0", "projector", "PROJECTOR_PROJECTION=order_summary", "PROJECTOR_BATCH_SIZE=50")
	s.run("summary-1", "projector", "PROJECTOR_PROJECTION=order_summary", "PROJECTOR_BATCH_SIZE=50")
	s.run("history-0", "projector", "PROJECTOR_PROJECTION=order_history", "PROJECTOR_BATCH_SIZE=50")
	s.run("sales-0", "projector", "PROJECTOR_PROJECTION=sales_daily", "PROJECTOR_BATCH_SIZE=50")

	cmds := workload.Waves(fmt.Sprintf("chaos%d", cfg.seed%100000), cfg.orders)
	// Spread the publishing over the kills, about 400ms apart.
	pace := time.Duration(cfg.kills) * 400 * time.Millisecond / time.Duration(max(len(cmds)/50, 1))
	ctx := context.Background()
	published := make(chan error, 1)
	start := time.Now()
	go func() { published <- s.publish(ctx, cmds, pace) }()

	var (
		kills               []string
		acquiredBeforeKills int
	)
	for k := range cfg.kills {
		time.Sleep(time.Duration(100+rng.IntN(600)) * time.Millisecond) // the kill schedule
		name := names[rng.IntN(len(names))]
		if k == 0 {
			acquiredBeforeKills = s.countLog("partition acquired")
		}
		s.process(name).kill()
		kills = append(kills, name)
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond) // the kill schedule: the process stays down
		s.restart(name)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	results := s.results(cmds, 3*time.Minute)
	faultSummary{kind: "aggregator and projector processes killed (SIGKILL) and restarted",
		injection: "SIGKILL of a service process", fsync: "one embedded server, R1, default fsync (a process kill loses no acknowledged write)",
		seed: cfg.seed, orders: cfg.orders, faults: kills, v: s.checkOutcomes(cmds, results), took: time.Since(start),
		extra: fmt.Sprintf("partition takeovers: %d (aggregator and projector partitions acquired after the first kill)",
			s.countLog("partition acquired")-acquiredBeforeKills)}.finish(t, s)
}

// faultSummary is what a fault test found, as `make chaos` prints it.
type faultSummary struct {
	kind, injection, fsync string
	seed                   uint64
	orders                 int
	// faults names what each fault hit, in order.
	faults []string
	v      verification
	extra  string
	took   time.Duration
	// readModels is set once the read models equal a fresh projection.
	readModels bool
}

// finish checks the read models, unless an outcome or event is wrong
// already, and logs the summary; a wrong one fails the test with it.
func (f faultSummary) finish(t *testing.T, s *stack) {
	t.Helper()
	if f.v.clean() {
		s.checkReadModels()
		f.readModels = true
	}
	f.report(t)
}

// report logs the summary, which says whether finish checked the read
// models; a wrong outcome or event fails the test with it.
func (f faultSummary) report(t *testing.T) {
	t.Helper()
	if !f.v.clean() {
		t.Fatal("\n" + f.String())
	}
	t.Log("\n" + f.String())
}

func (f faultSummary) String() string {
	hit := map[string]int{}
	for _, name := range f.faults {
		hit[name]++
	}
	var counts []string
	for name, n := range hit {
		counts = append(counts, fmt.Sprintf("%s×%d", name, n))
	}
	slices.Sort(counts)
	replay := ""
	if f.seed != 0 {
		replay = fmt.Sprintf(" (seed %d; replay with JETSOURCE_CHAOS_SEED=%d)", f.seed, f.seed)
	}
	read := "not checked"
	if f.readModels {
		read = "equal to a fresh projection of the events (order_summary, order_history, sales_daily)"
	}
	out := fmt.Sprintf(`fault: %s
  injected     %s; faults: %d %v
  durability   %s
  commands     %d over %d orders%s
  outcomes     %d accepted, %d rejected, %d not as intended
  events       %d stored; %d lost, %d doubled, %d reordered
  read models  %s
`, f.kind, f.injection, len(f.faults), counts, f.fsync, f.v.commands, f.orders, replay,
		f.v.accepted, f.v.rejected, f.v.wrong, f.v.events, f.v.lost, f.v.doubled, f.v.reordered, read)
	if f.extra != "" {
		out += "  " + f.extra + "\n"
	}
	return out + fmt.Sprintf("  took         %s\n", f.took.Round(time.Second))
}
