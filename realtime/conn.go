package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"seatmap/booking"
)

// Queue is the waiting room as a fan's socket sees it; *WaitingRoom
// implements it.
//
// Join enters fanID in eventID's waiting room (idempotent per fan) and
// returns where the fan stands; its errors are domain errors (booking.Error
// codes: not_found, unavailable, ...). Watch, called after Join, calls fn
// with the fan's status at its next tick and then with every change until
// stop is called; fn may be called from any goroutine and must not block.
type Queue interface {
	Join(ctx context.Context, eventID, fanID string) (QueueStatus, error)
	Watch(eventID, fanID string, fn func(QueueStatus)) (stop func())
}

// FanParams names the fan a socket serves and how it is served.
type FanParams struct {
	EventID string
	// FanID is the fan's session id, the one its holds carry.
	FanID string
	// Encoder is the socket's format; nil means JSONEncoder.
	Encoder Encoder
	// Queue is the waiting room; nil means the fan is admitted (no queue and
	// admitted messages, the snapshot comes at once).
	Queue Queue
	// Reset, if set, makes the socket's close discard what the kernel has
	// not sent yet and reset the connection (SO_LINGER 0). ServeFan calls
	// it before dropping a slow consumer whose socket does not drain: a
	// plain close leaves that backlog, and the FIN behind it, to the
	// kernel's retransmission back-off for minutes, holding its send
	// buffer, while the client waits in the middle of a message; after a
	// reset its next read fails and it reconnects to a fresh snapshot.
	Reset func()
}

// CloseReason is why the server closed a socket: the WebSocket close code
// and reason text sent to the client. ServeFan returns it as its error.
type CloseReason struct {
	Code   websocket.StatusCode
	Reason string
}

// Error implements error.
func (r *CloseReason) Error() string {
	return "realtime: closed with " + r.Code.String() + ": " + r.Reason
}

// The reasons ServeFan closes a socket.
var (
	// CloseSlowConsumer: the send queue overflowed. A write stuck on the
	// socket is aborted and the socket dropped; an idle one gets this frame.
	CloseSlowConsumer = &CloseReason{websocket.StatusPolicyViolation, "slow consumer: send queue overflowed"}
	// CloseWriteTimeout: a write missed its deadline (the socket is closed
	// at once; the client cannot be told).
	CloseWriteTimeout = &CloseReason{websocket.StatusPolicyViolation, "slow consumer: write deadline exceeded"}
	// CloseShutdown: the server is shutting down (ctx cancelled) or the hub
	// was closed.
	CloseShutdown = &CloseReason{websocket.StatusGoingAway, "server shutting down"}
	// CloseUnavailable: Redis or Postgres did not answer when the fan joined
	// the waiting room; the client should reconnect later.
	CloseUnavailable = &CloseReason{websocket.StatusTryAgainLater, "service temporarily unavailable"}
	// CloseInternal: an unexpected error.
	CloseInternal = &CloseReason{websocket.StatusInternalError, "internal error"}
)

// conn is one fan socket as the hub sees it: a bounded send queue and a way
// to be kicked out. Fan-out enqueues without ever blocking.
type conn struct {
	fan  string
	enc  Encoder
	send chan frame
	// kick is cancelled when the send queue overflows: kicked is then
	// closed, and a write in progress, stuck on a socket that does not
	// drain, is aborted at once (the session drops the socket).
	kick   context.Context
	kicked <-chan struct{}
	cancel context.CancelFunc

	// guarded by the room's mu
	grp        *group
	slot       int    // index in grp.conns
	variantSeq uint64 // the batch variant is for
	variant    []byte // this fan's own encoding of batch variantSeq

	qmu     sync.Mutex
	qstatus QueueStatus
	qnotify chan struct{} // cap 1: a new qstatus is waiting
}

func newConn(fan string, enc Encoder, queue int) *conn {
	kick, cancel := context.WithCancel(context.Background())
	return &conn{
		fan:     fan,
		enc:     enc,
		send:    make(chan frame, queue),
		kick:    kick,
		kicked:  kick.Done(),
		cancel:  cancel,
		qnotify: make(chan struct{}, 1),
	}
}

