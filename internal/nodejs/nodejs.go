// Package nodejs finds node and npm for the tests of the Node.js client,
// installing Debian's packages when they are missing and the process runs
// as root, as pgserver does for PostgreSQL, so a fresh CI machine can run
// them.
package nodejs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// ErrNotInstalled reports that node or npm is missing.
var ErrNotInstalled = errors.New("node and npm not installed")

// Binaries are the absolute paths of the programs.
type Binaries struct {
	Node, NPM string
}

// Find looks node and npm up in PATH.
func Find() (Binaries, error) {
	node, nerr := exec.LookPath("node")
	npm, merr := exec.LookPath("npm")
	if nerr != nil || merr != nil {
		return Binaries{}, fmt.Errorf("find node and npm in PATH: %w", ErrNotInstalled)
	}
	return Binaries{Node: node, NPM: npm}, nil
}

// Install returns node and npm, installing Debian's nodejs and npm packages
// with apt-get when they are missing. Only root can do that; anyone else
// gets an error saying what to install.
func Install(ctx context.Context) (Binaries, error) {
	return install(ctx, os.Geteuid(), Find, (*exec.Cmd).CombinedOutput)
}

func install(ctx context.Context, euid int, find func() (Binaries, error), run func(*exec.Cmd) ([]byte, error)) (Binaries, error) {
	b, err := find()
	if !errors.Is(err, ErrNotInstalled) {
		return b, err
	}
	if euid != 0 {
		return Binaries{}, fmt.Errorf("install node: not root, so not running apt-get; install Node.js 18 or later with npm "+
			"(Debian/Ubuntu: sudo apt-get install -y nodejs npm; macOS: brew install node): %w", err)
	}
	for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "nodejs", "npm"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := run(cmd); err != nil {
			return Binaries{}, fmt.Errorf("install node: apt-get %s: %w; output:\n%s", strings.Join(args, " "), err, tail(out))
		}
	}
	if b, err = find(); err != nil {
		return Binaries{}, fmt.Errorf("install node: apt-get succeeded, yet %w", err)
	}
	return b, nil
}

// tail returns the last lines of a command's output, where the error usually is.
func tail(out []byte) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
