package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/jetsource/jetsource/internal/natstest"
)

// environ is a lookup over a fixed environment.
func environ(vars ...string) func(string) (string, bool) {
	m := map[string]string{}
	for _, kv := range vars {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// syncBuffer is an output that NATS callbacks may still write after the
// aggregator returned.
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

func runAggregator(t *testing.T, args []string, env ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a binary that starts stops at once
	code = run(ctx, args, environ(env...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpListsTheEnvironmentAndStartsNothing(t *testing.T) {
	// NATS_URL points nowhere: help must not connect.
	code, out, errOut := runAggregator(t, []string{"--help"}, "NATS_URL=nats://127.0.0.1:1")
	if code != 0 || errOut != "" {
		t.Fatalf("--help: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{`Usage:\n  aggregator \[--help\] \[--version\]`, `NATS_URL\s+nats://127\.0\.0\.1:4222\s`,
		`JETSOURCE_PARTITIONS\s+16\s`, `AGGREGATOR_LEASE_TTL\s+5s\s`, `JETSOURCE_RESULTS_MAX_AGE\s+24h\s`, `LOG_LEVEL\s+info\s`, `-version`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("--help does not show %s:\n%s", want, out)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runAggregator(t, []string{"--version"})
	if code != 0 || !strings.HasPrefix(out, "aggregator ") || !strings.Contains(out, "go1.") {
		t.Fatalf("--version: exit %d, %q", code, out)
	}
}

func TestBadUsageExits2(t *testing.T) {
	for _, args := range [][]string{{"--nope"}, {"extra"}} {
		if code, _, errOut := runAggregator(t, args); code != 2 || !strings.Contains(errOut, "aggregator --help") {
			t.Errorf("%q: exit %d, %s", args, code, errOut)
		}
	}
}

// TestConfigurationErrorsNameEveryVariable is issue 14's item 5: every
// problem in one message, by variable, in the user's words, each once.
func TestConfigurationErrorsNameEveryVariable(t *testing.T) {
	code, _, errOut := runAggregator(t, nil, "JETSOURCE_PARTITIONS=abc", "AGGREGATOR_LEASE_TTL=x", "LOG_LEVEL=verbose",
		"JETSOURCE_REPLICAS=2", "AGGREGATOR_ACK_WAIT=10ms", "AGGREGATOR_MAX_RETRIES=-1", "METRICS_ADDR=9090", "NATS_TLS_KEY=/nonexistent")
	if code != 2 {
		t.Fatalf("exit %d; want 2\n%s", code, errOut)
	}
	want := []string{
		`JETSOURCE_PARTITIONS="abc": not a whole number`,
		`AGGREGATOR_LEASE_TTL="x": not a duration such as 500ms, 5s or 1m30s`,
		`LOG_LEVEL="verbose": must be debug, info, warn or error`,
		`JETSOURCE_REPLICAS="2": must be 1, 3 or 5`,
		`AGGREGATOR_ACK_WAIT="10ms": must be at least 1s`,
		`AGGREGATOR_MAX_RETRIES="-1": must not be negative (0 switches it off)`,
		`METRICS_ADDR="9090": must be host:port`,
		`NATS_TLS_KEY="/nonexistent": cannot be read: no such file or directory`,
		`NATS_TLS_CERT is unset: must be set with the client key`,
	}
	for _, w := range want {
		if strings.Count(errOut, w) != 1 {
			t.Errorf("the message does not say %q exactly once:\n%s", w, errOut)
		}
	}
	if lines := strings.Count(errOut, "\n  "); lines != len(want) {
		t.Errorf("%d problems reported, want %d:\n%s", lines, len(want), errOut)
	}
	for _, internal := range []string{"Aggregator.", "Streams.", "strconv", "envconfig"} {
		if strings.Contains(errOut, internal) {
			t.Errorf("the message shows internals (%s):\n%s", internal, errOut)
		}
	}
}

func TestZeroSwitchesCountsOff(t *testing.T) {
	srv, _, _ := natstest.Streams(t, natstest.Partitions)
	code, _, errOut := runAggregator(t, nil, "NATS_URL="+srv.ClientURL(), "METRICS_ADDR=", "AGGREGATOR_SNAPSHOT_EVERY=0",
		"AGGREGATOR_CACHE_SIZE=0", "AGGREGATOR_MAX_RETRIES=0")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
}