// enqueue queues f without blocking. A full queue kicks the connection out
// (its writer closes it as a slow consumer) and drops f.
func (c *conn) enqueue(f frame) bool {
	select {
	case c.send <- f:
		return true
	default:
		c.cancel()
		return false
	}
}

// setQueue records the fan's latest waiting-room status; only the latest is
// kept. It never blocks (Queue.Watch callback).
func (c *conn) setQueue(s QueueStatus) {
	c.qmu.Lock()
	c.qstatus = s
	c.qmu.Unlock()
	select {
	case c.qnotify <- struct{}{}:
	default:
	}
}

func (c *conn) queueStatus() QueueStatus {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	return c.qstatus
}

// ServeFan serves one fan's WebSocket until it closes, ctx is cancelled or
// the fan falls behind. The caller has accepted ws (origin already checked)
// and owns nothing of it afterwards: ServeFan always closes it.
//
//   - Waiting room: it joins p.Queue and sends `queue` messages (at most one
//     per Options.QueueInterval, latest position only); on admission, or at
//     once for a fan already admitted, `admitted`, then a snapshot and live
//     `seats` batches with strictly increasing seq, and `hold_expiring`
//     Options.HoldExpiringBefore before each of the fan's holds lapses.
//   - Reading: every client frame is read; frames over Options.ReadLimit
//     close the socket with 1009; `{"type":"ping"}` is answered with `pong`;
//     anything else gets an `error` message and the socket stays open.
//   - Writing: every write has Options.WriteTimeout; an overflowing send
//     queue or a missed deadline closes the socket as a slow consumer
//     (reset, when p.Reset is set and a write is stuck).
//   - A waiting-room error from Join is sent as an `error` message (its
//     domain code and safe message), then the socket closes: 1013 for
//     unavailable, 1011 for internal errors, else 1008 with the code as the
//     reason.
//
// ctx must be cancelled when the server shuts down (a hijacked request's
// context is not): ServeFan then closes with 1001 and returns nil. It also
// returns nil when the client closes normally; otherwise the returned
// error says why the socket ended (a *CloseReason when the server closed
// it, else the read or write error), for logging.
func (h *Hub) ServeFan(ctx context.Context, ws *websocket.Conn, p FanParams) error {
	if p.Encoder == nil {
		p.Encoder = JSONEncoder{}
	}
	hooks := h.opts.Hooks
	hooks.connections(1)
	defer hooks.connections(-1)
	ws.SetReadLimit(h.opts.ReadLimit)
	c := newConn(p.FanID, p.Encoder, h.opts.SendQueue)

	// The reader's context is not ctx: cancelling a read makes coder/websocket
	// drop the socket without a close frame, and shutdown must send 1001.
	readCtx, stopRead := context.WithCancel(context.Background())
	defer stopRead()
	readDone := make(chan error, 1)
	go func() { readDone <- c.readLoop(readCtx, ws) }()

	defer c.cancel()
	s := &session{h: h, c: c, ws: ws, p: p}
	defer s.leave()
	err := s.run(ctx, readDone)
	stopRead()
	<-readDone // the socket is closed: the reader has returned or does so now
	if errors.Is(err, CloseShutdown) {
		return nil
	}
	return err
}

// session is the state of one ServeFan call, owned by its goroutine.
type session struct {
	h  *Hub
	c  *conn
	ws *websocket.Conn
	p  FanParams

	room      *room
	stopWatch func()

	// Every write has Options.WriteTimeout: writeTimer, armed around each
	// write, drops the socket when it fires. One timer per session rather
	// than a context.WithTimeout per write, and writes under a context
	// without Done, which coder/websocket then does not watch: per-message
	// CPU is what limits fan-out, and those were a tenth of it (pprof).
	writeTimer *time.Timer
	writing    atomic.Bool // a write is in progress
	timedOut   atomic.Bool // writeTimer fired during a write
	stopKick   func() bool // unregisters the kick watcher
	admitted   bool
	lastQueue  QueueStatus
	queueSent  time.Time
	queueDue   *time.Timer
}

// leave unregisters the session from the waiting room and the hub.
func (s *session) leave() {
	if s.stopWatch != nil {
		s.stopWatch()
		s.stopWatch = nil
	}
	if s.queueDue != nil {
		s.queueDue.Stop()
	}
	if s.writeTimer != nil {
		s.writeTimer.Stop()
		s.stopKick()
	}
	if s.room != nil {
		s.room.remove(s.c)
		s.h.release(s.room)
		s.room = nil
	}
}

