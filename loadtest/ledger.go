package loadtest

import (
	"sort"
	"sync"
	"time"
)

// orderRec is one successful checkout as the server answered it, and when
// (Unix nanoseconds, this machine's clock).
type orderRec struct {
	ID    string   `json:"id"`
	Seats []string `json:"seats"`
	At    int64    `json:"at,omitempty"`
}

// ledger collects every confirmed order the load generator was given and
// finds seats sold twice: a seat named by two different successful orders.
// The same order reported twice (an idempotent retry) counts once. It is
// safe for concurrent use; ledgers of several processes merge by adding
// their orders.
type ledger struct {
	mu     sync.Mutex
	orders map[string][]string // order id → seats
	at     map[string]int64    // order id → its first answer, Unix ns
	owner  map[string]string   // seat → first order that sold it
	double map[string][]string // seat → every further order that sold it
}

func newLedger() *ledger {
	return &ledger{orders: map[string][]string{}, at: map[string]int64{}, owner: map[string]string{}, double: map[string][]string{}}
}

// add records a confirmed order answered at at (Unix ns; 0 if unknown). It
// returns how many of its seats were new to this order (0 for a repeated
// order id; a seat listed twice counts once).
func (l *ledger) add(id string, seats []string, at int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.at[id]; at != 0 && (!ok || t == 0 || at < t) {
		l.at[id] = at
	}
	prev := l.orders[id]
	fresh := 0
	for _, s := range seats {
		if contains(prev, s) {
			continue
		}
		fresh++
		prev = append(prev, s)
		switch o, ok := l.owner[s]; {
		case !ok:
			l.owner[s] = id
		case o != id && !contains(l.double[s], id):
			l.double[s] = append(l.double[s], id)
		}
	}
	l.orders[id] = prev
	return fresh
}

// doubleSold returns the seats sold by more than one order, sorted.
func (l *ledger) doubleSold() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.double))
	for s := range l.double {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// seatsSold returns how many distinct seats the recorded orders sold.
func (l *ledger) seatsSold() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.owner)
}

// lastSale returns when the last seat was first sold: the latest answer
// among the orders that sold some seat first. false if no order has a time.
func (l *ledger) lastSale() (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var last int64
	for _, id := range l.owner {
		last = max(last, l.at[id])
	}
	return time.Unix(0, last), last != 0
}

// records returns every order, sorted by id.
func (l *ledger) records() []orderRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]orderRec, 0, len(l.orders))
	for id, seats := range l.orders {
		out = append(out, orderRec{ID: id, Seats: append([]string(nil), seats...), At: l.at[id]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
