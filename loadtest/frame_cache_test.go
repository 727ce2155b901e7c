package loadtest

import (
	"fmt"
	"slices"
	"testing"
)

func TestFrameCache(t *testing.T) {
	v := &venue{index: map[string]int32{"A-1-1": 0, "A-1-2": 1, "A-1-3": 2}, ids: []string{"A-1-1", "A-1-2", "A-1-3"}}
	c := newFrameCache()
	snap := []byte(`{"type":"snapshot","seq":7,"seats":{"A-1-1":"available","A-1-2":"held","X-9-9":"sold","A-1-3":"sold"},"mine":[]}`)
	d, err := c.decode(snap, v)
	if err != nil {
		t.Fatal(err)
	}
	want := []decodedSeat{{0, stAvailable}, {1, stHeld}, {2, stSold}} // the unknown seat left out
	if d.h.typ != msgSnapshot || d.h.seq != 7 || !slices.Equal(d.seats, want) {
		t.Fatalf("snapshot decoded as %+v, want seq 7 and %v", d, want)
	}
	again, _ := c.decode(append([]byte(nil), snap...), v)
	if again != d {
		t.Error("the same bytes were decoded twice")
	}

	batch := []byte(`{"type":"seats","seq":8,"changes":[{"seat":"A-1-2","state":"available","mine":false},{"seat":"A-1-3","state":"held","mine":true}]}`)
	d, err = c.decode(batch, v)
	if err != nil {
		t.Fatal(err)
	}
	if want := []decodedSeat{{1, stAvailable}, {2, stHeld}}; d.h.typ != msgSeats || d.h.seq != 8 || !slices.Equal(d.seats, want) {
		t.Fatalf("batch decoded as %+v, want seq 8 and %v", d, want)
	}

	queue := []byte(`{"type":"queue","position":3,"ahead":2,"eta_seconds":1}`)
	if _, err := c.decode(queue, v); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.entries[string(queue)]; ok {
		t.Error("a per-fan queue message was cached")
	}
	if _, err := c.decode([]byte(`{"type":"seats","seq":`), v); err == nil {
		t.Error("a broken frame decoded without error")
	}

	for i := range 2 * frameCacheSize {
		if _, err := c.decode([]byte(fmt.Sprintf(`{"type":"seats","seq":%d,"changes":[]}`, 100+i)), v); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.entries) != frameCacheSize || len(c.fifo) != frameCacheSize {
		t.Errorf("cache holds %d entries (%d in order), want at most %d", len(c.entries), len(c.fifo), frameCacheSize)
	}
	if _, ok := c.entries[string(snap)]; ok {
		t.Error("the oldest frame was not evicted")
	}
}
