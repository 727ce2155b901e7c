-- +goose Up
-- Every staff control action (admission changes, event creation, hold
-- releases, extensions) is recorded here and shown on the staff pages.
CREATE TABLE audit_log (
    event_id   text NOT NULL,
    id         bigserial,
    actor      text NOT NULL,
    action     text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, id)
);

-- +goose Down
DROP TABLE audit_log;
