// Package natsserver runs an embedded NATS server with JetStream, for tests
// and the all-in-one dev stack.
package natsserver

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config is one embedded server.
type Config struct {
	// ConfigFile, if set, is a nats-server configuration file (users,
	// permissions, TLS) loaded first; the fields below override its
	// listener, store and cluster settings.
	ConfigFile string
	// StoreDir holds JetStream data; a temporary directory if empty, removed
	// by Shutdown.
	StoreDir string
	// Host and Port to listen on; Port 0 picks a free port.
	Host string
	Port int
	// SyncAlways fsyncs every write before acknowledging it. Off, the
	// server flushes every two minutes, and a machine crash can lose
	// acknowledged writes.
	SyncAlways bool
	// ServerName names the server; needed in a cluster.
	ServerName string
	// Cluster joins a cluster when ClusterName is set.
	ClusterName string
	ClusterPort int
	Routes      []string
}

// Server is a running embedded server.
type Server struct {
	*server.Server
	tempDir string
}

// Start starts a server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	s := &Server{}
	dir := cfg.StoreDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "jetsource-nats-")
		if err != nil {
			return nil, fmt.Errorf("create store dir: %w", err)
		}
		dir, s.tempDir = tmp, tmp
	}
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{}
	if cfg.ConfigFile != "" {
		loaded, err := server.ProcessConfigFile(cfg.ConfigFile)
		if err != nil {
			s.removeTemp()
			return nil, fmt.Errorf("load %s: %w", cfg.ConfigFile, err)
		}
		opts = loaded
	}
	opts.ServerName, opts.Host, opts.Port = cfg.ServerName, host, port
	opts.JetStream, opts.StoreDir, opts.SyncAlways = true, dir, cfg.SyncAlways
	opts.NoSigs, opts.NoLog = true, true
	if cfg.ClusterName != "" {
		opts.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: host, Port: cfg.ClusterPort}
		for _, r := range cfg.Routes {
			opts.Routes = append(opts.Routes, server.RoutesFromStr(r)...)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		s.removeTemp()
		return nil, fmt.Errorf("create nats server: %w", err)
	}
	s.Server = ns
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		s.removeTemp()
		return nil, errors.New("nats server did not become ready within 10s")
	}
	return s, nil
}

// Shutdown stops the server, waits for it, and removes a temporary store.
func (s *Server) Shutdown() {
	s.Server.Shutdown()
	s.Server.WaitForShutdown()
	s.removeTemp()
}

func (s *Server) removeTemp() {
	if s.tempDir != "" {
		os.RemoveAll(s.tempDir)
	}
}
