package main

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetsource/jetsource/internal/workload"
)

// startDev runs orderctl dev in the background.
func startDev(t *testing.T, args ...string) *background {
	t.Helper()
	return startBackground(t, append([]string{"dev"}, args...)...)
}

// ready waits until the stack says how to talk to it, and returns its
// output so far.
func ready(t *testing.T, dev *background) string {
	t.Helper()
	dev.await(t, 2*time.Minute, "Press Ctrl-C to stop")
	return dev.out.String()
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

// TestDevStack runs the dev stack with a small demo on a local Postgres,
// talks to it as its instructions say, stops it, runs it again on the same
// data, and once more with --reset.
func TestDevStack(t *testing.T) {
	data := devDataDir(t)
	t.Setenv("DATABASE_URL", "")
	cmds := workload.Waves("x", 20)
	today := time.Now().UTC().Format(time.DateOnly)

	dev := startDev(t, "--data", data, "--nats-port", "0", "--pg-port", "0", "--demo-orders", "20")
	out := ready(t, dev)
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
	// Each service serves its metrics where the stack says.
	for _, url := range regexp.MustCompile(`http://127\.0\.0\.1:\d+/metrics`).FindAllString(out, -1) {
		res, err := http.Get(url)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %v %v", url, res, err)
		}
		res.Body.Close()
	}
	if n := strings.Count(out, "/metrics"); n != 5 {
		t.Fatalf("%d metrics endpoints, want the aggregator's, three projectors' and the query service's:\n%s", n, out)
	}

	// The printed commands work as printed, also pasted a second time
	// (issue 14, item 14).
	dbURL := regexp.MustCompile(`export DATABASE_URL='(\S+)'`).FindStringSubmatch(out)[1]
	script := printedCommands(t, out)
	for range 2 {
		mustMatch(t, runScript(t, script),
			`(?m)^command cmd-\w+ on order ord-\d+N?: accepted, the order is at version 1 `,
			`(?m)^command add-ord-\d+N? on order ord-\d+N?: accepted, the order is at version 2 `,
			`(?m)^order_summary has projected command add-ord-`,
			`(?m)^  total\s+39\.98 EUR$`,
			`(?m)^VERSION\s+TIME\s+TYPE\s+DATA`,
			`(?m)^order_summary\s+0\s+0\.0\s+0 of 16`)
	}

	// So do the README's, in a shell where the printed variables are
	// exported (the README's assume make run's default ports).
	natsURL := regexp.MustCompile(`export NATS_URL=(\S+)`).FindStringSubmatch(out)[1]
	readme := "export NATS_URL=" + natsURL + "\nexport DATABASE_URL='" + dbURL + "'\n" + readmeCommands(t)
	for range 2 {
		mustMatch(t, runScript(t, readme),
			`(?m)^order ord-\d+N?, version 1 \(as of 20\d\d-`,
			`(?m)^order_summary has projected command submit-ord-`,
			`(?m)^rebuilt order_summary: `)
	}

	// A second stack on the same data is refused.
	code, _, errOut := orderctl("dev", "--data", data, "--nats-port", "0", "--pg-port", "0")
	if code != 1 || !strings.Contains(errOut, "another orderctl dev") {
		t.Fatalf("second stack on the same data: exit %d, %s", code, errOut)
	}

	dev.stop(t)
	mustMatch(t, dev.out.String(), `aggregator, projectors and query stopped\n  Postgres stopped\n  NATS stopped\n$`)
	// Every projector's log line names its projection (issue 14, item 13).
	logs, err := os.ReadFile(filepath.Join(data, "jetsource.log"))
	if err != nil {
		t.Fatal(err)
	}
	acquired := 0
	for _, line := range strings.Split(string(logs), "\n") {
		if strings.Contains(line, `"msg":"partition acquired"`) {
			acquired++
			if !strings.Contains(line, `"service":"aggregator"`) && !regexp.MustCompile(`"projection":"(order_summary|order_history|sales_daily)"`).MatchString(line) {
				t.Fatalf("a log line names neither the aggregator nor the projection: %s", line)
			}
		}
	}
	if acquired < 4*16 {
		t.Fatalf("%d partitions acquired in the log, want the aggregator's and three projectors' 16 each", acquired)
	}

	// The next run finds the orders of the last one (the demo's, and the
	// four that the printed and the README's commands created), also in
	// the shell the instructions had DATABASE_URL exported in, naming the
	// stack's own Postgres, stopped by then (issue 14, item 8).
	t.Setenv("DATABASE_URL", dbURL)
	dev = startDev(t, "--data", data, "--nats-port", "0", "--pg-port", "0", "--demo-orders", "0")
	mustMatch(t, ready(t, dev), `kept from the last run`, `; `+strconv.Itoa(len(cmds)+9)+` events stored`,
		`Postgres\s+postgres://\S+, data in \S+ \(DATABASE_URL names it, as an earlier run printed\)`,
		`Orders by status \(order_summary\): 24 orders: delivered 16, .*draft 2`, `Orders by status .*submitted 2`)
	dev.stop(t)
	t.Setenv("DATABASE_URL", "")

	dev = startDev(t, "--data", data, "--nats-port", "0", "--pg-port", "0", "--demo-orders", "0", "--reset")
	out = ready(t, dev)
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
}

// printedCommands returns the commands orderctl dev printed for the user,
// as a shell script, without tail, which runs until Ctrl-C, and without
// psql where it is not installed.
func printedCommands(t *testing.T, out string) string {
	t.Helper()
	block := regexp.MustCompile(`(?s)\n(  export NATS_URL=.*?)\n\n`).FindStringSubmatch(out)
	if block == nil {
		t.Fatalf("no commands printed:\n%s", out)
	}
	var lines []string
	for _, line := range strings.Split(block[1], "\n") {
		line = strings.TrimSpace(line)
		_, psqlErr := exec.LookPath("psql")
		switch {
		case strings.HasPrefix(line, "./bin/orderctl tail"):
		case strings.HasPrefix(line, "psql") && psqlErr != nil:
			t.Logf("psql is not installed; not running %s", line)
		default:
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\n")
}

// readmeCommands returns the shell commands of the README's section on
// orderctl as a script, without make build and tail.
func readmeCommands(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := regexp.MustCompile(`(?s)\n## orderctl and the Go client\n(.*?)\n## `).FindSubmatch(readme)
	if section == nil {
		t.Fatal("README has no section on orderctl")
	}
	var lines []string
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllSubmatch(section[1], -1) {
		for _, line := range strings.Split(strings.TrimSpace(string(block[1])), "\n") {
			if line != "make build" && !strings.HasPrefix(line, "./bin/orderctl tail") {
				lines = append(lines, line)
			}
		}
	}
	if len(lines) < 15 {
		t.Fatalf("README's orderctl commands: only %d lines", len(lines))
	}
	return strings.Join(lines, "\n")
}

// runScript runs script in bash, as a user pasting it into a terminal at
// the repository's root would (with bin/orderctl), stopping at the first
// command that fails, and returns its output.
func runScript(t *testing.T, script string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(binary, filepath.Join(root, "bin", "orderctl")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-e", "-c", script)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the printed commands failed: %v\n%s\noutput:\n%s", err, script, out)
	}
	return string(out)
}
