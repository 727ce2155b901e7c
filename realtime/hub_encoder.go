package realtime

import "time"

// Encoder turns the hub's messages into WebSocket text frames of one format.
// The hub feeds every format from the same stream of snapshots and batches
// (one fan-out path): the JSON API socket uses JSONEncoder, the htmx page an
// encoder of server-rendered HTML fragments.
//
// Encoding is the cost of fan-out, so the hub encodes what fans share once
// per message and format, and asks for per-fan variants only where a fan's
// own holds are involved. Returned slices are shared between connections and
// goroutines: an encoder must return a fresh slice and never modify it
// afterwards. Implementations must be safe for concurrent use.
type Encoder interface {
	// Format names the format ("json", "html"). Connections whose encoders
	// have the same Format share encoded frames.
	Format() string

	// Snapshot encodes the fan-independent part of a snapshot frame: every
	// seat's public state. It is called once per snapshot and format.
	Snapshot(s *Snapshot) []byte
	// SnapshotMine encodes what follows Snapshot(s) in the same frame for a
	// fan holding the seats mine (catalog order). mine is nil for fans that
	// hold nothing; that variant is encoded once and shared. The frame a fan
	// gets is exactly Snapshot(s) followed by SnapshotMine(s, mine).
	SnapshotMine(s *Snapshot, mine []string) []byte

	// Seats encodes a batch as seen by fan: Change.Mine(fan) tells which
	// changes are the fan's own holds. It is called once with fan "" (the
	// frame of every fan holding none of the batch's held seats) and once
	// more for each fan that holds one of them.
	Seats(b *Batch, fan string) []byte

	// HoldExpiring encodes the warning that the fan's hold on seat ends at
	// expiresAt.
	HoldExpiring(seat string, expiresAt time.Time) []byte
	// Queue encodes a waiting-room position update.
	Queue(q QueueStatus) []byte
	// Admitted encodes the admission of the fan, valid until until.
	Admitted(until time.Time) []byte
	// Error encodes an error with a machine code and a user-safe message.
	Error(code, message string) []byte
	// Pong encodes the answer to a client's ping.
	Pong() []byte
}

// frame is one WebSocket message waiting in a connection's send queue: body
// followed by tail, written as one message. body is usually shared by many
// connections; tail, when present, is this connection's own part.
type frame struct {
	body []byte
	tail []byte
	seq  uint64 // the event seq of a snapshot or batch frame, else 0
}
