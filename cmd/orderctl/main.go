// Command orderctl is the operator's and developer's command line for
// JetSource: send commands and look up their results, show an order's
// history or its state as of a version or time, follow the events, watch
// and repair the projections (lag, checkpoints, dead letters, rebuilds,
// read-your-writes), set up the streams and the schema, and run the
// all-in-one dev stack.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/internal/buildinfo"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// Exit codes, the same for every command.
const (
	exitOK       = 0
	exitFailed   = 1 // could not be done: unreachable, not found, timed out
	exitUsage    = 2 // the command line or the configuration is wrong
	exitRejected = 3 // the command sent (or awaited) was rejected
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	// The first signal starts a clean stop; a second one ends the process
	// at once, should the stop hang.
	go func() { <-ctx.Done(); stop() }()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// run executes one orderctl command line, with the environment read
// through lookup, and returns the exit code.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	s := newSession(lookup, stdout, stderr)
	defer s.close()
	root := newRoot(s)
	if len(args) == 0 {
		// A usage error: the help, but on stderr and with exit code 2.
		root.SetOut(stderr)
		_ = root.Help()
		return exitUsage
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	return s.exit(cmd, err)
}

const rootLong = `orderctl — JetSource's command line: send commands, read orders and their
events, operate the projections, set up the streams and the schema, and run
the all-in-one dev stack.

Exit codes: 0 done; 1 failed (unreachable, not found, timed out); 2 a usage,
input or configuration error; 3 the command sent or awaited was rejected.

Projections: ` + "%s" + `.

Configuration comes from the environment, as the services read it (send,
result, history, state and tail need only NATS; the projection commands also
DATABASE_URL):
`

func newRoot(s *session) *cobra.Command {
	root := &cobra.Command{
		Use:           "orderctl",
		Long:          fmt.Sprintf(rootLong, strings.Join(readmodel.Names(), ", ")) + s.envUsage(),
		Version:       buildinfo.Version(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(s.stdout)
	root.SetErr(s.stderr)
	root.SetVersionTemplate("orderctl {{.Version}}\n")
	root.SetFlagErrorFunc(flagError)
	root.AddGroup(
		&cobra.Group{ID: "orders", Title: "Orders:"},
		&cobra.Group{ID: "projections", Title: "Projections (need DATABASE_URL):"},
		&cobra.Group{ID: "setup", Title: "Set-up and development:"},
	)
	for _, c := range []*cobra.Command{cmdSend(s), cmdResult(s), cmdHistory(s), cmdState(s), cmdTail(s)} {
		c.GroupID = "orders"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{cmdLag(s), cmdCheckpoints(s), cmdWait(s), cmdDLQ(s), cmdRebuild(s)} {
		c.GroupID = "projections"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{cmdStreams(s), cmdMigrate(s), cmdDev(s)} {
		c.GroupID = "setup"
		root.AddCommand(c)
	}
	root.SetHelpCommandGroupID("setup")
	root.SetCompletionCommandGroupID("setup")
	return root
}

// exit reports err, if any, and returns the exit code for it.
func (s *session) exit(cmd *cobra.Command, err error) int {
	name := "orderctl"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	var (
		usage    usageError
		invalid  configError
		rejected *client.RejectedError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &rejected):
		return exitRejected // the command printed the result
	case errors.As(err, &invalid):
		fmt.Fprintf(s.stderr, "%s: invalid configuration (see orderctl --help):\n  %s\n", name,
			strings.ReplaceAll(invalid.Error(), "\n", "\n  "))
		return exitUsage
	case errors.As(err, &usage) || !s.ran:
		// Errors before the command ran are cobra's: an unknown command,
		// flag or argument.
		fmt.Fprintf(s.stderr, "%s: %v; see %s --help\n", name, err, name)
		return exitUsage
	default:
		fmt.Fprintf(s.stderr, "%s: %v\n", name, err)
		return exitFailed
	}
}

// usageError is a mistake on the command line or in its input: exit code 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// configError is a configuration problem, told in the variables' names:
// exit code 2.
type configError struct{ error }

// flagError tells a bad flag value in the user's words rather than
// strconv's.
func flagError(_ *cobra.Command, err error) error {
	var invalid *pflag.InvalidValueError
	if !errors.As(err, &invalid) {
		return usageError{err}
	}
	f := invalid.GetFlag()
	var want string
	switch {
	case errors.As(err, new(*valueError)):
		want = errors.Unwrap(invalid).Error()
	case f.Value.Type() == "duration":
		want = "want a duration such as 500ms, 10s or 1m30s"
	case strings.Contains(f.Value.Type(), "int"):
		want = "want a whole number"
	default:
		want = "not a valid " + f.Value.Type()
	}
	return usagef("--%s %q: %s", f.Name, invalid.GetValue(), want)
}

// args checks the positional arguments: names lists them as the synopsis
// shows them ("<orderId>"), of which the first required must be given.
func args(required int, names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) < required:
			return usagef("missing %s", strings.Join(names[len(args):required], " "))
		case len(args) > len(names):
			return usagef("unexpected argument %q", args[len(names)])
		}
		return nil
	}
}

// checkConfig reports every configuration problem at once.
func (s *session) checkConfig() error {
	if err := s.env.Check(s.cfg.Validate()); err != nil {
		return configError{err}
	}
	return nil
}

// runE is the RunE of every orderctl command: it checks the configuration
// first, and marks that the command ran, so that its errors are told as
// its own.
func (s *session) runE(fn func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		s.ran = true
		if err := s.checkConfig(); err != nil {
			return err
		}
		return fn(cmd.Context(), args)
	}
}

// group is a command that only holds subcommands (dlq, streams): without
// one, or with an unknown one, it is a usage error rather than help.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	names := make([]string, len(subs))
	for i, c := range subs {
		names[i] = c.Name()
	}
	want := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	g := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  short + ".",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("want a subcommand: %s", want)
			}
			return usagef("unknown subcommand %q; want %s", args[0], want)
		},
	}
	g.AddCommand(subs...)
	return g
}

// envUsage is the table of the variables orderctl reads, for the help.
func (s *session) envUsage() string {
	var b strings.Builder
	_ = s.env.Usage(&b)
	return b.String()
}

// valueError is a flag value's own explanation of what it wants.
type valueError struct{ msg string }

func (e *valueError) Error() string { return e.msg }
