-- order_history: the audit trail, one row per event.

CREATE TABLE order_history (
    event_id        text        PRIMARY KEY,
    order_id        text        NOT NULL,
    version         bigint      NOT NULL,
    stream_sequence bigint      NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    data            jsonb       NOT NULL,
    user_id         text,
    correlation_id  text,
    causation_id    text,
    occurred_at     timestamptz NOT NULL,
    UNIQUE (order_id, version)
);
