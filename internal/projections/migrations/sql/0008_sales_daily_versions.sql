-- sales_daily_orders.last_version: the version of the order's newest event
-- that sales_daily counted, so that an event counted once is refused if it
-- ever comes again (the other read models refuse repeats the same way)
-- instead of being counted twice.
ALTER TABLE sales_daily_orders ADD COLUMN last_version bigint NOT NULL DEFAULT 1;
