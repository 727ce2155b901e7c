package loadtest

import (
	"reflect"
	"testing"
)

func TestLedgerDoubleSold(t *testing.T) {
	tests := []struct {
		name       string
		orders     []orderRec
		wantDouble []string
		wantSeats  int
		wantFresh  []int
	}{
		{
			name:       "distinct orders, distinct seats",
			orders:     []orderRec{{ID: "o1", Seats: []string{"A-1", "A-2"}}, {ID: "o2", Seats: []string{"A-3"}}},
			wantDouble: []string{}, wantSeats: 3, wantFresh: []int{2, 1},
		},
		{
			name:       "a retried checkout returns the same order: not a double sale",
			orders:     []orderRec{{ID: "o1", Seats: []string{"A-1", "A-2"}}, {ID: "o1", Seats: []string{"A-1", "A-2"}}},
			wantDouble: []string{}, wantSeats: 2, wantFresh: []int{2, 0},
		},
		{
			name:       "two orders with one seat in common",
			orders:     []orderRec{{ID: "o1", Seats: []string{"A-1", "A-2"}}, {ID: "o2", Seats: []string{"A-2", "A-3"}}},
			wantDouble: []string{"A-2"}, wantSeats: 3, wantFresh: []int{2, 2},
		},
		{
			name:       "a seat in three orders counts once",
			orders:     []orderRec{{ID: "o1", Seats: []string{"B-9"}}, {ID: "o2", Seats: []string{"B-9"}}, {ID: "o3", Seats: []string{"B-9", "A-1"}}},
			wantDouble: []string{"B-9"}, wantSeats: 2, wantFresh: []int{1, 1, 2},
		},
		{
			name:       "a seat listed twice in one order is one seat",
			orders:     []orderRec{{ID: "o1", Seats: []string{"C-1", "C-1"}}},
			wantDouble: []string{}, wantSeats: 1, wantFresh: []int{1},
		},
		{
			name:       "double sales are reported sorted",
			orders:     []orderRec{{ID: "o1", Seats: []string{"Z", "B"}}, {ID: "o2", Seats: []string{"B", "Z"}}},
			wantDouble: []string{"B", "Z"}, wantSeats: 2, wantFresh: []int{2, 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger()
			for i, o := range tt.orders {
				if got := l.add(o.ID, o.Seats, o.At); got != tt.wantFresh[i] {
					t.Errorf("add(%s) = %d fresh seats, want %d", o.ID, got, tt.wantFresh[i])
				}
			}
			if got := l.doubleSold(); !reflect.DeepEqual(got, tt.wantDouble) {
				t.Errorf("doubleSold = %v, want %v", got, tt.wantDouble)
			}
			if got := l.seatsSold(); got != tt.wantSeats {
				t.Errorf("seatsSold = %d, want %d", got, tt.wantSeats)
			}
		})
	}
}

// TestLedgerMergeAcrossProcesses: two processes' ledgers, merged by their
// records, find a seat each of them sold once.
func TestLedgerMergeAcrossProcesses(t *testing.T) {
	a, b := newStats(), newStats()
	a.ledger.add("o1", []string{"A-1"}, 0)
	b.ledger.add("o2", []string{"A-1", "A-2"}, 0)
	if len(a.ledger.doubleSold())+len(b.ledger.doubleSold()) != 0 {
		t.Fatal("no process alone sold a seat twice")
	}
	m := newStats()
	m.merge(a.partial())
	m.merge(b.partial())
	if got := m.report().DoubleSold; got != 1 {
		t.Errorf("merged double_sold = %d, want 1", got)
	}
}

// TestLedgerLastSale: the sell-out time is the latest first answer among
// the orders that first sold some seat; a retried order keeps its first
// answer, and a seat sold twice does not move it.
func TestLedgerLastSale(t *testing.T) {
	l := newLedger()
	if _, ok := l.lastSale(); ok {
		t.Fatal("an empty ledger has a last sale")
	}
	l.add("o1", []string{"A-1"}, 100)
	l.add("o2", []string{"A-2", "A-3"}, 300)
	l.add("o2", []string{"A-2", "A-3"}, 900) // an idempotent retry, answered later
	l.add("o3", []string{"A-1"}, 950)        // sold A-1 again: not the sale of a new seat
	l.add("o4", []string{"A-4"}, 0)          // answered at an unknown time
	at, ok := l.lastSale()
	if !ok || at.UnixNano() != 300 {
		t.Fatalf("last sale at %d (%v), want 300", at.UnixNano(), ok)
	}
	// Merged from another process: its record carries its time.
	m := newLedger()
	for _, o := range l.records() {
		m.add(o.ID, o.Seats, o.At)
	}
	if at2, _ := m.lastSale(); !at2.Equal(at) {
		t.Fatalf("after a merge: %v, want %v", at2, at)
	}
}
