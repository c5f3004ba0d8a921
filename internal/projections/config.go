package projections

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/jetsource/jetsource/internal/projections/migrations"
)

// Defaults of Config.
const (
	DefaultSchema       = "jetsource"
	DefaultPartitions   = 16
	DefaultBatchSize    = 500
	DefaultBatchWait    = 5 * time.Millisecond
	DefaultMaxAttempts  = 5
	DefaultHeartbeat    = time.Second
	DefaultReplicaTTL   = 4 * time.Second
	DefaultDrainTimeout = 10 * time.Second
	DefaultAckWait      = time.Minute
)

// MaxBatchSize bounds BatchSize: one transaction per batch should stay short.
const MaxBatchSize = 5000

// Config configures a Runner. Zero fields take the defaults above.
type Config struct {
	// Projection is the one projection the runner projects.
	Projection Projection
	// Schema holds the read-model, checkpoint and dead-letter tables.
	Schema string
	// Partitions is the partition count of the event stream.
	Partitions int
	// BatchSize is the most events one transaction applies.
	BatchSize int
	// BatchWait is how long a batch waits for more events after its first.
	BatchWait time.Duration
	// MaxAttempts is how often an event is applied before it is
	// dead-lettered.
	MaxAttempts int
	// ReplicaID names this replica among those of the projection; a random
	// "replica-<hex>" if empty (the library reads nothing from the
	// environment: cmd/projector passes the host name). It must be unique
	// among the running replicas, and it orders them when they split the
	// partitions.
	ReplicaID string
	// Heartbeat is how often the replica proves it is alive and rebalances.
	Heartbeat time.Duration
	// ReplicaTTL is how long a replica without a heartbeat still counts
	// when the others compute their share of partitions.
	ReplicaTTL time.Duration
	// DrainTimeout bounds how long a partition that is given up (on
	// shutdown or rebalance) may take to finish its batch.
	DrainTimeout time.Duration
	// AckWait is the consumers' ack wait. A batch that takes longer is
	// redelivered and the partition restarts from its cursor.
	AckWait time.Duration
	// Observer receives batch and ownership figures; may be nil.
	Observer Observer
	// Tracer continues the trace of each event that carries one (the
	// traceparent header): a span per projected event. No-op if nil.
	Tracer trace.TracerProvider
	// Logger receives operational logs; discarded if nil.
	Logger *slog.Logger
}

// ErrInvalidConfig wraps every configuration problem.
var ErrInvalidConfig = errors.New("invalid projections config")

func (c *Config) setDefaults() {
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchWait == 0 {
		c.BatchWait = DefaultBatchWait
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.ReplicaID == "" {
		c.ReplicaID = "replica-" + randomHex(8)
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.ReplicaTTL == 0 {
		c.ReplicaTTL = DefaultReplicaTTL
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider()
	}
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails: it crashes the program instead
	return hex.EncodeToString(b)
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if err := checkProjection(c.Projection); err != nil {
		errs = append(errs, err)
	}
	if err := migrations.CheckSchemaName(c.Schema); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, checkBatching(c.Partitions, c.BatchSize, c.BatchWait, c.MaxAttempts)...)
	if c.Heartbeat <= 0 {
		errs = append(errs, fmt.Errorf("heartbeat is %s; it must be positive", c.Heartbeat))
	}
	if c.ReplicaTTL < 2*c.Heartbeat {
		errs = append(errs, fmt.Errorf("replica TTL %s must be at least twice the heartbeat %s", c.ReplicaTTL, c.Heartbeat))
	}
	if c.DrainTimeout <= 0 {
		errs = append(errs, fmt.Errorf("drain timeout is %s; it must be positive", c.DrainTimeout))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("ack wait is %s; it must be at least 1s", c.AckWait))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

func checkBatching(partitions, batchSize int, batchWait time.Duration, maxAttempts int) []error {
	var errs []error
	if partitions < 1 || partitions > 1024 {
		errs = append(errs, fmt.Errorf("partitions is %d; it must be between 1 and 1024", partitions))
	}
	if batchSize < 1 || batchSize > MaxBatchSize {
		errs = append(errs, fmt.Errorf("batch size is %d; it must be between 1 and %d", batchSize, MaxBatchSize))
	}
	if batchWait <= 0 || batchWait > time.Second {
		errs = append(errs, fmt.Errorf("batch wait is %s; it must be positive and at most 1s", batchWait))
	}
	if maxAttempts < 1 || maxAttempts > 100 {
		errs = append(errs, fmt.Errorf("max attempts is %d; it must be between 1 and 100", maxAttempts))
	}
	return errs
}

// Observer receives the runner's figures, for metrics. Calls come from
// several goroutines and sit on the hot path: implementations must be safe
// for concurrent use and must not block.
type Observer interface {
	// BatchCommitted reports a committed batch of one partition.
	BatchCommitted(BatchStats)
	// OwnershipChanged reports the partitions the replica now owns.
	OwnershipChanged(projection string, partitions []int)
}

// BatchStats describes one committed batch.
type BatchStats struct {
	Projection string
	Partition  int
	// Events counts the events the batch moved the cursor over; Applied,
	// Parked and DeadLettered split them.
	Events, Applied, Parked, DeadLettered int
	// From and Cursor are the partition's checkpoint before and after the
	// batch. A From below the previous batch's Cursor means the partition
	// restarted from a checkpoint another writer (a rebuild swap) set.
	From, Cursor uint64
	// Pending is how many events of the partition the consumer had not yet
	// delivered when the batch's last event arrived.
	Pending uint64
	// LastEventAt is the newest event's metadata timestamp.
	LastEventAt time.Time
	// Duration is the time from the first event's arrival to the commit.
	Duration time.Duration
}
