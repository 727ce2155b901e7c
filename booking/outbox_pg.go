package booking

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Outbox kinds, also the `kind` field of stream:{E} entries.
const (
	OutboxSeatsSold = "seats_sold"
	OutboxRefund    = "refund"
)

const (
	// outboxChannel is NOTIFYed by every transaction that writes the outbox.
	outboxChannel = "seatmap_outbox"
	// relayBatch is how many outbox rows one RelayOutbox call handles.
	relayBatch = 100
	// streamMaxLen caps each stream:{E} (approximately): consumers read
	// from the tail, and the reconciler repairs anyone who fell behind.
	streamMaxLen = 100_000
	// relayLockClass is the first key of the relay's per-event advisory
	// locks (the second is hashtext(event_id)).
	relayLockClass = 0x5ea7
	// relayPoll is the polling fallback when no NOTIFY arrives.
	relayPoll = time.Second
)

// outboxPayload is the payload of seats_sold and refund rows.
type outboxPayload struct {
	OrderID string   `json:"order_id"`
	Fan     string   `json:"fan"`
	Seats   []string `json:"seats"`
}

type outboxRow struct {
	id        int64
	eventID   string
	kind      string
	payload   outboxPayload
	createdAt time.Time
}

// RelayOutbox publishes one batch (up to 100) of unsent outbox rows to the
// events' Redis streams and marks them sent; it returns how many it sent.
//
// Each entry of stream:{E} has fields outbox_id, kind, seats (JSON array),
// order_id and fan; seats_sold also adds the seats to sold:{E} and
// fanbought:{E}:{fan} (refund removes them) in the same MULTI. Delivery is
// at least once: if the process dies between publishing and marking, the
// rows are published again, so consumers de-duplicate by outbox_id.
//
// Several relays may run at once: rows are claimed FOR UPDATE SKIP LOCKED,
// and a transaction-scoped advisory lock per event keeps all rows of one
// event with one relay at a time, so each event's rows go out in id order.
func (s *Service) RelayOutbox(ctx context.Context) (int, error) {
	var sent int
	err := inTx(ctx, s.db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, event_id, kind, payload, created_at FROM outbox
			WHERE sent_at IS NULL AND ($1 = '' OR event_id = $1)
			  AND pg_try_advisory_xact_lock($2::int, hashtext(event_id))
			ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED`, s.onlyEvent, relayLockClass, relayBatch)
		if err != nil {
			return fmt.Errorf("store: claim outbox rows: %w", err)
		}
		var batch []outboxRow
		for rows.Next() {
			var r outboxRow
			var payload []byte
			if err := rows.Scan(&r.id, &r.eventID, &r.kind, &payload, &r.createdAt); err != nil {
				rows.Close()
				return fmt.Errorf("store: scan outbox row: %w", err)
			}
			if err := json.Unmarshal(payload, &r.payload); err != nil {
				rows.Close()
				return fmt.Errorf("store: decode outbox row %d: %w", r.id, err)
			}
			batch = append(batch, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: claim outbox rows: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		if err := s.publishOutbox(ctx, batch); err != nil {
			return err
		}
		if err := s.step("relay_published"); err != nil {
			return err
		}
		ids := make([]int64, len(batch))
		for i, r := range batch {
			ids[i] = r.id
		}
		if _, err := tx.Exec(ctx, `UPDATE outbox SET sent_at = now() WHERE id = ANY($1)`, ids); err != nil {
			return fmt.Errorf("store: mark outbox rows sent: %w", err)
		}
		sent = len(batch)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("outbox relay: %w", err)
	}
	return sent, nil
}

// publishOutbox writes rows to Redis, one MULTI per run of rows of the same
// event (one slot each), in order.
func (s *Service) publishOutbox(ctx context.Context, batch []outboxRow) error {
	for start := 0; start < len(batch); {
		end := start + 1
		for end < len(batch) && batch[end].eventID == batch[start].eventID {
			end++
		}
		_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, r := range batch[start:end] {
				seats, _ := json.Marshal(r.payload.Seats)
				p.XAdd(ctx, &redis.XAddArgs{
					Stream: streamKey(r.eventID),
					MaxLen: streamMaxLen,
					Approx: true,
					Values: []any{"outbox_id", strconv.FormatInt(r.id, 10), "kind", r.kind, "seats", string(seats),
						"order_id", r.payload.OrderID, "fan", r.payload.Fan},
				})
				if len(r.payload.Seats) == 0 {
					continue
				}
				members := make([]any, len(r.payload.Seats))
				for i, seat := range r.payload.Seats {
					members[i] = seat
				}
				switch r.kind {
				case OutboxSeatsSold:
					p.SAdd(ctx, soldKey(r.eventID), members...)
					if r.payload.Fan != "" {
						p.SAdd(ctx, fanBoughtKey(r.eventID, r.payload.Fan), members...)
					}
				case OutboxRefund:
					p.SRem(ctx, soldKey(r.eventID), members...)
					if r.payload.Fan != "" {
						p.SRem(ctx, fanBoughtKey(r.eventID, r.payload.Fan), members...)
					}
				}
			}
			return nil
		})
		if err != nil {
			return unavailable("redis: publish outbox", err)
		}
		if f := s.hook().RelayLag; f != nil {
			now := time.Now()
			for _, r := range batch[start:end] {
				f(now.Sub(r.createdAt))
			}
		}
		start = end
	}
	return nil
}

// RunRelay relays the outbox until ctx ends: it drains the outbox whenever
// a NOTIFY on seatmap_outbox arrives on its own connection to dbURL, and at
// least every second in case a notification was missed. Connection errors
// are logged and the listener reconnects. Several relays may run at once.
func (s *Service) RunRelay(ctx context.Context, dbURL string) {
	for ctx.Err() == nil {
		err := s.relayListen(ctx, dbURL)
		if ctx.Err() != nil {
			return
		}
		s.log.Error("outbox relay: listener failed, reconnecting", "err", err)
		s.drainOutbox(ctx)
		_ = sleepCtx(ctx, relayPoll)
	}
}

func (s *Service) relayListen(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("outbox relay: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+outboxChannel); err != nil {
		return fmt.Errorf("outbox relay: listen: %w", err)
	}
	for {
		s.drainOutbox(ctx)
		wctx, cancel := context.WithTimeout(ctx, relayPoll)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil, errors.Is(err, context.DeadlineExceeded):
		default:
			return fmt.Errorf("outbox relay: wait for notification: %w", err)
		}
	}
}

// drainOutbox relays batches until the outbox is empty or an error occurs
// (logged).
func (s *Service) drainOutbox(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := s.RelayOutbox(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("outbox relay", "err", err)
			}
			return
		}
		if n < relayBatch {
			return
		}
	}
}
