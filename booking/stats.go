package booking

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// SaleStats are an event's sale figures for staff (API.md "Staff"); the
// queue figures (queue_length, admitted, admit_rate) are added by the
// realtime package.
type SaleStats struct {
	Sold           int           `json:"sold"`
	Held           int           `json:"held"`
	Available      int           `json:"available"`
	Orders         int           `json:"orders"`
	RevenueCents   int64         `json:"revenue_cents"`
	SalesPerMinute []MinuteSales `json:"sales_per_minute"`
}

// MinuteSales is the number of seats sold in the minute starting at Minute.
type MinuteSales struct {
	Minute time.Time `json:"minute"`
	Seats  int       `json:"seats"`
}

// statsBatch is how many hold keys one EXISTS checks.
const statsBatch = 1000

// Stats returns eventID's sale figures: sold seats, orders and revenue from
// SQL; held = live holds in Redis on seats not sold (checked with one
// pipelined round trip of EXISTS over ≤1000 keys each); available = total −
// sold − held; and seats sold per minute over the last 60 minutes (oldest
// first, every minute present). Unknown event → not_found.
func (s *Service) Stats(ctx context.Context, eventID string) (SaleStats, error) {
	cat, err := s.Catalog(ctx, eventID)
	if err != nil {
		return SaleStats{}, err
	}
	var st SaleStats
	rows, err := s.db.Query(ctx, `SELECT id FROM seats WHERE event_id = $1 AND status = 'sold'`, eventID)
	if err != nil {
		return SaleStats{}, unavailable("store: count sold seats", err)
	}
	sold := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return SaleStats{}, fmt.Errorf("store: scan sold seat: %w", err)
		}
		sold[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return SaleStats{}, unavailable("store: count sold seats", err)
	}
	st.Sold = len(sold)
	if err := s.db.QueryRow(ctx, `SELECT count(*), coalesce(sum(total_cents), 0) FROM orders
		WHERE event_id = $1 AND status = 'confirmed'`, eventID).Scan(&st.Orders, &st.RevenueCents); err != nil {
		return SaleStats{}, unavailable("store: count orders", err)
	}

	now := s.now().UTC()
	first := now.Truncate(time.Minute).Add(-59 * time.Minute)
	st.SalesPerMinute = make([]MinuteSales, 60)
	for i := range st.SalesPerMinute {
		st.SalesPerMinute[i].Minute = first.Add(time.Duration(i) * time.Minute)
	}
	rows, err = s.db.Query(ctx, `SELECT date_trunc('minute', o.created_at), count(*) FROM orders o
		JOIN order_items i ON i.event_id = o.event_id AND i.order_id = o.id
		WHERE o.event_id = $1 AND o.status = 'confirmed' AND o.created_at >= $2 AND o.created_at < $3
		GROUP BY 1`, eventID, first, first.Add(60*time.Minute))
	if err != nil {
		return SaleStats{}, unavailable("store: sales per minute", err)
	}
	for rows.Next() {
		var m time.Time
		var n int
		if err := rows.Scan(&m, &n); err != nil {
			rows.Close()
			return SaleStats{}, fmt.Errorf("store: scan sales per minute: %w", err)
		}
		if i := int(m.UTC().Sub(first) / time.Minute); i >= 0 && i < 60 {
			st.SalesPerMinute[i].Seats += n
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return SaleStats{}, unavailable("store: sales per minute", err)
	}

	var cmds []*redis.IntCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		keys := make([]string, 0, statsBatch)
		flush := func() {
			if len(keys) > 0 {
				cmds = append(cmds, p.Exists(ctx, keys...))
				keys = make([]string, 0, statsBatch)
			}
		}
		for _, seat := range cat.Order {
			if sold[seat] {
				continue
			}
			keys = append(keys, holdKey(eventID, seat))
			if len(keys) == statsBatch {
				flush()
			}
		}
		flush()
		return nil
	})
	if err != nil {
		return SaleStats{}, unavailable("redis: count holds", err)
	}
	for _, c := range cmds {
		st.Held += int(c.Val())
	}
	st.Available = max(0, len(cat.Order)-st.Sold-st.Held)
	return st, nil
}
