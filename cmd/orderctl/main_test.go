package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/pgtest"
	"github.com/jetsource/jetsource/internal/servicetest"
)

var (
	cluster *pgtest.Cluster
	// binary is orderctl, built once for the package's tests, which run it
	// as a user would: as a process, with the environment of the test
	// (t.Setenv).
	binary string
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "orderctl-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "orderctl")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build orderctl:", err)
		return 1
	}
	c, stop, err := pgtest.StartCluster()
	if err != nil {
		fmt.Fprintln(os.Stderr, "postgres:", err)
		return 1
	}
	defer stop()
	cluster = c
	return m.Run()
}

// orderctl runs one command line and returns its exit code and output.
func orderctl(args ...string) (int, string, string) {
	return orderctlCtx(context.Background(), args...)
}

// orderctlCtx is orderctl stopped as by Ctrl-C when ctx ends.
func orderctlCtx(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	err := cmd.Run()
	if cmd.ProcessState == nil {
		return -1, "", err.Error()
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// background is orderctl running in the background, as a process.
type background struct {
	cmd         *exec.Cmd
	out, errOut syncBuffer
	done        chan struct{}
}

// startBackground starts orderctl; the test's end stops it, as stop does.
func startBackground(t *testing.T, args ...string) *background {
	t.Helper()
	b := &background{done: make(chan struct{})}
	b.cmd = exec.Command(binary, args...)
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.errOut
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() { b.stop(t) })
	return b
}

func (b *background) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// await waits until the output (stdout and stderr) says want, and fails
// the test if orderctl exits first.
func (b *background) await(t *testing.T, within time.Duration, want string) {
	t.Helper()
	eventually.Holds(t, within, fmt.Sprintf("orderctl %s to say %q", strings.Join(b.cmd.Args[1:], " "), want), func() (bool, string) {
		out := b.out.String() + b.errOut.String()
		return strings.Contains(out, want) || b.exited(), out
	})
	if out := b.out.String() + b.errOut.String(); !strings.Contains(out, want) {
		t.Fatalf("orderctl %s exited with %d\n%s", strings.Join(b.cmd.Args[1:], " "), b.cmd.ProcessState.ExitCode(), out)
	}
}

// stop presses Ctrl-C and waits for a clean exit.
func (b *background) stop(t *testing.T) {
	t.Helper()
	if b.exited() {
		return
	}
	_ = b.cmd.Process.Signal(os.Interrupt)
	select {
	case <-b.done:
		if code := b.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("orderctl %s exited with %d\nstdout:\n%s\nstderr:\n%s", strings.Join(b.cmd.Args[1:], " "), code, b.out.String(), b.errOut.String())
		}
	case <-time.After(time.Minute):
		_ = b.cmd.Process.Kill()
		t.Fatalf("orderctl %s did not stop", strings.Join(b.cmd.Args[1:], " "))
	}
}

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

// mustRun runs orderctl and fails the test unless it exits with want.
func mustRun(t *testing.T, want int, args ...string) (stdout, stderr string) {
	t.Helper()
	code, out, errOut := orderctl(args...)
	if code != want {
		t.Fatalf("orderctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out, errOut
}

// mustMatch fails the test unless out matches every pattern.
func mustMatch(t *testing.T, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(out) {
			t.Fatalf("output does not match %s:\n%s", p, out)
		}
	}
}

// orderState is the part of state --json the tests read.
type orderState struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	TotalCents int64  `json:"totalCents"`
	Version    int64  `json:"version"`
}

