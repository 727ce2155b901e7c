package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"seatmap/booking"
	"seatmap/internal/testenv"
)

// syncBuffer is an io.Writer safe for the server's goroutines and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe runs `seatmap serve` through Run on a free port and returns its
// base URL, a cancel func (SIGTERM) and a channel with Run's result.
func startServe(t *testing.T, extra map[string]string) (string, context.CancelFunc, <-chan error) {
	t.Helper()
	m := map[string]string{
		"DATABASE_URL":   testenv.DatabaseURL(t),
		"REDIS_URL":      testenv.RedisURL(t),
		"ADDR":           "127.0.0.1:0",
		"STAFF_TOKEN":    "test-staff-token",
		"SESSION_SECRET": "test-session-secret-0123456789",
	}
	for k, v := range extra {
		m[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr := &syncBuffer{}
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		err := Run(ctx, []string{"seatmap", "serve"}, env(m), pw, stderr)
		pw.Close()
		done <- err
		close(finished)
	}()
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "seatmap serving on "); ok {
				urlc <- u
			}
		}
	}()
	select {
	case u := <-urlc:
		t.Cleanup(func() {
			cancel()
			<-finished
		})
		return u, cancel, done
	case <-finished:
		t.Fatalf("serve exited early: %v\n%s", <-done, stderr.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not start\n%s", stderr.String())
	}
	return "", nil, nil
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServeAnswersAndShutsDownOnSignal(t *testing.T) {
	base, cancel, done := startServe(t, nil)
	for _, p := range []string{"/healthz", "/readyz", "/", "/api/events", "/static/vendor/htmx.min.js"} {
		if got := getStatus(t, base+p); got != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", p, got)
		}
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"go_goroutines", "seatmap_ws_connections", "seatmap_seat_batches_deferred_total",
		"seatmap_queue_tick_seconds_count", "seatmap_ws_messages_sent_total", "seatmap_commit_seconds_count",
		"seatmap_http_requests_in_flight"} {
		if !strings.Contains(string(body), "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after SIGTERM = %v, want nil (exit 0)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown took longer than 10 s")
	}
	t.Logf("shutdown took %v", time.Since(start))
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still accepting after shutdown")
	}
}

func TestServeRefusesUnreachableBackendsNamingTheVariable(t *testing.T) {
	tests := []struct {
		name, variable string
		env            map[string]string
	}{
		{"bad database url", "DATABASE_URL", map[string]string{"DATABASE_URL": "bad", "REDIS_URL": "redis://127.0.0.1:1/0"}},
		{"unreachable database", "DATABASE_URL", map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1:1/x", "REDIS_URL": testenv.RedisURL(t)}},
		{"unreachable redis", "REDIS_URL", map[string]string{"DATABASE_URL": testenv.DatabaseURL(t), "REDIS_URL": "redis://127.0.0.1:1/0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := Run(context.Background(), []string{"seatmap", "serve", "--addr", "127.0.0.1:0"}, env(tt.env), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.variable) {
				t.Fatalf("err = %v, want one naming %s", err, tt.variable)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v, want < 5 s", d)
			}
		})
	}
}

// TestReadyzFollowsRedis stops a private Redis under a running server:
// /readyz goes 503 and returns to 200 when Redis is back.
func TestReadyzFollowsRedis(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not installed: run scripts/deps")
	}
	port := freePort(t)
	dir := t.TempDir()
	startRedis := func() *exec.Cmd {
		cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--dir", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		return cmd
	}
	redisCmd := startRedis()
	t.Cleanup(func() { redisCmd.Process.Kill(); redisCmd.Wait() })
	base, _, _ := startServe(t, map[string]string{"REDIS_URL": "redis://127.0.0.1:" + port + "/0"})
	if got := getStatus(t, base+"/readyz"); got != 200 {
		t.Fatalf("readyz = %d with Redis up", got)
	}
	redisCmd.Process.Kill()
	redisCmd.Wait()
	waitFor(t, func() bool { return getStatus(t, base+"/readyz") == http.StatusServiceUnavailable })
	if got := getStatus(t, base+"/healthz"); got != 200 {
		t.Errorf("healthz = %d while Redis is down, want 200", got)
	}
	redisCmd = startRedis()
	waitFor(t, func() bool { return getStatus(t, base+"/readyz") == http.StatusOK })
	// The restarted Redis has its default configuration; the server's new
	// connections must turn keyspace notifications back on by themselves.
	waitFor(t, func() bool {
		out, err := exec.Command("redis-cli", "-p", port, "CONFIG", "GET", "notify-keyspace-events").Output()
		flags := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "notify-keyspace-events"))
		return err == nil && strings.ContainsAny(flags, "K") && strings.Contains(flags, "x") && strings.Contains(flags, "$") && strings.Contains(flags, "g")
	})
}

