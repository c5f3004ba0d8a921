package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process is a JetSource binary running under a test.
type process struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

// start runs binary with env added to a minimal environment.
func start(t *testing.T, binary string, env ...string) *process {
	t.Helper()
	return startWith(t, binary, nil, env...)
}

// startWith is start with command line arguments.
func startWith(t *testing.T, binary string, args []string, env ...string) *process {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, binary), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	return startCmd(t, binary, cmd)
}

// startCmd starts cmd, named name in the test's log, and kills it when the
// test ends.
func startCmd(t *testing.T, name string, cmd *exec.Cmd) *process {
	t.Helper()
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{t: t, cmd: cmd, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return p
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits: no shutdown code runs.
func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// freeze stops the process with SIGSTOP: it keeps its connections and
// its state, and does nothing until thaw.
func (p *process) freeze() { _ = p.cmd.Process.Signal(syscall.SIGSTOP) }

// thaw lets a frozen process go on with SIGCONT.
func (p *process) thaw() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }

// terminate sends SIGTERM and waits for a clean exit.
func (p *process) terminate(within time.Duration) {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			p.t.Fatalf("exit code %d after SIGTERM; output:\n%s", code, p.out.String())
		}
	case <-time.After(within):
		p.t.Fatalf("no exit within %s of SIGTERM", within)
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
