package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/jetsource/jetsource/internal/projections/migrations"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// cmdMigrate applies the schema migrations to JETSOURCE_SCHEMA and grants
// the runtime roles of deploy/postgres/roles.sql their privileges: what the
// migrating role runs before projectors that do not migrate
// (PROJECTOR_MIGRATE=false) start, and after upgrades.
func cmdMigrate(s *session) *cobra.Command {
	c := &cobra.Command{
		Use:   "migrate",
		Short: "apply the schema migrations and grant the runtime roles their privileges",
		Long: `Applies the read models' schema migrations to JETSOURCE_SCHEMA in DATABASE_URL
and grants the roles of deploy/postgres/roles.sql their privileges. Run it as
the role that owns the schema, before projectors that do not migrate
(PROJECTOR_MIGRATE=false) start, and after upgrades.`,
		Example: `  DATABASE_URL=postgres://jetsource_migrator@db/jetsource orderctl migrate`,
		Args:    args(0),
	}
	c.RunE = s.runE(s.migrate)
	return c
}

func (s *session) migrate(ctx context.Context, _ []string) error {
	pool, err := s.connectDB(ctx, "migrate runs as the role that owns the schema")
	if err != nil {
		return err
	}
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
