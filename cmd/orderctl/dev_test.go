package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/workload"
)

// syncBuffer is an output that a test reads while orderctl writes it.
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

// devRun is orderctl dev running in the background.
type devRun struct {
	out, errOut syncBuffer
	cancel      context.CancelFunc
	exit        chan int
}

func startDev(t *testing.T, args ...string) *devRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &devRun{cancel: cancel, exit: make(chan int, 1)}
	go func() { d.exit <- run(ctx, append([]string{"dev"}, args...), &d.out, &d.errOut) }()
	t.Cleanup(func() { d.stop(t) })
	return d
}

// ready waits until the stack says how to talk to it, and returns its
// output so far.
func (d *devRun) ready(t *testing.T) string {
	t.Helper()
	eventually.Holds(t, 2*time.Minute, "orderctl dev to be ready", func() (bool, string) {
		select {
		case code := <-d.exit:
			d.exit <- code
			t.Fatalf("orderctl dev exited with %d before it was ready\nstdout:\n%s\nstderr:\n%s", code, d.out.String(), d.errOut.String())
		default:
		}
		return strings.Contains(d.out.String(), "Press Ctrl-C to stop"), "stdout:\n" + d.out.String() + "\nstderr:\n" + d.errOut.String()
	})
	return d.out.String()
}

// stop presses Ctrl-C and waits for a clean exit.
func (d *devRun) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	select {
	case code := <-d.exit:
		d.exit <- code
		if code != 0 {
			t.Errorf("orderctl dev exited with %d\nstdout:\n%s\nstderr:\n%s", code, d.out.String(), d.errOut.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("orderctl dev did not stop")
	}
}

// devDataDir returns a data directory that Postgres, which runs as user
// postgres when the tests run as root, can reach.
func devDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "data")
}

func mustMatch(t *testing.T, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(out) {
			t.Fatalf("output does not match %s:\n%s", p, out)
		}
	}
}

// TestDevStack runs the dev stack with a small demo on a local Postgres,
// talks to it as its instructions say, stops it, runs it again on the same
// data, and once more with --reset.
func TestDevStack(t *testing.T) {
	data := devDataDir(t)
	t.Setenv("DATABASE_URL", "")
	cmds := workload.Waves("x", 20)
	today := time.Now().UTC().Format(time.DateOnly)

	dev := startDev(t, "--data", data, "--nats-port", "0", "--pg-port", "0", "--demo-orders", "20")
	out := dev.ready(t)
	mustMatch(t, out,
		`NATS\s+nats://127\.0\.0\.1:\d+, JetStream data in `+regexp.QuoteMeta(filepath.Join(data, "nats")),
		`default fsync \(every 2 minutes\)`,
		`Postgres\s+postgres://postgres@127\.0\.0\.1:\d+/postgres\?sslmode=disable, data in `+regexp.QuoteMeta(filepath.Join(data, "postgres")),
		`Demo: 20 orders \(ids demo-\d{8}-\d{6}-ord-0 to -19\), `+strconv.Itoa(len(cmds))+` commands`,
		`commands published `+strconv.Itoa(len(cmds))+`/`+strconv.Itoa(len(cmds)),
		`All `+strconv.Itoa(len(cmds))+` commands answered in`,
		`(?m)^1 rejected, as the workload intends`,
		`Orders by status \(order_summary\): 20 orders: delivered 16, canceled 2, paid 2\n`,
		`(?m)^\s+`+today+`\s+EUR\s+7\s+\d+\.\d\d\s+1$`,
		`(?m)^\s+demo-\d{8}-\d{6}-ord-\d+\s+(delivered|paid|canceled)\s+\d+\.\d\d (EUR|USD|GBP)\s+\d\s+`+today,
		`Audit trail \(order_history\): `+strconv.Itoa(len(cmds)-1)+` events`,
		`Dead letters: 0 failed, 0 parked behind them`,
		`Lag: order_summary 0 events / 0\.0 s behind, order_history 0 events / 0\.0 s behind, sales_daily 0 events / 0\.0 s behind`,
		`orderctl history demo-`,
		`make run built\n\./bin/orderctl;`,
	)
	// The instructions work.
	natsURL := regexp.MustCompile(`export NATS_URL=(\S+)`).FindStringSubmatch(out)[1]
	dbURL := regexp.MustCompile(`export DATABASE_URL='(\S+)'`).FindStringSubmatch(out)[1]
	recent := regexp.MustCompile(`orderctl state (\S+)`).FindStringSubmatch(out)[1]
	t.Setenv("NATS_URL", natsURL)
	t.Setenv("DATABASE_URL", dbURL)
	if out, _ := mustRun(t, 0, "lag", "--json"); strings.Count(out, `"eventsBehind":0,"secondsBehind":0,"partitions"`) != 3 {
		t.Fatalf("lag of the dev stack:\n%s", out)
	}
	if out, _ := mustRun(t, 0, "state", recent); !strings.Contains(out, `"id": "`+recent+`"`) {
		t.Fatalf("state of %s:\n%s", recent, out)
	}
	mustRun(t, 0, "send", "--id", "c-dev", "ord-dev", "CreateOrder", `{"customerId":"c"}`)
	mustRun(t, 0, "wait", "--projection", "order_history", "c-dev")
	t.Setenv("DATABASE_URL", "")

	// A second stack on the same data is refused.
	code, _, errOut := orderctl("dev", "--data", data, "--nats-port", "0", "--pg-port", "0")
	if code != 1 || !strings.Contains(errOut, "another orderctl dev") {
		t.Fatalf("second stack on the same data: exit %d, %s", code, errOut)
	}

	dev.stop(t)
	mustMatch(t, dev.out.String(), `aggregator, projectors and query stopped\n  Postgres stopped\n  NATS stopped\n$`)

	// The next run finds the orders of the last one.
	dev = startDev(t, "--data", data, "--nats-port", "0", "--pg-port", "0", "--demo-orders", "0")
	mustMatch(t, dev.ready(t), `kept from the last run`, `; `+strconv.Itoa(len(cmds))+` events stored`,
		`Orders by status \(order_summary\): 21 orders: delivered 16, canceled 2, paid 2, draft 1\n`)
	dev.stop(t)

	dev = startDev(t, "--data", data, "--nats-port", "0", "--pg-port", "0", "--demo-orders", "0", "--reset")
	out = dev.ready(t)
	mustMatch(t, out, `Reset: removed`, `Orders by status \(order_summary\): 0 orders\n`, `Audit trail \(order_history\): 0 events`)
	if strings.Contains(out, "kept from the last run") || strings.Contains(out, "events stored") {
		t.Fatalf("after --reset:\n%s", out)
	}
}

func TestDevStackNATSPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	code, _, errOut := orderctl("dev", "--data", devDataDir(t), "--nats-port", port)
	if code != 1 || !strings.Contains(errOut, "cannot listen on 127.0.0.1:"+port) || !strings.Contains(errOut, "--nats-port") {
		t.Fatalf("exit %d, %s", code, errOut)
	}
	mustRun(t, 2, "dev", "--demo-orders", "-1")
	mustRun(t, 2, "dev", "extra")
}
