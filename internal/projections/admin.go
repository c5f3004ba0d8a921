package projections

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/internal/projections/migrations"
)

// AdminConfig configures an Admin. Zero fields take the defaults of Config.
type AdminConfig struct {
	Schema     string
	Partitions int
	Logger     *slog.Logger
	// Now is the clock of lag figures; time.Now if nil.
	Now func() time.Time
}

func (c *AdminConfig) setDefaults() {
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem at once.
func (c AdminConfig) Validate() error {
	var errs []error
	if err := migrations.CheckSchemaName(c.Schema); err != nil {
		errs = append(errs, err)
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		errs = append(errs, fmt.Errorf("partitions is %d; it must be between 1 and 1024", c.Partitions))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

// Admin holds the operator functions: dead letters, lag, checkpoints and
// rebuilds. It is safe for concurrent use.
type Admin struct {
	pool *pgxpool.Pool
	js   jetstream.JetStream
	cfg  AdminConfig
}

// NewAdmin checks cfg and returns an Admin over a migrated schema.
func NewAdmin(pool *pgxpool.Pool, js jetstream.JetStream, cfg AdminConfig) (*Admin, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Admin{pool: pool, js: js, cfg: cfg}, nil
}
