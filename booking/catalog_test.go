package booking_test

import (
	"context"
	"sync"
	"testing"

	"seatmap/booking"
)

// TestCatalogLoadsOncePerEvent: many requests missing the cache at once
// (fans connecting as a drop opens) read the catalog from SQL once, and a
// caller that gives up does not fail the others.
func TestCatalogLoadsOncePerEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 2, 20, 50, 1000)
	svc := booking.NewService(e.db, e.rdb, e.pay, booking.Config{}, e.logs, nil) // a cold cache
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	start := make(chan struct{})
	var wg sync.WaitGroup
	cats := make([]*booking.Catalog, 64)
	errs := make([]error, len(cats))
	for i := range cats {
		wg.Go(func() { <-start; cats[i], errs[i] = svc.Catalog(context.Background(), e.ev) })
	}
	wg.Go(func() { <-start; svc.Catalog(gone, e.ev) }) // gives up at once: must not fail the others
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
		if cats[i] != cats[0] || len(cats[i].Order) != 2000 {
			t.Fatalf("caller %d got another catalog (%d seats)", i, len(cats[i].Order))
		}
	}
	if n := booking.CatalogReads(svc); n != 1 {
		t.Errorf("the catalog was read from SQL %d times, want 1", n)
	}
}
