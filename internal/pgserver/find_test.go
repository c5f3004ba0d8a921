package pgserver

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBin creates dir holding executable stubs of programs.
func fakeBin(t *testing.T, dir string, programs ...string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range programs {
		if err := os.WriteFile(filepath.Join(dir, p), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFind(t *testing.T) {
	root := t.TempDir()
	server := []string{"initdb", "pg_ctl", "postgres"}
	lib := filepath.Join(root, "lib", "postgresql")
	fakeBin(t, filepath.Join(lib, "9.6", "bin"), server...)
	v15 := fakeBin(t, filepath.Join(lib, "15", "bin"), append(server, "pg_isready")...)
	fakeBin(t, filepath.Join(lib, "16", "bin"), "initdb", "pg_ctl") // incomplete
	versioned := filepath.Join(lib, "*", "bin")

	t.Run("highest complete version", func(t *testing.T) {
		b, err := find(nil, versioned)
		if err != nil {
			t.Fatal(err)
		}
		want := Binaries{
			InitDB:    filepath.Join(v15, "initdb"),
			PGCtl:     filepath.Join(v15, "pg_ctl"),
			Postgres:  filepath.Join(v15, "postgres"),
			PGIsReady: filepath.Join(v15, "pg_isready"),
		}
		if b != want {
			t.Errorf("got %+v, want %+v", b, want)
		}
	})

	t.Run("PATH first, pg_isready next to the link target", func(t *testing.T) {
		local := filepath.Join(root, "local")
		if err := os.MkdirAll(local, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range server {
			if err := os.Symlink(filepath.Join(v15, p), filepath.Join(local, p)); err != nil {
				t.Fatal(err)
			}
		}
		b, err := find([]string{"relative", filepath.Join(root, "empty"), local}, versioned)
		if err != nil {
			t.Fatal(err)
		}
		if b.InitDB != filepath.Join(local, "initdb") || b.PGIsReady != filepath.Join(v15, "pg_isready") {
			t.Errorf("got %+v", b)
		}
	})

	t.Run("not installed", func(t *testing.T) {
		fakeBin(t, filepath.Join(root, "noexec"))
		if err := os.WriteFile(filepath.Join(root, "noexec", "initdb"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := find([]string{filepath.Join(root, "noexec")}, filepath.Join(root, "none", "*", "bin"))
		if !errors.Is(err, ErrNotInstalled) {
			t.Errorf("got %v, want ErrNotInstalled", err)
		}
	})
}

func TestInstall(t *testing.T) {
	missing := func() (Binaries, error) { return Binaries{}, ErrNotInstalled }
	noRun := func(cmd *exec.Cmd) ([]byte, error) {
		t.Errorf("unexpected %v", cmd.Args)
		return nil, nil
	}
	ctx := context.Background()

	t.Run("installed", func(t *testing.T) {
		found := func() (Binaries, error) { return Binaries{InitDB: "/x/initdb"}, nil }
		if err := install(ctx, 0, found, noRun); err != nil {
			t.Error(err)
		}
	})

	t.Run("not root", func(t *testing.T) {
		err := install(ctx, 1000, missing, noRun)
		if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "apt-get install -y postgresql") {
			t.Errorf("got %v", err)
		}
	})

	t.Run("root", func(t *testing.T) {
		installed := false
		find := func() (Binaries, error) {
			if installed {
				return Binaries{InitDB: "/x/initdb"}, nil
			}
			return missing()
		}
		var ran []string
		run := func(cmd *exec.Cmd) ([]byte, error) {
			ran = append(ran, strings.Join(cmd.Args, " "))
			if !strings.Contains(strings.Join(cmd.Env, "\n"), "DEBIAN_FRONTEND=noninteractive") {
				t.Errorf("%v runs without DEBIAN_FRONTEND=noninteractive", cmd.Args)
			}
			installed = len(ran) == 2
			return nil, nil
		}
		if err := install(ctx, 0, find, run); err != nil {
			t.Fatal(err)
		}
		want := "apt-get update|apt-get install -y --no-install-recommends postgresql"
		if got := strings.Join(ran, "|"); got != want {
			t.Errorf("ran %q, want %q", got, want)
		}
	})

	t.Run("apt-get fails", func(t *testing.T) {
		run := func(*exec.Cmd) ([]byte, error) {
			return []byte("Reading package lists...\nE: Unable to locate package postgresql\n"), errors.New("exit status 100")
		}
		err := install(ctx, 0, missing, run)
		if err == nil || !strings.Contains(err.Error(), "Unable to locate package") {
			t.Errorf("got %v, want the tail of apt-get's output", err)
		}
	})
}
