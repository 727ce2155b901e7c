package realtime

import "time"

// Hooks lets the server count what the hub does without this package
// knowing the metrics library. Every field may be nil (skipped). Hooks are
// called from the hub's goroutines, possibly concurrently, and must return
// quickly without blocking.
type Hooks struct {
	// Connections is called with +1 when ServeFan starts serving a socket
	// and -1 when it returns.
	Connections func(delta int)
	// MessagesSent is called with the number of frames written to sockets.
	MessagesSent func(n int)
	// SlowConsumerClosed is called once for every connection closed because
	// its send queue overflowed or a write missed its deadline.
	SlowConsumerClosed func()
	// NotificationLag is called once per fanned-out batch with the time from
	// the oldest change in it to the batch being queued to every connection.
	// A change starts at the hold's SET in Redis when Options.HoldTTL and the
	// hold's remaining TTL tell when that was, at the hold's expiry for a
	// lapsed hold, else when its notification (or outbox entry) arrived.
	NotificationLag func(d time.Duration)
	// Resync is called after every rebuild of an event's seat state from
	// Redis and SQL (the first subscribe, every resubscribe after a lost
	// Redis connection, an overflow of pending notifications, Hub.Resync),
	// before its snapshots go out, under the event's lock: it must be quick.
	Resync func()
	// BatchDeferred is called for every tick whose changes waited because
	// the fan-out budget (Options.PushBudget) was spent.
	BatchDeferred func()
}

func (h Hooks) connections(delta int) {
	if h.Connections != nil {
		h.Connections(delta)
	}
}

func (h Hooks) messagesSent(n int) {
	if h.MessagesSent != nil {
		h.MessagesSent(n)
	}
}

func (h Hooks) slowConsumerClosed() {
	if h.SlowConsumerClosed != nil {
		h.SlowConsumerClosed()
	}
}

func (h Hooks) notificationLag(d time.Duration) {
	if h.NotificationLag != nil {
		h.NotificationLag(d)
	}
}

func (h Hooks) resync() {
	if h.Resync != nil {
		h.Resync()
	}
}

func (h Hooks) batchDeferred() {
	if h.BatchDeferred != nil {
		h.BatchDeferred()
	}
}
