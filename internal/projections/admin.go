package projections

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/projections/migrations"
)

// AdminConfig configures an Admin. Zero fields take the values of
// DefaultConfig.
type AdminConfig struct {
	Schema     string
	Partitions int
	Logger     *slog.Logger
	// Now is the clock of lag figures; time.Now if nil.
	Now func() time.Time
}

func (c *AdminConfig) setDefaults() {
	d := DefaultConfig()
	if c.Schema == "" {
		c.Schema = d.Schema
	}
	if c.Partitions == 0 {
		c.Partitions = d.Partitions
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
	return errors.Join(migrations.ValidateSchema("Schema", c.Schema), es.ValidatePartitions("Partitions", c.Partitions))
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
		return nil, fmt.Errorf("projections admin config: %w", err)
	}
	return &Admin{pool: pool, js: js, cfg: cfg}, nil
}
