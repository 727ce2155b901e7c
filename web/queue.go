package web

import (
	"net/http"
	"time"

	"seatmap/realtime"
)

// queueJSON is the waiting-room answer of API.md.
type queueJSON struct {
	State      string     `json:"state"`
	Position   *int       `json:"position,omitempty"`
	Ahead      *int       `json:"ahead,omitempty"`
	ETASeconds *int       `json:"eta_seconds,omitempty"`
	Until      *time.Time `json:"until,omitempty"`
	EntryID    string     `json:"entry_id,omitempty"`
	PreQueue   bool       `json:"pre_queue,omitempty"`
}

// queueBody converts a status to its JSON shape and HTTP status: 202 while
// waiting, 200 otherwise.
func queueBody(st realtime.QueueStatus) (int, queueJSON) {
	b := queueJSON{State: st.State, EntryID: st.EntryID, PreQueue: st.PreQueue}
	switch st.State {
	case realtime.StateWaiting:
		b.Position, b.Ahead, b.ETASeconds = &st.Position, &st.Ahead, &st.ETASeconds
		return http.StatusAccepted, b
	case realtime.StateAdmitted:
		u := st.Until.UTC()
		b.Until = &u
	}
	return http.StatusOK, b
}

// handleJoinQueue: POST /api/events/{event}/queue — join (idempotent per session).
func (a *app) handleJoinQueue(w http.ResponseWriter, r *http.Request) {
	fan := a.sessions.fan(w, r)
	if !a.limit(w, r, "join", fan) {
		return
	}
	st, err := a.Queue.Join(r.Context(), r.PathValue("event"), fan)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	status, body := queueBody(st)
	writeJSON(w, status, body)
}

// handleQueueStatus: GET /api/events/{event}/queue — this session's place.
func (a *app) handleQueueStatus(w http.ResponseWriter, r *http.Request) {
	fan := a.sessions.fan(w, r)
	st, err := a.Queue.Status(r.Context(), r.PathValue("event"), fan)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	status, body := queueBody(st)
	if st.State != realtime.StateWaiting {
		status = http.StatusOK
	}
	writeJSON(w, status, body)
}

// handleShuffle: GET /api/events/{event}/shuffle — the verifiable pre-queue
// shuffle: the seed's SHA-256 (published before the sale), and once the sale
// is open the seed and the entry ids in their drawn order.
func (a *app) handleShuffle(w http.ResponseWriter, r *http.Request) {
	info, err := a.Queue.Shuffle(r.Context(), r.PathValue("event"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}
