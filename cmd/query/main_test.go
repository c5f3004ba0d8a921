package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
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

func runQuery(t *testing.T, args []string, env ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a binary that starts stops at once
	code = run(ctx, args, environ(env...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpListsTheEnvironmentAndStartsNothing(t *testing.T) {
	// NATS_URL points nowhere: help must not connect.
	code, out, errOut := runQuery(t, []string{"--help"}, "NATS_URL=nats://127.0.0.1:1")
	if code != 0 || errOut != "" {
		t.Fatalf("--help: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{`Usage:\n  query \[--help\] \[--version\]`, `orders-query`, `JETSOURCE_PARTITIONS\s+16\s`,
		`QUERY_TIMEOUT\s+5s\s`, `METRICS_ADDR\s+:9090\s`, `NATS_INBOX_PREFIX`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("--help does not show %s:\n%s", want, out)
		}
	}
}

func TestBadConfigurationNamesEveryVariable(t *testing.T) {
	code, _, errOut := runQuery(t, nil, "JETSOURCE_PARTITIONS=0", "QUERY_TIMEOUT=-1s", "METRICS_ADDR=nope")
	if code != 2 {
		t.Fatalf("exit %d, want 2:\n%s", code, errOut)
	}
	for _, name := range []string{"JETSOURCE_PARTITIONS", "QUERY_TIMEOUT", "METRICS_ADDR"} {
		if !strings.Contains(errOut, name) {
			t.Errorf("the error does not name %s:\n%s", name, errOut)
		}
	}
}
