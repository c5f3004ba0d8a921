// Package daemon is what the service binaries share around their
// composition roots: the environment variables every binary reads (NATS,
// metrics, tracing, logging), --help and --version, configuration errors
// told in variable names, and the life of the process: start, run until a
// signal or a failure, drain, exit code. Each cmd/ main maps its own
// variables and hands over its Main.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/jetsource/jetsource/internal/buildinfo"
	"github.com/jetsource/jetsource/internal/config"
	"github.com/jetsource/jetsource/internal/natsconn"
	"github.com/jetsource/jetsource/internal/tracing"
)

// Service is a service's composition root (aggregatord.Main,
// projectord.Main): Run starts it and returns once it runs, Done is closed
// when it stops on its own (Err says why), Close drains it.
type Service interface {
	Run(ctx context.Context) error
	Done() <-chan struct{}
	Err() error
	Close() error
}

// Exit codes of the service binaries.
const (
	ExitOK      = 0 // drained after a signal; or --help, --version
	ExitFailed  = 1 // could not start, or stopped on its own
	ExitInvalid = 2 // bad flags or configuration
)

// Binary is one run of a service binary.
type Binary struct {
	// Env maps the environment onto the configuration.
	Env *config.Env
	// Flags are the binary's flags; --help and --version are defined.
	Flags *flag.FlagSet

	name, synopsis string
	args           []string
	level          slog.Level
	version        bool
	overrides      []func()
	stdout, stderr io.Writer
}

// New starts a run of the binary name with command line args, reading
// variables through lookup into cfg (a pointer to the configuration
// struct). synopsis opens --help, above the table of variables. LOG_LEVEL
// is bound.
func New(name, synopsis string, args []string, lookup func(string) (string, bool), cfg any) *Binary {
	b := &Binary{
		Env: config.NewEnv(lookup, cfg), Flags: flag.NewFlagSet(name, flag.ContinueOnError),
		name: name, synopsis: synopsis, args: args, level: slog.LevelInfo, stdout: os.Stdout, stderr: os.Stderr,
	}
	b.Flags.SetOutput(io.Discard)
	b.Flags.BoolVar(&b.version, "version", false, "print the version and exit")
	b.Env.Level("LOG_LEVEL", "debug, info, warn or error; logs are JSON on stderr", &b.level)
	return b
}

// SetOutput sends --help and --version to stdout and errors to stderr
// (os.Stdout and os.Stderr by default).
func (b *Binary) SetOutput(stdout, stderr io.Writer) { b.stdout, b.stderr = stdout, stderr }

// StringFlag defines --name, which overrides field (set from the
// environment by then) and is named in configuration errors about it.
func (b *Binary) StringFlag(name, usage string, field *string) {
	b.Flags.StringVar(field, name, *field, usage)
	b.overrides = append(b.overrides, func() {
		if f := b.Flags.Lookup(name); f != nil && b.isSet(name) {
			b.Env.Override("--"+name, f.Value.String(), field)
		}
	})
}

func (b *Binary) isSet(name string) bool {
	set := false
	b.Flags.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// Logger is the process's JSON logger on stderr, at LOG_LEVEL.
func (b *Binary) Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b.stderr, &slog.HandlerOptions{Level: b.level}))
}

// Run parses the flags, builds the service with newService (which checks
// the configuration) and runs it until ctx ends (a signal) or it stops on
// its own; then it drains it. It returns the exit code.
func (b *Binary) Run(ctx context.Context, newService func() (Service, error)) int {
	err := b.Flags.Parse(b.args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		b.usage()
		return ExitOK
	case err != nil:
		fmt.Fprintf(b.stderr, "%s: %v; see %s --help\n", b.name, err, b.name)
		return ExitInvalid
	case b.Flags.NArg() > 0:
		fmt.Fprintf(b.stderr, "%s: unexpected arguments %q; the configuration comes from the environment, see %s --help\n",
			b.name, b.Flags.Args(), b.name)
		return ExitInvalid
	case b.version:
		fmt.Fprintf(b.stdout, "%s %s\n", b.name, buildinfo.Version())
		return ExitOK
	}
	for _, override := range b.overrides {
		override()
	}
	svc, err := newService()
	if err := b.Env.Check(err); err != nil {
		fmt.Fprintf(b.stderr, "%s: invalid configuration (see %s --help):\n  %s\n", b.name, b.name,
			strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return ExitInvalid
	}
	return b.serve(ctx, svc)
}

func (b *Binary) serve(ctx context.Context, svc Service) int {
	log := b.Logger()
	if err := svc.Run(ctx); err != nil {
		if ctx.Err() == nil {
			log.Error(b.name+" failed to start", "error", err)
		}
		if cerr := svc.Close(); cerr != nil {
			log.Warn(b.name+" stop", "error", cerr)
		}
		if ctx.Err() != nil {
			return ExitOK // stopped while it waited for its dependencies
		}
		return ExitFailed
	}
	code := ExitOK
	select {
	case <-ctx.Done():
	case <-svc.Done():
		log.Error(b.name+" stopped on its own", "error", svc.Err())
		code = ExitFailed
	}
	if err := svc.Close(); err != nil {
		log.Warn(b.name+" stop", "error", err)
	}
	return code
}

func (b *Binary) usage() {
	fmt.Fprint(b.stdout, b.synopsis)
	_ = b.Env.Usage(b.stdout)
	fmt.Fprintln(b.stdout, "\nFlags:")
	tw := tabwriter.NewWriter(b.stdout, 0, 4, 2, ' ', 0)
	b.Flags.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace("--"+f.Name+" "+arg), usage)
	})
	fmt.Fprintf(tw, "  --help\tprint this help and exit\n")
	_ = tw.Flush()
}

// MapNATS maps the NATS variables every binary reads onto c.
func MapNATS(env *config.Env, c *natsconn.Config) {
	env.URL("NATS_URL", "server URL, or a comma-separated list of a cluster's servers; may hold a user and password", &c.URL)
	env.String("NATS_CREDS", "path of a NATS credentials file (JWT and seed)", &c.Creds)
	env.String("NATS_NKEY", "path of an nkey seed file", &c.NKey)
	env.String("NATS_USER", "user name (with NATS_PASSWORD)", &c.User)
	env.Secret("NATS_PASSWORD", "password of NATS_USER", (*string)(&c.Password))
	env.Secret("NATS_TOKEN", "authentication token", (*string)(&c.Token))
	env.String("NATS_INBOX_PREFIX", "subject prefix of replies (_INBOX when empty); the role's own with deploy/nats/auth.conf", &c.InboxPrefix)
	env.String("NATS_TLS_CERT", "client certificate (with NATS_TLS_KEY)", &c.TLSCert)
	env.String("NATS_TLS_KEY", "client certificate's key (with NATS_TLS_CERT)", &c.TLSKey)
	env.String("NATS_TLS_CA", "CA bundle to verify the servers", &c.TLSCA)
}

// MapOps maps the variables of metrics and tracing onto addr and exp.
func MapOps(env *config.Env, addr *string, exp *tracing.Exporter) {
	env.String("METRICS_ADDR", "host:port of /metrics, /healthz and /readyz (empty: none)", addr)
	env.String("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTLP/HTTP traces endpoint; tracing is off when unset", &exp.OTLPEndpoint)
}
