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
// long version of the same test: JETSOURCE_CHAOS_ORDERS, _KILLS and _SEED.
type chaosSettings struct {
	orders, kills int
	seed          uint64
}

func chaosFromEnv(t *testing.T) chaosSettings {
	t.Helper()
	c := chaosSettings{orders: 150, kills: 6, seed: uint64(time.Now().UnixNano())}
	for name, dst := range map[string]*int{"JETSOURCE_CHAOS_ORDERS": &c.orders, "JETSOURCE_CHAOS_KILLS": &c.kills} {
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
	cfg := chaosFromEnv(t)
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

	killed := map[string]int{}
	var acquiredBeforeKills int
	for k := range cfg.kills {
		time.Sleep(time.Duration(100+rng.IntN(600)) * time.Millisecond)
		name := names[rng.IntN(len(names))]
		if k == 0 {
			acquiredBeforeKills = s.countLog("partition acquired")
		}
		s.process(name).kill()
		killed[name]++
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		s.restart(name)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	results := s.results(cmds, 3*time.Minute)
	v := s.checkOutcomes(cmds, results)
	s.checkReadModels()
	elapsed := time.Since(start)

	kills := []string{}
	for _, n := range names {
		if killed[n] > 0 {
			kills = append(kills, fmt.Sprintf("%s×%d", n, killed[n]))
		}
	}
	slices.Sort(kills)
	summary := fmt.Sprintf(`chaos summary (seed %d, replay with JETSOURCE_CHAOS_SEED=%d)
  commands sent        %d over %d orders
  outcomes             %d accepted, %d rejected as intended, %d missing
  events stored        %d, none lost, none duplicated (versions gap-free, one per accepted command)
  kills (SIGKILL)      %d: %v
  partition takeovers  %d (aggregator and projector partitions acquired after the first kill)
  read models          equal to a fresh projection of the events (order_summary, order_history, sales_daily)
  took                 %s
`, cfg.seed, cfg.seed, v.commands, cfg.orders, v.accepted, v.rejected, v.commands-v.accepted-v.rejected, v.events,
		cfg.kills, kills, s.countLog("partition acquired")-acquiredBeforeKills, elapsed.Round(time.Second))
	t.Log("\n" + summary)
}
