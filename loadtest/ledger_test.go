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
			orders:     []orderRec{{"o1", []string{"A-1", "A-2"}}, {"o2", []string{"A-3"}}},
			wantDouble: []string{}, wantSeats: 3, wantFresh: []int{2, 1},
		},
		{
			name:       "a retried checkout returns the same order: not a double sale",
			orders:     []orderRec{{"o1", []string{"A-1", "A-2"}}, {"o1", []string{"A-1", "A-2"}}},
			wantDouble: []string{}, wantSeats: 2, wantFresh: []int{2, 0},
		},
		{
			name:       "two orders with one seat in common",
			orders:     []orderRec{{"o1", []string{"A-1", "A-2"}}, {"o2", []string{"A-2", "A-3"}}},
			wantDouble: []string{"A-2"}, wantSeats: 3, wantFresh: []int{2, 2},
		},
		{
			name:       "a seat in three orders counts once",
			orders:     []orderRec{{"o1", []string{"B-9"}}, {"o2", []string{"B-9"}}, {"o3", []string{"B-9", "A-1"}}},
			wantDouble: []string{"B-9"}, wantSeats: 2, wantFresh: []int{1, 1, 2},
		},
		{
			name:       "a seat listed twice in one order is one seat",
			orders:     []orderRec{{"o1", []string{"C-1", "C-1"}}},
			wantDouble: []string{}, wantSeats: 1, wantFresh: []int{1},
		},
		{
			name:       "double sales are reported sorted",
			orders:     []orderRec{{"o1", []string{"Z", "B"}}, {"o2", []string{"B", "Z"}}},
			wantDouble: []string{"B", "Z"}, wantSeats: 2, wantFresh: []int{2, 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger()
			for i, o := range tt.orders {
				if got := l.add(o.ID, o.Seats); got != tt.wantFresh[i] {
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
	a.ledger.add("o1", []string{"A-1"})
	b.ledger.add("o2", []string{"A-1", "A-2"})
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
