package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/natsserver"
)

// The benchmark runs each NATS server and the aggregator as a child process
// (this same binary, with a role as its first argument), as they run in
// production, so that the aggregator's CPU time and allocations are its
// own and not mixed with the servers' or the load generator's.

// child is a process this benchmark started. It takes one-line requests
// on its stdin and answers each with one line on its stdout; closing its
// stdin stops it.
type child struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  *bufio.Scanner
	stderr *lockedBuffer
	done   chan struct{}
}

func startChild(name string, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c := &child{name: name, cmd: cmd, stdin: stdin, lines: bufio.NewScanner(stdout), stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); close(c.done) }()
	return c, nil
}

// read returns the child's next line of output.
func (c *child) read() (string, error) {
	if c.lines.Scan() {
		return c.lines.Text(), nil
	}
	<-c.done
	return "", fmt.Errorf("%s exited (%v); its log:\n%s", c.name, c.cmd.ProcessState, c.stderr.tail())
}

// request sends a line and returns the child's answer.
func (c *child) request(line string) (string, error) {
	if _, err := fmt.Fprintln(c.stdin, line); err != nil {
		return "", fmt.Errorf("%s: %w", c.name, err)
	}
	return c.read()
}

// stop closes the child's stdin and waits for it to exit, killing it after
// a minute.
func (c *child) stop() {
	defer func() {
		if log := c.stderr.tail(); log != "" {
			fmt.Printf("  %s logged:\n%s\n", c.name, log)
		}
	}()
	c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(time.Minute):
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.done
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

func (b *lockedBuffer) tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}

// cluster is one or three NATS server processes.
type cluster struct {
	servers []*child
	urls    []string
}

// startCluster starts n servers (one, or a cluster of three) with file
// storage under dir; sync fsyncs every write before acknowledging it.
func startCluster(dir string, n int, sync bool, profile string) (*cluster, error) {
	c := &cluster{}
	ports := make([]int, n)
	routes := make([]string, n)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i], routes[i] = p, fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	for i := range n {
		args := []string{"server", "-store", fmt.Sprintf("%s/n%d", dir, i), "-name", fmt.Sprintf("n%d", i)}
		if n > 1 {
			args = append(args, "-cluster-port", fmt.Sprint(ports[i]), "-routes", strings.Join(routes, ","))
		}
		if sync {
			args = append(args, "-sync")
		}
		if profile != "" {
			args = append(args, "-cpuprofile", fmt.Sprintf("%s.n%d.cpu", profile, i))
		}
		s, err := startChild(fmt.Sprintf("nats-server n%d", i), args...)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.servers = append(c.servers, s)
		url, err := s.read()
		if err != nil {
			c.stop()
			return nil, err
		}
		c.urls = append(c.urls, url)
	}
	return c, nil
}

// cpu is the CPU time the servers have used so far, or 0 where the system
// does not tell (/proc is Linux's).
func (c *cluster) cpu() time.Duration {
	var total time.Duration
	for _, s := range c.servers {
		total += processCPU(s.cmd.Process.Pid)
	}
	return total
}

// processCPU reads a process's user and system time from /proc; 0 if it
// cannot.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which may hold spaces, start with
	// the state (field 3); utime and stime are fields 14 and 15, in clock
	// ticks of 1/100 s on Linux.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// mark starts measuring (and profiling) on every server.
func (c *cluster) mark() error {
	for _, s := range c.servers {
		if _, err := s.request("mark"); err != nil {
			return err
		}
	}
	return nil
}

