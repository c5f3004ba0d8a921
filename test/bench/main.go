// Command bench measures JetSource's command path on this machine and
// prints the figures with ratios against baselines measured in the same
// run: the production matrix (R1 and a three-node R3 cluster, each with the
// default fsync interval and with fsync before every acknowledgement), the
// seeds' naive PostgreSQL event table at equal durability, and the cold
// load of a large order. NATS servers and the aggregator run as child
// processes of this one (the same binary in another role), so that server,
// service and load generator share the cores as they would on one machine
// but the aggregator's CPU time and allocations are measured apart.
//
//	go run ./test/bench
//
// The environment tunes the run (defaults in parentheses):
//
//	JETSOURCE_BENCH_PARTS        matrix,postgres,load: the parts to run (all)
//	JETSOURCE_BENCH_CELLS        r1,r3,r1-sync,r3-sync: the matrix cells to run (all)
//	JETSOURCE_BENCH_ORDERS       orders of the throughput workload at the default fsync interval (10000)
//	JETSOURCE_BENCH_SYNC_ORDERS  orders of the throughput workload with fsync before every ack (1500)
//	JETSOURCE_BENCH_SECONDS      length of each fixed-rate latency run (10)
//	JETSOURCE_BENCH_PG_SECONDS   length of each PostgreSQL run (5)
//	JETSOURCE_BENCH_PROFILE      write CPU profiles of the aggregator and the servers, and the aggregator's allocation profile, of each cell's throughput run
//	                             to <value>.<cell>.cpu, <value>.<cell>.n<i>.cpu and <value>.<cell>.allocs
package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

const partitions = 16

func main() {
	if len(os.Args) > 1 {
		// A child process of the benchmark.
		var err error
		switch os.Args[1] {
		case "server":
			err = serverMain(os.Args[2:])
		case "aggregator":
			err = aggregatorMain(os.Args[2:])
		default:
			err = fmt.Errorf("unknown role %q; run without arguments", os.Args[1])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench", os.Args[1]+":", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := readConfig()
	if err == nil {
		err = run(context.Background(), cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config is the run's settings, from the environment.
type config struct {
	parts, cells       map[string]bool
	orders, syncOrders int
	seconds, pgSeconds int
	profile, workDir   string
}

func readConfig() (config, error) {
	cfg := config{profile: os.Getenv("JETSOURCE_BENCH_PROFILE")}
	var errs []string
	list := func(name, all string) map[string]bool {
		v := os.Getenv(name)
		if v == "" {
			v = all
		}
		m := map[string]bool{}
		for _, s := range strings.Split(v, ",") {
			if !strings.Contains(","+all+",", ","+s+",") {
				errs = append(errs, fmt.Sprintf("%s: %q is not one of %s", name, s, all))
			}
			m[s] = true
		}
		return m
	}
	count := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Sprintf("%s is %q; it must be a positive integer", name, v))
		}
		return n
	}
	cfg.parts = list("JETSOURCE_BENCH_PARTS", "matrix,postgres,load")
	cfg.cells = list("JETSOURCE_BENCH_CELLS", "r1,r3,r1-sync,r3-sync")
	cfg.orders = count("JETSOURCE_BENCH_ORDERS", 10_000)
	cfg.syncOrders = count("JETSOURCE_BENCH_SYNC_ORDERS", 1500)
	cfg.seconds = count("JETSOURCE_BENCH_SECONDS", 10)
	cfg.pgSeconds = count("JETSOURCE_BENCH_PG_SECONDS", 5)
	if len(errs) > 0 {
		return config{}, fmt.Errorf("configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return cfg, nil
}

func run(ctx context.Context, cfg config) error {
	dir, err := os.MkdirTemp("", "jetsource-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.workDir = dir
	fmt.Printf("JetSource benchmarks — %s, %d CPUs, %s/%s; NATS servers and the aggregator in their own processes, data in %s\n\n",
		time.Now().UTC().Format(time.DateOnly), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, os.TempDir())
	var t targets
	if cfg.parts["matrix"] {
		for _, c := range matrix(cfg) {
			if !cfg.cells[c.name] {
				continue
			}
			if err := benchCell(ctx, cfg, c, &t); err != nil {
				return fmt.Errorf("%s: %w", c.title, err)
			}
			fmt.Println()
		}
	}
	if cfg.parts["postgres"] {
		if err := benchPostgres(ctx, cfg); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		fmt.Println()
	}
	if cfg.parts["load"] {
		if err := benchLoad(ctx, cfg, &t); err != nil {
			return fmt.Errorf("load: %w", err)
		}
		fmt.Println()
	}
	t.print()
	return nil
}

// targets collects the figures of issue 10's targets table as they are
// measured; zero means not measured in this run.
type targets struct {
	ratioR1, ratioR3, ratioR3Sync float64
	p99R1                         time.Duration
	coldP99                       time.Duration
}

func (t targets) print() {
	rule("Targets (issue 10)")
	ratio := func(v float64) string {
		if v == 0 {
			return "not run"
		}
		return fmt.Sprintf("%.3f", v)
	}
	dur := func(d time.Duration) string {
		if d == 0 {
			return "not run"
		}
		return ms(d)
	}
	rows := [][4]string{
		{"aggregator / raw appends, R1 default", "0.06 to 0.07", "≥ 0.2", ratio(t.ratioR1)},
		{"aggregator / raw appends, R3 default", "0.05", "≥ 0.2", ratio(t.ratioR3)},
		{"aggregator / raw appends, R3 fsync every ack", "0.115", "≥ 0.25", ratio(t.ratioR3Sync)},
		{"p99 at 1,000 commands/s, R1 default", "2.2 ms", "≤ 10 ms", dur(t.p99R1)},
		{"cold load, 1,000-event order with snapshot, p99", "5.1 ms", "≤ 2 ms", dur(t.coldP99)},
		{"projection / unnest baseline", "0.29", "≥ 0.6", "BenchmarkProjections"},
		{"rebuild 1,000,000 events", "19.6 s", "≤ 15 s", "BenchmarkProjections"},
	}
	fmt.Printf("  %-48s %-13s %-8s %s\n", "figure", "today", "target", "this run")
	for _, r := range rows {
		fmt.Printf("  %-48s %-13s %-8s %s\n", r[0], r[1], r[2], r[3])
	}
}

func rule(title string) {
	fmt.Println(title)
	fmt.Println(strings.Repeat("-", len([]rune(title))))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

func us(d time.Duration) string { return fmt.Sprintf("%.1fµs", float64(d.Nanoseconds())/1000) }
