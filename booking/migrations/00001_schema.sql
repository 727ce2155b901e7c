-- +goose Up
-- Every table that belongs to an event is keyed by event_id first, so the
-- schema can be distributed by event_id (Citus) or sharded per event, and
-- every transaction touches one event.

CREATE TABLE events (
    id                 text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    venue              text NOT NULL DEFAULT '',
    starts_at          timestamptz NOT NULL,
    on_sale_at         timestamptz NOT NULL,
    -- The pre-queue shuffle's secret seed; its SHA-256 is published before the sale.
    shuffle_seed       bytea NOT NULL,
    shuffle_seed_sha256 text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sections (
    event_id    text NOT NULL REFERENCES events (id),
    id          text NOT NULL CHECK (id ~ '^[A-Za-z0-9_-]{1,32}$'),
    name        text NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    position    int NOT NULL,
    PRIMARY KEY (event_id, id)
);

CREATE TABLE orders (
    event_id     text NOT NULL REFERENCES events (id),
    id           uuid NOT NULL,
    session_id   text NOT NULL,
    email        text NOT NULL,
    status       text NOT NULL CHECK (status IN ('confirmed', 'refunded')),
    total_cents  bigint NOT NULL CHECK (total_cents >= 0),
    checkout_key text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, id),
    -- One order per checkout: a retried commit cannot create a second order.
    UNIQUE (event_id, session_id, checkout_key)
);
-- Orders are looked up by id alone (GET /api/orders/{order}).
CREATE UNIQUE INDEX orders_id ON orders (id);
CREATE INDEX orders_session ON orders (event_id, session_id);
CREATE INDEX orders_created ON orders (event_id, created_at);

CREATE TABLE seats (
    event_id   text NOT NULL,
    id         text NOT NULL CHECK (id ~ '^[A-Za-z0-9_-]{1,32}$'),
    section_id text NOT NULL,
    row_label  text NOT NULL,
    number     int NOT NULL,
    label      text NOT NULL,
    x          int NOT NULL,
    y          int NOT NULL,
    status     text NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'sold')),
    -- Optimistic lock: every change of status bumps version, and the sale's
    -- UPDATE names the version the hold saw.
    version    int NOT NULL DEFAULT 0,
    order_id   uuid,
    PRIMARY KEY (event_id, id),
    FOREIGN KEY (event_id, section_id) REFERENCES sections (event_id, id),
    FOREIGN KEY (event_id, order_id) REFERENCES orders (event_id, id),
    -- A sold seat names its order and an available one names none.
    CHECK ((status = 'sold') = (order_id IS NOT NULL))
);

CREATE TABLE order_items (
    event_id    text NOT NULL,
    order_id    uuid NOT NULL,
    seat_id     text NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    PRIMARY KEY (event_id, order_id, seat_id),
    FOREIGN KEY (event_id, order_id) REFERENCES orders (event_id, id),
    FOREIGN KEY (event_id, seat_id) REFERENCES seats (event_id, id),
    -- A seat belongs to at most one order item: a double sale is impossible
    -- even if the version check were wrong.
    UNIQUE (event_id, seat_id)
);

-- Checkouts are idempotency records (Stripe/brandur style): written before the
-- card is charged, advanced through a state machine by compare-and-set
-- updates, finished or undone by the recovery worker after a crash.
CREATE TABLE checkouts (
    event_id        text NOT NULL REFERENCES events (id),
    session_id      text NOT NULL,
    idem_key        text NOT NULL CHECK (length(idem_key) BETWEEN 1 AND 64),
    id              uuid NOT NULL UNIQUE,
    request_hash    text NOT NULL,
    email           text NOT NULL,
    state           text NOT NULL CHECK (state IN
                      ('started', 'authorizing', 'authorized', 'committed', 'completed', 'failed')),
    -- seats this checkout buys, with the version each hold carried: {"A-1-1": 0}
    seats           jsonb,
    total_cents     bigint,
    payment_id      text,
    order_id        uuid,
    response_status int,
    response_body   jsonb,
    attempts        int NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, session_id, idem_key)
);
CREATE INDEX checkouts_unfinished ON checkouts (updated_at)
    WHERE state IN ('started', 'authorizing', 'authorized', 'committed');

-- The sandbox payment provider's own records (a real provider keeps these on
-- its side). Keyed by the idempotency key the caller sends with every charge.
CREATE TABLE sandbox_payments (
    id              text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    amount_cents    bigint NOT NULL CHECK (amount_cents >= 0),
    card_last4      text NOT NULL,
    status          text NOT NULL CHECK (status IN
                      ('authorized', 'declined', 'captured', 'voided', 'refunded')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Transactional outbox: written in the same transaction as the change it
-- announces, relayed to Redis after commit.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    event_id   text NOT NULL,
    kind       text NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- +goose Down
DROP TABLE outbox;
DROP TABLE sandbox_payments;
DROP TABLE checkouts;
DROP TABLE order_items;
DROP TABLE seats;
DROP TABLE orders;
DROP TABLE sections;
DROP TABLE events;
