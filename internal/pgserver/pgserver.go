// Package pgserver runs a throwaway PostgreSQL server from the locally
// installed binaries, so tests and the dev stack need no Docker.
package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Config says where and how to run the server.
type Config struct {
	// Dir is the data directory. A cluster already in it is reused, so a dev
	// stack keeps its data across restarts, and a server that a dead process
	// left running in it is stopped first. When running as root, Dir is
	// handed to the OS user postgres, which must be able to reach it. Empty
	// means a temporary directory that Stop removes.
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Install runs Install when the binaries are missing.
	Install bool
	// Log receives the output of initdb and pg_ctl; nil discards it. The
	// server itself logs to server.log in the data directory.
	Log io.Writer
	// Durable keeps PostgreSQL's durability settings (fsync, synchronous
	// commit, full page writes), which are off by default: a benchmark
	// comparing stores at equal durability needs them on.
	Durable bool
}

// Server is a running PostgreSQL cluster whose superuser postgres may connect
// from 127.0.0.1 without a password.
type Server struct {
	bin     Binaries
	dir     string
	tempDir string // removed by Stop; empty when the caller owns dir
	port    int
	osUser  string // runs initdb and pg_ctl via runuser; empty: this process's user
	log     io.Writer
	durable bool

	stopOnce sync.Once
	stopErr  error
}

