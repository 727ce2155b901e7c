package realtime

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// JSONEncoder encodes the JSON messages of API.md "Real-time channel", one
// object per frame. It has no state and is safe for concurrent use.
type JSONEncoder struct{}

var _ Encoder = JSONEncoder{}

// Format returns "json".
func (JSONEncoder) Format() string { return "json" }

// Snapshot encodes `{"type":"snapshot","seq":K,"seats":{...},"mine":[` —
// the frame is completed by SnapshotMine.
func (JSONEncoder) Snapshot(s *Snapshot) []byte {
	b := make([]byte, 0, 64+len(s.Seats)*(len(`"":"available",`)+12))
	b = append(b, `{"type":"snapshot","seq":`...)
	b = strconv.AppendUint(b, s.Seq, 10)
	b = append(b, `,"seats":{`...)
	for i, v := range s.Seats {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v.Seat)
		b = append(b, ':', '"')
		b = append(b, v.State.String()...)
		b = append(b, '"')
	}
	return append(b, `},"mine":[`...)
}

// SnapshotMine encodes the fan's held seats and closes the snapshot object.
func (JSONEncoder) SnapshotMine(_ *Snapshot, mine []string) []byte {
	b := make([]byte, 0, 2+len(mine)*16)
	for i, seat := range mine {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, seat)
	}
	return append(b, ']', '}')
}

// Seats encodes `{"type":"seats","seq":K,"changes":[{"seat","state","mine"}...]}`.
func (JSONEncoder) Seats(bt *Batch, fan string) []byte {
	b := make([]byte, 0, 48+len(bt.Changes)*(len(`{"seat":"","state":"available","mine":false},`)+12))
	b = append(b, `{"type":"seats","seq":`...)
	b = strconv.AppendUint(b, bt.Seq, 10)
	b = append(b, `,"changes":[`...)
	for i, c := range bt.Changes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"seat":`...)
		b = appendJSONString(b, c.Seat)
		b = append(b, `,"state":"`...)
		b = append(b, c.State.String()...)
		b = append(b, `","mine":`...)
		b = strconv.AppendBool(b, c.Mine(fan))
		b = append(b, '}')
	}
	return append(b, ']', '}')
}

// HoldExpiring encodes `{"type":"hold_expiring","seat":S,"expires_at":RFC3339}`.
func (JSONEncoder) HoldExpiring(seat string, expiresAt time.Time) []byte {
	b := append([]byte(nil), `{"type":"hold_expiring","seat":`...)
	b = appendJSONString(b, seat)
	b = append(b, `,"expires_at":"`...)
	b = expiresAt.UTC().AppendFormat(b, time.RFC3339)
	return append(b, '"', '}')
}

// Queue encodes `{"type":"queue","position":N,"ahead":N,"eta_seconds":S}`,
// with `"pre_queue":true` added while the fan waits for the sale to open
// (its position is then provisional: the pre-queue is shuffled at opening).
func (JSONEncoder) Queue(q QueueStatus) []byte {
	b := append([]byte(nil), `{"type":"queue","position":`...)
	b = strconv.AppendInt(b, int64(q.Position), 10)
	b = append(b, `,"ahead":`...)
	b = strconv.AppendInt(b, int64(q.Ahead), 10)
	b = append(b, `,"eta_seconds":`...)
	b = strconv.AppendInt(b, int64(q.ETASeconds), 10)
	if q.PreQueue {
		b = append(b, `,"pre_queue":true`...)
	}
	return append(b, '}')
}

// Admitted encodes `{"type":"admitted","until":RFC3339}`.
func (JSONEncoder) Admitted(until time.Time) []byte {
	b := append([]byte(nil), `{"type":"admitted","until":"`...)
	b = until.UTC().AppendFormat(b, time.RFC3339)
	return append(b, '"', '}')
}

// Error encodes `{"type":"error","code":C,"message":M}`.
func (JSONEncoder) Error(code, message string) []byte {
	b := append([]byte(nil), `{"type":"error","code":`...)
	b = appendJSONString(b, code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, message)
	return append(b, '}')
}

// Pong encodes `{"type":"pong"}`.
func (JSONEncoder) Pong() []byte { return []byte(`{"type":"pong"}`) }

// appendJSONString appends s as a JSON string. Seat ids and codes are plain
// ASCII and take the fast path; anything else goes through encoding/json,
// which escapes control characters, HTML-sensitive characters and invalid
// UTF-8.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= utf8.RuneSelf {
			q, err := json.Marshal(s)
			if err != nil { // unreachable: a string always marshals
				return append(b, `""`...)
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
