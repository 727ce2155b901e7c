package booking

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// checkoutRow is one row of checkouts.
type checkoutRow struct {
	ID             string
	EventID        string
	FanID          string
	Key            string
	RequestHash    string
	Email          string
	State          string
	Seats          map[string]int // seat → version the hold carried
	Total          int64
	PaymentID      string
	OrderID        string
	ResponseStatus int
	ResponseBody   []byte
	UpdatedAt      time.Time
}

const checkoutColumns = `id::text, event_id, session_id, idem_key, request_hash, email, state, seats,
	coalesce(total_cents, 0), coalesce(payment_id, ''), coalesce(order_id::text, ''),
	coalesce(response_status, 0), response_body, updated_at`

func scanCheckout(row pgx.Row) (*checkoutRow, error) {
	var ck checkoutRow
	var seats []byte
	err := row.Scan(&ck.ID, &ck.EventID, &ck.FanID, &ck.Key, &ck.RequestHash, &ck.Email, &ck.State, &seats,
		&ck.Total, &ck.PaymentID, &ck.OrderID, &ck.ResponseStatus, &ck.ResponseBody, &ck.UpdatedAt)
	if err != nil {
		return nil, err
	}
	if len(seats) > 0 {
		if err := json.Unmarshal(seats, &ck.Seats); err != nil {
			return nil, fmt.Errorf("store: decode checkout seats: %w", err)
		}
	}
	return &ck, nil
}

// insertCheckout writes ck's row: authorizing with its seats and total
// (result nil), or failed with result stored as its answer. It returns
// false (and no error) when the key is already in use by this fan in this
// event; the row that holds it has the answer.
func (s *Service) insertCheckout(ctx context.Context, ck *checkoutRow, result *Error) (bool, error) {
	var seats []byte
	var status *int
	var body []byte
	if result == nil {
		var err error
		if seats, err = json.Marshal(ck.Seats); err != nil {
			return false, fmt.Errorf("store: encode checkout seats: %w", err)
		}
	} else {
		var err error
		if body, err = encodeResult(result); err != nil {
			return false, err
		}
		ck.State = stateFailed
		code := HTTPStatus(result.Code)
		status = &code
	}
	tag, err := s.db.Exec(ctx, `INSERT INTO checkouts (event_id, session_id, idem_key, id, request_hash, email, state,
			seats, total_cents, attempts, response_status, response_body)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11) ON CONFLICT (event_id, session_id, idem_key) DO NOTHING`,
		ck.EventID, ck.FanID, ck.Key, ck.ID, ck.RequestHash, ck.Email, ck.State, seats, ck.Total, status, body)
	if err != nil {
		return false, unavailable("store: start checkout", err)
	}
	return tag.RowsAffected() == 1, nil
}

// encodeResult is the stored body of a failed checkout's answer.
func encodeResult(result *Error) ([]byte, error) {
	body, err := json.Marshal(storedError{Error: result.Code, Message: result.Message, Seats: result.Seats})
	if err != nil {
		return nil, fmt.Errorf("store: encode checkout result: %w", err)
	}
	return body, nil
}

