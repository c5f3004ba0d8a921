package nodejs

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestInstall(t *testing.T) {
	found := Binaries{Node: "/usr/bin/node", NPM: "/usr/bin/npm"}
	missing := func() (Binaries, error) { return Binaries{}, ErrNotInstalled }
	ctx := context.Background()

	t.Run("present: nothing to do", func(t *testing.T) {
		b, err := install(ctx, 0, func() (Binaries, error) { return found, nil }, func(c *exec.Cmd) ([]byte, error) {
			t.Fatalf("ran %v", c.Args)
			return nil, nil
		})
		if err != nil || b != found {
			t.Fatalf("%+v %v", b, err)
		}
	})

	t.Run("missing, not root: says what to install", func(t *testing.T) {
		_, err := install(ctx, 1000, missing, func(c *exec.Cmd) ([]byte, error) {
			t.Fatalf("ran %v", c.Args)
			return nil, nil
		})
		if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "apt-get install -y nodejs npm") {
			t.Fatal(err)
		}
	})

	t.Run("missing, root: apt-get update and install, then found", func(t *testing.T) {
		var ran []string
		calls := 0
		b, err := install(ctx, 0, func() (Binaries, error) {
			if calls++; calls == 1 {
				return Binaries{}, ErrNotInstalled
			}
			return found, nil
		}, func(c *exec.Cmd) ([]byte, error) {
			ran = append(ran, strings.Join(c.Args, " "))
			return nil, nil
		})
		want := []string{"apt-get update", "apt-get install -y --no-install-recommends nodejs npm"}
		if err != nil || b != found || strings.Join(ran, "; ") != strings.Join(want, "; ") {
			t.Fatalf("%+v %v, ran %q", b, err, ran)
		}
	})

	t.Run("apt-get fails: its output", func(t *testing.T) {
		_, err := install(ctx, 0, missing, func(*exec.Cmd) ([]byte, error) {
			return []byte("E: Unable to locate package nodejs\n"), errors.New("exit status 100")
		})
		if err == nil || !strings.Contains(err.Error(), "Unable to locate package") {
			t.Fatal(err)
		}
	})
}
