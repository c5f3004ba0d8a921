package es

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"

	"github.com/jetsource/jetsource/internal/config"
)

// Message size limits of the streams, headers included: the server refuses
// larger messages, so no client fills a stream with oversized ones.
const (
	// CommandMaxMsgSize is the 64 KiB command body limit
	// plus 4 KiB of headers; bodies between the two are stored and then
	// rejected by the aggregator with invalid_command.
	CommandMaxMsgSize = contract.MaxBodyBytes + 4<<10
	// ResultMaxMsgSize holds one outcome with room to spare: the aggregator
	// clips error messages, and a command appends at most a few events.
	ResultMaxMsgSize = 64 << 10
	// SnapshotMaxMsgSize holds the state of an order at the 500-item limit
	// several times over. A larger snapshot is not stored, and the order
	// loads from its events.
	SnapshotMaxMsgSize = 512 << 10
)

// PartitionsKey is the stream metadata key that records the partition count
// the streams were created with.
const PartitionsKey = "jetsource.partitions"

// ErrPartitionMismatch means the streams were created with a different
// partition count than this binary is configured for. Running anyway would
// route commands and events of one order to different partitions.
var ErrPartitionMismatch = errors.New("partition count mismatch")

// MaxPartitions bounds the partition count.
const MaxPartitions = 1024

// Topology is what Setup creates. The partition count cannot change once the
// streams exist.
type Topology struct {
	Partitions int
	// Replicas is the streams' replica count: 1 in development, 3 or 5 in
	// production.
	Replicas int
	// ResultsMaxAge is how long results are kept (and rejections
	// remembered).
	ResultsMaxAge time.Duration
	// DuplicateWindow is JetStream's de-duplication window for Nats-Msg-Id.
	DuplicateWindow time.Duration
	// LeaseTTL is the TTL of the aggregators' lease bucket: how long a
	// replica's partition leases outlive its last renewal. The aggregators
	// must run with the same lease TTL.
	LeaseTTL time.Duration
}

// DefaultTopology is the home of the streams' defaults: R1, results kept a
// day.
func DefaultTopology() Topology {
	return Topology{Partitions: contract.DefaultPartitions, Replicas: 1, ResultsMaxAge: 24 * time.Hour, DuplicateWindow: 2 * time.Minute,
		LeaseTTL: 5 * time.Second}
}

// ValidatePartitions checks a partition count; every configuration that
// holds one calls it, so that a bad count reads the same everywhere.
func ValidatePartitions(field string, n int) error {
	if n < 1 || n > MaxPartitions {
		return config.Invalid(field, n, "must be between 1 and %d", MaxPartitions)
	}
	return nil
}

// Validate reports every problem at once.
func (t Topology) Validate() error {
	errs := []error{ValidatePartitions("Partitions", t.Partitions)}
	if t.Replicas != 1 && t.Replicas != 3 && t.Replicas != 5 {
		errs = append(errs, config.Invalid("Replicas", t.Replicas, "must be 1, 3 or 5"))
	}
	if t.ResultsMaxAge < time.Minute {
		errs = append(errs, config.Invalid("ResultsMaxAge", t.ResultsMaxAge, "must be at least 1m"))
	}
	if t.DuplicateWindow < 2*time.Minute {
		errs = append(errs, config.Invalid("DuplicateWindow", t.DuplicateWindow, "must be at least 2m"))
	}
	if t.LeaseTTL < time.Second {
		errs = append(errs, config.Invalid("LeaseTTL", t.LeaseTTL, "must be at least 1s"))
	}
	return errors.Join(errs...)
}

// LeaseBucket is the KV bucket in which aggregator replicas announce
// themselves and lease command partitions.
const LeaseBucket = "JETSOURCE_AGGREGATOR_LEASES"

// LeaseBucketConfig is the lease bucket of t: it keeps keys for LeaseTTL;
// limit markers make watchers see expiries as deletions.
func (t Topology) LeaseBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         LeaseBucket,
		Description:    "JetSource aggregator membership and partition leases",
		History:        1,
		TTL:            t.LeaseTTL,
		LimitMarkerTTL: t.LeaseTTL,
		// File storage: a restarted server keeps the leases, so no replica
		// takes a partition that another still runs.
		Storage:  jetstream.FileStorage,
		Replicas: t.Replicas,
	}
}

