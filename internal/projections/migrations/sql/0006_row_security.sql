-- Row-level security on the runner's tables: a projector's runtime role
-- (jetsource_projector_<projection>, or a member of it; see
-- deploy/postgres/roles.sql) reads and writes only the rows of its own
-- projection, and jetsource_reader reads them all (its grants allow no
-- writes). The tables' owner, the migrating role, and superusers are not
-- subject to it. A role that does not exist matches no row.

CREATE FUNCTION projection_rows_visible(projection text) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
        SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
            WHERE rolname IN ('jetsource_projector_' || projection, 'jetsource_reader')
            AND pg_catalog.pg_has_role(oid, 'MEMBER'))
    $$;

ALTER TABLE projection_checkpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_projection ON projection_checkpoints
    USING (projection_rows_visible(projection)) WITH CHECK (projection_rows_visible(projection));

ALTER TABLE projection_dead_letters ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_projection ON projection_dead_letters
    USING (projection_rows_visible(projection)) WITH CHECK (projection_rows_visible(projection));

ALTER TABLE projection_replicas ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_projection ON projection_replicas
    USING (projection_rows_visible(projection)) WITH CHECK (projection_rows_visible(projection));

ALTER TABLE projection_owners ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_projection ON projection_owners
    USING (projection_rows_visible(projection)) WITH CHECK (projection_rows_visible(projection));