// report stops profiling on every server.
func (c *cluster) report() error {
	for _, s := range c.servers {
		if _, err := s.request("report"); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) url() string { return strings.Join(c.urls, ",") }

func (c *cluster) stop() {
	for _, s := range c.servers {
		s.stop()
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// serverMain is the "server" role: one embedded NATS server with
// JetStream, running until stdin closes. It prints its client URL, then
// serves requests as the aggregator does.
func serverMain(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	store := fs.String("store", "", "JetStream store directory")
	name := fs.String("name", "", "server name")
	clusterPort := fs.Int("cluster-port", 0, "cluster port; 0 for a single server")
	routes := fs.String("routes", "", "comma-separated cluster routes")
	syncAlways := fs.Bool("sync", false, "fsync every write before acknowledging it")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the measured part to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := natsserver.Config{StoreDir: *store, ServerName: *name, SyncAlways: *syncAlways}
	if *clusterPort != 0 {
		cfg.ClusterName, cfg.ClusterPort, cfg.Routes = "bench", *clusterPort, strings.Split(*routes, ",")
	}
	srv, err := natsserver.Start(cfg)
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	fmt.Println(srv.ClientURL())
	return serveRequests(*cpuprofile, "")
}

// usage is what a process spent between a "mark" and a "report".
type usage struct {
	CPU     time.Duration `json:"cpu"`
	Mallocs uint64        `json:"mallocs"`
	Bytes   uint64        `json:"bytes"`
}

func (u usage) perCommand(n int) string {
	return fmt.Sprintf("CPU %s, %d allocations (%.1f KB) per command",
		us(u.CPU/time.Duration(max(n, 1))), u.Mallocs/uint64(max(n, 1)), float64(u.Bytes)/float64(max(n, 1))/1024)
}

func measure() usage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{CPU: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), Mallocs: ms.Mallocs, Bytes: ms.TotalAlloc}
}

// aggregatorMain is the "aggregator" role: the aggregator service over
// the given servers, printing "ready" once it runs partitions. On "mark" it
// starts measuring (and profiling, with -cpuprofile); on "report" it prints
// the usage since as JSON. It stops when stdin closes.
func aggregatorMain(args []string) error {
	fs := flag.NewFlagSet("aggregator", flag.ContinueOnError)
	url := fs.String("nats", "", "NATS URLs")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the measured part to this file")
	memprofile := fs.String("memprofile", "", "write an allocation profile to this file at the first report")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nc, err := nats.Connect(*url, nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cfg := aggregator.DefaultConfig()
	cfg.Partitions = partitions
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := aggregator.New(js, cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for {
		probe, stop := context.WithTimeout(ctx, time.Second)
		err := svc.Ready(probe)
		stop()
		if err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Println("ready")
	return serveRequests(*cpuprofile, *memprofile)
}

// serveRequests answers the parent until stdin closes: on "mark" it starts
// measuring (and profiling, if cpuprofile is set); on "report" it prints
// the usage since as JSON (and writes the allocation profile, if
// memprofile is set).
func serveRequests(cpuprofile, memprofile string) error {
	in := bufio.NewScanner(os.Stdin)
	var (
		mark    usage
		profile *os.File
		err     error
	)
	for in.Scan() {
		switch in.Text() {
		case "mark":
			if cpuprofile != "" && profile == nil {
				if profile, err = os.Create(cpuprofile); err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(profile); err != nil {
					return err
				}
			}
			mark = measure()
			fmt.Println("ok")
		case "report":
			now := measure()
			if profile != nil {
				pprof.StopCPUProfile()
				if err := profile.Close(); err != nil {
					return err
				}
				profile, cpuprofile = nil, ""
			}
			if memprofile != "" {
				if err := writeHeapProfile(memprofile); err != nil {
					return err
				}
				memprofile = ""
			}
			b, _ := json.Marshal(usage{CPU: now.CPU - mark.CPU, Mallocs: now.Mallocs - mark.Mallocs, Bytes: now.Bytes - mark.Bytes})
			fmt.Println(string(b))
		default:
			return errors.New("unknown request " + in.Text())
		}
	}
	return nil
}

func writeHeapProfile(name string) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// aggregatorProcess is a running aggregator child.
type aggregatorProcess struct{ *child }

func startAggregator(url, profile string) (*aggregatorProcess, error) {
	args := []string{"aggregator", "-nats", url}
	if profile != "" {
		args = append(args, "-cpuprofile", profile+".cpu", "-memprofile", profile+".allocs")
	}
	c, err := startChild("aggregator", args...)
	if err != nil {
		return nil, err
	}
	if line, err := c.read(); err != nil || line != "ready" {
		c.stop()
		return nil, fmt.Errorf("aggregator did not start (%q): %v", line, err)
	}
	return &aggregatorProcess{c}, nil
}

func (a *aggregatorProcess) mark() error {
	_, err := a.request("mark")
	return err
}

func (a *aggregatorProcess) report() (usage, error) {
	line, err := a.request("report")
	if err != nil {
		return usage{}, err
	}
	var u usage
	return u, json.Unmarshal([]byte(line), &u)
}
