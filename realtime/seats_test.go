package realtime

import (
	"slices"
	"testing"
	"time"
)

func TestSeatMap_Set(t *testing.T) {
	m := newSeatMap("ev", newTestCatalog(5), 0)
	now := time.Now()
	check := func(name string, gotChanged, gotExpiry, wantChanged, wantExpiry bool) {
		t.Helper()
		if gotChanged != wantChanged || gotExpiry != wantExpiry {
			t.Errorf("%s: changed %v new expiry %v, want %v %v", name, gotChanged, gotExpiry, wantChanged, wantExpiry)
		}
	}
	c, x := m.set(1, Held, "ann", now.Add(time.Minute))
	check("new hold", c, x, true, true)
	c, x = m.set(1, Held, "ann", now.Add(time.Minute+10*time.Millisecond))
	check("same hold read again", c, x, false, false)
	c, x = m.set(1, Held, "ann", now.Add(3*time.Minute))
	check("extended hold", c, x, false, true)
	c, x = m.set(1, Held, "bob", now.Add(time.Minute))
	check("another holder", c, x, true, true)
	if got := m.mine("ann"); len(got) != 0 {
		t.Errorf("ann still holds %v", got)
	}
	m.set(3, Held, "bob", now.Add(time.Minute))
	if got := m.mine("bob"); !slices.Equal(got, []string{"S1", "S3"}) {
		t.Errorf("bob holds %v, want [S1 S3]", got)
	}
	if m.heldCount() != 2 {
		t.Errorf("%d seats held, want 2", m.heldCount())
	}
	c, _ = m.set(1, Available, "", time.Time{})
	check("released", c, false, true, false)
	c, _ = m.set(3, Sold, "", time.Time{})
	check("sold", c, false, true, false)
	if m.holds("bob") || m.heldCount() != 0 {
		t.Errorf("bob still holds %v", m.mine("bob"))
	}
	c, x = m.set(3, Held, "cid", now.Add(time.Minute))
	check("hold on a sold seat", c, x, false, false)
	c, _ = m.set(3, Available, "", time.Time{})
	check("sold seat freed", c, false, false, false)
	if e := m.entry(3); e.state != Sold {
		t.Errorf("a sold seat became %v", e.state)
	}
}

func TestSeatMap_SnapshotCachedPerSeq(t *testing.T) {
	m := newSeatMap("ev", newTestCatalog(3), 7)
	m.set(0, Held, "ann", time.Time{})
	s1 := m.snapshot()
	if s2 := m.snapshot(); s1 != s2 {
		t.Error("the snapshot was rebuilt at the same seq")
	}
	m.set(2, Sold, "", time.Time{})
	m.seq++
	s3 := m.snapshot()
	if s3 == s1 || s3.Seq != 8 {
		t.Fatalf("snapshot after a change: seq %d", s3.Seq)
	}
	want := []SeatView{{"S0", Held}, {"S1", Available}, {"S2", Sold}}
	if !slices.Equal(s3.Seats, want) {
		t.Errorf("seats = %v, want %v", s3.Seats, want)
	}
	if s1.Seats[2].State != Available {
		t.Error("an earlier snapshot was modified")
	}
}

func TestExpiryHeap_DueOrderAndCompact(t *testing.T) {
	m := newSeatMap("ev", newTestCatalog(3), 0)
	now := time.Now()
	var h expiryHeap
	for i, d := range []time.Duration{100 * time.Second, 30 * time.Second, 70 * time.Second} {
		exp := now.Add(d)
		m.set(i, Held, "ann", exp)
		h.add(m, i, "ann", exp, time.Minute)
	}
	m.set(2, Available, "", time.Time{}) // S2's entries are stale
	h.compact(m)
	if h.Len() != 4 {
		t.Fatalf("%d entries after compact, want 4", h.Len())
	}
	if !h.due(now) || h.due(now.Add(-31*time.Second)) {
		t.Error("the warning of S1 (due 30 s ago) should be due now and not before")
	}
	type got struct {
		seat  int
		lapse bool
	}
	var order []got
	for h.Len() > 0 {
		e := h.pop()
		order = append(order, got{e.seat, e.lapse})
	}
	want := []got{{1, false}, {1, true}, {0, false}, {0, true}}
	if !slices.Equal(order, want) {
		t.Errorf("due order %v, want %v", order, want)
	}
	m.seats[0].warned = true
	if (expiryEntry{seat: 0, holder: "ann", expires: m.seats[0].expires}).live(m) {
		t.Error("a warning already sent is still live")
	}
	if !(expiryEntry{seat: 0, holder: "ann", expires: m.seats[0].expires, lapse: true}).live(m) {
		t.Error("the lapse read of a warned hold is not live")
	}
}

func TestRecentSet(t *testing.T) {
	r := newRecentSet(2)
	for _, step := range []struct {
		id  string
		new bool
	}{{"1", true}, {"1", false}, {"2", true}, {"3", true}, {"1", true}, {"3", false}} {
		if got := r.add(step.id); got != step.new {
			t.Errorf("add(%s) = %v, want %v", step.id, got, step.new)
		}
	}
}
