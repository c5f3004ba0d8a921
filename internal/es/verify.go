package es

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrStreamMismatch means a stream or bucket exists with settings other than
// the configured ones. Services refuse to start on it: only the operator
// changes streams (orderctl streams apply).
var ErrStreamMismatch = errors.New("streams differ from the configuration")

// ErrStreamMissing means a stream or bucket the service needs does not
// exist yet: orderctl streams apply creates it.
var ErrStreamMissing = errors.New("stream missing")

// Verify checks that the named streams (all four and the lease bucket when
// names is empty) exist with t's configuration, and changes nothing. Its
// error names every difference of every stream; it wraps ErrStreamMismatch
// (and ErrPartitionMismatch when the partition counts differ), or else
// ErrStreamMissing when streams are missing.
func Verify(ctx context.Context, js jetstream.JetStream, t Topology, names ...string) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("stream topology: %w", err)
	}
	want := t.StreamConfigs()
	if len(names) > 0 {
		want = slices.DeleteFunc(want, func(c jetstream.StreamConfig) bool { return !slices.Contains(names, c.Name) })
	}
	var missing, differences, otherCount []string
	recorded := ""
	for _, w := range want {
		s, err := js.Stream(ctx, w.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			missing = append(missing, w.Name)
			continue
		}
		if err != nil {
			return fmt.Errorf("look up stream %s: %w", w.Name, err)
		}
		got := s.CachedInfo().Config
		for _, d := range diff(w, got) {
			differences = append(differences, w.Name+": "+d)
		}
		if r := got.Metadata[PartitionsKey]; r != w.Metadata[PartitionsKey] {
			otherCount, recorded = append(otherCount, w.Name), r
		}
	}
	if len(otherCount) > 0 {
		differences = append([]string{fmt.Sprintf("%s: created with %q partitions, this binary is configured for %d (%v)",
			strings.Join(otherCount, ", "), recorded, t.Partitions, ErrPartitionMismatch)}, differences...)
	}
	if len(names) == 0 {
		d, m, err := bucketDifferences(ctx, js, t.LeaseBucketConfig())
		if err != nil {
			return err
		}
		differences, missing = append(differences, d...), append(missing, m...)
	}
	return verifyError(differences, missing, len(otherCount) > 0)
}

func verifyError(differences, missing []string, partitions bool) error {
	var sentinels []error
	switch {
	case len(differences) > 0:
		sentinels = append(sentinels, ErrStreamMismatch)
		if partitions {
			sentinels = append(sentinels, ErrPartitionMismatch)
		}
	case len(missing) > 0:
		sentinels = append(sentinels, ErrStreamMissing)
	default:
		return nil
	}
	lines := differences
	for _, name := range missing {
		lines = append(lines, name+": missing")
	}
	return &VerifyError{Differences: lines, sentinels: sentinels}
}

// VerifyError lists every difference between the configuration and the
// streams found, one "STREAM: what" line each.
type VerifyError struct {
	Differences []string
	sentinels   []error
}

func (e *VerifyError) Error() string {
	return "streams are not as configured (orderctl streams apply creates or changes them):\n  " + strings.Join(e.Differences, "\n  ")
}

// Unwrap lets errors.Is find the sentinels.
func (e *VerifyError) Unwrap() []error { return e.sentinels }

// diff lists how got differs from want in the settings JetSource relies on:
// subjects and their transform, retention, storage, replicas, limits, the
// duplicate window, the deny and allow flags, and metadata other than the
// partition count (which Verify reports on its own). Limits of 0 and -1
// both mean none; a want without a duplicate window accepts the server's
// default.
func diff(want, got jetstream.StreamConfig) []string {
	var d []string
	check := func(name string, w, g any) {
		if w != g {
			d = append(d, fmt.Sprintf("%s is %v, want %v", name, g, w))
		}
	}
	check("subjects", strings.Join(want.Subjects, " "), strings.Join(got.Subjects, " "))
	check("subject transform", transform(want.SubjectTransform), transform(got.SubjectTransform))
	check("retention", want.Retention, got.Retention)
	check("storage", want.Storage, got.Storage)
	check("replicas", want.Replicas, got.Replicas)
	check("discard policy", want.Discard, got.Discard)
	check("max messages", limit(want.MaxMsgs), limit(got.MaxMsgs))
	check("max bytes", limit(want.MaxBytes), limit(got.MaxBytes))
	check("max age", age(want.MaxAge), age(got.MaxAge))
	check("max messages per subject", limit(want.MaxMsgsPerSubject), limit(got.MaxMsgsPerSubject))
	check("max message size", limit(int64(want.MaxMsgSize)), limit(int64(got.MaxMsgSize)))
	if want.Duplicates != 0 {
		check("duplicate window", want.Duplicates, got.Duplicates)
	}
	check("deny delete", want.DenyDelete, got.DenyDelete)
	check("deny purge", want.DenyPurge, got.DenyPurge)
	check("allow direct", want.AllowDirect, got.AllowDirect)
	check("allow atomic publish", want.AllowAtomicPublish, got.AllowAtomicPublish)
	for _, key := range slices.Sorted(maps.Keys(want.Metadata)) {
		if key != PartitionsKey {
			check("metadata "+key, strconv.Quote(want.Metadata[key]), strconv.Quote(got.Metadata[key]))
		}
	}
	return d
}

func transform(t *jetstream.SubjectTransformConfig) string {
	if t == nil {
		return "none"
	}
	return t.Source + " -> " + t.Destination
}

// limit prints a count or size limit; 0 and negative mean none.
func limit(n int64) string {
	if n <= 0 {
		return "none"
	}
	return strconv.FormatInt(n, 10)
}

func age(a time.Duration) string {
	if a <= 0 {
		return "none"
	}
	return a.String()
}

// bucketDifferences lists how the key-value bucket differs from want in
// history, TTLs, storage, replicas and limits, or that it is missing.
func bucketDifferences(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) (differences, missing []string, err error) {
	stream := "KV_" + want.Bucket
	kv, err := js.KeyValue(ctx, want.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, []string{stream}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("look up bucket %s: %w", want.Bucket, err)
	}
	status, err := kv.Status(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("bucket %s status: %w", want.Bucket, err)
	}
	bs, ok := status.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return nil, nil, fmt.Errorf("bucket %s: unexpected status type %T", want.Bucket, status)
	}
	got := bs.Config()
	check := func(name string, w, g any) {
		if w != g {
			differences = append(differences, fmt.Sprintf("%s: %s is %v, want %v", stream, name, g, w))
		}
	}
	check("history", max(want.History, 1), got.History)
	check("ttl", age(want.TTL), age(got.TTL))
	check("limit marker ttl", age(want.LimitMarkerTTL), age(got.LimitMarkerTTL))
	check("storage", want.Storage, got.Storage)
	check("replicas", max(want.Replicas, 1), got.Replicas)
	check("max bytes", limit(want.MaxBytes), limit(got.MaxBytes))
	check("max value size", limit(int64(want.MaxValueSize)), limit(int64(got.MaxValueSize)))
	return differences, nil, nil
}
