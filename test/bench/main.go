// Command bench measures JetSource on this machine and prints the figures
// with ratios against baselines measured in the same run. It embeds NATS
// (R1, file storage, default fsync interval) and runs the aggregator
// in-process, so server, service and load generator share the cores.
//
//	go run ./test/bench [-orders 10000] [-only aggregator|latency|load] [-cpuprofile FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natsserver"
)

const partitions = 16

func main() {
	orders := flag.Int("orders", 10_000, "orders in the end-to-end workload")
	rate := flag.Int("rate", 1000, "commands per second in the latency run")
	seconds := flag.Int("seconds", 10, "length of the latency run")
	only := flag.String("only", "", "run one part: aggregator, latency or load")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*orders, *rate, *seconds, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(orders, rate, seconds int, only string) error {
	fmt.Printf("JetSource benchmarks — %s, %d CPUs, %s/%s, nats-server embedded (R1, file storage)\n\n",
		time.Now().UTC().Format(time.DateOnly), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	parts := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"aggregator", func(ctx context.Context) error { return benchThroughput(ctx, orders) }},
		{"latency", func(ctx context.Context) error { return benchLatency(ctx, rate, seconds) }},
		{"load", benchLoad},
	}
	for _, p := range parts {
		if only != "" && only != p.name {
			continue
		}
		if err := p.fn(context.Background()); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		fmt.Println()
	}
	return nil
}

// env is a fresh embedded server with the streams, and optionally an
// aggregator running over it.
type env struct {
	srv  *natsserver.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	stop func()
}

func newEnv(ctx context.Context, withAggregator bool) (*env, error) {
	srv, err := natsserver.Start(natsserver.Config{})
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		srv.Shutdown()
		return nil, err
	}
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	e := &env{srv: srv, nc: nc, js: js, stop: func() {}}
	if err := es.Setup(ctx, js, es.Topology{Partitions: partitions, Replicas: 1, ResultsMaxAge: time.Hour, DuplicateWindow: 2 * time.Minute}); err != nil {
		e.close()
		return nil, err
	}
	if withAggregator {
		// The aggregator gets its own connection, as it would in production.
		anc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			e.close()
			return nil, err
		}
		ajs, _ := jetstream.New(anc)
		svc, err := aggregator.New(ajs, aggregator.Config{Partitions: partitions, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			anc.Close()
			e.close()
			return nil, err
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = svc.Run(runCtx) }()
		e.stop = func() { cancel(); <-done; anc.Close() }
	}
	return e, nil
}

func (e *env) close() {
	e.stop()
	e.nc.Close()
	e.srv.Shutdown()
}

func rule(title string) {
	fmt.Println(title)
	fmt.Println(strings.Repeat("-", len(title)))
}
