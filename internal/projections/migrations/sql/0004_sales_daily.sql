-- sales_daily: per UTC day and currency. OrderPaid and OrderCanceled carry
-- no currency, so the projection keeps each order's currency from
-- OrderCreated in sales_daily_orders.

CREATE TABLE sales_daily (
    day             date   NOT NULL,
    currency        text   NOT NULL,
    orders_paid     bigint NOT NULL DEFAULT 0,
    revenue_cents   bigint NOT NULL DEFAULT 0,
    orders_canceled bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, currency)
);

CREATE TABLE sales_daily_orders (
    order_id text PRIMARY KEY,
    currency text NOT NULL
);
