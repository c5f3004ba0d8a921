// Package pgtest gives each test its own empty PostgreSQL database on a
// server shared by the tests of a package, because starting a server takes a
// second while creating a database takes milliseconds.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsource/jetsource/internal/pgserver"
)

// EnvDatabaseURL names the environment variable with the URL of an existing
// server to use instead of starting one. It must be able to create
// databases, and the URL names the database to run CREATE DATABASE in.
const EnvDatabaseURL = "JETSOURCE_TEST_DATABASE_URL"

// Cluster is a PostgreSQL server shared by the tests of one package.
type Cluster struct {
	admin string // URL of the database in which to create and drop databases
}

// StartCluster starts a throwaway server, installing PostgreSQL if it is
// missing and the tests run as root, or connects to the server in
// $JETSOURCE_TEST_DATABASE_URL. Call it from TestMain, and call stop after
// the tests ran.
func StartCluster() (c *Cluster, stop func(), err error) {
	// Generous because it may include apt-get install.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if admin := os.Getenv(EnvDatabaseURL); admin != "" {
		if u, err := url.Parse(admin); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return nil, nil, fmt.Errorf("%s: want a postgres:// URL", EnvDatabaseURL)
		}
		if err := exec(ctx, admin, "SELECT 1"); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", EnvDatabaseURL, err)
		}
		return &Cluster{admin: admin}, func() {}, nil
	}
	srv, err := pgserver.Start(ctx, pgserver.Config{Install: true})
	if err != nil {
		return nil, nil, err
	}
	stop = func() {
		if err := srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
	}
	return &Cluster{admin: srv.URL("postgres")}, stop, nil
}

// DB creates an empty database for tb, drops it when tb ends, and returns its
// URL.
func (c *Cluster) DB(tb testing.TB) string {
	tb.Helper()
	name := dbName(tb.Name())
	ident := pgx.Identifier{name}.Sanitize()
	if err := exec(tb.Context(), c.admin, "CREATE DATABASE "+ident); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE ends the connections the test left open.
		if err := exec(ctx, c.admin, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	u, _ := url.Parse(c.admin) // checked by StartCluster
	u.Path, u.RawPath = "/"+name, ""
	return u.String()
}

// dbName derives a database name from a test name, readable when debugging
// and random so that test processes sharing a server do not collide.
func dbName(test string) string {
	slug := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '_'
	}, test)
	// Postgres truncates names to 63 bytes.
	if len(slug) > 40 {
		slug = slug[:40]
	}
	suffix := make([]byte, 6)
	rand.Read(suffix)
	return "test_" + slug + "_" + hex.EncodeToString(suffix)
}

func exec(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// Main is a package's TestMain in one line: it starts a cluster, points
// *cluster at it, runs the tests, stops the cluster and exits with the
// tests' code.
func Main(m *testing.M, cluster **Cluster) {
	c, stop, err := StartCluster()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		os.Exit(1)
	}
	*cluster = c
	code := m.Run()
	stop()
	os.Exit(code)
}