// StreamConfigs returns the four stream configurations of t.
func (t Topology) StreamConfigs() []jetstream.StreamConfig {
	meta := map[string]string{PartitionsKey: strconv.Itoa(t.Partitions)}
	return []jetstream.StreamConfig{
		{
			Name:        contract.CommandsStream,
			Description: "Order commands, a work queue partitioned by order id.",
			Subjects:    []string{contract.CommandsPrefix + "*.*"},
			SubjectTransform: &jetstream.SubjectTransformConfig{
				Source:      contract.CommandsPrefix + "*.*",
				Destination: contract.CommandsPrefix + fmt.Sprintf("{{partition(%d,1)}}", t.Partitions) + ".{{wildcard(1)}}.{{wildcard(2)}}",
			},
			Retention:  jetstream.WorkQueuePolicy,
			Storage:    jetstream.FileStorage,
			Replicas:   t.Replicas,
			Duplicates: t.DuplicateWindow,
			MaxMsgSize: CommandMaxMsgSize,
			Metadata:   meta,
		},
		{
			Name:               contract.EventsStream,
			Description:        "The order event store: one subject per order, immutable.",
			Subjects:           []string{contract.EventsPrefix + "*.*"},
			Retention:          jetstream.LimitsPolicy,
			Storage:            jetstream.FileStorage,
			Replicas:           t.Replicas,
			Duplicates:         t.DuplicateWindow,
			MaxMsgs:            -1,
			MaxBytes:           -1,
			DenyDelete:         true,
			DenyPurge:          true,
			AllowDirect:        true,
			AllowAtomicPublish: true,
			Metadata:           meta,
		},
		{
			Name:              contract.SnapshotsStream,
			Description:       "Latest snapshot per order; a cache, safe to delete.",
			Subjects:          []string{contract.SnapshotsPrefix + "*"},
			Storage:           jetstream.FileStorage,
			Replicas:          t.Replicas,
			MaxMsgsPerSubject: 1,
			MaxMsgSize:        SnapshotMaxMsgSize,
			AllowDirect:       true,
			Metadata:          meta,
		},
		{
			Name:              contract.ResultsStream,
			Description:       "One outcome per command id.",
			Subjects:          []string{contract.ResultsPrefix + ">"},
			Storage:           jetstream.FileStorage,
			Replicas:          t.Replicas,
			MaxAge:            t.ResultsMaxAge,
			MaxMsgsPerSubject: 1,
			MaxMsgSize:        ResultMaxMsgSize,
			AllowDirect:       true,
			Metadata:          meta,
		},
	}
}

// Setup creates the four streams and the lease bucket, or updates them to
// t. It refuses to touch streams recorded with another partition count.
// Only the operator (orderctl streams apply), the dev stack and tests call
// it: services Verify them and change nothing.
func Setup(ctx context.Context, js jetstream.JetStream, t Topology) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("stream topology: %w", err)
	}
	if err := CheckPartitions(ctx, js, t.Partitions); err != nil {
		return err
	}
	for _, cfg := range t.StreamConfigs() {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("create or update stream %s: %w", cfg.Name, err)
		}
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, t.LeaseBucketConfig()); err != nil {
		return fmt.Errorf("create or update bucket %s: %w", LeaseBucket, err)
	}
	return nil
}

// CheckPartitions verifies that existing streams were created with the
// given partition count. Missing streams pass: Setup creates them.
func CheckPartitions(ctx context.Context, js jetstream.JetStream, partitions int) error {
	for _, name := range []string{contract.CommandsStream, contract.EventsStream} {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("look up stream %s: %w", name, err)
		}
		if err := checkRecorded(s, partitions); err != nil {
			return err
		}
	}
	return nil
}

func checkRecorded(s jetstream.Stream, partitions int) error {
	cfg := s.CachedInfo().Config
	if recorded := cfg.Metadata[PartitionsKey]; recorded != strconv.Itoa(partitions) {
		return fmt.Errorf("%w: stream %s was created with %q partitions, this binary is configured for %d",
			ErrPartitionMismatch, cfg.Name, recorded, partitions)
	}
	return nil
}

// RequireStreams verifies that the named streams (all four when none are
// named) exist and record the given partition count: what readiness asks,
// cheaper than Verify, and blind to settings the operator may change while
// the services run.
func RequireStreams(ctx context.Context, js jetstream.JetStream, partitions int, names ...string) error {
	if len(names) == 0 {
		names = []string{contract.CommandsStream, contract.EventsStream, contract.SnapshotsStream, contract.ResultsStream}
	}
	for _, name := range names {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("look up stream %s: %w", name, err)
		}
		if err := checkRecorded(s, partitions); err != nil {
			return err
		}
	}
	return nil
}
