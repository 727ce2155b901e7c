//go:build faults

package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// clusterConfig is one scenario's deployment.
type clusterConfig struct {
	servers       int           // `seatmap serve` processes, all with workers
	holdTTL       time.Duration // HOLD_TTL
	paymentWindow time.Duration // PAYMENT_WINDOW (RecoverAfter is this + 30 s)
	admitRate     int           // ADMIT_RATE
	env           []string      // more environment, KEY=VALUE
}

// cluster is one scenario's world: a private Postgres and Redis, a fault
// proxy in front of each, servers connected through the proxies, and
// direct connections for the checker.
type cluster struct {
	t          *testing.T
	dir        string
	cfg        clusterConfig
	pg         *postgres
	redis      *redisServer
	pgProxy    *Proxy
	redisProxy *Proxy
	servers    []*server
	db         *pgxpool.Pool // direct to Postgres, for the checker
	rdb        *redis.Client // direct to Redis, for faults and the checker

	mu     sync.Mutex
	faults []faultRecord
}

// faultRecord is one injected fault.
type faultRecord struct {
	At   time.Time `json:"at"`
	What string    `json:"what"`
}

var nonWord = regexp.MustCompile(`[^A-Za-z0-9]+`)

func newCluster(t *testing.T, cfg clusterConfig) *cluster {
	t.Helper()
	if cfg.servers == 0 {
		cfg.servers = 1
	}
	if cfg.holdTTL == 0 {
		cfg.holdTTL = time.Minute
	}
	if cfg.paymentWindow == 0 {
		cfg.paymentWindow = 3 * time.Second
	}
	if cfg.admitRate == 0 {
		cfg.admitRate = 2000
	}
	dir := filepath.Join(suite.dir, nonWord.ReplaceAllString(t.Name(), "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	c := &cluster{t: t, dir: dir, cfg: cfg}
	c.pg = newPostgres(t, dir)
	c.redis = newRedis(t, dir)
	var err error
	if c.pgProxy, err = NewProxy("127.0.0.1:0", c.pg.addr()); err != nil {
		t.Fatal(err)
	}
	if c.redisProxy, err = NewProxy("127.0.0.1:0", c.redis.addr()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.pgProxy.Close(); c.redisProxy.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.db, err = pgxpool.New(ctx, c.pg.url("seatmap"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.db.Close)
	c.rdb = redis.NewClient(&redis.Options{Addr: c.redis.addr(), MaxRetries: 3})
	t.Cleanup(func() { c.rdb.Close() })

	for i := 0; i < cfg.servers; i++ {
		s := c.newServer(string(rune('A' + i)))
		if _, err := s.restart(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, s := range c.servers {
			s.stop()
		}
		if t.Failed() {
			prefix := filepath.Join(outDir(), nonWord.ReplaceAllString(t.Name(), "_"))
			for _, s := range c.servers {
				kept := prefix + ".server-" + s.name + ".log"
				if b, err := os.ReadFile(s.log); err == nil && os.WriteFile(kept, b, 0o644) == nil {
					t.Logf("server %s log kept: %s", s.name, kept)
				}
				t.Logf("---- server %s log (last 15 lines):\n%s", s.name, tail(s.log, 15))
			}
			// The services' own logs say what a server could only wait for
			// (crash recovery, checkpoints, refused connections).
			for name, log := range map[string]string{"postgres": c.pg.log(), "redis": c.redis.log()} {
				kept := prefix + "." + name + ".log"
				if b, err := os.ReadFile(log); err == nil && os.WriteFile(kept, b, 0o644) == nil {
					t.Logf("%s log kept: %s", name, kept)
				}
			}
			t.Logf("---- postgres log (last 15 lines):\n%s", tail(c.pg.log(), 15))
		}
	})
	return c
}

// newServer prepares (does not start) a server on a free port.
func (c *cluster) newServer(name string) *server {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"DATABASE_URL=postgres://seatmap@" + c.pgProxy.Addr() + "/seatmap?sslmode=disable",
		"REDIS_URL=redis://" + c.redisProxy.Addr() + "/0",
		"STAFF_TOKEN=" + staffToken,
		"SESSION_SECRET=" + sessionSecret,
		fmt.Sprintf("ADMIT_RATE=%d", c.cfg.admitRate),
		"HOLD_TTL=" + c.cfg.holdTTL.String(),
		"PAYMENT_WINDOW=" + c.cfg.paymentWindow.String(),
		"RATE_LIMIT_PER_ADDRESS=0",
		"MAX_CONNS_PER_ADDRESS=0",
	}
	env = append(env, c.cfg.env...)
	s := &server{t: c.t, name: name, addr: fmt.Sprintf("127.0.0.1:%d", freePort()), env: env,
		log: filepath.Join(c.dir, "server-"+name+".log"), dir: c.dir, diagnose: c.diagnose}
	c.servers = append(c.servers, s)
	return s
}

// diagnose describes the path from a server to Postgres and Redis, for a
// server that could not start: each proxy's own health and accept queue,
// and Postgres seen directly — its accept queue, how long a new connection
// takes and what its client backends are doing. A full accept queue or a
// slow direct connection means Postgres (or the machine) is stuck, dial
// errors or a full proxy queue mean the proxy is.
func (c *cluster) diagnose() string {
	var b strings.Builder
	for _, p := range []*Proxy{c.pgProxy, c.redisProxy} {
		fmt.Fprintf(&b, "\n    %s; accept queue %s", p.Health(), acceptQueue(p.Addr()))
	}
	fmt.Fprintf(&b, "\n    postgres %s: accept queue %s; %s", c.pg.addr(), acceptQueue(c.pg.addr()), c.pgActivity())
	return b.String()
}

// pgActivity connects to Postgres directly (not through the proxy) and
// summarises its client backends by state and wait event.
func (c *cluster) pgActivity() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	conn, err := pgx.Connect(ctx, c.pg.url("seatmap"))
	if err != nil {
		return fmt.Sprintf("direct connect failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	defer conn.Close(context.Background())
	took := time.Since(start)
	rows, err := conn.Query(ctx, `SELECT coalesce(state, '-'), coalesce(wait_event_type || ':' || wait_event, '-'), count(*),
			coalesce(extract(epoch FROM max(now() - xact_start)), 0)
		FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
		GROUP BY 1, 2 ORDER BY 3 DESC`)
	if err != nil {
		return fmt.Sprintf("direct connect took %v; pg_stat_activity: %v", took.Round(time.Millisecond), err)
	}
	var groups []string
	for rows.Next() {
		var (
			state, wait string
			n           int
			oldest      float64
		)
		if err := rows.Scan(&state, &wait, &n, &oldest); err != nil {
			return fmt.Sprintf("direct connect took %v; pg_stat_activity: %v", took.Round(time.Millisecond), err)
		}
		groups = append(groups, fmt.Sprintf("%d %s/%s (oldest transaction %.1f s)", n, state, wait, oldest))
	}
	if err := rows.Err(); err != nil {
		return fmt.Sprintf("direct connect took %v; pg_stat_activity: %v", took.Round(time.Millisecond), err)
	}
	if len(groups) == 0 {
		groups = append(groups, "none")
	}
	return fmt.Sprintf("direct connect took %v; client backends: %s", took.Round(time.Millisecond), strings.Join(groups, ", "))
}

// acceptQueue returns how many connections wait in the accept queue of the
// TCP listener on addr ("127.0.0.1:port"), read from /proc/net/tcp:
// handshakes the kernel completed that the program has not accepted yet.
// A queue that stays long means the program stopped accepting; when it is
// full, a client whose handshake got through waits for an answer that
// never comes ("failed to receive message: timeout").
func acceptQueue(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "?"
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "?"
	}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return "?"
	}
	want := fmt.Sprintf(":%04X", p)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		// sl local rem st tx_queue:rx_queue ...; for a listener (state
		// 0A) rx_queue is the accept queue.
		if len(f) < 5 || f[3] != "0A" || !strings.HasSuffix(f[1], want) {
			continue
		}
		_, rx, ok := strings.Cut(f[4], ":")
		if !ok {
			return "?"
		}
		q, err := strconv.ParseInt(rx, 16, 64)
		if err != nil {
			return "?"
		}
		return strconv.FormatInt(q, 10)
	}
	return "(no listener)"
}

// fault records an injected fault (and logs it).
func (c *cluster) fault(format string, args ...any) {
	what := fmt.Sprintf(format, args...)
	c.mu.Lock()
	c.faults = append(c.faults, faultRecord{At: time.Now(), What: what})
	c.mu.Unlock()
	c.t.Logf("FAULT %s", what)
}

func (c *cluster) faultCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.faults)
}

