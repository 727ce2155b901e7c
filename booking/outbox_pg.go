package booking

import (
	"context"
	"encoding/json"
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
	// outboxChannel is NOTIFYed after a sale commits in a process whose own
	// relay does not run, to wake the relays of the others.
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
		// Marking rows sent need not wait for the WAL flush: lost in a
		// crash, they are published again, which delivery allows. Set
		// here, with the update, so a relay that finds nothing pays no
		// extra round trip.
		mark := lazyCommitBatch()
		mark.Queue(`UPDATE outbox SET sent_at = now() WHERE id = ANY($1)`, ids)
		if err := tx.SendBatch(ctx, mark).Close(); err != nil {
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
// this process commits a sale (outboxWritten), whenever a NOTIFY on
// seatmap_outbox arrives on its own connection to dbURL (sales of processes
// without a relay), and at least every second in case a wake-up was missed.
// Connection errors are logged and the listener reconnects. Several relays
// may run at once.
func (s *Service) RunRelay(ctx context.Context, dbURL string) {
	s.relays.Add(1)
	defer s.relays.Add(-1)
	for ctx.Err() == nil {
		err := s.relayListen(ctx, dbURL)
		if ctx.Err() != nil {
			return
		}
		s.log.Error("outbox relay: listener failed, reconnecting", "err", err)
		s.drainOutbox(ctx)
		select {
		case <-ctx.Done():
		case <-s.relayWake:
		case <-time.After(s.relayPoll):
		}
	}
}

func (s *Service) relayListen(ctx context.Context, dbURL string) error {
	cfg, err := connConfig(dbURL)
	if err != nil {
		return fmt.Errorf("outbox relay: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("outbox relay: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+outboxChannel); err != nil {
		return fmt.Errorf("outbox relay: listen: %w", err)
	}
	// The connection is only read by this goroutine, which passes
	// notifications on; the loop below also wakes on local sales.
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	notified := make(chan struct{}, 1)
	failed := make(chan error, 1)
	go func() {
		for {
			if _, err := conn.WaitForNotification(lctx); err != nil {
				failed <- err
				return
			}
			select {
			case notified <- struct{}{}:
			default:
			}
		}
	}()
	defer func() {
		stop()
		select { // the reader has returned before conn is closed
		case <-failed:
		case <-time.After(5 * time.Second):
		}
	}()
	poll := time.NewTimer(s.relayPoll)
	defer poll.Stop()
	for {
		s.drainOutbox(ctx)
		poll.Reset(s.relayPoll)
		_ = s.step("relay_waiting") // tests: the relay listens and waits
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			failed <- err // for the deferred wait
			return fmt.Errorf("outbox relay: wait for notification: %w", err)
		case <-notified:
		case <-s.relayWake:
			_ = s.step("relay_woken") // tests: by a sale of this process
		case <-poll.C:
		}
	}
}

// outboxWritten wakes the outbox relay after a sale committed: this
// process's own, or, when it runs none (serve --no-workers), every other
// process's through a NOTIFY. The NOTIFY is deliberately not part of the
// sale's transaction: Postgres serialises the commits of all transactions
// that NOTIFY (a cluster-wide lock from pre-commit to the end of commit,
// WAL flush included), which cost checkouts a fifth of their throughput
// (docs/PERFORMANCE.md). Its own transaction does not wait for the flush.
func (s *Service) outboxWritten(ctx context.Context) {
	if s.relays.Load() > 0 {
		select {
		case s.relayWake <- struct{}{}:
		default:
		}
		return
	}
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit TO off"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "SELECT pg_notify($1, '')", outboxChannel)
		return err
	})
	if err != nil && ctx.Err() == nil {
		// The relays poll every relayPoll: the sale reaches Redis anyway.
		s.log.Warn("outbox relay: notify", "err", err)
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
