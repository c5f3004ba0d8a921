package devstack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jetsource/jetsource/internal/natsserver"
	"github.com/jetsource/jetsource/internal/pgserver"
)

// lock keeps a second dev stack off the same data: two NATS servers on one
// store would corrupt it, and starting Postgres stops whatever server runs
// in its directory.
func (st *Stack) lock(data string) error {
	path := filepath.Join(data, "dev.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("lock the data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := io.ReadAll(f)
		f.Close()
		return fmt.Errorf("another orderctl dev (pid %s) uses %s; stop it first, or give this one its own --data", strings.TrimSpace(string(pid)), data)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	st.onStop(f.Close) // closing releases the lock
	return nil
}

// postgresDir is the local cluster's data directory: data/postgres, unless
// this process runs as root and that is out of reach for the OS user
// postgres, which the server then runs as (a clone under /root, mode 700).
// The cluster then lives in a directory of its own under /var/tmp, named
// after the data directory, so that every run finds it again; blocked is
// the directory postgres cannot enter.
func postgresDir(data string) (dir, blocked string, err error) {
	abs, err := filepath.Abs(data)
	if err != nil {
		return "", "", err
	}
	dir = filepath.Join(abs, "postgres")
	if os.Geteuid() != 0 {
		return dir, "", nil
	}
	for d := abs; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return "", "", err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			sum := sha256.Sum256([]byte(abs))
			parent := filepath.Join("/var/tmp", "jetsource-dev-"+hex.EncodeToString(sum[:4]))
			// Reachable for postgres: pgserver hands over only the cluster's
			// own directory.
			if err := os.MkdirAll(parent, 0o755); err != nil {
				return "", "", err
			}
			if err := os.Chmod(parent, 0o755); err != nil { // whatever the umask
				return "", "", err
			}
			return filepath.Join(parent, "postgres"), d, nil
		}
		if d == filepath.Dir(d) {
			return dir, "", nil
		}
	}
}

// wipe removes what earlier runs left: only the stack's own files, never the
// data directory itself, which a mistyped --data could make precious.
func (st *Stack) wipe(ctx context.Context, data, pgDir string) error {
	paths := []string{filepath.Join(data, "nats"), st.LogPath()}
	if st.cfg.DatabaseURL == "" {
		paths = append(paths, pgDir, st.ownDatabaseURLPath())
	}
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("reset: %w", err)
		}
	}
	if st.cfg.DatabaseURL != "" {
		conn, err := pgx.Connect(ctx, st.cfg.DatabaseURL)
		if err != nil {
			return databaseURLError(st.cfg.DatabaseURL, fmt.Errorf("reset: connect to DATABASE_URL: %w", err))
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{st.cfg.Schema}.Sanitize()+" CASCADE"); err != nil {
			return fmt.Errorf("reset: drop schema %s: %w", st.cfg.Schema, err)
		}
	}
	st.printf("Reset: removed the NATS data, the log and the read models.\n")
	return nil
}

func (st *Stack) startNATS(dir string) error {
	port := st.cfg.NATSPort
	if port != 0 {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("NATS cannot listen on 127.0.0.1:%d (is another NATS or dev stack running?); pick another port with --nats-port: %w",
				port, err)
		}
		l.Close()
	}
	srv, err := natsserver.Start(natsserver.Config{StoreDir: dir, Port: port})
	if err != nil {
		return err
	}
	st.onStop(func() error { srv.Shutdown(); st.printf("  NATS stopped\n"); return nil })
	st.natsURL = srv.ClientURL()
	st.printf("  %-11s %s, JetStream data in %s\n", "NATS", st.natsURL, dir)
	st.printf("  %-11s default fsync (every 2 minutes): fast, but a machine crash can lose the last\n", "")
	st.printf("  %-11s acknowledged writes; production uses sync_interval: always\n", "")
	return nil
}

// ownDatabaseURLPath is where a run records the URL of the Postgres it
// started, so that the next run knows it when DATABASE_URL names it.
func (st *Stack) ownDatabaseURLPath() string { return filepath.Join(st.cfg.Data, "postgres.url") }

// ownDatabaseURL is the URL of the Postgres the last run started, if any.
func (st *Stack) ownDatabaseURL() string {
	url, err := os.ReadFile(st.ownDatabaseURLPath())
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(url))
}

// databaseURLError adds what to do to a failure to connect to the
// Postgres of DATABASE_URL (dbURL, empty for the stack's own).
func databaseURLError(dbURL string, err error) error {
	var connect *pgconn.ConnectError
	if dbURL == "" || !errors.As(err, &connect) {
		return err
	}
	return fmt.Errorf("%w; DATABASE_URL names this Postgres: is it running? Unset DATABASE_URL to have orderctl dev start its own", err)
}

// startPostgres starts the local Postgres, unless DATABASE_URL names
// another; own says that DATABASE_URL named this one.
func (st *Stack) startPostgres(ctx context.Context, dir, blocked string, own bool) error {
	if st.cfg.DatabaseURL != "" {
		st.dbURL = st.cfg.DatabaseURL
		st.printf("  %-11s %s (DATABASE_URL)\n", "Postgres", Redact(st.dbURL))
		return nil
	}
	if _, err := pgserver.Find(); errors.Is(err, pgserver.ErrNotInstalled) {
		st.printf("  %-11s not installed; installing it with apt-get (first run only, takes a minute)...\n", "Postgres")
	}
	port := st.cfg.PGPort
	if port != 0 && !leftoverOn(dir, port) {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			st.printf("  %-11s port %d is taken; using a free one (or choose with --pg-port)\n", "Postgres", port)
			port = 0
		} else {
			l.Close()
		}
	}
	began := time.Now()
	srv, err := pgserver.Start(ctx, pgserver.Config{Dir: dir, Port: port, Install: true})
	if err != nil {
		return err
	}
	// Stop is a fast shutdown here: a caller's directory gets a checkpoint,
	// so the data is all there next time.
	st.onStop(func() error {
		err := srv.Stop()
		if err == nil {
			st.printf("  Postgres stopped\n")
		}
		return err
	})
	st.dbURL = srv.URL("postgres")
	if err := os.WriteFile(st.ownDatabaseURLPath(), []byte(st.dbURL+"\n"), 0o644); err != nil {
		return fmt.Errorf("record the database URL: %w", err)
	}
	where := "data in " + dir
	if own {
		where += " (DATABASE_URL names it, as an earlier run printed)"
	}
	if blocked != "" {
		where += " (Postgres runs as user postgres, which cannot enter " + blocked + ")"
	}
	st.printf("  %-11s %s, %s, up in %s\n", "Postgres", st.dbURL, where, time.Since(began).Round(100*time.Millisecond))
	return nil
}

// leftoverOn reports whether a server that a killed run left in dir holds
// port: Start stops it, which frees the port.
func leftoverOn(dir string, port int) bool {
	pid, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	lines := strings.Split(string(pid), "\n") // the fourth line is the port
	return err == nil && len(lines) > 3 && strings.TrimSpace(lines[3]) == strconv.Itoa(port)
}

// Redact hides the password of a database URL.
func Redact(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "(DATABASE_URL)"
	}
	return u.Redacted()
}
