package booking

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sandbox test cards (API.md "Checkout").
const (
	CardApprove = "4242424242424242"
	CardDecline = "4000000000000002"
	CardSlow    = "4000000000000341"
)

// SandboxSlowDelay is how long CardSlow takes to approve.
const SandboxSlowDelay = 3 * time.Second

// Sandbox is the built-in payment provider: it implements Payments over its
// own table, sandbox_payments, and approves or declines by test card:
// CardApprove approves, CardSlow approves after SandboxSlowDelay (honouring
// ctx: a cancelled call records nothing), CardDecline and every other number
// are declined. Only a card's last four digits are stored.
//
// Latency and Fail let tests break it; set them before first use. Sandbox is
// safe for concurrent use. Give it its own pool in production-like setups:
// it stands for a remote service.
type Sandbox struct {
	db *pgxpool.Pool
	// Latency is added to every call (honouring ctx).
	Latency time.Duration
	// Fail, if set, is asked before each call with op = "authorize",
	// "capture", "void", "refund" or "lookup"; a non-nil error is returned
	// as an indeterminate failure.
	Fail func(op string) error
	// FailAfter makes Fail's error be returned after the operation took
	// effect ("charged, but the answer was lost") instead of before it.
	FailAfter bool
}

// NewSandbox returns a Sandbox storing its records through db.
func NewSandbox(db *pgxpool.Pool) *Sandbox { return &Sandbox{db: db} }

var _ Payments = (*Sandbox)(nil)

// call runs op with the configured latency and failure injection.
func (p *Sandbox) call(ctx context.Context, op string, fn func() error) error {
	if p.Latency > 0 {
		if err := sleepCtx(ctx, p.Latency); err != nil {
			return fmt.Errorf("sandbox: %s: %w", op, err)
		}
	}
	var injected error
	if p.Fail != nil {
		injected = p.Fail(op)
	}
	if injected != nil && !p.FailAfter {
		return fmt.Errorf("sandbox: %s: %w", op, injected)
	}
	if err := fn(); err != nil {
		return err
	}
	if injected != nil {
		return fmt.Errorf("sandbox: %s (after it took effect): %w", op, injected)
	}
	return nil
}

// Authorize reserves amountCents on card under idempotencyKey. A key seen
// before returns the first result without looking at the card again.
func (p *Sandbox) Authorize(ctx context.Context, idempotencyKey string, amountCents int64, card string) (Payment, error) {
	var pay Payment
	err := p.call(ctx, "authorize", func() error {
		if amountCents < 0 {
			return fmt.Errorf("sandbox: authorize: negative amount")
		}
		if idempotencyKey == "" {
			return fmt.Errorf("sandbox: authorize: idempotency key required")
		}
		// The insert finds a key seen before (ON CONFLICT), so only the
		// slow card, which must not wait again on a retry, looks first.
		status := PaymentDeclined
		switch card {
		case CardApprove:
			status = PaymentAuthorized
		case CardSlow:
			prev, ok, err := p.lookup(ctx, idempotencyKey)
			if err != nil {
				return err
			}
			if ok {
				pay = prev
				return nil
			}
			if err := sleepCtx(ctx, SandboxSlowDelay); err != nil {
				return fmt.Errorf("sandbox: authorize: %w", err)
			}
			status = PaymentAuthorized
		}
		last4 := card
		if len(last4) > 4 {
			last4 = last4[len(last4)-4:]
		}
		err := p.db.QueryRow(ctx, `INSERT INTO sandbox_payments (id, idempotency_key, amount_cents, card_last4, status)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING
			RETURNING id, idempotency_key, amount_cents, status`,
			"pay_"+randomHex(12), idempotencyKey, amountCents, last4, status).Scan(&pay.ID, &pay.IdempotencyKey, &pay.AmountCents, &pay.Status)
		if err == nil {
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("sandbox: authorize: %w", err)
		}
		// The key was used before, or by a concurrent call that inserted
		// first: that call's result.
		prev, ok, err := p.lookup(ctx, idempotencyKey)
		if err != nil {
			return err
		}
		pay = prev
		if !ok {
			return fmt.Errorf("sandbox: authorize: payment vanished")
		}
		return nil
	})
	return pay, err
}

// Capture moves an authorized payment's money; capturing a captured
// payment succeeds.
func (p *Sandbox) Capture(ctx context.Context, paymentID string) error {
	return p.call(ctx, "capture", func() error {
		return p.transition(ctx, "capture", paymentID, PaymentAuthorized, PaymentCaptured)
	})
}

// Void drops an authorization; voiding a voided payment succeeds.
func (p *Sandbox) Void(ctx context.Context, paymentID string) error {
	return p.call(ctx, "void", func() error {
		return p.transition(ctx, "void", paymentID, PaymentAuthorized, PaymentVoided)
	})
}

// Refund returns a captured payment's money; refunding a refunded payment
// succeeds.
func (p *Sandbox) Refund(ctx context.Context, paymentID string) error {
	return p.call(ctx, "refund", func() error {
		return p.transition(ctx, "refund", paymentID, PaymentCaptured, PaymentRefunded)
	})
}

// Lookup finds the payment made with idempotencyKey.
func (p *Sandbox) Lookup(ctx context.Context, idempotencyKey string) (Payment, bool, error) {
	var (
		pay Payment
		ok  bool
	)
	err := p.call(ctx, "lookup", func() error {
		var err error
		pay, ok, err = p.lookup(ctx, idempotencyKey)
		return err
	})
	return pay, ok, err
}

func (p *Sandbox) lookup(ctx context.Context, key string) (Payment, bool, error) {
	var pay Payment
	err := p.db.QueryRow(ctx, `SELECT id, idempotency_key, amount_cents, status FROM sandbox_payments WHERE idempotency_key = $1`,
		key).Scan(&pay.ID, &pay.IdempotencyKey, &pay.AmountCents, &pay.Status)
	if errors.Is(err, pgx.ErrNoRows) {
		return Payment{}, false, nil
	}
	if err != nil {
		return Payment{}, false, fmt.Errorf("sandbox: lookup: %w", err)
	}
	return pay, true, nil
}

// transition moves a payment from one status to another; being in the
// target status already is a success, any other status an error.
func (p *Sandbox) transition(ctx context.Context, op, id, from, to string) error {
	tag, err := p.db.Exec(ctx, `UPDATE sandbox_payments SET status = $3, updated_at = now() WHERE id = $1 AND status = $2`, id, from, to)
	if err != nil {
		return fmt.Errorf("sandbox: %s: %w", op, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var status string
	err = p.db.QueryRow(ctx, `SELECT status FROM sandbox_payments WHERE id = $1`, id).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("sandbox: %s: no payment %q", op, id)
	}
	if err != nil {
		return fmt.Errorf("sandbox: %s: %w", op, err)
	}
	if status != to {
		return fmt.Errorf("sandbox: %s: payment %s is %s", op, id, status)
	}
	return nil
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}
