package booking

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RecoveryReport counts what one RecoverCheckouts pass did.
type RecoveryReport struct {
	Scanned   int // unfinished checkouts older than RecoverAfter
	Abandoned int // started checkouts deleted (nothing was charged)
	Committed int // authorized checkouts whose sale was committed
	Completed int // committed checkouts captured and recorded in Redis
	Voided    int // authorizations voided because the seats were gone
	Failed    int // checkouts failed (declined, never charged, seats gone)
	Errors    int // checkouts left for the next pass
}

// recoverBatch bounds one pass.
const recoverBatch = 500

// RecoverCheckouts makes one pass over checkouts left unfinished for longer
// than Config.RecoverAfter (a crash, a timeout, a lost answer) and finishes
// each, so that no charge stands without an order:
//
//   - started (written only by servers before checkouts were born
//     authorizing): nothing was charged; the row is deleted so the key can
//     be retried;
//   - authorizing: the payment is looked up by its idempotency key (never
//     charged again): unknown → failed; declined → failed; authorized →
//     continue as authorized;
//   - authorized: if every seat is still available in SQL at the version
//     its hold carried and no other fan holds it in Redis, the sale is
//     committed (then finished as below); otherwise the authorization is
//     voided and the checkout fails with hold_lost (seat_limit if the sale
//     transaction found the fan's limit reached);
//   - committed: the payment is captured, the sale recorded in Redis and the
//     checkout completed.
//
// Every step is a compare-and-set, so a pass racing a live request or
// another pass does no harm. Per-checkout failures are counted, logged and
// returned joined; the checkout is retried next pass.
func (s *Service) RecoverCheckouts(ctx context.Context) (RecoveryReport, error) {
	var rep RecoveryReport
	cutoff := s.now().Add(-s.cfg.RecoverAfter)
	rows, err := s.db.Query(ctx, `SELECT `+checkoutColumns+` FROM checkouts
		WHERE state IN ('started', 'authorizing', 'authorized', 'committed') AND updated_at < $1
		  AND ($2 = '' OR event_id = $2)
		ORDER BY updated_at LIMIT $3`, cutoff, s.onlyEvent, recoverBatch)
	if err != nil {
		return rep, unavailable("store: find unfinished checkouts", err)
	}
	var cks []*checkoutRow
	for rows.Next() {
		ck, err := scanCheckout(rows)
		if err != nil {
			rows.Close()
			return rep, fmt.Errorf("store: scan checkout: %w", err)
		}
		cks = append(cks, ck)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, unavailable("store: find unfinished checkouts", err)
	}
	var errs []error
	for _, ck := range cks {
		rep.Scanned++
		if err := s.recoverOne(ctx, ck, &rep); err != nil {
			rep.Errors++
			errs = append(errs, fmt.Errorf("recover checkout %s (%s): %w", ck.ID, ck.State, err))
		}
	}
	return rep, errors.Join(errs...)
}

func (s *Service) recoverOne(ctx context.Context, ck *checkoutRow, rep *RecoveryReport) error {
	cat, err := s.Catalog(ctx, ck.EventID)
	if err != nil {
		return err
	}
	switch ck.State {
	case stateStarted:
		tag, err := s.db.Exec(ctx, `DELETE FROM checkouts WHERE id = $1 AND state = 'started'`, ck.ID)
		if err != nil {
			return unavailable("store: abandon checkout", err)
		}
		rep.Abandoned += int(tag.RowsAffected())
		return nil

	case stateAuthorizing:
		pay, found, err := s.payments.Lookup(ctx, paymentKey(ck.ID))
		if err != nil {
			return fmt.Errorf("payment: lookup: %w", err)
		}
		switch {
		case !found:
			ok, err := s.failCheckout(ctx, ck,
				Errorf(ECodeUnavailable, "the payment could not be completed and nothing was charged; please try again"))
			if ok {
				rep.Failed++
			}
			return err
		case pay.Status == PaymentDeclined:
			ck.PaymentID = pay.ID
			ok, err := s.failCheckout(ctx, ck, Errorf(ECodePaymentDeclined, "the card was declined; your seats are still held"))
			if ok {
				rep.Failed++
			}
			return err
		case pay.Status == PaymentAuthorized || pay.Status == PaymentCaptured:
			moved, err := s.markAuthorized(ctx, ck.ID, pay.ID)
			if err != nil || moved {
				return err
			}
			ck.State, ck.PaymentID = stateAuthorized, pay.ID
			return s.recoverAuthorized(ctx, ck, cat, rep)
		default: // voided or refunded before any order: nothing stands
			ck.PaymentID = pay.ID
			ok, err := s.failCheckout(ctx, ck, holdLostRecovered(ck, cat))
			if ok {
				rep.Failed++
			}
			return err
		}

	case stateAuthorized:
		return s.recoverAuthorized(ctx, ck, cat, rep)

	case stateCommitted:
		if err := s.finishCommitted(ctx, ck, cat); err != nil {
			return err
		}
		rep.Completed++
		return nil
	}
	return nil
}

