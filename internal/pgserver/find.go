package pgserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// ErrNotInstalled reports that the PostgreSQL server binaries are missing.
var ErrNotInstalled = errors.New("postgresql server binaries not installed")

// Binaries are the absolute paths of the PostgreSQL programs.
type Binaries struct {
	InitDB   string
	PGCtl    string
	Postgres string
	// PGIsReady is empty when pg_isready is missing; nothing here needs it,
	// but scripts of a dev stack may.
	PGIsReady string
}

// Find locates initdb, pg_ctl and postgres. Debian and Ubuntu install them
// off PATH in /usr/lib/postgresql/VERSION/bin, so those directories are
// searched too, after PATH and /usr/local/bin, highest version first.
func Find() (Binaries, error) {
	dirs := append(filepath.SplitList(os.Getenv("PATH")), "/usr/local/bin")
	b, err := find(dirs, "/usr/lib/postgresql/*/bin")
	if err != nil {
		return b, fmt.Errorf("find initdb, pg_ctl and postgres in PATH, /usr/local/bin and /usr/lib/postgresql/*/bin: %w", err)
	}
	return b, nil
}

// find returns the binaries of the first of dirs, then of the directories
// matching the glob versioned (whose second to last element is a version),
// that holds all three server programs.
func find(dirs []string, versioned string) (Binaries, error) {
	matches, err := filepath.Glob(versioned)
	if err != nil {
		return Binaries{}, err
	}
	slices.SortStableFunc(matches, func(a, b string) int {
		return slices.Compare(version(b), version(a))
	})
	for _, dir := range slices.Concat(dirs, matches) {
		// Relative PATH entries would resolve against whatever directory a
		// command runs in; exec.LookPath refuses them for the same reason.
		if !filepath.IsAbs(dir) {
			continue
		}
		b := Binaries{
			InitDB:   filepath.Join(dir, "initdb"),
			PGCtl:    filepath.Join(dir, "pg_ctl"),
			Postgres: filepath.Join(dir, "postgres"),
		}
		if !executable(b.InitDB) || !executable(b.PGCtl) || !executable(b.Postgres) {
			continue
		}
		// /usr/local/bin may link only the server programs, so also look
		// next to the file initdb links to.
		candidates := []string{dir}
		if real, err := filepath.EvalSymlinks(b.InitDB); err == nil {
			candidates = append(candidates, filepath.Dir(real))
		}
		for _, d := range candidates {
			if p := filepath.Join(d, "pg_isready"); executable(p) {
				b.PGIsReady = p
				break
			}
		}
		return b, nil
	}
	return Binaries{}, ErrNotInstalled
}

// version parses a directory name like "15" or "9.6" from a path like
// /usr/lib/postgresql/15/bin.
func version(binDir string) []int {
	var v []int
	for _, f := range strings.FieldsFunc(filepath.Base(filepath.Dir(binDir)), func(r rune) bool { return !unicode.IsDigit(r) }) {
		n, _ := strconv.Atoi(f)
		v = append(v, n)
	}
	return v
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Install installs PostgreSQL with apt-get when Find fails, so a fresh CI
// machine can run database tests. Only root can do that; anyone else gets an
// error saying what to install.
func Install(ctx context.Context) error {
	return install(ctx, os.Geteuid(), Find, (*exec.Cmd).CombinedOutput)
}

func install(ctx context.Context, euid int, find func() (Binaries, error), run func(*exec.Cmd) ([]byte, error)) error {
	if _, err := find(); !errors.Is(err, ErrNotInstalled) {
		return err
	}
	if euid != 0 {
		return fmt.Errorf("install postgres: not root, so not running apt-get; install the PostgreSQL server yourself "+
			"(Debian/Ubuntu: sudo apt-get install -y postgresql; macOS: brew install postgresql) "+
			"or put initdb, pg_ctl and postgres on PATH: %w", ErrNotInstalled)
	}
	for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "postgresql"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := run(cmd); err != nil {
			return fmt.Errorf("install postgres: apt-get %s: %w; output:\n%s", strings.Join(args, " "), err, tail(out))
		}
	}
	if _, err := find(); err != nil {
		return fmt.Errorf("install postgres: apt-get succeeded, yet %w", err)
	}
	return nil
}

// tail returns the last lines of a command's output, where the error usually is.
func tail(out []byte) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
