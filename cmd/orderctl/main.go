// Command orderctl is the operator's and developer's command line for
// JetSource: send commands, show an order's history or its state as of a
// version or time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/internal/natsconn"
)

// Config is orderctl's environment.
type Config struct {
	natsconn.Config
	Partitions int `envconfig:"JETSOURCE_PARTITIONS" default:"16"`
}

const usage = `orderctl — JetSource command line

Usage:
  orderctl send [flags] <orderId> <CommandType> [data-json]
                        send a command and print its result
  orderctl history [--json] <orderId>
                        print an order's events
  orderctl state [--version N] [--at TIME] <orderId>
                        print an order's state, now or as it was at a version or time (RFC 3339)

Environment: NATS_URL (default nats://127.0.0.1:4222), NATS_CREDS, NATS_TLS_CERT,
NATS_TLS_KEY, NATS_TLS_CA, JETSOURCE_PARTITIONS (default 16).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one orderctl command and returns the exit code: 0 done, 1
// failed, 2 bad usage, 3 a sent command was rejected.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	commands := map[string]func(context.Context, *client.Client, []string, io.Writer) error{
		"send":    cmdSend,
		"history": cmdHistory,
		"state":   cmdState,
	}
	fn, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "orderctl: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	c, closeConn, err := connect()
	if err != nil {
		fmt.Fprintln(stderr, "orderctl:", err)
		return 1
	}
	defer closeConn()
	err = fn(ctx, c, args[1:], stdout)
	var usageErr usageError
	var rejected *client.RejectedError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &usageErr):
		fmt.Fprintf(stderr, "orderctl %s: %v\n\n%s", args[0], err, usage)
		return 2
	case errors.As(err, &rejected):
		return 3
	default:
		fmt.Fprintf(stderr, "orderctl %s: %v\n", args[0], err)
		return 1
	}
}

type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func connect() (*client.Client, func(), error) {
	var cfg Config
	if err := envconfig.Process("", &cfg); err != nil {
		return nil, nil, fmt.Errorf("read configuration: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, fmt.Errorf("invalid configuration: %w", err)
	}
	// Unlike the services, a command line tool fails at once when NATS is
	// unreachable.
	nc, err := nats.Connect(cfg.URL, append(cfg.SecurityOptions(), nats.Name("orderctl"), nats.Timeout(5*time.Second))...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats at %s: %w", cfg.URL, err)
	}
	c, err := client.New(nc, client.WithPartitions(cfg.Partitions))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return c, nc.Close, nil
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}
