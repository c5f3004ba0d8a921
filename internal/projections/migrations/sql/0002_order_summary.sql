-- order_summary: one row per order and one per order line.

CREATE TABLE orders (
    id              text        PRIMARY KEY,
    customer_id     text        NOT NULL,
    currency        text        NOT NULL,
    status          text        NOT NULL,
    total_cents     bigint      NOT NULL,
    -- Distinct products, as OrderSubmitted.itemCount counts them.
    item_count      integer     NOT NULL,
    payment_id      text,
    paid_cents      bigint,
    payment_method  text,
    tracking_number text,
    carrier         text,
    cancel_reason   text,
    created_at      timestamptz NOT NULL,
    submitted_at    timestamptz,
    paid_at         timestamptz,
    shipped_at      timestamptz,
    delivered_at    timestamptz,
    canceled_at     timestamptz,
    updated_at      timestamptz NOT NULL,
    version         bigint      NOT NULL,
    last_sequence   bigint      NOT NULL
);

CREATE INDEX orders_customer ON orders (customer_id, created_at);

CREATE TABLE order_items (
    order_id         text   NOT NULL,
    product_id       text   NOT NULL,
    quantity         bigint NOT NULL,
    unit_price_cents bigint NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