// run is ServeFan's writer loop. It closes the socket before returning and
// leaves the reader's result in readDone.
func (s *session) run(ctx context.Context, readDone chan error) error {
	s.writeTimer = time.AfterFunc(time.Hour, func() {
		s.timedOut.Store(true)
		s.drop()
	})
	s.writeTimer.Stop()
	s.stopKick = context.AfterFunc(s.c.kick, func() {
		if s.writing.Load() {
			s.drop() // stuck on a socket that does not drain
		}
	})
	if err := s.start(ctx); err != nil {
		return err
	}
	for {
		var dueC <-chan time.Time
		if s.queueDue != nil {
			dueC = s.queueDue.C
		}
		select {
		case <-ctx.Done():
			return s.closeWith(CloseShutdown, nil)
		case err := <-readDone:
			readDone <- err // ServeFan still waits on it
			return s.readEnded(err)
		case <-s.c.kicked:
			s.h.opts.Hooks.slowConsumerClosed()
			return s.closeWith(CloseSlowConsumer, nil)
		case f := <-s.c.send:
			if err := s.write(f); err != nil {
				return s.writeFailed(err)
			}
		case <-s.c.qnotify:
			if err := s.queueChanged(s.c.queueStatus()); err != nil {
				return err
			}
		case <-dueC:
			s.queueDue = nil
			s.sendQueue(s.c.queueStatus())
		}
	}
}

// start joins the waiting room, or the seat stream when there is none.
func (s *session) start(ctx context.Context) error {
	if s.p.Queue == nil {
		return s.admit(time.Time{}, false)
	}
	st, err := s.p.Queue.Join(ctx, s.p.EventID, s.p.FanID)
	if err != nil && ctx.Err() != nil {
		return s.closeWith(CloseShutdown, nil)
	}
	if err != nil {
		reason := CloseInternal
		switch booking.ErrorCode(err) {
		case booking.ECodeUnavailable:
			reason = CloseUnavailable
		case booking.ECodeInternal:
		default:
			reason = &CloseReason{Code: websocket.StatusPolicyViolation, Reason: booking.ErrorCode(err)}
		}
		msg := s.c.enc.Error(booking.ErrorCode(err), booking.ErrorMessage(err))
		return s.closeWith(reason, msg)
	}
	if st.State != StateAdmitted {
		s.stopWatch = s.p.Queue.Watch(s.p.EventID, s.p.FanID, s.c.setQueue)
	}
	return s.queueChanged(st)
}

// queueChanged acts on a new waiting-room status: admission joins the seat
// stream, anything else is a position to show.
func (s *session) queueChanged(st QueueStatus) error {
	if s.admitted {
		return nil
	}
	if st.State == StateAdmitted {
		return s.admit(st.Until, true)
	}
	if st.State != StateWaiting {
		return nil // none: the place was lost; the fan reconnects to join again
	}
	if st.Position == s.lastQueue.Position && st.Ahead == s.lastQueue.Ahead &&
		st.ETASeconds == s.lastQueue.ETASeconds && st.PreQueue == s.lastQueue.PreQueue && !s.queueSent.IsZero() {
		return nil
	}
	wait := s.h.opts.QueueInterval - s.h.opts.Now().Sub(s.queueSent)
	if s.queueSent.IsZero() || wait <= 0 {
		s.sendQueue(st)
	} else if s.queueDue == nil {
		s.queueDue = time.NewTimer(wait)
	}
	return nil
}

// queueBudgetRetry is how soon a position held back by the fan-out budget
// is tried again.
const queueBudgetRetry = 250 * time.Millisecond

// sendQueue queues a `queue` message with st, unless the fan was admitted
// meanwhile.
func (s *session) sendQueue(st QueueStatus) {
	if s.admitted || st.State != StateWaiting {
		return
	}
	if !s.h.fanout.allow(s.h.opts.Now(), 1) {
		// Over the fan-out budget: this position waits (the latest one
		// goes out when the timer fires).
		if s.queueDue == nil {
			s.queueDue = time.NewTimer(queueBudgetRetry)
		}
		return
	}
	s.lastQueue, s.queueSent = st, s.h.opts.Now()
	s.c.enqueue(frame{body: s.c.enc.Queue(st)})
}