func TestSendHistoryAndState(t *testing.T) {
	srv, _, _ := natstest.Streams(t, natstest.Partitions)
	servicetest.Aggregator(t, srv.ClientURL())
	servicetest.Query(t, srv.ClientURL())
	t.Setenv("NATS_URL", srv.ClientURL())

	out, _ := mustRun(t, 0, "send", "--id", "c-1", "--user", "u-1", "ord-9", "CreateOrder", `{"customerId":"cust"}`)
	mustMatch(t, out, `^command c-1 on order ord-9: accepted, the order is at version 1 \(stream sequence 1, events evt-\S+\)\n$`)
	out, _ = mustRun(t, 0, "send", "--json", "ord-9", "AddItem", `{"productId":"sku","quantity":3,"unitPriceCents":250}`)
	var accepted struct{ Status, OrderID string }
	if err := json.Unmarshal([]byte(out), &accepted); err != nil || accepted.Status != "accepted" || accepted.OrderID != "ord-9" {
		t.Fatalf("send --json: %v\n%s", err, out)
	}
	out, _ = mustRun(t, 3, "send", "ord-9", "PayOrder", `{"paymentId":"p","amountCents":1,"method":"card"}`)
	mustMatch(t, out, `^command cmd-\w+ on order ord-9: rejected, invalid_state: `)
	if _, errOut := mustRun(t, 2, "send", "ord-9", "AddItem", `{"productId":"a.b","quantity":1,"unitPriceCents":1}`); !strings.Contains(errOut, "productId") ||
		!strings.Contains(errOut, "orderctl send --help") {
		t.Fatalf("invalid command: %s", errOut)
	}

	out, _ = mustRun(t, 0, "history", "ord-9")
	if !strings.Contains(out, "OrderCreated") || !strings.Contains(out, "ItemAdded") || !strings.Contains(out, "c-1") {
		t.Fatalf("history:\n%s", out)
	}
	out, _ = mustRun(t, 0, "history", "--json", "ord-9")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.Contains(lines[0], `"type":"OrderCreated"`) {
		t.Fatalf("history --json:\n%s", out)
	}

	var state orderState
	out, _ = mustRun(t, 0, "state", "--json", "--version", "1", "ord-9")
	if err := json.Unmarshal([]byte(out), &state); err != nil || state.Version != 1 || state.TotalCents != 0 {
		t.Fatalf("state at version 1: %s %v", out, err)
	}
	out, _ = mustRun(t, 0, "state", "--json", "ord-9")
	if err := json.Unmarshal([]byte(out), &state); err != nil || state.Version != 2 || state.TotalCents != 750 {
		t.Fatalf("state now: %s %v", out, err)
	}
	out, _ = mustRun(t, 0, "state", "ord-9")
	mustMatch(t, out, `^order ord-9, version 2 \(now\)\n`, `(?m)^  status\s+draft$`, `(?m)^  total\s+7\.50 USD$`, `(?m)^    sku\s+3\s+2\.50\s+7\.50$`)
}