// recoverAuthorized commits an authorized checkout whose seats are still
// free for it, or voids its authorization and fails it (hold_lost, or
// seat_limit when the sale transaction refused it for the fan's limit).
func (s *Service) recoverAuthorized(ctx context.Context, ck *checkoutRow, cat *Catalog, rep *RecoveryReport) error {
	free, err := s.seatsStillFree(ctx, ck, cat)
	if err != nil {
		return err
	}
	result := holdLostRecovered(ck, cat)
	if free {
		_, err := s.commitSale(ctx, ck, cat)
		var limit *fanLimitError
		switch {
		case errors.Is(err, errMoved):
			return nil
		case err == nil:
			rep.Committed++
			ck.State = stateCommitted
			if err := s.finishCommitted(ctx, ck, cat); err != nil {
				return err
			}
			rep.Completed++
			return nil
		case errors.As(err, &limit):
			result = limit.result()
		case !errors.Is(err, errSeatConflict):
			return err
		}
	}
	released, err := s.releaseAndFail(ctx, ck, result)
	if released {
		rep.Voided++
		rep.Failed++
	}
	return err
}

// releaseAndFail voids (or refunds) an authorized checkout's payment and
// fails it — while holding the checkout's row lock and only if it is still
// authorized. Every process runs recovery, and a pass working from an older
// read must not undo a sale another pass (or the live request) has just
// committed: the sale's transaction takes the same row lock for its
// authorized → committed step, so exactly one of the two wins. It reports
// whether it released the payment.
func (s *Service) releaseAndFail(ctx context.Context, ck *checkoutRow, result *Error) (bool, error) {
	body, err := encodeResult(result)
	if err != nil {
		return false, err
	}
	released := false
	err = inTx(ctx, s.db, func(tx pgx.Tx) error {
		var state string
		if err := tx.QueryRow(ctx, `SELECT state FROM checkouts WHERE id = $1 FOR UPDATE`, ck.ID).Scan(&state); err != nil {
			return unavailable("store: lock checkout", err)
		}
		if state != stateAuthorized {
			return nil // committed or failed meanwhile: nothing to undo
		}
		if err := s.releasePayment(ctx, ck); err != nil {
			return err
		}
		released = true
		if _, err := tx.Exec(ctx, `UPDATE checkouts SET state = 'failed', response_status = $2, response_body = $3, updated_at = now()
			WHERE id = $1`, ck.ID, HTTPStatus(result.Code), body); err != nil {
			return unavailable("store: fail checkout", err)
		}
		return nil
	})
	if err != nil {
		// The payment may be voided while the checkout stays authorized: the
		// next pass finds it again and its void is idempotent.
		return false, err
	}
	return released, nil
}

func holdLostRecovered(ck *checkoutRow, cat *Catalog) *Error {
	return &Error{Code: ECodeHoldLost, Message: "your seats could not be kept while the payment was confirmed; the charge was cancelled",
		Seats: ck.seatList(cat)}
}

// releasePayment voids the checkout's authorization, or refunds it if it
// was somehow captured.
func (s *Service) releasePayment(ctx context.Context, ck *checkoutRow) error {
	verr := s.payments.Void(ctx, ck.PaymentID)
	if verr == nil {
		return nil
	}
	pay, found, err := s.payments.Lookup(ctx, paymentKey(ck.ID))
	if err != nil || !found || (pay.Status != PaymentCaptured && pay.Status != PaymentRefunded) {
		return fmt.Errorf("payment: void: %w", verr)
	}
	if err := s.payments.Refund(ctx, ck.PaymentID); err != nil {
		return fmt.Errorf("payment: refund: %w", err)
	}
	return nil
}

// seatsStillFree reports whether every seat of the checkout is available in
// SQL at the version its hold carried and held by no other fan in Redis.
func (s *Service) seatsStillFree(ctx context.Context, ck *checkoutRow, cat *Catalog) (bool, error) {
	seats := ck.seatList(cat)
	if len(seats) == 0 {
		return false, nil
	}
	versions := make([]int32, len(seats))
	keys := make([]string, len(seats))
	for i, seat := range seats {
		versions[i] = int32(ck.Seats[seat])
		keys[i] = holdKey(ck.EventID, seat)
	}
	var n int
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM seats s JOIN unnest($2::text[], $3::int[]) AS v(id, version)
		ON s.id = v.id WHERE s.event_id = $1 AND s.version = v.version AND s.status = 'available'`,
		ck.EventID, seats, versions).Scan(&n)
	if err != nil {
		return false, unavailable("store: check seats", err)
	}
	if n != len(seats) {
		return false, nil
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return false, unavailable("redis: check holds", err)
	}
	for _, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		if owner, _, ok := holdOwner(str); !ok || owner != ck.FanID {
			return false, nil
		}
	}
	return true, nil
}

// RunRecovery runs RecoverCheckouts every `every` until ctx ends, logging
// what it did and any errors.
func (s *Service) RunRecovery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		rep, err := s.RecoverCheckouts(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("checkout recovery", "err", err)
		}
		if rep.Scanned > 0 {
			s.log.Info("checkout recovery", "scanned", rep.Scanned, "abandoned", rep.Abandoned, "committed", rep.Committed,
				"completed", rep.Completed, "voided", rep.Voided, "failed", rep.Failed, "errors", rep.Errors)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
