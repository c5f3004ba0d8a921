-- The runner's own tables: cursors, dead letters and the replicas that share
-- a projection's partitions.

CREATE TABLE projection_checkpoints (
    projection    text        NOT NULL,
    partition     integer     NOT NULL CHECK (partition >= 0),
    last_sequence bigint      NOT NULL DEFAULT 0 CHECK (last_sequence >= 0),
    -- metadata.timestamp of the event at last_sequence: how far the read
    -- model has come in event time.
    last_event_at timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, partition)
);

CREATE TABLE projection_dead_letters (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection      text        NOT NULL,
    partition       integer     NOT NULL,
    stream_sequence bigint      NOT NULL,
    subject         text        NOT NULL,
    order_id        text        NOT NULL,
    event_id        text        NOT NULL DEFAULT '',
    event_type      text        NOT NULL DEFAULT '',
    event_version   bigint      NOT NULL DEFAULT 0,
    -- The stored message body as it was, even if it is not valid JSON.
    body            bytea       NOT NULL,
    error           text        NOT NULL DEFAULT '',
    attempts        integer     NOT NULL DEFAULT 0,
    status          text        NOT NULL
        CHECK (status IN ('failed', 'parked', 'retried', 'skipped', 'superseded')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- An event is open (failed or parked) at most once per projection.
CREATE UNIQUE INDEX projection_dead_letters_open
    ON projection_dead_letters (projection, stream_sequence)
    WHERE status IN ('failed', 'parked');

-- Runners read the blocked orders of a partition before every batch.
CREATE INDEX projection_dead_letters_blocked
    ON projection_dead_letters (projection, partition, order_id)
    WHERE status IN ('failed', 'parked');

CREATE INDEX projection_dead_letters_order
    ON projection_dead_letters (projection, order_id, stream_sequence);

CREATE TABLE projection_replicas (
    projection   text        NOT NULL,
    replica_id   text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, replica_id)
);
