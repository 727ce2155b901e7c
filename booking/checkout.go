package booking

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// CheckoutRequest is one POST /api/events/{event}/checkout: buy every seat
// FanID holds in EventID with Card, receipts to Email. IdempotencyKey (1 to
// 64 printable ASCII characters) names the attempt: retries must reuse it.
// With Admission set, the fan must be admitted to the event (checked with
// the claim of the holds, in one Redis script); nil skips the check.
type CheckoutRequest struct {
	EventID        string
	FanID          string
	IdempotencyKey string
	Card           string
	Email          string
	Admission      Admission
}

// Order is a confirmed sale (API.md "Checkout").
type Order struct {
	ID         string    `json:"order_id"`
	EventID    string    `json:"event"`
	Status     string    `json:"status"`
	Seats      []string  `json:"seats"`
	TotalCents int64     `json:"total_cents"`
	CreatedAt  time.Time `json:"created_at"`
}

// Order statuses.
const (
	OrderConfirmed = "confirmed"
	OrderRefunded  = "refunded"
)

// Checkout states (checkouts.state). Every transition is a compare-and-set
// UPDATE naming the state it leaves, so a live request and the recovery
// worker can never both take the same step:
//
//	(holds claimed) ──insert──▶ authorizing ──card approved, SQL sale tx──▶ committed ──capture, Redis──▶ completed
//	      │ (no holds / lost)        │ (declined; seats gone or seat limit: void)
//	      └──insert──▶ failed ◀──────┘
//
// The recovery worker, which finds a stranded authorizing checkout by age
// and looks its payment up, moves it to authorized before it commits or
// voids: that step is what keeps a late live request (whose sale
// transaction leaves authorizing) from racing it. A live checkout never
// writes authorized: its card's approval is recorded by the sale
// transaction itself, one commit fewer per order (issue 7). started is what
// servers before that change wrote first; recovery still deletes such rows.
const (
	stateStarted     = "started"
	stateAuthorizing = "authorizing"
	stateAuthorized  = "authorized"
	stateCommitted   = "committed"
	stateCompleted   = "completed"
	stateFailed      = "failed"
)

// Limits of checkout input.
const (
	maxIdempotencyKey = 64
	maxEmail          = 254
	// idempotencyWait bounds how long a duplicate request waits for the
	// original to finish before answering idempotency_conflict.
	idempotencyWait = 10 * time.Second
	// afterChargeTimeout bounds the steps after the card was authorized
	// (commit, capture, Redis bookkeeping). Like the authorization, they
	// run even if the client went away, so the sale is not left to the
	// recovery worker without need; a whole checkout is bounded by
	// PaymentWindow + afterChargeTimeout.
	afterChargeTimeout = 15 * time.Second
)

// Validate checks the request's shape and returns bad_request naming the
// first problem. It does not look anything up.
func (r CheckoutRequest) Validate() error {
	bad := func(msg string) error { return Errorf(ECodeBadRequest, "%s", msg) }
	switch {
	case !ValidEventID(r.EventID):
		return Errorf(ECodeNotFound, "no such event")
	case !ValidFanID(r.FanID):
		return bad("invalid fan id")
	case !validIdempotencyKey(r.IdempotencyKey):
		return bad("Idempotency-Key must be 1 to 64 printable ASCII characters")
	case !validCard(r.Card):
		return bad("card must be 12 to 19 digits")
	case !validEmail(r.Email):
		return bad("email must be a plain address such as fan@example.com (at most 254 characters)")
	}
	return nil
}