// Start initializes the cluster in cfg.Dir unless it already holds one, and
// starts the server, unless cfg.Durable, with durability turned off, which is
// fine for data that can be thrown away and makes tests fast.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	bin, err := Find()
	if errors.Is(err, ErrNotInstalled) && cfg.Install {
		if err = Install(ctx); err == nil {
			bin, err = Find()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s := &Server{bin: bin, port: cfg.Port, log: cfg.Log, durable: cfg.Durable}
	// Postgres refuses to run as root.
	if os.Geteuid() == 0 {
		s.osUser = "postgres"
	}
	if err := s.prepareDir(cfg.Dir); err != nil {
		if s.tempDir != "" {
			os.RemoveAll(s.tempDir)
		}
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	if err := s.start(ctx); err != nil {
		// The server may be up. Only in a temp dir is it surely ours to
		// stop; in a caller's dir, the next Start takes it over.
		if s.tempDir != "" {
			s.Stop()
		}
		return nil, fmt.Errorf("start postgres in %s: %w", s.dir, err)
	}
	return s, nil
}

// prepareDir creates the data directory and, when running as root, hands it
// to the OS user postgres. Only a temp dir's parent is handed over too: the
// parents of a given dir belong to the caller.
func (s *Server) prepareDir(dir string) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "pgserver-")
		if err != nil {
			return err
		}
		s.tempDir = tmp
		dir = filepath.Join(tmp, "data")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	s.dir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if s.osUser == "" {
		return nil
	}
	u, err := user.Lookup(s.osUser)
	if err != nil {
		return fmt.Errorf("running as root, so postgres must run as OS user %s: %w", s.osUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	root := dir
	if s.tempDir != "" {
		root = s.tempDir
	}
	return filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

func (s *Server) start(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.dir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		if err := s.run(ctx, s.bin.InitDB, "-D", s.dir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := s.reclaim(ctx); err != nil {
		return err
	}
	logFile := filepath.Join(s.dir, "server.log")
	pickPort := s.port == 0
	for deadline := time.Now().Add(10 * time.Second); ; {
		if pickPort {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return fmt.Errorf("pick a free port: %w", err)
			}
			s.port = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
		// pg_ctl hands -o to /bin/sh, hence the quoting. The socket goes
		// into the data dir because postgres can write there, unlike
		// /var/run/postgresql on a machine where the package never ran.
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200", s.port, shellQuote(s.dir))
		if !s.durable {
			opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
		}
		var logged int64
		if fi, err := os.Stat(logFile); err == nil {
			logged = fi.Size()
		}
		err := s.run(ctx, s.bin.PGCtl, "-D", s.dir, "-l", logFile, "-w", "-o", opts, "start")
		if err == nil {
			return s.waitReady(ctx)
		}
		log, _ := os.ReadFile(logFile)
		if int64(len(log)) >= logged {
			log = log[logged:]
		}
		// Right after a crash, postgres refuses to start until the dead
		// server is reaped and its children, which hold its shared memory,
		// are gone. And a picked port may be taken before postgres binds it.
		retry := bytes.Contains(log, []byte(`lock file "postmaster.pid" already exists`)) ||
			bytes.Contains(log, []byte("pre-existing shared memory block")) ||
			pickPort && bytes.Contains(log, []byte("could not bind"))
		if !retry || time.Now().After(deadline) {
			return fmt.Errorf("%w; server.log:\n%s", err, tail(log))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reclaim stops a server left running in a reused dir because its owner died
// before calling Stop. A postmaster.pid left by a crash stays: postgres
// detects that it is stale, and it holds what postgres needs to tell
// whether the dead server's children still use the data.
func (s *Server) reclaim(ctx context.Context) error {
	b, err := os.ReadFile(filepath.Join(s.dir, "postmaster.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	// Line 4 holds the port, line 5 the socket directory.
	if lines := strings.Split(string(b), "\n"); len(lines) >= 5 && s.serves(ctx, lines[4], lines[3]) {
		return s.run(ctx, s.bin.PGCtl, "-D", s.dir, "-m", "fast", "-w", "stop")
	}
	return nil
}

// serves reports whether a server answers on the socket and runs from s.dir.
func (s *Server) serves(ctx context.Context, socketDir, port string) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig("postgres://postgres@/postgres?sslmode=disable")
	if err != nil {
		return false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return false
	}
	cfg.Host, cfg.Port, cfg.Fallbacks = socketDir, uint16(p), nil
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false
	}
	defer conn.Close(ctx)
	var dataDir string
	if err := conn.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dataDir); err != nil {
		return false
	}
	a, errA := os.Stat(dataDir)
	b, errB := os.Stat(s.dir)
	return errA == nil && errB == nil && os.SameFile(a, b)
}

// waitReady waits until the server accepts connections. pg_ctl -w has
// already waited for that, so this rarely loops; the bound keeps a server
// that died right after starting from hanging a caller without a deadline.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for connections: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// run runs a PostgreSQL program as s.osUser, copying its output to s.log and
// into the error.
func (s *Server) run(ctx context.Context, name string, args ...string) error {
	if s.osUser != "" {
		args = append([]string{"-u", s.osUser, "--", name}, args...)
		name = "runuser"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	// A working directory postgres can enter, unlike /root.
	cmd.Dir = s.dir
	var out bytes.Buffer
	w := io.Writer(&out)
	if s.log != nil {
		w = io.MultiWriter(&out, s.log)
	}
	cmd.Stdout, cmd.Stderr = w, w
	// If ctx kills runuser, pg_ctl lives on holding the output pipe.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w; output:\n%s", strings.Join(cmd.Args, " "), err, tail(out.Bytes()))
	}
	return nil
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// URL returns the URL of database db as superuser postgres.
func (s *Server) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port returns the TCP port the server listens on at 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Dir returns the absolute path of the data directory.
func (s *Server) Dir() string { return s.dir }

// CreateDatabase creates database name and returns its URL.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.URL(name), nil
}

// Stop stops the server and removes the data directory if Start created it.
// Calls after the first return the first one's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Immediate mode skips the shutdown checkpoint, which throwaway data
		// does not need. A caller's dir gets one: with synchronous_commit
		// off, the last commits may still sit in the WAL buffers, and
		// immediate mode would lose them.
		mode := "fast"
		if s.tempDir != "" {
			mode = "immediate"
		}
		err := s.run(ctx, s.bin.PGCtl, "-D", s.dir, "-m", mode, "-w", "stop")
		if s.tempDir != "" {
			err = errors.Join(err, os.RemoveAll(s.tempDir))
		}
		if err != nil {
			s.stopErr = fmt.Errorf("stop postgres in %s: %w", s.dir, err)
		}
	})
	return s.stopErr
}

// Kill crashes the server: SIGKILL to the postmaster and then to every
// process it started, so nothing is flushed or shut down. The data
// directory stays; Start on it runs crash recovery.
func (s *Server) Kill() error {
	b, err := os.ReadFile(filepath.Join(s.dir, "postmaster.pid"))
	if err != nil {
		return fmt.Errorf("kill postgres in %s: %w", s.dir, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return fmt.Errorf("kill postgres in %s: postmaster.pid: %w", s.dir, err)
	}
	children, err := childProcesses(pid)
	if err != nil {
		return fmt.Errorf("kill postgres in %s: %w", s.dir, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill postgres in %s: %w", s.dir, err)
	}
	for _, c := range children {
		// A child may have exited on its own by now.
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	return nil
}

// childProcesses lists the processes whose parent is pid, from /proc.
func childProcesses(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out, nil
}
