-- +goose Up
-- orders_session (event_id, session_id) duplicated the leading columns of
-- the unique (event_id, session_id, checkout_key) index, which serves the
-- same lookups (the sale's per-fan seat count); every order paid for both.
DROP INDEX IF EXISTS orders_session;

-- +goose Down
CREATE INDEX IF NOT EXISTS orders_session ON orders (event_id, session_id);
