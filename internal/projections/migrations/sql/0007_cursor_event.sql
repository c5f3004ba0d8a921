-- The id of the event at the cursor (its Nats-Msg-Id), so a runner can tell
-- that the events stream still holds the event its read model ends with:
-- after a lost tail, a restored older backup or a recreated stream it does
-- not, and the projection stops instead of skipping what is missing.
-- Empty for cursors written before this column (only the sequence is
-- checked then) and for a cursor of 0.
ALTER TABLE projection_checkpoints ADD COLUMN last_event_id text NOT NULL DEFAULT '';
