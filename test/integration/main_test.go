// Package integration holds black-box tests that run the JetSource binaries
// as processes against an embedded NATS server and a real PostgreSQL, and
// kill them.
package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/jetsource/jetsource/internal/pgtest"
)

var (
	// binDir holds the binaries built once for the package's tests.
	binDir string
	// postgres is the package's PostgreSQL server; each test takes its own
	// database with postgres.DB(t).
	postgres *pgtest.Cluster
)

func TestMain(m *testing.M) {
	// The test binary started again as a pinned consumer client (see
	// TestPinnedClientFrozenWithMessagesInHand).
	if url := os.Getenv(pinnedClientEnv); url != "" {
		os.Exit(pinnedClientMain(url))
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "jetsource-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	// nats-server itself too, for the tests that crash real server
	// processes (its module's root package is its main package).
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "../../cmd/...", "github.com/nats-io/nats-server/v2")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		return 1
	}
	c, stop, err := pgtest.StartCluster()
	if err != nil {
		fmt.Fprintln(os.Stderr, "postgres:", err)
		return 1
	}
	defer stop()
	postgres = c
	return m.Run()
}
