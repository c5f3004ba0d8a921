// Package natstest starts embedded NATS servers for tests.
package natstest

import (
	"context"
	"fmt"
	"net"
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

// Cluster starts an n-node JetStream cluster in this process and returns its
// servers; they stop when the test ends. Stream placement needs a meta
// leader: Streams-like setup should retry until the cluster is ready.
func Cluster(tb testing.TB, n int) []*natsserver.Server {
	tb.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = FreePort(tb)
	}
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	servers := make([]*natsserver.Server, n)
	for i := range n {
		s, err := natsserver.Start(natsserver.Config{
			StoreDir:    tb.TempDir(),
			ServerName:  fmt.Sprintf("n%d", i),
			ClusterName: "jetsource-test",
			ClusterPort: ports[i],
			Routes:      routes,
		})
		if err != nil {
			tb.Fatalf("start cluster node %d: %v", i, err)
		}
		servers[i] = s
		tb.Cleanup(func() {
			if s.Running() {
				s.Shutdown()
			}
		})
	}
	return servers
}

// URLs is the comma-separated client URLs of servers, as NATS_URL takes it.
func URLs(servers []*natsserver.Server) string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}

// FreePort returns a local TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
