package booking

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// AuditEntry is one recorded control action.
type AuditEntry struct {
	EventID   string          `json:"event"`
	Actor     string          `json:"actor"`
	Action    string          `json:"action"`
	Detail    json.RawMessage `json:"detail"`
	CreatedAt time.Time       `json:"created_at"`
}

// Audit records a control action (by staff, or a fan's "more time" request)
// in the audit log. detail is stored as JSON.
func (s *Service) Audit(ctx context.Context, eventID, actor, action string, detail any) error {
	b, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("store: audit: encode detail: %w", err)
	}
	if _, err := s.db.Exec(ctx, `INSERT INTO audit_log (event_id, actor, action, detail) VALUES ($1, $2, $3, $4)`,
		eventID, actor, action, b); err != nil {
		return unavailable("store: audit", err)
	}
	return nil
}

// AuditLog returns the event's most recent audit entries, newest first.
func (s *Service) AuditLog(ctx context.Context, eventID string, limit int) ([]AuditEntry, error) {
	rows, err := s.db.Query(ctx, `SELECT event_id, actor, action, detail, created_at FROM audit_log
		WHERE event_id = $1 ORDER BY id DESC LIMIT $2`, eventID, limit)
	if err != nil {
		return nil, unavailable("store: audit log", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		if err := rows.Scan(&e.EventID, &e.Actor, &e.Action, &e.Detail, &e.CreatedAt); err != nil {
			return nil, fmt.Errorf("store: scan audit: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