func TestMigrateAndSeedCommands(t *testing.T) {
	e := env(map[string]string{"DATABASE_URL": testenv.DatabaseURL(t)})
	var out strings.Builder
	if err := Run(context.Background(), []string{"seatmap", "migrate"}, e, &out, io.Discard); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	id := testenv.EventID(t)
	args := []string{"seatmap", "seed", "--event", id, "--name", "Seeded", "--sections", "3", "--rows", "4", "--seats-per-row", "5", "--price-cents", "4000"}
	if err := Run(context.Background(), args, e, &out, io.Discard); err != nil {
		t.Fatalf("seed: %v", err)
	}
	err := Run(context.Background(), args, e, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "event_exists") {
		t.Fatalf("second seed err = %v, want event_exists", err)
	}
	conn, err := pgx.Connect(context.Background(), testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var seats, sections int
	var prices string
	conn.QueryRow(context.Background(), `SELECT count(*) FROM seats WHERE event_id=$1`, id).Scan(&seats)
	conn.QueryRow(context.Background(), `SELECT count(*), string_agg(price_cents::text, ',' ORDER BY id) FROM sections WHERE event_id=$1`, id).Scan(&sections, &prices)
	if seats != 60 || sections != 3 || prices != "4000,3000,2000" {
		t.Fatalf("seeded %d seats in %d sections priced %s; want 60 in 3 priced 4000,3000,2000", seats, sections, prices)
	}
	var exists bool
	conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM seats WHERE event_id=$1 AND id='C-4-5')`, id).Scan(&exists)
	if !exists {
		t.Fatal("seat C-4-5 missing: ids must be section-row-number")
	}
}

func TestUnknownCommandFails(t *testing.T) {
	if err := Run(context.Background(), []string{"seatmap", "dance"}, env(nil), io.Discard, io.Discard); err == nil {
		t.Fatal("want an error for an unknown command")
	}
	if err := Run(context.Background(), []string{"seatmap"}, env(nil), io.Discard, io.Discard); err == nil {
		t.Fatal("want an error without a command")
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join("..", "scripts", "freeport")).Output()
	if err != nil {
		t.Fatalf("freeport: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDBPoolSizeAndMetrics: the app and payments pools open
// booking.DefaultPoolSize connections unless DATABASE_URL sets
// pool_max_conns, and /metrics says so.
func TestDBPoolSizeAndMetrics(t *testing.T) {
	for _, tc := range []struct {
		name, url string
		want      int
	}{
		{"default", testenv.DatabaseURL(t), booking.DefaultPoolSize},
		{"pool_max_conns", testenv.WithQuery(testenv.DatabaseURL(t), "pool_max_conns=3"), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, _, _ := startServe(t, map[string]string{"DATABASE_URL": tc.url})
			resp, err := http.Get(base + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, pool := range []string{"app", "payments"} { // the setting sizes both (API.md)
				want := fmt.Sprintf("\nseatmap_db_pool_max_conns{pool=%q} %d\n", pool, tc.want)
				if !strings.Contains(string(body), want) {
					t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
				}
			}
			for _, name := range []string{`seatmap_db_pool_acquired_conns{pool="payments"}`,
				`seatmap_db_pool_empty_acquires_total{pool="app"}`, `seatmap_db_pool_empty_acquire_wait_seconds_total{pool="app"}`} {
				if !strings.Contains(string(body), "\n"+name+" ") {
					t.Errorf("/metrics lacks %s", name)
				}
			}
		})
	}
}