// event is a created event and its seats in catalog order.
type event struct {
	ID    string
	Seats []string
	Price map[string]int64
}

// createEvent creates an on-sale event through the staff API of the first
// server: sections of rows × perRow seats.
func (c *cluster) createEvent(id string, sections, rows, perRow int) *event {
	c.t.Helper()
	type sec struct {
		Name        string `json:"name"`
		PriceCents  int64  `json:"price_cents"`
		Rows        int    `json:"rows"`
		SeatsPerRow int    `json:"seats_per_row"`
	}
	body := map[string]any{
		"id": id, "name": "Fault drop " + id, "venue": "Chaos Hall",
		"on_sale_at": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339),
		"starts_at":  time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339),
	}
	var secs []sec
	for i := 0; i < sections; i++ {
		secs = append(secs, sec{Name: "Section " + string(rune('A'+i)), PriceCents: int64(5000 - 1000*i), Rows: rows, SeatsPerRow: perRow})
	}
	body["sections"] = secs
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", c.servers[0].URL()+"/api/staff/events", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+staffToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		c.t.Fatalf("create event: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		c.t.Fatalf("create event: status %d", resp.StatusCode)
	}
	resp, err = (&http.Client{Timeout: 30 * time.Second}).Get(c.servers[0].URL() + "/api/events/" + id)
	if err != nil {
		c.t.Fatalf("get event: %v", err)
	}
	defer resp.Body.Close()
	var detail struct {
		Sections []struct {
			PriceCents int64 `json:"price_cents"`
			Rows       []struct {
				Seats []struct {
					ID string `json:"id"`
				} `json:"seats"`
			} `json:"rows"`
		} `json:"sections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&detail); err != nil {
		c.t.Fatalf("decode event: %v", err)
	}
	ev := &event{ID: id, Price: map[string]int64{}}
	for _, s := range detail.Sections {
		for _, r := range s.Rows {
			for _, seat := range r.Seats {
				ev.Seats = append(ev.Seats, seat.ID)
				ev.Price[seat.ID] = s.PriceCents
			}
		}
	}
	if len(ev.Seats) != sections*rows*perRow {
		c.t.Fatalf("event %s has %d seats, want %d", id, len(ev.Seats), sections*rows*perRow)
	}
	return ev
}

// waitReady waits until every running server answers /readyz with 200.
func (c *cluster) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, s := range c.servers {
		if s.PID() == 0 {
			continue
		}
		for s.ready(2*time.Second) != 200 {
			if time.Now().After(deadline) {
				return fmt.Errorf("server %s not ready after %v", s.name, timeout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// readyWatch polls /readyz of a server every 100 ms and records its
// transitions, until stopped.
type readyWatch struct {
	mu     sync.Mutex
	states []readyState
	stop   chan struct{}
	done   chan struct{}
}

type readyState struct {
	At     time.Time
	Status int
}

func watchReady(s *server) *readyWatch {
	w := &readyWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			st := s.ready(3 * time.Second)
			w.mu.Lock()
			if n := len(w.states); n == 0 || w.states[n-1].Status != st {
				w.states = append(w.states, readyState{time.Now(), st})
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// end stops the watch and returns the transitions.
func (w *readyWatch) end() []readyState {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]readyState(nil), w.states...)
}

func describeStates(st []readyState) string {
	var b strings.Builder
	var t0 time.Time
	for i, s := range st {
		if i == 0 {
			t0 = s.At
		}
		fmt.Fprintf(&b, "%d@%.1fs ", s.Status, s.At.Sub(t0).Seconds())
	}
	return strings.TrimSpace(b.String())
}
