package booking

import (
	"context"
	"fmt"
)

// SectionFill is how full one section of an event is, for the staff
// cockpit's heat map.
type SectionFill struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Total      int    `json:"total"`
	Sold       int    `json:"sold"`
	Held       int    `json:"held"`
}

// SectionFills returns, for each section of eventID in map order, its seat
// count, its sold seats (Postgres, the source of truth) and its live holds
// on unsold seats (Redis, one pipelined round trip of EXISTS over at most
// statsBatch keys each — the same work as Stats). Unknown event → not_found;
// storage failures → unavailable. Safe for concurrent use; staff pages call
// it about once a second per open cockpit.
func (s *Service) SectionFills(ctx context.Context, eventID string) ([]SectionFill, error) {
	cat, err := s.Catalog(ctx, eventID)
	if err != nil {
		return nil, err
	}
	sold, err := s.soldSet(ctx, eventID)
	if err != nil {
		return nil, err
	}
	held, err := s.heldBySection(ctx, cat, sold)
	if err != nil {
		return nil, err
	}
	out := make([]SectionFill, len(cat.Sections))
	index := make(map[string]int, len(cat.Sections))
	for i, sec := range cat.Sections {
		out[i] = SectionFill{ID: sec.ID, Name: sec.Name, PriceCents: sec.PriceCents, Held: held[sec.ID]}
		index[sec.ID] = i
	}
	for _, id := range cat.Order {
		f := &out[index[cat.Seats[id].SectionID]]
		f.Total++
		if sold[id] {
			f.Sold++
		}
	}
	return out, nil
}

// soldSet returns the ids of eventID's sold seats.
func (s *Service) soldSet(ctx context.Context, eventID string) (map[string]bool, error) {
	rows, err := s.db.Query(ctx, `SELECT id FROM seats WHERE event_id = $1 AND status = 'sold'`, eventID)
	if err != nil {
		return nil, unavailable("store: list sold seats", err)
	}
	defer rows.Close()
	sold := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: scan sold seat: %w", err)
		}
		sold[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("store: list sold seats", err)
	}
	return sold, nil
}

// RecentOrders returns eventID's latest orders (confirmed and refunded),
// newest first, at most limit (1 to 100), each with its seats in map order.
// An unknown event has none. Storage failures → unavailable.
func (s *Service) RecentOrders(ctx context.Context, eventID string, limit int) ([]Order, error) {
	limit = min(max(limit, 1), 100)
	rows, err := s.db.Query(ctx, `SELECT o.id::text, o.event_id, o.status, o.total_cents, o.created_at,
			array(SELECT i.seat_id FROM order_items i
				JOIN seats t ON t.event_id = i.event_id AND t.id = i.seat_id
				JOIN sections sec ON sec.event_id = t.event_id AND sec.id = t.section_id
				WHERE i.event_id = o.event_id AND i.order_id = o.id ORDER BY sec.position, t.y, t.x)
		FROM orders o WHERE o.event_id = $1 ORDER BY o.created_at DESC, o.id DESC LIMIT $2`, eventID, limit)
	if err != nil {
		return nil, unavailable("store: recent orders", err)
	}
	defer rows.Close()
	out := []Order{}
	for rows.Next() {
		var o Order
		if err := rows.Scan(&o.ID, &o.EventID, &o.Status, &o.TotalCents, &o.CreatedAt, &o.Seats); err != nil {
			return nil, fmt.Errorf("store: scan recent order: %w", err)
		}
		o.CreatedAt = o.CreatedAt.UTC()
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("store: recent orders", err)
	}
	return out, nil
}