func (s *Service) loadCheckout(ctx context.Context, id string) (*checkoutRow, bool, error) {
	ck, err := scanCheckout(s.db.QueryRow(ctx, `SELECT `+checkoutColumns+` FROM checkouts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, unavailable("store: load checkout", err)
	}
	return ck, true, nil
}

func (s *Service) loadCheckoutByKey(ctx context.Context, eventID, fanID, key string) (*checkoutRow, bool, error) {
	ck, err := scanCheckout(s.db.QueryRow(ctx, `SELECT `+checkoutColumns+` FROM checkouts
		WHERE event_id = $1 AND session_id = $2 AND idem_key = $3`, eventID, fanID, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, unavailable("store: load checkout", err)
	}
	return ck, true, nil
}

// markAuthorized moves authorizing → authorized with the payment id; moved
// is true if the checkout was no longer authorizing.
func (s *Service) markAuthorized(ctx context.Context, id, paymentID string) (moved bool, err error) {
	tag, err := s.db.Exec(ctx, `UPDATE checkouts SET state = 'authorized', payment_id = $2, updated_at = now()
		WHERE id = $1 AND state = 'authorizing'`, id, paymentID)
	if err != nil {
		return false, unavailable("store: mark checkout authorized", err)
	}
	return tag.RowsAffected() == 0, nil
}

// markCompleted moves a committed checkout to completed; false if it was
// not committed. The commit does not wait for the WAL flush (execLazy):
// lost in a crash, the checkout is still committed, and the recovery
// worker finishes it again (capture and the Redis sale are idempotent).
func (s *Service) markCompleted(ctx context.Context, id string) (bool, error) {
	tag, err := execLazy(ctx, s.db, `UPDATE checkouts SET state = 'completed', updated_at = now() WHERE id = $1 AND state = 'committed'`, id)
	if err != nil {
		return false, unavailable("store: mark checkout completed", err)
	}
	return tag.RowsAffected() == 1, nil
}

// failCheckout moves ck from its state to failed, storing result as its
// answer and its payment id if it has one; false if it was no longer in
// that state.
func (s *Service) failCheckout(ctx context.Context, ck *checkoutRow, result *Error) (bool, error) {
	body, err := encodeResult(result)
	if err != nil {
		return false, err
	}
	tag, err := s.db.Exec(ctx, `UPDATE checkouts SET state = 'failed', response_status = $3, response_body = $4,
			payment_id = coalesce(nullif($5, ''), payment_id), updated_at = now()
		WHERE id = $1 AND state = $2`, ck.ID, ck.State, HTTPStatus(result.Code), body, ck.PaymentID)
	if err != nil {
		return false, unavailable("store: fail checkout", err)
	}
	return tag.RowsAffected() == 1, nil
}

// SQLSTATEs the sale's checks raise (seatmap_check, migration 00005).
const (
	sqlstateMoved        = "SMA01" // the checkout had left the state the sale leaves
	sqlstateFanLimit     = "SMA02" // the fan's seat limit; the detail is the seats already bought
	sqlstateSeatConflict = "SMA03" // a seat was sold or moved on since it was held
)

// saleSQL returns the sale's two statements for the seats, with their
// arguments for event, order, and the seats with the versions their holds
// carried:
//
//   - sell: the optimistic lock — each seat sold to the order only at its
//     version and only if still available; unless every seat was, it raises
//     sqlstateSeatConflict;
//   - items: the order's items at their sections' prices.
//
// The seats are one parameter each, not one array: with an array Postgres cannot
// know the count when it plans the statement once for every call, so it
// found that generic plan dearer than planning each call afresh and planned
// both statements on every sale — as much CPU as running them (issue 7).
// With the count in the text, the generic plan is the per-call plan, and a
// connection plans each shape once. Both plans are primary-key lookups
// because event_id has no statistics (migration 00003).
func saleSQL(eventID, orderID string, seats []string, versions []int32) (sell, items string, sellArgs, itemArgs []any) {
	var rows, ids strings.Builder
	sellArgs = append(make([]any, 0, 2+2*len(seats)), eventID, orderID)
	itemArgs = append(make([]any, 0, 2+len(seats)), eventID, orderID)
	for i, seat := range seats {
		if i > 0 {
			rows.WriteString(", ")
			ids.WriteString(", ")
		}
		fmt.Fprintf(&rows, "($%d::text, $%d::int)", len(sellArgs)+1, len(sellArgs)+2)
		fmt.Fprintf(&ids, "$%d", len(itemArgs)+1)
		sellArgs = append(sellArgs, seat, versions[i])
		itemArgs = append(itemArgs, seat)
	}
	sell = `WITH sold AS (UPDATE seats s SET status = 'sold', version = s.version + 1, order_id = $2
		FROM (VALUES ` + rows.String() + `) AS v(id, version)
		WHERE s.event_id = $1 AND s.id = v.id AND s.version = v.version AND s.status = 'available'
		RETURNING 1)
	SELECT seatmap_check(count(*) = ` + strconv.Itoa(len(seats)) + `, '` + sqlstateSeatConflict + `') FROM sold`
	items = `INSERT INTO order_items (event_id, order_id, seat_id, price_cents)
	SELECT s.event_id, $2, s.id, sec.price_cents
	FROM seats s JOIN sections sec ON sec.event_id = s.event_id AND sec.id = s.section_id
	WHERE s.event_id = $1 AND s.id IN (` + ids.String() + `)`
	return sell, items, sellArgs, itemArgs
}

// commitSale is the sale's one transaction, for a checkout whose card was
// authorized (ck.PaymentID): move the checkout from its state (authorizing
// for a live request, authorized for the recovery worker) to committed
// with the payment id (compare-and-set, so only one actor runs it), check
// the fan's seat limit (queueFanLimit), insert the order, sell every seat
// at the version its hold carried, insert the items at the sections'
// prices and the outbox row, and store the 201 answer (the relay is woken
// after the commit: outboxWritten).
//
// It is one pipelined batch, so one round trip: Postgres runs a batch as one
// implicit transaction and commits it at its end, and the first statement
// to fail rolls it all back. So the checks do not come back to Go between
// statements; each raises its own SQLSTATE (seatmap_check) and the
// statements after it do not run. Postgres CPU per checkout is what
// limits the checkout rate (issue 7).
//
// It returns errSeatConflict (rolled back) if any seat was sold or moved on,
// *fanLimitError (rolled back) if the fan would own more than
// MaxSeatsPerFan seats of the event, errMoved if the checkout had left its
// state, unavailable on other database failures. Deadlocks and
// serialization failures are retried.
func (s *Service) commitSale(ctx context.Context, ck *checkoutRow, cat *Catalog) (Order, error) {
	seats := ck.seatList(cat)
	versions := make([]int32, len(seats))
	for i, seat := range seats {
		versions[i] = int32(ck.Seats[seat])
	}
	o := Order{ID: newUUID(), EventID: ck.EventID, Status: OrderConfirmed, Seats: seats, TotalCents: ck.Total}
	payload, err := json.Marshal(outboxPayload{OrderID: o.ID, Fan: ck.FanID, Seats: seats})
	if err != nil {
		return Order{}, fmt.Errorf("store: encode outbox payload: %w", err)
	}
	// The created_at the order gets is also in the stored 201 body, so it
	// is set here (at Postgres's precision) rather than by default.
	o.CreatedAt = time.Now().UTC().Truncate(time.Microsecond)
	body, err := json.Marshal(o)
	if err != nil {
		return Order{}, fmt.Errorf("store: encode order: %w", err)
	}
	// A batch is built for each attempt: sending one records the statements
	// prepared on that attempt's connection.
	batch := func() *pgx.Batch {
		sellSQL, itemsSQL, sellArgs, itemArgs := saleSQL(ck.EventID, o.ID, seats, versions)
		b := &pgx.Batch{}
		b.Queue(`WITH moved AS (UPDATE checkouts SET state = 'committed', order_id = $2, response_status = 201,
				response_body = $3, payment_id = $4, updated_at = now() WHERE id = $1 AND state = $5 RETURNING 1)
			SELECT seatmap_check(count(*) = 1, '`+sqlstateMoved+`') FROM moved`,
			ck.ID, o.ID, body, ck.PaymentID, ck.State)
		queueFanLimit(b, ck.EventID, ck.FanID, len(seats), s.cfg.MaxSeatsPerFan)
		b.Queue(`INSERT INTO orders (event_id, id, session_id, email, status, total_cents, checkout_key, created_at)
			VALUES ($1, $2, $3, $4, 'confirmed', $5, $6, $7)`,
			ck.EventID, o.ID, ck.FanID, ck.Email, ck.Total, ck.Key, o.CreatedAt)
		b.Queue(sellSQL, sellArgs...)
		b.Queue(itemsSQL, itemArgs...)
		b.Queue(`INSERT INTO outbox (event_id, kind, payload) VALUES ($1, $2, $3)`, ck.EventID, OutboxSeatsSold, payload)
		return b
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err = s.db.SendBatch(ctx, batch()).Close()
		if isRetryable(err) && attempt < 4 {
			continue
		}
		break
	}
	if f := s.hook().CommitLatency; f != nil {
		f(time.Since(start))
	}
	if err == nil {
		s.outboxWritten(ctx)
		return o, nil
	}
	if err := s.saleRefusal(err, len(seats)); err != nil {
		return Order{}, err
	}
	return Order{}, unavailable("store: commit sale", err)
}

// saleRefusal maps the error of a sale the database refused to the
// refusal it means: errMoved, *fanLimitError, or errSeatConflict (also for
// a unique violation: a seat already among another order's items). It
// returns nil for any other error.
func (s *Service) saleRefusal(err error, asked int) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return nil
	}
	switch pe.Code {
	case sqlstateMoved:
		return errMoved
	case sqlstateSeatConflict:
		return errSeatConflict
	case sqlstateFanLimit:
		bought, perr := strconv.Atoi(pe.Detail)
		if perr != nil {
			return fmt.Errorf("store: seat limit check: bad detail %q: %w", pe.Detail, perr)
		}
		return &fanLimitError{Max: s.cfg.MaxSeatsPerFan, Bought: bought, Asked: asked}
	}
	if isUniqueViolation(err, "") {
		return errSeatConflict
	}
	return nil
}

// fanLimitError is commitSale's refusal by the per-fan limit: the fan
// already bought Bought seats of the event, so Asked more would exceed Max
// (MaxSeatsPerFan). The transaction was rolled back.
type fanLimitError struct {
	Max, Bought, Asked int
}

func (e *fanLimitError) Error() string {
	return fmt.Sprintf("booking: fan already bought %d seats, %d more would exceed the limit of %d", e.Bought, e.Asked, e.Max)
}

// result is the answer a fan gets for a sale refused by the seat limit.
func (e *fanLimitError) result() *Error {
	left := e.Max - e.Bought
	if left <= 0 {
		return Errorf(ECodeSeatLimit, "at most %d seats per fan: you already bought %d, so you cannot buy more; "+
			"the charge was cancelled", e.Max, e.Bought)
	}
	return Errorf(ECodeSeatLimit, "at most %d seats per fan: you already bought %d, so you can buy %d more, not %d; "+
		"release some seats and check out again (the charge was cancelled)", e.Max, e.Bought, left, e.Asked)
}

// queueFanLimit queues the authoritative MAX_SEATS_PER_FAN check, run inside
// the sale transaction before the order is written: the seats the fan
// already has in confirmed orders of the event plus asked may not exceed
// limit, else it raises sqlstateFanLimit with the seats bought as its detail
// (*fanLimitError). The Redis check at hold time counts
// fanbought:{E}:{fan}, which is empty after Redis loses data until the
// reconciler rebuilds it; this one cannot be fooled that way.
//
// Two sales of one fan must not both count before either commits, and a
// row lock cannot serialise them: before a fan's first purchase there is no
// row of theirs to lock (the orders they would conflict on do not exist
// yet). So the transaction first takes a transaction-scoped advisory lock
// on (event, fan) — the two-int4 form, hashtext of each, a key space of its
// own that no other lock of ours uses — held until commit or rollback. Only
// sales of the same fan (or, rarely, a hash collision) wait for each other.
// Under READ COMMITTED each statement takes a fresh snapshot, so the count,
// run after the lock is granted, sees every sale that held it before.
//
// The count (fanBoughtSQL) walks the orders' unique (event_id, session_id,
// checkout_key) index and the primary key of order_items (event_id,
// order_id, …): no extra index is needed.
func queueFanLimit(b *pgx.Batch, eventID, fanID string, asked, limit int) {
	b.Queue(`SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))`, eventID, fanID)
	b.Queue(`SELECT seatmap_check(bought + $3 <= $4, '`+sqlstateFanLimit+`', bought::text)
		FROM (`+fanBoughtSQL+`) AS f(bought)`, eventID, fanID, asked, limit)
}

// fanBoughtSQL counts the seats fan $2 bought in event $1.
const fanBoughtSQL = `SELECT count(*) FROM orders o
	JOIN order_items i ON i.event_id = o.event_id AND i.order_id = o.id
	WHERE o.event_id = $1 AND o.session_id = $2 AND o.status = 'confirmed'`

// isRetryable reports a deadlock (40P01) or serialization failure (40001).
func isRetryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Order returns an order and the fan who bought it, for GET
// /api/orders/{order}; the caller shows it only to that fan or staff.
// Unknown or malformed ids are not_found.
func (s *Service) Order(ctx context.Context, orderID string) (Order, string, error) {
	if !uuidPattern.MatchString(orderID) {
		return Order{}, "", Errorf(ECodeNotFound, "no such order")
	}
	var o Order
	var fan string
	err := s.db.QueryRow(ctx, `SELECT o.id::text, o.event_id, o.status, o.total_cents, o.created_at, o.session_id,
			array(SELECT i.seat_id FROM order_items i
				JOIN seats t ON t.event_id = i.event_id AND t.id = i.seat_id
				JOIN sections sec ON sec.event_id = t.event_id AND sec.id = t.section_id
				WHERE i.event_id = o.event_id AND i.order_id = o.id ORDER BY sec.position, t.y, t.x)
		FROM orders o WHERE o.id = $1`, orderID).Scan(&o.ID, &o.EventID, &o.Status, &o.TotalCents, &o.CreatedAt, &fan, &o.Seats)
	if errors.Is(err, pgx.ErrNoRows) {
		return Order{}, "", Errorf(ECodeNotFound, "no such order")
	}
	if err != nil {
		return Order{}, "", unavailable("store: get order", err)
	}
	o.CreatedAt = o.CreatedAt.UTC()
	return o, fan, nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	b := []byte(randomHex(16))
	// version 4, variant 10xx
	b[12] = '4'
	b[16] = "89ab"[b[16]%4]
	return fmt.Sprintf("%s-%s-%s-%s-%s", b[0:8], b[8:12], b[12:16], b[16:20], b[20:32])
}