// admit queues `admitted` (when announce) and joins the event's seat
// stream, which queues the snapshot behind it.
func (s *session) admit(until time.Time, announce bool) error {
	s.admitted = true
	if s.stopWatch != nil {
		s.stopWatch()
		s.stopWatch = nil
	}
	if s.queueDue != nil {
		s.queueDue.Stop()
		s.queueDue = nil
	}
	if announce {
		s.c.enqueue(frame{body: s.c.enc.Admitted(until)})
	}
	r, err := s.h.acquire(s.p.EventID)
	if err != nil {
		return s.closeWith(CloseShutdown, nil)
	}
	s.room = r
	r.add(s.c)
	return nil
}

// write writes f as one text message within the write deadline; an
// overflow of the send queue aborts it.
func (s *session) write(f frame) error {
	s.writing.Store(true)
	s.writeTimer.Reset(s.h.opts.WriteTimeout)
	err := s.writeFrame(f)
	if !s.writeTimer.Stop() && err == nil {
		err = errWriteTimeout // it fired as the write ended: the socket is gone
	}
	s.writing.Store(false)
	if err != nil {
		return err
	}
	s.h.opts.Hooks.messagesSent(1)
	return nil
}

// errWriteTimeout: a write missed Options.WriteTimeout.
var errWriteTimeout = errors.New("realtime: write timed out")

// writeFrame writes f as one message.
func (s *session) writeFrame(f frame) error {
	ctx := context.Background() // no Done: the write timer and kick bound it
	if f.tail == nil {
		if err := s.ws.Write(ctx, websocket.MessageText, f.body); err != nil {
			return err
		}
	} else {
		w, err := s.ws.Writer(ctx, websocket.MessageText)
		if err != nil {
			return err
		}
		if _, err := w.Write(f.body); err != nil {
			return err
		}
		if _, err := w.Write(f.tail); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
	return nil
}

// writeFailed ends the session after a failed write. A write aborted by a
// queue overflow or a missed deadline is a slow consumer, dropped without a
// close frame (it could not get through a socket that does not drain).
func (s *session) writeFailed(err error) error {
	switch {
	case s.c.kick.Err() != nil:
		s.drop()
		s.h.opts.Hooks.slowConsumerClosed()
		return CloseSlowConsumer
	case s.timedOut.Load() || errors.Is(err, errWriteTimeout):
		s.drop()
		s.h.opts.Hooks.slowConsumerClosed()
		return CloseWriteTimeout
	}
	s.ws.CloseNow()
	return err
}

// drop closes a socket that does not drain, resetting it (FanParams.Reset)
// so that neither the kernel nor the client waits on its backlog.
func (s *session) drop() {
	if s.p.Reset != nil {
		s.p.Reset()
	}
	s.ws.CloseNow()
}

// readEnded ends the session after the reader stopped: the client closed,
// sent a frame over the limit (coder/websocket has sent 1009) or vanished.
func (s *session) readEnded(err error) error {
	s.ws.CloseNow()
	switch websocket.CloseStatus(err) {
	case websocket.StatusNormalClosure, websocket.StatusGoingAway:
		return nil
	}
	return err
}

// closeWith writes last (if any) and closes the socket with reason, which
// it returns.
func (s *session) closeWith(reason *CloseReason, last []byte) error {
	if last != nil {
		_ = s.write(frame{body: last})
	}
	_ = s.ws.Close(reason.Code, reason.Reason)
	return reason
}

// readLoop reads every client frame until the socket fails: pings are
// answered, anything else is told it is not understood.
func (c *conn) readLoop(ctx context.Context, ws *websocket.Conn) error {
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		if typ == websocket.MessageText && isPing(data) {
			c.enqueue(frame{body: c.enc.Pong()})
			continue
		}
		c.enqueue(frame{body: c.enc.Error(booking.ECodeBadRequest, `the only message a client may send is {"type":"ping"}`)})
	}
}

func isPing(data []byte) bool {
	var m struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(data, &m) == nil && m.Type == "ping"
}
