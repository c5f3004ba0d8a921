// Package node_test runs the Node.js client's tests (node --test) against a
// real NATS server with the JetSource streams and a running aggregator.
// node and npm come from PATH, or from Debian's packages when they are
// missing and the tests run as root; npm ci installs the locked packages.
package node_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/nodejs"
	"github.com/jetsource/jetsource/internal/servicetest"
)

func TestNodeClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := nodejs.Install(ctx)
	if err != nil {
		t.Fatal(err)
	}
	npm := exec.CommandContext(ctx, bin.NPM, "ci", "--no-audit", "--no-fund", "--prefer-offline")
	if out, err := npm.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}

	srv, _, _ := natstest.Streams(t, natstest.Partitions)
	servicetest.Aggregator(t, srv.ClientURL())

	files, err := filepath.Glob(filepath.Join("test", "*.test.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files in clients/node/test (%v)", err)
	}
	node := exec.CommandContext(ctx, bin.Node, append([]string{"--test"}, files...)...)
	node.Env = append(os.Environ(), "NATS_URL="+srv.ClientURL())
	out, err := node.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("node --test: %v", err)
	}
}
