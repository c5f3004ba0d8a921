package pgserver_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/jetsource/jetsource/internal/pgserver"
)

func start(t *testing.T, cfg pgserver.Config) *pgserver.Server {
	t.Helper()
	srv, err := pgserver.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	return srv
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestTempDir(t *testing.T) {
	t.Parallel()
	srv := start(t, pgserver.Config{})
	url, err := srv.CreateDatabase(t.Context(), "app")
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://postgres@127.0.0.1:" + strconv.Itoa(srv.Port()) + "/app?sslmode=disable"; url != want {
		t.Errorf("URL %q, want %q", url, want)
	}
	var one int
	if err := connect(t, url).QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1: %d, %v", one, err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(srv.Dir()); !os.IsNotExist(err) {
		t.Errorf("Stop left %s behind: %v", srv.Dir(), err)
	}
}

// TestReuseDir restarts a cluster in the same directory after a clean stop,
// after its owner died without stopping it, and after the server crashed.
func TestReuseDir(t *testing.T) {
	t.Parallel()
	// When root, postgres runs as another user that must reach the dir. A
	// space in the path checks the quoting of pg_ctl -o.
	parent, err := os.MkdirTemp("", "pgserver-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "data dir")

	srv := start(t, pgserver.Config{Dir: dir})
	url, err := srv.CreateDatabase(t.Context(), "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, url).Exec(t.Context(), "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	checkKept := func(srv *pgserver.Server) {
		t.Helper()
		var n int
		if err := connect(t, srv.URL("app")).QueryRow(t.Context(), "SELECT n FROM kept").Scan(&n); err != nil || n != 42 {
			t.Fatalf("reading back kept row: %d, %v", n, err)
		}
	}

	// Clean stop.
	srv = start(t, pgserver.Config{Dir: dir})
	checkKept(srv)

	// Owner died without Stop: the server still runs, on another port.
	srv = start(t, pgserver.Config{Dir: dir})
	checkKept(srv)

	// Crash: postmaster.pid stays behind, and Start must wait for the
	// killed server and its children to go.
	if err := syscall.Kill(postmasterPID(t, dir), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv = start(t, pgserver.Config{Dir: dir})
	checkKept(srv)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
		t.Errorf("Stop removed a directory it did not create: %v", err)
	}
}

// TestStartFails checks that a failed start explains itself with the
// server's log and leaves no temp dir behind.
func TestStartFails(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = pgserver.Start(t.Context(), pgserver.Config{Port: l.Addr().(*net.TCPAddr).Port})
	if err == nil || !strings.Contains(err.Error(), "could not bind") {
		t.Fatalf("got %v, want an error quoting server.log", err)
	}
	_, rest, _ := strings.Cut(err.Error(), "start postgres in ")
	dir, _, _ := strings.Cut(rest, ":")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("failed Start left %q behind: %v", dir, err)
	}
}

func postmasterPID(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestFindHere(t *testing.T) {
	b, err := pgserver.Find()
	if err != nil {
		t.Skip(err)
	}
	t.Logf("%+v", b)
}
