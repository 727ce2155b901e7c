package booking

import "context"

// Payment statuses, as a provider reports them.
const (
	PaymentAuthorized = "authorized"
	PaymentDeclined   = "declined"
	PaymentCaptured   = "captured"
	PaymentVoided     = "voided"
	PaymentRefunded   = "refunded"
)

// Payment is a provider's record of one charge.
type Payment struct {
	ID             string
	IdempotencyKey string
	AmountCents    int64
	Status         string
}

// Payments is a card payment provider: authorize a charge, then capture it
// (money moves) or void it (the hold on the card is dropped); refund undoes a
// capture. Every call is idempotent: Authorize with a key it has seen returns
// the first result, and Capture/Void/Refund of a payment already in that
// state succeed. An error other than a decline means the outcome is unknown:
// the caller must look the payment up by its key, never charge again blindly.
// Implementations are safe for concurrent use.
type Payments interface {
	// Authorize reserves amountCents on card. A declined card is not an
	// error: the returned Payment has Status PaymentDeclined.
	Authorize(ctx context.Context, idempotencyKey string, amountCents int64, card string) (Payment, error)
	Capture(ctx context.Context, paymentID string) error
	Void(ctx context.Context, paymentID string) error
	Refund(ctx context.Context, paymentID string) error
	// Lookup finds the payment made with idempotencyKey; ok is false if the
	// provider never saw that key.
	Lookup(ctx context.Context, idempotencyKey string) (p Payment, ok bool, err error)
}
