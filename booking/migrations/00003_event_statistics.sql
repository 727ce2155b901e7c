-- +goose Up
-- No planner statistics on event_id. Each table below holds every event's
-- rows, keyed by event_id first. ANALYZE records the events it saw as the
-- column's most common values, and those cover all of its rows; an event
-- created or put on sale after that is then estimated at one row. Postgres
-- planned the sale's version-checked UPDATE as a pass over every seat of
-- the event per order, and the staff sales-per-minute and reconciler joins
-- of orders and order items as nested loops over all of the event's rows
-- per order (seconds each, growing with every sale) - in the one minute
-- that matters. Autovacuum would not fix it: a new event among many past
-- ones never changes the tenth of a table that triggers an analyze. With
-- no statistics an event is estimated at 0.5 % of the table, whatever its
-- age, and the plans use the whole primary key.
--
-- Changing the type to itself drops the statistics ANALYZE already
-- gathered (SET STATISTICS 0 only stops new ones); text to text rewrites
-- nothing.
ALTER TABLE sections    ALTER COLUMN event_id TYPE text, ALTER COLUMN event_id SET STATISTICS 0;
ALTER TABLE orders      ALTER COLUMN event_id TYPE text, ALTER COLUMN event_id SET STATISTICS 0;
ALTER TABLE seats       ALTER COLUMN event_id TYPE text, ALTER COLUMN event_id SET STATISTICS 0;
ALTER TABLE order_items ALTER COLUMN event_id TYPE text, ALTER COLUMN event_id SET STATISTICS 0;
ALTER TABLE checkouts   ALTER COLUMN event_id TYPE text, ALTER COLUMN event_id SET STATISTICS 0;
ALTER TABLE outbox      ALTER COLUMN event_id TYPE text, ALTER COLUMN event_id SET STATISTICS 0;
ALTER TABLE audit_log   ALTER COLUMN event_id TYPE text, ALTER COLUMN event_id SET STATISTICS 0;

-- +goose Down
ALTER TABLE sections    ALTER COLUMN event_id SET STATISTICS -1;
ALTER TABLE orders      ALTER COLUMN event_id SET STATISTICS -1;
ALTER TABLE seats       ALTER COLUMN event_id SET STATISTICS -1;
ALTER TABLE order_items ALTER COLUMN event_id SET STATISTICS -1;
ALTER TABLE checkouts   ALTER COLUMN event_id SET STATISTICS -1;
ALTER TABLE outbox      ALTER COLUMN event_id SET STATISTICS -1;
ALTER TABLE audit_log   ALTER COLUMN event_id SET STATISTICS -1;