func validIdempotencyKey(k string) bool {
	if len(k) < 1 || len(k) > maxIdempotencyKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

func validCard(c string) bool {
	if len(c) < 12 || len(c) > 19 {
		return false
	}
	for i := 0; i < len(c); i++ {
		if c[i] < '0' || c[i] > '9' {
			return false
		}
	}
	return true
}

func validEmail(e string) bool {
	if len(e) < 3 || len(e) > maxEmail || strings.ContainsAny(e, " \t\r\n<>\"") {
		return false
	}
	a, err := mail.ParseAddress(e)
	if err != nil || a.Name != "" || a.Address != e {
		return false
	}
	at := strings.LastIndexByte(e, '@')
	return at > 0 && at < len(e)-1
}

// requestHash is the SHA-256 of the canonical body (card, email): the same
// key with another hash is a different request.
func (r CheckoutRequest) requestHash() string {
	b, _ := json.Marshal(struct {
		Card  string `json:"card"`
		Email string `json:"email"`
	}{r.Card, r.Email})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// paymentKey is the idempotency key of a checkout's charge.
func paymentKey(checkoutID string) string { return "checkout:" + checkoutID }

// Checkout buys every seat FanID holds in EventID, modelled on Stripe's
// idempotency keys: the checkout row is written before anything else, every
// step is a compare-and-set state change, and the outcome is stored so that
// the same key always gets the same answer and the card is charged at most
// once.
//
// Outcomes: the Order (also for a replay); bad_request for bad input;
// not_admitted when req.Admission finds the fan not admitted (a finished
// checkout with this key and body replays its answer instead);
// not_found for an unknown event; idempotency_conflict when the key was used
// with another body or is still in flight after ~10 s; hold_lost when the
// fan holds nothing, a hold is gone, someone else's or about to lapse, or the
// seats were sold meanwhile (any authorization is voided); seat_limit when
// the sale transaction finds the fan already bought so many seats of the
// event that these would exceed MaxSeatsPerFan (authorization voided, holds
// kept) — Redis checks the limit at hold time, but only SQL is sure after
// Redis lost data; payment_declined (holds kept); unavailable when a
// backend failed — if the card may have been charged the checkout is left
// to RecoverCheckouts, which finishes or voids it.
//
// Once the checkout row is written, Checkout no longer stops when ctx is
// cancelled: it runs to its outcome (bounded by PaymentWindow + 15 s) and
// stores it, so a client that stopped waiting gets the real answer by
// retrying with the same key, and the caller still gets it if it waits.
// Safe for concurrent use.
func (s *Service) Checkout(ctx context.Context, req CheckoutRequest) (Order, error) {
	start := time.Now()
	o, err := s.checkout(ctx, req)
	if f := s.hook().CheckoutDone; f != nil {
		outcome := "ok"
		if err != nil {
			outcome = ErrorCode(err)
		}
		f(outcome, time.Since(start))
	}
	return o, err
}

func (s *Service) checkout(ctx context.Context, req CheckoutRequest) (Order, error) {
	if err := req.Validate(); err != nil {
		return Order{}, err
	}
	if s.payments == nil {
		return Order{}, fmt.Errorf("booking: checkout: no payment provider configured")
	}
	cat, err := s.Catalog(ctx, req.EventID)
	if err != nil {
		return Order{}, err
	}
	hash := req.requestHash()
	// The holds are claimed (extended through the payment window, their
	// versions read) before the row is written, so the row is born with its
	// seats and total: one commit, not an insert and an update. A duplicate
	// request claims the same holds again, harmlessly, and then finds the
	// key taken.
	claim, err := s.claimHolds(ctx, req.EventID, req.FanID, req.Admission)
	if err != nil {
		return Order{}, err
	}
	if claim.notAdmitted {
		// A replay of a finished checkout gets its stored answer even after
		// the admission ended (the same key always gets the same answer).
		if o, result, found, err := s.storedCheckout(ctx, req); err != nil || found {
			if err == nil {
				err = result
			}
			return o, err
		}
		return Order{}, NotAdmitted()
	}
	ck := &checkoutRow{ID: newUUID(), EventID: req.EventID, FanID: req.FanID, Key: req.IdempotencyKey,
		RequestHash: hash, Email: req.Email, State: stateAuthorizing}
	if result := ck.priceClaim(claim, cat); result != nil {
		stored, err := s.insertCheckout(ctx, ck, result)
		switch {
		case err != nil:
			return Order{}, err
		case !stored:
			return s.awaitCheckout(ctx, req, hash)
		}
		return Order{}, result
	}
	// From its row on, the checkout runs to its end even if the caller
	// goes away. A client that gives up while a slow provider authorizes
	// the card must not cancel the authorization mid-flight (nor the row's
	// insert): that strands the checkout in authorizing, its retry with
	// the same key waits and answers idempotency_conflict, and once
	// recovery fails it the key replays 503 forever. Detached, the
	// checkout stores its real outcome and the retry gets it. The bound is
	// the payment window (the slowest authorization we wait for; the holds
	// were extended by as much) plus afterChargeTimeout for the sale, so a
	// live checkout is done or dead before RecoverAfter (PaymentWindow +
	// 30s by default) hands it to the recovery worker.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.PaymentWindow+afterChargeTimeout)
	defer cancel()

	stored, err := s.insertCheckout(ctx, ck, nil)
	if err != nil {
		return Order{}, err
	}
	if !stored {
		return s.awaitCheckout(ctx, req, hash)
	}

	pay, err := s.payments.Authorize(ctx, paymentKey(ck.ID), ck.Total, req.Card)
	if err != nil {
		// The charge may or may not exist: leave the checkout authorizing
		// for the recovery worker, which looks it up by key.
		return Order{}, unavailable("payment: authorize", err)
	}
	// The steps after the charge get afterChargeTimeout at most, within
	// the checkout's bound.
	ctx, cancelAfterCharge := context.WithTimeout(ctx, afterChargeTimeout)
	defer cancelAfterCharge()
	ck.PaymentID = pay.ID
	switch pay.Status {
	case PaymentAuthorized:
	case PaymentDeclined:
		result := Errorf(ECodePaymentDeclined, "the card was declined; your seats are still held")
		ok, err := s.failCheckout(ctx, ck, result)
		if err != nil {
			return Order{}, err
		}
		if !ok {
			return s.awaitCheckout(ctx, req, hash)
		}
		return Order{}, result
	default:
		return Order{}, unavailable("payment: authorize", fmt.Errorf("unexpected payment status %q", pay.Status))
	}
	if err := s.step("authorized"); err != nil {
		return Order{}, err
	}
	o, err := s.completeAuthorized(ctx, ck, cat)
	if errors.Is(err, errMoved) {
		// The recovery worker took this checkout while the card was being
		// charged: if it failed it, this charge must not stand; if it moved
		// it to authorized, it commits or voids it itself.
		cur, found, err := s.loadCheckout(ctx, ck.ID)
		if err == nil && found && cur.State == stateFailed {
			if err := s.payments.Void(ctx, pay.ID); err != nil {
				s.log.Error("checkout: void a charge of an abandoned checkout", "checkout", ck.ID, "payment", pay.ID, "err", err)
			}
		}
		return s.awaitCheckout(ctx, req, hash)
	}
	return o, err
}

// priceClaim records the claimed seats and their total on ck, or returns
// the hold_lost answer when there is nothing to buy: no holds, holds lost
// or about to lapse, or a held seat that is not the event's.
func (ck *checkoutRow) priceClaim(claim claimResult, cat *Catalog) *Error {
	switch {
	case claim.none:
		return Errorf(ECodeHoldLost, "you hold no seats in this event: hold seats before checking out")
	case len(claim.lost) > 0:
		return &Error{Code: ECodeHoldLost, Message: "some of your holds expired or are about to: hold the seats again",
			Seats: cat.sortSeats(claim.lost)}
	}
	ck.Seats, ck.Total = claim.seats, 0
	for seat := range claim.seats {
		cs, ok := cat.Seats[seat]
		if !ok {
			return &Error{Code: ECodeHoldLost, Message: "a held seat is not part of this event", Seats: []string{seat}}
		}
		ck.Total += cs.PriceCents
	}
	return nil
}

// completeAuthorized runs the sale for an authorized checkout: the SQL
// transaction, then capture and Redis bookkeeping. If the seats were sold
// meanwhile (hold_lost) or the fan already bought too many seats
// (seat_limit) it voids the authorization and fails the checkout.
// errMoved means another actor changed the checkout first.
func (s *Service) completeAuthorized(ctx context.Context, ck *checkoutRow, cat *Catalog) (Order, error) {
	o, err := s.commitSale(ctx, ck, cat)
	var limit *fanLimitError
	switch {
	case errors.Is(err, errSeatConflict):
		return Order{}, s.voidAndFail(ctx, ck, &Error{Code: ECodeHoldLost,
			Message: "your seats were sold to someone else while paying; the charge was cancelled", Seats: ck.seatList(cat)})
	case errors.As(err, &limit):
		// The fan's holds stay: they may release some and check out again
		// within the limit, or let them lapse.
		return Order{}, s.voidAndFail(ctx, ck, limit.result())
	case err != nil:
		return Order{}, err
	}
	ck.State = stateCommitted
	ck.OrderID = o.ID
	if err := s.step("committed"); err != nil {
		return o, err
	}
	if err := s.finishCommitted(ctx, ck, cat); err != nil {
		// The order stands; the recovery worker captures and repairs.
		s.log.Warn("checkout: order committed, finishing it is left to recovery", "checkout", ck.ID, "order", o.ID, "err", err)
	}
	return o, nil
}

// voidAndFail undoes the authorization of a checkout whose sale can never
// commit (its seats' versions moved on, or the seat limit refused it) and
// fails it with result. If the void's outcome is unknown, the checkout
// stays as it is (authorizing for a live request) and the recovery worker,
// which finds the payment by its key, voids it later; the fan is told the
// same either way.
func (s *Service) voidAndFail(ctx context.Context, ck *checkoutRow, result *Error) error {
	if err := s.payments.Void(ctx, ck.PaymentID); err != nil {
		s.log.Warn("checkout: void failed, left to recovery", "checkout", ck.ID, "payment", ck.PaymentID, "err", err)
		return result
	}
	if _, err := s.failCheckout(ctx, ck, result); err != nil {
		s.log.Warn("checkout: record failure", "checkout", ck.ID, "err", err)
	}
	return result
}

// finishCommitted captures the payment of a committed checkout, records the
// sale in Redis and marks the checkout completed. Every step is idempotent.
func (s *Service) finishCommitted(ctx context.Context, ck *checkoutRow, cat *Catalog) error {
	if err := s.payments.Capture(ctx, ck.PaymentID); err != nil {
		return fmt.Errorf("payment: capture: %w", err)
	}
	if err := s.markSoldRedis(ctx, ck.EventID, ck.FanID, ck.seatList(cat)); err != nil {
		return err
	}
	if _, err := s.markCompleted(ctx, ck.ID); err != nil {
		return err
	}
	ck.State = stateCompleted
	return nil
}

// awaitCheckout answers a request whose key is already in use: the stored
// outcome if finished, idempotency_conflict for another body, else it polls
// until the original finishes (bounded by idempotencyWait and ctx).
func (s *Service) awaitCheckout(ctx context.Context, req CheckoutRequest, hash string) (Order, error) {
	deadline := time.Now().Add(idempotencyWait)
	for {
		ck, found, err := s.loadCheckoutByKey(ctx, req.EventID, req.FanID, req.IdempotencyKey)
		if err != nil {
			return Order{}, err
		}
		if !found {
			// The original gave up before charging: start afresh.
			return s.checkout(ctx, req)
		}
		if ck.RequestHash != hash {
			return Order{}, Errorf(ECodeIdempotencyConflict, "this Idempotency-Key was used with a different request")
		}
		if ck.ResponseStatus != 0 {
			return ck.storedResult()
		}
		if time.Now().After(deadline) {
			return Order{}, Errorf(ECodeIdempotencyConflict, "a checkout with this Idempotency-Key is already in progress")
		}
		if err := sleepCtx(ctx, 25*time.Millisecond); err != nil {
			return Order{}, Errorf(ECodeIdempotencyConflict, "a checkout with this Idempotency-Key is already in progress")
		}
	}
}

// Stored outcomes (checkouts.response_status / response_body).

type storedError struct {
	Error   string   `json:"error"`
	Message string   `json:"message"`
	Seats   []string `json:"seats,omitempty"`
}

func (ck *checkoutRow) storedResult() (Order, error) {
	if ck.ResponseStatus == 201 {
		var o Order
		if err := json.Unmarshal(ck.ResponseBody, &o); err != nil {
			return Order{}, fmt.Errorf("store: decode stored order: %w", err)
		}
		return o, nil
	}
	var e storedError
	if err := json.Unmarshal(ck.ResponseBody, &e); err != nil || e.Error == "" {
		return Order{}, fmt.Errorf("store: decode stored error (status %d): %v", ck.ResponseStatus, err)
	}
	return Order{}, &Error{Code: e.Error, Message: e.Message, Seats: e.Seats}
}

// seatList returns the checkout's seats in map order.
func (ck *checkoutRow) seatList(cat *Catalog) []string {
	out := make([]string, 0, len(ck.Seats))
	for seat := range ck.Seats {
		out = append(out, seat)
	}
	return cat.sortSeats(out)
}

var (
	// errSeatConflict: the sale transaction found a seat sold or at another
	// version; it was rolled back.
	errSeatConflict = errors.New("booking: seats changed since they were held")
	// errMoved: a compare-and-set found the checkout in another state.
	errMoved = errors.New("booking: checkout changed state meanwhile")
)

// storedCheckout returns the stored outcome of a finished checkout with this
// request's key and body — the Order or its *Error — and found=false when
// there is none (never used, still running, or another body). It replays a
// purchase after the fan's admission ended, so a retry with the same key
// always gets the same answer.
func (s *Service) storedCheckout(ctx context.Context, req CheckoutRequest) (o Order, result error, found bool, err error) {
	ck, ok, err := s.loadCheckoutByKey(ctx, req.EventID, req.FanID, req.IdempotencyKey)
	if err != nil || !ok || ck.RequestHash != req.requestHash() || ck.ResponseStatus == 0 {
		return Order{}, nil, false, err
	}
	o, result = ck.storedResult()
	return o, result, true, nil
}
