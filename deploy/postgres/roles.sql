-- JetSource's PostgreSQL roles (docs/security.md, "PostgreSQL roles"). Run
-- once per database, as a superuser or a role with CREATEROLE, connected to
-- the database the projections use:
--
--   psql -d jetsource -f deploy/postgres/roles.sql
--
-- Then give each role its way to log in (ALTER ROLE ... PASSWORD '...', or
-- your pg_hba.conf mapping), and run `orderctl migrate` as
-- jetsource_migrator: it creates the schema and its tables, and grants the
-- other roles their privileges on them. Running this file again changes
-- nothing.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY[
        -- Owns the schema: migrations (orderctl migrate), rebuilds and their
        -- swaps (orderctl rebuild), dead-letter retries and skips.
        'jetsource_migrator',
        -- One runtime role per projection: row privileges on its own tables,
        -- and on its own rows of the runner's tables (row-level security).
        'jetsource_projector_order_summary',
        'jetsource_projector_order_history',
        'jetsource_projector_sales_daily',
        -- Services that read the read models: SELECT only.
        'jetsource_reader'
    ] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- it exists (or a concurrent run just created it)
        END;
    END LOOP;
    -- The migrating role creates the schema, and a rebuild its shadow
    -- schemas, in this database.
    EXECUTE format('GRANT CONNECT, CREATE ON DATABASE %I TO jetsource_migrator', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO jetsource_projector_order_summary, jetsource_projector_order_history, jetsource_projector_sales_daily, jetsource_reader', current_database());
END
$$;
