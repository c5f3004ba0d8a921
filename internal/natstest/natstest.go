// Package natstest starts embedded NATS servers for tests.
package natstest

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natsserver"
)

// Partitions is the partition count tests use unless they need another.
const Partitions = contract.DefaultPartitions

// Topology is the default topology (R1, default limits and lease TTL, as
// the binaries' defaults expect) with the given partition count.
func Topology(partitions int) es.Topology {
	t := es.DefaultTopology()
	t.Partitions = partitions
	return t
}

// Server starts an embedded JetStream server that stops when the test ends.
func Server(tb testing.TB) *natsserver.Server {
	tb.Helper()
	s, err := natsserver.Start(natsserver.Config{StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("start nats: %v", err)
	}
	tb.Cleanup(s.Shutdown)
	return s
}

// Connect opens a connection to s that closes when the test ends.
func Connect(tb testing.TB, s *natsserver.Server) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		tb.Fatalf("connect to nats: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// Streams starts a server, creates the JetStream streams with the given
// partition count and returns a connection to it.
func Streams(tb testing.TB, partitions int) (*natsserver.Server, *nats.Conn, jetstream.JetStream) {
	tb.Helper()
	s := Server(tb)
	nc, js := Connect(tb, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := es.Setup(ctx, js, Topology(partitions)); err != nil {
		tb.Fatalf("set up streams: %v", err)
	}
	return s, nc, js
}

// StablePort returns a local TCP port that was free a moment ago, for a
// server that must come back on the same port after it is killed. A port
// from the kernel's ephemeral range could be given to any process binding
// port 0 (another test's server, a client's socket) while its server is
// down; this one lies below that range.
func StablePort(tb testing.TB) int {
	tb.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	from := max(1024, low-12000)
	for range 100 {
		port := from + rand.IntN(low-from)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	tb.Fatalf("no free port between %d and %d", from, low)
	return 0
}
