package server

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"seatmap/booking"
	"seatmap/internal/testenv"
)

// TestDBPoolMetricsValues: seatmap_db_pool_* report what the pool does — a
// connection in use, and an acquire that found none idle, waited and was
// counted with its wait.
func TestDBPoolMetricsValues(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := booking.OpenDB(ctx, testenv.DatabaseURL(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reg := prometheus.NewRegistry()
	newMetrics(reg).watchDBPools(map[string]*pgxpool.Pool{"app": pool})
	value := func(name string) float64 {
		t.Helper()
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				if l := m.GetLabel(); len(l) == 1 && l[0].GetValue() == "app" {
					if g := m.GetGauge(); g != nil {
						return g.GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
		t.Fatalf("no %s{pool=\"app\"}", name)
		return 0
	}

	held, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := value("seatmap_db_pool_acquired_conns"); got != 1 {
		t.Errorf("acquired_conns with one held = %v, want 1", got)
	}
	// Acquires that opened a connection count as waits too (OpenDB's ping).
	waits, waited := value("seatmap_db_pool_empty_acquires_total"), value("seatmap_db_pool_empty_acquire_wait_seconds_total")
	// A second acquire finds the only connection taken and waits for it.
	got := make(chan error, 1)
	go func() {
		c, err := pool.Acquire(ctx)
		if err == nil {
			c.Release()
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond) // the second acquire waits meanwhile
	held.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if got := value("seatmap_db_pool_empty_acquires_total") - waits; got != 1 {
		t.Errorf("empty_acquires_total grew by %v with one wait, want 1", got)
	}
	if got := value("seatmap_db_pool_empty_acquire_wait_seconds_total") - waited; got < 0.015 {
		t.Errorf("empty_acquire_wait_seconds_total grew by %v, want at least the 20 ms it waited", got)
	}
	if got := value("seatmap_db_pool_acquired_conns"); got != 0 {
		t.Errorf("acquired_conns with none held = %v, want 0", got)
	}
	if got := value("seatmap_db_pool_max_conns"); got != 1 {
		t.Errorf("max_conns = %v, want 1", got)
	}
}
