package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
)

// natsCluster is three nats-server processes, built from the module and
// configured as deploy/nats/jetsource.conf configures production: a
// JetStream cluster that fsyncs every write before acknowledging it
// (sync_interval: always). A test kills nodes with SIGKILL and starts them
// again on their data, or on an empty store (a replaced disk).
type natsCluster struct {
	t     *testing.T
	nodes []*natsNode
}

// natsNode is one server: its ports and store stay the same across
// restarts.
type natsNode struct {
	name        string
	port        int
	clusterPort int
	storeDir    string
	confFile    string
	proc        *process
}

// nodeConf mirrors deploy/nats/jetsource.conf with local addresses.
const nodeConf = `server_name: %s
listen: 127.0.0.1:%d
max_payload: 1MB
jetstream {
  store_dir: %q
  sync_interval: always
}
cluster {
  name: jetsource
  listen: 127.0.0.1:%d
  routes: [%s]
}
`

func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t}
	dir := t.TempDir()
	var routes []string
	for i := range 3 {
		n := &natsNode{name: fmt.Sprintf("n%d", i), port: natstest.StablePort(t), clusterPort: natstest.StablePort(t),
			storeDir: filepath.Join(dir, fmt.Sprintf("n%d", i))}
		n.confFile = filepath.Join(dir, n.name+".conf")
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", n.clusterPort))
		c.nodes = append(c.nodes, n)
	}
	for i, n := range c.nodes {
		conf := fmt.Sprintf(nodeConf, n.name, n.port, n.storeDir, n.clusterPort, strings.Join(routes, ", "))
		if err := os.WriteFile(n.confFile, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		c.start(i)
	}
	return c
}

// url lists every node, as NATS_URL takes a cluster.
func (c *natsCluster) url() string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", n.port)
	}
	return strings.Join(urls, ",")
}

// start runs node i on its configuration and store, and waits until it
// accepts client connections.
func (c *natsCluster) start(i int) {
	c.t.Helper()
	n := c.nodes[i]
	n.proc = startWith(c.t, "nats-server", []string{"-c", n.confFile})
	addr := fmt.Sprintf("127.0.0.1:%d", n.port)
	eventually.Holds(c.t, 30*time.Second, n.name+" to accept connections", func() (bool, string) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	})
}

// kill sends node i SIGKILL: nothing is flushed or closed.
func (c *natsCluster) kill(i int) { c.nodes[i].proc.kill() }

// replaceDisk deletes the store of node i, which must be stopped: it
// comes back with no data at all, as on a new disk.
func (c *natsCluster) replaceDisk(i int) {
	c.t.Helper()
	if err := os.RemoveAll(c.nodes[i].storeDir); err != nil {
		c.t.Fatal(err)
	}
}

// index returns the node named name, -1 if none is.
func (c *natsCluster) index(name string) int {
	for i, n := range c.nodes {
		if n.name == name {
			return i
		}
	}
	return -1
}

// healthy reports, for each stream, whether it has a leader and every
// other node is a current replica: a node can then be killed without
// costing any stream its quorum.
func (c *natsCluster) healthy(ctx context.Context, js jetstream.JetStream) error {
	names := js.StreamNames(ctx)
	n := 0
	for name := range names.Name() {
		n++
		s, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		cl := info.Cluster
		if cl == nil || cl.Leader == "" {
			return fmt.Errorf("stream %s has no leader", name)
		}
		if len(cl.Replicas) != len(c.nodes)-1 {
			return fmt.Errorf("stream %s has %d replicas besides its leader", name, len(cl.Replicas))
		}
		for _, r := range cl.Replicas {
			if !r.Current || r.Offline {
				return fmt.Errorf("stream %s: replica %s is not current", name, r.Name)
			}
		}
	}
	if err := names.Err(); err != nil {
		return err
	}
	if n == 0 {
		return errors.New("no streams")
	}
	return nil
}

// waitHealthy waits until every stream has all its replicas current.
func (c *natsCluster) waitHealthy(js jetstream.JetStream, within time.Duration) {
	c.t.Helper()
	retry(c.t, within, "every stream with a leader and current replicas", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return c.healthy(ctx, js)
	})
}

// makeLeader moves the leadership of stream to node i.
func (c *natsCluster) makeLeader(nc *nats.Conn, stream string, i int) {
	c.t.Helper()
	want := c.nodes[i].name
	js, _ := jetstream.New(nc)
	retry(c.t, time.Minute, "make "+want+" the leader of "+stream, func() error {
		if streamLeader(c.t, js, stream) == want {
			return nil
		}
		req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, want)
		_, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(req), 5*time.Second)
		if err != nil {
			return err
		}
		return fmt.Errorf("%s is not the leader yet", want)
	})
}
