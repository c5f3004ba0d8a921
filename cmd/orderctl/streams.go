package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
)

// cmdStreams is the operator's side of the streams: apply creates or
// updates the four streams and the aggregator's lease bucket from the
// environment the services read; check reports how they differ from it and
// fails if they do. The services only verify them.
func cmdStreams(ctx context.Context, s *session, args []string) error {
	if len(args) == 0 || (args[0] != "apply" && args[0] != "check") {
		return usagef("streams needs apply or check")
	}
	fs := newFlags("streams " + args[0])
	if err := s.parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	topo := s.cfg.Streams
	bucket := aggregator.LeaseBucketConfig(s.cfg.Aggregator.LeaseTTL, s.cfg.Streams.Replicas)
	if _, err := s.Client(); err != nil {
		return err
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	differences, err := streamDifferences(ctx, js, topo, bucket)
	if err != nil {
		return err
	}
	if args[0] == "check" {
		for _, d := range differences {
			fmt.Fprintln(s.stdout, d)
		}
		if len(differences) > 0 {
			return fmt.Errorf("%d differences from the configuration; orderctl streams apply changes them", len(differences))
		}
		fmt.Fprintln(s.stdout, "streams and lease bucket are as configured")
		return nil
	}
	if err := es.Setup(ctx, js, topo); err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, bucket); err != nil {
		return fmt.Errorf("create or update bucket %s: %w", bucket.Bucket, err)
	}
	for _, d := range differences {
		fmt.Fprintln(s.stdout, "applied:", d)
	}
	if len(differences) == 0 {
		fmt.Fprintln(s.stdout, "streams and lease bucket were as configured already")
	}
	return nil
}

// streamDifferences lists, one line each, how the streams and the bucket
// differ from the configuration, missing ones included.
func streamDifferences(ctx context.Context, js jetstream.JetStream, topo es.Topology, bucket jetstream.KeyValueConfig) ([]string, error) {
	var lines []string
	for _, err := range []error{es.Verify(ctx, js, topo), es.VerifyBucket(ctx, js, bucket)} {
		var ve *es.VerifyError
		switch {
		case errors.As(err, &ve):
			lines = append(lines, ve.Differences...)
		case err != nil:
			return nil, err
		}
	}
	return lines, nil
}
