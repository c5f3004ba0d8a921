package projections

import (
	"errors"
	"io"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/config"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/projections/migrations"
)

// DefaultSchema is the Postgres schema of the read models, cursors and
// dead letters unless configured otherwise.
const DefaultSchema = "jetsource"

// MaxBatchSize bounds BatchSize: one transaction per batch should stay short.
const MaxBatchSize = 5000

// Config configures a Runner. Zero fields take DefaultConfig's values,
// the home of the defaults.
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
	// ReplicaID names this replica among those of the projection: the
	// host name and a random suffix by default. It must be unique among
	// the running replicas, and it orders them when they split the
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

// DefaultConfig returns the defaults, with a replica id named after the
// host; Projection has none.
func DefaultConfig() Config {
	return Config{
		Schema:       DefaultSchema,
		Partitions:   contract.DefaultPartitions,
		BatchSize:    500,
		BatchWait:    5 * time.Millisecond,
		MaxAttempts:  5,
		ReplicaID:    config.ReplicaID("projector"),
		Heartbeat:    time.Second,
		ReplicaTTL:   4 * time.Second,
		DrainTimeout: 10 * time.Second,
		AckWait:      time.Minute,
	}
}

// setDefaults fills the zero fields from DefaultConfig and the nil
// dependencies with ones that do nothing.
func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.Schema == "" {
		c.Schema = d.Schema
	}
	if c.Partitions == 0 {
		c.Partitions = d.Partitions
	}
	if c.BatchSize == 0 {
		c.BatchSize = d.BatchSize
	}
	if c.BatchWait == 0 {
		c.BatchWait = d.BatchWait
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.ReplicaID == "" {
		c.ReplicaID = d.ReplicaID
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = d.Heartbeat
	}
	if c.ReplicaTTL == 0 {
		c.ReplicaTTL = d.ReplicaTTL
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = d.DrainTimeout
	}
	if c.AckWait == 0 {
		c.AckWait = d.AckWait
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider()
	}
}

// Validate reports every problem at once, as config.FieldErrors.
func (c Config) Validate() error {
	errs := []error{checkProjection(c.Projection), migrations.ValidateSchema("Schema", c.Schema)}
	errs = append(errs, checkBatching(c.Partitions, c.BatchSize, c.BatchWait, c.MaxAttempts)...)
	if c.Heartbeat <= 0 {
		errs = append(errs, config.Invalid("Heartbeat", c.Heartbeat, "must be positive"))
	}
	if c.ReplicaTTL < 2*c.Heartbeat {
		errs = append(errs, config.Invalid("ReplicaTTL", c.ReplicaTTL, "must be at least twice the heartbeat (%s)", c.Heartbeat))
	}
	if c.DrainTimeout <= 0 {
		errs = append(errs, config.Invalid("DrainTimeout", c.DrainTimeout, "must be positive"))
	}
	if c.AckWait < time.Second {
		errs = append(errs, config.Invalid("AckWait", c.AckWait, "must be at least 1s"))
	}
	return errors.Join(errs...)
}

func checkBatching(partitions, batchSize int, batchWait time.Duration, maxAttempts int) []error {
	errs := []error{es.ValidatePartitions("Partitions", partitions)}
	if batchSize < 1 || batchSize > MaxBatchSize {
		errs = append(errs, config.Invalid("BatchSize", batchSize, "must be between 1 and %d", MaxBatchSize))
	}
	if batchWait <= 0 || batchWait > time.Second {
		errs = append(errs, config.Invalid("BatchWait", batchWait, "must be positive and at most 1s"))
	}
	if maxAttempts < 1 || maxAttempts > 100 {
		errs = append(errs, config.Invalid("MaxAttempts", maxAttempts, "must be between 1 and 100"))
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
