package realtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestShuffleOrder(t *testing.T) {
	seed := []byte("seatmap-test-seed")
	tests := []struct {
		name    string
		seed    []byte
		entries []string
		want    []string
	}{
		{"no entries give an empty order", seed, nil, []string{}},
		{"one entry stays", seed, []string{"a"}, []string{"a"}},
		{"entries sort by their hmac", seed, []string{"a", "b", "c", "d", "e"}, []string{"e", "d", "c", "a", "b"}},
		{"input order does not matter", seed, []string{"e", "d", "c", "b", "a"}, []string{"e", "d", "c", "a", "b"}},
		{"another seed draws another order", []byte("another seed"), []string{"a", "b", "c", "d", "e"}, []string{"c", "e", "d", "a", "b"}},
		{"equal entries stay together", seed, []string{"b", "a", "b"}, []string{"a", "b", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.entries)
			got := ShuffleOrder(tt.seed, in)
			if !slices.Equal(got, tt.want) {
				t.Errorf("ShuffleOrder = %q, want %q", got, tt.want)
			}
			if !slices.Equal(in, tt.entries) {
				t.Errorf("input changed to %q", in)
			}
			if again := ShuffleOrder(tt.seed, got); !slices.Equal(again, got) {
				t.Errorf("not a fixed point: %q then %q", got, again)
			}
		})
	}
}

func TestPreQueueIsShuffledVerifiably(t *testing.T) {
	t.Parallel()
	svc := mustWRService(t)
	ctx := context.Background()
	ev := mustWREvent(t, svc, time.Now().Add(time.Hour))
	clk := &wrClock{}
	cfg := fastWRConfig()
	insts := mustStartWRInstances(t, svc, 2, cfg, clk.Now)
	a, b := insts[0], insts[1]
	// late's clock lags: it still thinks the sale has not opened.
	late := newWRInstance(t, svc, cfg, nil).start(t)
	mustSetAdmission(t, a.WaitingRoom, ev.ID, nil, ptrTo(true))

	entryOf := map[string]string{} // fan → entry id, for fans that joined the pre-queue
	const early = 30
	for i := 0; i < early; i++ {
		fan := fmt.Sprintf("early-%02d", i)
		st := mustJoin(t, insts[i%2].WaitingRoom, ev.ID, fan)
		if !st.PreQueue || st.State != StateWaiting || st.Position != 0 || st.EntryID == "" || st.ETASeconds < 3590 {
			t.Fatalf("pre-queue join = %+v", st)
		}
		entryOf[fan] = st.EntryID
	}
	t.Run("rejoining the pre-queue keeps the entry", func(t *testing.T) {
		for i := 0; i < 5; i++ {
			fan := fmt.Sprintf("early-%02d", i)
			if st := mustJoin(t, insts[(i+1)%2].WaitingRoom, ev.ID, fan); !st.PreQueue || st.EntryID != entryOf[fan] {
				t.Errorf("rejoin %s = %+v, want entry %s", fan, st, entryOf[fan])
			}
		}
	})
	t.Run("the seed stays secret before the sale", func(t *testing.T) {
		info, err := b.Shuffle(ctx, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		if info.SeedSHA256 != ev.ShuffleSeedSHA256 || info.Seed != "" || info.Entries != nil {
			t.Errorf("before the sale: %+v", info)
		}
	})

	// Fans keep joining through the lagging instance while the line opens.
	type joined struct {
		fan string
		st  QueueStatus
	}
	var mu sync.Mutex
	var racing []joined
	stop := make(chan struct{})
	done := make(chan struct{})
	var stopOnce sync.Once
	stopRacing := func() { stopOnce.Do(func() { close(stop) }); <-done }
	// A failure below must not leave the goroutine logging after the test.
	t.Cleanup(stopRacing)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			fan := fmt.Sprintf("racing-%03d", i)
			st, err := late.Join(ctx, ev.ID, fan)
			if err != nil {
				t.Errorf("racing join: %v", err)
				return
			}
			mu.Lock()
			racing = append(racing, joined{fan, st})
			mu.Unlock()
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(racing) }
	waitUntil(t, 15*time.Second, "racing joins", func() bool { return count() >= 5 })
	clk.Advance(time.Hour + time.Second)
	after := mustJoin(t, a.WaitingRoom, ev.ID, "after-open")
	if after.PreQueue || after.State != StateWaiting {
		t.Fatalf("join after the sale opened = %+v", after)
	}
	n := count()
	waitUntil(t, 15*time.Second, "racing joins after the opening", func() bool { return count() >= n+5 })
	stopRacing()

	var lateFans []joined
	for _, j := range racing {
		if j.st.PreQueue {
			entryOf[j.fan] = j.st.EntryID
		} else {
			lateFans = append(lateFans, j)
		}
	}
	if len(lateFans) == 0 {
		t.Fatal("no racing join landed after the opening")
	}

	info, err := b.Shuffle(ctx, ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := hex.DecodeString(info.Seed)
	if err != nil || len(seed) == 0 {
		t.Fatalf("revealed seed %q: %v", info.Seed, err)
	}
	if sum := sha256.Sum256(seed); hex.EncodeToString(sum[:]) != ev.ShuffleSeedSHA256 || info.SeedSHA256 != ev.ShuffleSeedSHA256 {
		t.Errorf("seed hash %x, published %s", sum, ev.ShuffleSeedSHA256)
	}
	want := make([]string, 0, len(entryOf))
	fanOf := map[string]string{}
	for fan, e := range entryOf {
		want = append(want, e)
		fanOf[e] = fan
	}
	want = ShuffleOrder(seed, want)
	if !slices.Equal(info.Entries, want) {
		t.Fatalf("revealed order %q, want ShuffleOrder of every pre-queue entry %q", info.Entries, want)
	}

	t.Run("places follow the drawn order", func(t *testing.T) {
		for i, e := range info.Entries {
			st := mustStatus(t, a.WaitingRoom, ev.ID, fanOf[e])
			if st.State != StateWaiting || st.PreQueue || st.Position != i+1 || st.EntryID != e {
				t.Errorf("%s: %+v, want waiting at %d", fanOf[e], st, i+1)
			}
		}
	})
	t.Run("later fans queue behind the pre-queue", func(t *testing.T) {
		for _, j := range append(lateFans, joined{"after-open", after}) {
			if st := mustStatus(t, a.WaitingRoom, ev.ID, j.fan); st.Position <= len(info.Entries) {
				t.Errorf("%s at %d, inside the pre-queue of %d", j.fan, st.Position, len(info.Entries))
			}
		}
	})
	t.Run("rejoining after the draw keeps the place", func(t *testing.T) {
		for i, e := range info.Entries[:5] {
			if st := mustJoin(t, b.WaitingRoom, ev.ID, fanOf[e]); st.Position != i+1 || st.EntryID != e {
				t.Errorf("%s rejoined at %+v, want %d", fanOf[e], st, i+1)
			}
		}
	})
}
