package booking

import (
	"context"
	"fmt"
)

// SoldSeats returns the ids of the event's sold seats, from Postgres (the
// source of truth). The live seat map rebuilds from it after losing Redis
// notifications.
func (s *Service) SoldSeats(ctx context.Context, eventID string) ([]string, error) {
	rows, err := s.db.Query(ctx, `SELECT id FROM seats WHERE event_id = $1 AND status = 'sold'`, eventID)
	if err != nil {
		return nil, unavailable("store: sold seats", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: scan sold seat: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("store: sold seats", err)
	}
	return out, nil
}
