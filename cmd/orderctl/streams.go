package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/jetsource/jetsource/internal/es"
)

// cmdStreams is the operator's side of the streams: apply creates or
// updates the four streams and the aggregator's lease bucket from the
// environment the services read; check reports how they differ from it and
// fails if they do. The services only verify them.
func cmdStreams(s *session) *cobra.Command {
	apply := &cobra.Command{
		Use:   "apply",
		Short: "create or update the streams and the aggregator's lease bucket",
		Long: `Creates the four streams and the aggregator's lease bucket, or updates them to
the configuration (JETSOURCE_PARTITIONS, JETSOURCE_REPLICAS,
JETSOURCE_RESULTS_MAX_AGE, JETSOURCE_DUPLICATE_WINDOW, AGGREGATOR_LEASE_TTL, as
the aggregator reads them), and lists what it changed. The partition count of
existing streams cannot change. Needs the operator role.`,
		Example: `  orderctl streams apply
  JETSOURCE_REPLICAS=3 orderctl streams apply`,
		Args: args(0),
	}
	apply.RunE = s.runE(func(ctx context.Context, _ []string) error { return s.streams(ctx, true) })
	check := &cobra.Command{
		Use:   "check",
		Short: "list how the streams differ from the configuration (exit 1 if they do)",
		Long: `Lists, one line each, how the streams and the aggregator's lease bucket differ
from the configuration that streams apply would apply, missing ones included,
and fails (exit code 1) if they do.`,
		Example: "  orderctl streams check",
		Args:    args(0),
	}
	check.RunE = s.runE(func(ctx context.Context, _ []string) error { return s.streams(ctx, false) })
	return group("streams", "create, update or check the streams and the lease bucket", apply, check)
}

func (s *session) streams(ctx context.Context, apply bool) error {
	js, err := s.JetStream()
	if err != nil {
		return err
	}
	// Verify lists every difference, missing streams included.
	var differences []string
	var ve *es.VerifyError
	switch err := es.Verify(ctx, js, s.cfg.Streams); {
	case errors.As(err, &ve):
		differences = ve.Differences
	case err != nil:
		return err
	}
	if !apply {
		for _, d := range differences {
			fmt.Fprintln(s.stdout, d)
		}
		if len(differences) > 0 {
			return fmt.Errorf("%d differences from the configuration; orderctl streams apply changes them", len(differences))
		}
		fmt.Fprintln(s.stdout, "streams and lease bucket are as configured")
		return nil
	}
	if err := es.Setup(ctx, js, s.cfg.Streams); err != nil {
		if errors.Is(err, es.ErrPartitionMismatch) {
			// The partition count of existing streams cannot change: say
			// so in the variable's words.
			if _, perr := s.Partitions(ctx); perr != nil {
				return perr
			}
		}
		return err
	}
	for _, d := range differences {
		fmt.Fprintln(s.stdout, "applied:", d)
	}
	if len(differences) == 0 {
		fmt.Fprintln(s.stdout, "streams and lease bucket were as configured already")
	}
	return nil
}
