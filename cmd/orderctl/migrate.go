package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsource/jetsource/internal/projections/migrations"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// cmdMigrate applies the schema migrations to JETSOURCE_SCHEMA and grants
// the runtime roles of deploy/postgres/roles.sql their privileges: what the
// migrating role runs before projectors that do not migrate
// (PROJECTOR_MIGRATE=false) start, and after upgrades.
func cmdMigrate(ctx context.Context, s *session, args []string) error {
	fs := newFlags("migrate")
	if err := s.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if s.cfg.DatabaseURL == "" {
		return errors.New("DATABASE_URL is not set; migrate runs as the role that owns the schema")
	}
	if err := migrations.CheckSchemaName(s.cfg.Schema); err != nil {
		return fmt.Errorf("JETSOURCE_SCHEMA: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(s.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "orderctl"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.pool = pool

	applied, err := migrations.Apply(ctx, pool, s.cfg.Schema)
	for _, v := range applied {
		fmt.Fprintf(s.stdout, "applied migration %04d to schema %s\n", v, s.cfg.Schema)
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintf(s.stdout, "schema %s is up to date\n", s.cfg.Schema)
	}
	for _, name := range readmodel.Names() {
		p, err := readmodel.New(name)
		if err != nil {
			return err
		}
		roles, err := migrations.Grant(ctx, pool, s.cfg.Schema, name, p.Tables())
		if err != nil {
			return err
		}
		if len(roles) > 0 {
			fmt.Fprintf(s.stdout, "granted %s its privileges on %s\n", strings.Join(roles, " and "), name)
		}
	}
	return nil
}
