// Package integration holds black-box tests that run the JetSource binaries
// as processes against an embedded NATS server and a real PostgreSQL, and
// kill them.
//
// The tests run two at a time (t.Parallel; go test's -parallel defaults to the
// number of CPUs): each has servers of its own (NATS, or a cluster of
// nats-server processes; a database of the shared PostgreSQL, or a
// PostgreSQL of its own) on random ports. Run alone, before the others:
// the tests that set environment variables (startAuthNATS), and the three
// tests on a three-node cluster with fsync before every ack
// (TestClusterLeaderFailover, TestNATSNodeKills, TestNATSNodeDiskReplaced),
// which starved each other's servers of CPU and disk when two ran at once
// (under two CI runs side by side, a cluster accepted no append for a
// minute before any fault).
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
	// processes (its module's root package is its main package). Linked as
	// deploy/Dockerfile links them, without symbol table and DWARF, and
	// built while PostgreSQL starts.
	build := exec.Command("go", "build", "-ldflags=-s -w", "-o", dir+string(filepath.Separator), "../../cmd/...", "github.com/nats-io/nats-server/v2")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		return 1
	}
	c, stop, pgErr := pgtest.StartCluster()
	if pgErr == nil {
		defer stop()
	}
	if err := build.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		return 1
	}
	if pgErr != nil {
		fmt.Fprintln(os.Stderr, "postgres:", pgErr)
		return 1
	}
	postgres = c
	return m.Run()
}