// TestStateSemantics: an order that never existed, a version it has not
// reached and a time before it was created are errors that say so (issue
// 14, items 6 and 7); flags may follow the arguments (item 11).
func TestStateSemantics(t *testing.T) {
	srv, _, _ := natstest.Streams(t, natstest.Partitions)
	servicetest.Aggregator(t, srv.ClientURL())
	servicetest.Query(t, srv.ClientURL())
	t.Setenv("NATS_URL", srv.ClientURL())
	before := time.Now().UTC().Add(-time.Second).Format(time.RFC3339)
	mustRun(t, 0, "send", "ord-1", "CreateOrder", `{"customerId":"cust"}`)
	mustRun(t, 0, "send", "ord-1", "AddItem", `{"productId":"sku","quantity":1,"unitPriceCents":5}`)

	if _, errOut := mustRun(t, 1, "state", "no-such-order"); !strings.Contains(errOut, "no such order no-such-order") {
		t.Fatalf("state of an order that never existed: %s", errOut)
	}
	if _, errOut := mustRun(t, 1, "history", "no-such-order"); !strings.Contains(errOut, "no such order no-such-order") {
		t.Fatalf("history of an order that never existed: %s", errOut)
	}
	if _, errOut := mustRun(t, 1, "state", "ord-1", "--version", "5"); !strings.Contains(errOut, "order ord-1 is at version 2; it has no version 5") {
		t.Fatalf("state beyond the last version: %s", errOut)
	}
	if _, errOut := mustRun(t, 1, "state", "--at", "2020-01-01T00:00:00Z", "ord-1"); !strings.Contains(errOut, "it did not exist at 2020-01-01T00:00:00Z") {
		t.Fatalf("state before the order was created: %s", errOut)
	}
	if _, errOut := mustRun(t, 2, "state", "--version", "1", "--at", before, "ord-1"); !strings.Contains(errOut, "give one") {
		t.Fatalf("--version and --at: %s", errOut)
	}
	if _, errOut := mustRun(t, 2, "state", "--at", "yesterday", "ord-1"); !strings.Contains(errOut, `--at "yesterday": want an RFC 3339 time such as 2026-11-23T10:00:00Z`) ||
		strings.Contains(errOut, "2006") {
		t.Fatalf("bad --at: %s", errOut)
	}
	out, _ := mustRun(t, 0, "state", "ord-1", "--version", "1", "--json")
	var state orderState
	if err := json.Unmarshal([]byte(out), &state); err != nil || state.Version != 1 {
		t.Fatalf("flags after the argument: %s %v", out, err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if out, _ := mustRun(t, 0, "state", "--at", now, "ord-1"); !strings.Contains(out, "order ord-1, version 2 (as of "+now+")") {
		t.Fatalf("state --at now:\n%s", out)
	}
}

// TestUsageErrors: every usage or input error exits 2 with one short line
// that ends with where to look (issue 14, items 9 and 10), and --help
// always helps.
func TestUsageErrors(t *testing.T) {
	t.Setenv("NATS_URL", "nats://127.0.0.1:1") // nothing may connect
	for _, args := range [][]string{
		{"frobnicate"}, {"send", "ord-1"}, {"send", "ord-1", "Refund"}, {"send", "ord.1", "SubmitOrder"},
		{"send", "--timeout", "soon", "ord-1", "SubmitOrder"}, {"send", "ord-1", "AddItem", `{"qty":1}`},
		{"state"}, {"state", "a", "b"}, {"state", "--version", "0", "ord-1"}, {"history", "bad id"}, {"result", "x.y"},
		{"tail", "ord*"}, {"lag", "--projection", "nope"}, {"lag", "extra"}, {"checkpoints"}, {"wait", "c-1"},
		{"wait", "--projection", "order_facts", "c-1"}, {"dlq"}, {"dlq", "purge"}, {"dlq", "list", "--status", "lost"},
		{"dlq", "list", "--limit", "0"}, {"dlq", "retry", "--projection", "order_summary", "seven"}, {"dlq", "skip", "7"},
		{"rebuild"}, {"rebuild", "order_summary"}, {"streams"}, {"streams", "frobnicate"}, {"migrate", "now"},
		{"dev", "--demo-orders", "-1"}, {"dev", "extra"}, {"send", "--nope", "ord-1", "SubmitOrder"},
	} {
		code, out, errOut := orderctl(args...)
		name := "orderctl " + strings.Join(args, " ")
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		if code != 2 || out != "" || len(lines) != 1 || !regexp.MustCompile(`^orderctl( \w+)*: .*; see orderctl( \w+)* --help$`).MatchString(lines[0]) {
			t.Errorf("%s: exit %d, want 2 and one line on stderr that ends with the help to see\nstdout:\n%s\nstderr:\n%s", name, code, out, errOut)
		}
	}
	// Every problem of a command's data at once, with the fields it takes.
	_, errOut := mustRun(t, 2, "send", "ord-1", "AddItem", `{"qty":1,"productId":"a.b"}`)
	for _, want := range []string{`unknown field "qty"; AddItem takes productId, quantity, unitPriceCents`, `productId: has "."`,
		"quantity: is required", "unitPriceCents: is required"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("send with bad data does not say %q:\n%s", want, errOut)
		}
	}
	if code, _, errOut := orderctl(); code != 2 || !strings.Contains(errOut, "Usage:") {
		t.Errorf("bare orderctl: exit %d, want 2 and the help on stderr:\n%s", code, errOut)
	}
	for _, cmd := range []string{"send", "result", "history", "state", "tail", "lag", "checkpoints", "wait", "dlq list", "dlq retry", "dlq skip",
		"rebuild", "streams apply", "streams check", "migrate", "dev"} {
		args := append(strings.Fields(cmd), "--help")
		out, _ := mustRun(t, 0, args...)
		mustMatch(t, out, `Usage:\n  orderctl `+cmd+`\b`, `Examples:\n  `, `Flags:\n`)
	}
	for _, cmd := range []string{"dlq", "streams"} {
		out, _ := mustRun(t, 0, cmd, "--help")
		mustMatch(t, out, `Available Commands:`)
	}
	out, _ := mustRun(t, 0, "--version")
	mustMatch(t, out, `^orderctl \S+`)
	out, _ = mustRun(t, 0, "send", "--help")
	for _, want := range []string{"CreateOrder   customerId*", "AddItem       productId*, quantity*", "CancelOrder   reason*"} {
		if !strings.Contains(out, want) {
			t.Errorf("send --help does not list %q:\n%s", want, out)
		}
	}
}

// TestConfigurationErrors: every problem at once, by variable name, and no
// panic on a partition count of 0 (issue 14, items 1 and 5).
func TestConfigurationErrors(t *testing.T) {
	t.Setenv("JETSOURCE_PARTITIONS", "0")
	t.Setenv("JETSOURCE_REPLICAS", "2")
	t.Setenv("AGGREGATOR_LEASE_TTL", "x")
	t.Setenv("JETSOURCE_SCHEMA", "no such schema")
	_, errOut := mustRun(t, 2, "state", "ord-1")
	for _, want := range []string{`JETSOURCE_PARTITIONS="0": must be between 1 and 1024`, `JETSOURCE_REPLICAS="2": must be 1, 3 or 5`,
		`AGGREGATOR_LEASE_TTL="x": not a duration`, `JETSOURCE_SCHEMA="no such schema"`} {
		if strings.Count(errOut, want) != 1 {
			t.Errorf("the message does not say %q once:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "panic") || strings.Contains(errOut, "Streams.") {
		t.Errorf("internals in the message:\n%s", errOut)
	}
	// Help works whatever the configuration.
	mustRun(t, 0, "--help")
	mustRun(t, 0, "state", "--help")
}

// TestPartitionCountChecked: with another partition count than the
// streams', commands that address partitions refuse to run instead of
// finding nothing (issue 14, item 2); the others answer right.
func TestPartitionCountChecked(t *testing.T) {
	srv, _, _ := natstest.Streams(t, natstest.Partitions)
	servicetest.Aggregator(t, srv.ClientURL())
	servicetest.Query(t, srv.ClientURL())
	t.Setenv("NATS_URL", srv.ClientURL())
	t.Setenv("DATABASE_URL", cluster.DB(t))
	mustRun(t, 0, "send", "--id", "c-1", "ord-1", "CreateOrder", `{"customerId":"cust"}`)
	t.Setenv("JETSOURCE_PARTITIONS", "8")
	for _, args := range [][]string{{"wait", "--projection", "order_summary", "c-1"}, {"lag"}, {"checkpoints", "--projection", "order_summary"}} {
		_, errOut := mustRun(t, 2, args...)
		if !strings.Contains(errOut, "the streams were created with 16 partitions; set JETSOURCE_PARTITIONS=16") {
			t.Errorf("%s: %s", args, errOut)
		}
	}
	// Sending needs no partition count (the stream computes it), nor do
	// state and history (the query service reads the streams').
	mustRun(t, 0, "send", "ord-1", "AddItem", `{"productId":"sku","quantity":1,"unitPriceCents":5}`)
	if out, _ := mustRun(t, 0, "state", "ord-1"); !strings.Contains(out, "order ord-1, version 2 (now)") {
		t.Errorf("state:\n%s", out)
	}
	if out, _ := mustRun(t, 0, "history", "ord-1"); strings.Count(out, "\n") != 3 {
		t.Errorf("history:\n%s", out)
	}
}

// TestResultAndResend: a send that times out says the command is queued
// and how to get its outcome (issue 14, item 12); result shows it; a
// re-used --id says it returns an earlier command's outcome, and is refused
// for another order.
func TestResultAndResend(t *testing.T) {
	srv, _, _ := natstest.Streams(t, natstest.Partitions)
	t.Setenv("NATS_URL", srv.ClientURL())
	_, errOut := mustRun(t, 1, "send", "--timeout", "300ms", "--id", "c-1", "ord-1", "CreateOrder", `{"customerId":"cust"}`)
	mustMatch(t, errOut, `^orderctl send: no result for command c-1 within 300ms\. It is queued and will be handled once an aggregator runs`,
		`orderctl result c-1, or re-send it with --id c-1\n$`)
	if _, errOut := mustRun(t, 1, "result", "c-1"); !strings.Contains(errOut, "no result for command c-1: it is still queued") {
		t.Fatalf("result of a queued command: %s", errOut)
	}

	servicetest.Aggregator(t, srv.ClientURL())
	out, _ := mustRun(t, 0, "result", "--timeout", "30s", "c-1")
	mustMatch(t, out, `^command c-1 on order ord-1: accepted, the order is at version 1 `)
	out, errOut = mustRun(t, 0, "send", "--id", "c-1", "ord-1", "CreateOrder", `{"customerId":"cust"}`)
	mustMatch(t, errOut, `command c-1 was sent before; this is its outcome, and nothing was sent again`)
	mustMatch(t, out, `^command c-1 on order ord-1: accepted, the order is at version 1 `)
	if _, errOut := mustRun(t, 2, "send", "--id", "c-1", "ord-2", "SubmitOrder"); !strings.Contains(errOut, "command id c-1 was used for order ord-1 already") {
		t.Fatalf("an id re-used for another order: %s", errOut)
	}

	mustRun(t, 3, "send", "--id", "c-2", "ord-1", "CreateOrder", `{"customerId":"cust"}`)
	out, _ = mustRun(t, 3, "result", "--json", "c-2")
	var r struct {
		Status string
		Error  struct{ Code string }
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Error.Code != "already_exists" {
		t.Fatalf("result --json of a rejection: %v\n%s", err, out)
	}
}

// TestTail follows every order from now, and one order from its first
// event, until Ctrl-C.
func TestTail(t *testing.T) {
	srv, _, _ := natstest.Streams(t, natstest.Partitions)
	servicetest.Aggregator(t, srv.ClientURL())
	t.Setenv("NATS_URL", srv.ClientURL())
	mustRun(t, 0, "send", "ord-1", "CreateOrder", `{"customerId":"cust"}`)

	all := startBackground(t, "tail")
	one := startBackground(t, "tail", "--json", "ord-1")
	all.await(t, 30*time.Second, "following")
	mustRun(t, 0, "send", "ord-2", "CreateOrder", `{"customerId":"cust"}`)
	mustRun(t, 0, "send", "ord-1", "AddItem", `{"productId":"sku","quantity":1,"unitPriceCents":5}`)

	all.await(t, 30*time.Second, "ord-1  2  ItemAdded")
	one.await(t, 30*time.Second, `"type":"ItemAdded"`)
	all.stop(t)
	one.stop(t)
	mustMatch(t, all.out.String(), `^2  20\d\d-\S+Z  ord-2  1  OrderCreated  \{"customerId":"cust"`, `\n3  \S+  ord-1  2  ItemAdded  \{`)
	if lines := strings.Split(strings.TrimSpace(one.out.String()), "\n"); len(lines) != 2 || !strings.Contains(lines[0], `"type":"OrderCreated"`) {
		t.Fatalf("tail --json ord-1:\n%s", one.out.String())
	}
	mustRun(t, 2, "tail", "ord-1", "ord-2")
}

// TestSendHelpListsTheContractsFields holds send's table of command types
// and fields to the contract's types.
func TestSendHelpListsTheContractsFields(t *testing.T) {
	lines, last := map[string]string{}, ""
	for _, line := range strings.Split(commandFields, "\n") {
		switch f := strings.Fields(line); {
		case strings.HasPrefix(line, "   ") && last != "": // continued
			lines[last] += "," + line
		case strings.HasPrefix(line, "  ") && len(f) > 1:
			last, lines[f[0]] = f[0], line
		default:
			last = ""
		}
	}
	for _, typ := range contract.CommandTypes() {
		cmd, err := contract.ParseCommand(typ, nil)
		if err != nil {
			t.Fatal(err)
		}
		v := reflect.TypeOf(cmd)
		var want []string
		for i := range v.NumField() {
			name, _, _ := strings.Cut(v.Field(i).Tag.Get("json"), ",")
			want = append(want, name)
		}
		line, ok := lines[typ]
		if !ok {
			t.Errorf("send --help does not list %s", typ)
			continue
		}
		got := regexp.MustCompile(`\b([a-z][A-Za-z]*)\*?(?: \(|,|$)`).FindAllStringSubmatch(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), typ)), -1)
		var names []string
		for _, m := range got {
			names = append(names, m[1])
		}
		if len(want) == 0 {
			want = []string{"none"}
		}
		if strings.Join(names, " ") != strings.Join(want, " ") {
			t.Errorf("send --help lists %s with %v, the contract has %v", typ, names, want)
		}
	}
	if len(lines) != len(contract.CommandTypes()) {
		t.Errorf("send --help lists %d command types, the contract has %d", len(lines), len(contract.CommandTypes()))
	}
}

// TestFailuresSayWhatToDo: a failure (exit 1) is one message that ends
// with what to do.
func TestFailuresSayWhatToDo(t *testing.T) {
	t.Setenv("NATS_URL", "nats://127.0.0.1:1")
	if _, errOut := mustRun(t, 1, "send", "ord-1", "SubmitOrder"); !strings.Contains(errOut, "is NATS running there? Set NATS_URL to its address") {
		t.Errorf("NATS unreachable: %s", errOut)
	}
	srv := natstest.Server(t) // no streams, no services
	t.Setenv("NATS_URL", srv.ClientURL())
	const streamsApply = "; create the streams with orderctl streams apply (the dev stack creates them)"
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"send", "ord-1", "SubmitOrder"}, streamsApply},
		{[]string{"send", "--id", "c-1", "ord-1", "SubmitOrder"}, streamsApply},
		{[]string{"result", "c-1"}, streamsApply},
		{[]string{"tail"}, streamsApply},
		{[]string{"state", "ord-1"}, "; start the query service (./bin/query; make run starts one)"},
		{[]string{"history", "ord-1"}, "; start the query service (./bin/query; make run starts one)"},
	} {
		if _, errOut := mustRun(t, 1, tt.args...); !strings.HasSuffix(errOut, tt.want+"\n") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("orderctl %s: %s", strings.Join(tt.args, " "), errOut)
		}
	}
}
