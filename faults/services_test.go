//go:build faults

package faults

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

var flagLong = flag.Bool("long", false, "run the long versions of the scenarios (also FAULTS_LONG=1)")

// long reports whether the long versions run.
func long() bool { return *flagLong || os.Getenv("FAULTS_LONG") == "1" }

// pick returns short or, in the long suite, long.
func pick[T any](short, lng T) T {
	if long() {
		return lng
	}
	return short
}

// suite is what TestMain prepares once: the seatmap binary built from this
// checkout and an initialised Postgres cluster every scenario copies.
var suite struct {
	dir        string // temporary directory of the whole run
	bin        string // seatmap binary
	pgBin      string // Postgres binaries
	pgTemplate string // initdb'd data directory with database seatmap
	asRoot     bool   // Postgres must run as the postgres user
}

const (
	staffToken    = "faults-staff-token-0123456789"
	sessionSecret = "faults-session-secret-0123456789abcdef"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The scenarios mostly wait (for the recovery worker, for faults to
	// heal): run them all at once unless -parallel says otherwise.
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		flag.Set("test.parallel", "8")
	}
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	dir, err := os.MkdirTemp("", "seatmap-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	// Postgres (running as the postgres user) must traverse it.
	os.Chmod(dir, 0o755)
	suite.dir = dir
	defer os.RemoveAll(dir)
	if err := startWatchdog(dir); err != nil {
		fmt.Fprintln(os.Stderr, "faults: watchdog:", err)
		return 1
	}
	if err := buildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, "faults: build seatmap:", err)
		return 1
	}
	if err := initTemplate(dir); err != nil {
		fmt.Fprintln(os.Stderr, "faults: postgres template:", err)
		return 1
	}
	return m.Run()
}

// startWatchdog starts a shell, in a session of its own, that outlives this
// process: once this process is gone (a test timeout kills it without
// running any cleanup) it stops every Postgres and Redis and server the run
// started, by the PIDs recorded under dir, and removes dir. After a normal
// run it finds dir gone and exits within a second.
func startWatchdog(dir string) error {
	script := `
parent=$1; dir=$2; pgbin=$3
i=0
while [ $i -lt 21600 ] && kill -0 "$parent" 2>/dev/null; do sleep 1; i=$((i+1)); done
[ -d "$dir" ] || exit 0
for f in "$dir"/*/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
for d in "$dir"/*/pg; do
  [ -f "$d/postmaster.pid" ] || continue
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$pgbin/pg_ctl" -D "$d" -m immediate stop) >/dev/null 2>&1
  else "$pgbin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1; fi
done
rm -rf "$dir"
`
	suite.pgBin = postgresBin()
	cmd := exec.Command("bash", "-c", script, "watchdog", strconv.Itoa(os.Getpid()), dir, suite.pgBin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}

func postgresBin() string {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best := "/usr/lib/postgresql/15/bin"
	bestV := -1
	for _, m := range matches {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(m)))
		if err == nil && v > bestV {
			best, bestV = m, v
		}
	}
	return best
}

// buildBinary builds seatmap from the module root (this package's parent).
func buildBinary(dir string) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	suite.bin = filepath.Join(dir, "seatmap")
	cmd := exec.Command("go", "build", "-o", suite.bin, ".")
	cmd.Dir = filepath.Dir(wd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return nil
}

// asPostgres runs a Postgres tool, as the postgres user when we are root
// (Postgres refuses to run as root).
func asPostgres(ctx context.Context, name string, args ...string) *exec.Cmd {
	path := filepath.Join(suite.pgBin, name)
	var cmd *exec.Cmd
	if suite.asRoot {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = "/"
	return cmd
}

// initTemplate initialises one cluster with a database "seatmap"; each
// scenario copies it (cp -a keeps the postgres owner), which is much
// faster than initdb.
func initTemplate(dir string) error {
	suite.asRoot = os.Geteuid() == 0
	tpl := filepath.Join(dir, "template", "pg")
	if err := os.MkdirAll(tpl, 0o700); err != nil {
		return err
	}
	os.Chmod(filepath.Dir(tpl), 0o755)
	if suite.asRoot {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("no postgres user to run Postgres as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(tpl, uid, gid); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := asPostgres(ctx, "initdb", "-D", tpl, "-U", "seatmap", "--auth=trust", "-E", "UTF8",
		"--locale=C.UTF-8", "--no-sync").CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	conf := `
listen_addresses = '127.0.0.1'
max_connections = 300
shared_buffers = 32MB
fsync = on
synchronous_commit = on
log_min_messages = warning
`
	f, err := os.OpenFile(filepath.Join(tpl, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	f.WriteString(conf)
	f.Close()
	port := freePort()
	pg := &postgres{dir: filepath.Dir(tpl), data: tpl, port: port}
	if err := pg.configure(); err != nil {
		return err
	}
	if err := pg.start(ctx); err != nil {
		return err
	}
	conn, err := pgxpool.New(ctx, pg.url("postgres"))
	if err == nil {
		_, err = conn.Exec(ctx, "CREATE DATABASE seatmap")
		conn.Close()
	}
	if serr := pg.stop(ctx, "fast"); err == nil {
		err = serr
	}
	suite.pgTemplate = tpl
	return err
}

// freePort returns a TCP port on 127.0.0.1 nothing listens on now, below
// the kernel's ephemeral range: servers and Redis here restart on the same
// port, and a port from the ephemeral range can meanwhile become the local
// end of some outgoing connection (bind: address already in use).
func freePort() int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	const from = 10000
	for try := 0; low-from > 1000 && try < 200; try++ {
		port := from + rand.IntN(low-from)
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			ln.Close()
			return port
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// postgres is one scenario's private Postgres cluster, run by pg_ctl.
type postgres struct {
	dir  string // scenario directory
	data string // data directory
	port int
}

func (p *postgres) url(db string) string {
	return fmt.Sprintf("postgres://seatmap@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

func (p *postgres) addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

// configure points the cluster at its port and socket directory (later
// lines of postgresql.conf win).
func (p *postgres) configure() error {
	f, err := os.OpenFile(filepath.Join(p.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "port = %d\nunix_socket_directories = '%s'\n", p.port, p.data)
	return err
}

// log is the server's log file (pg_ctl -l).
func (p *postgres) log() string { return filepath.Join(p.data, "server.log") }

func (p *postgres) start(ctx context.Context) error {
	out, err := asPostgres(ctx, "pg_ctl", "-D", p.data, "-l", p.log(), "-w", "-t", "60", "start").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, tail(p.log(), 20))
	}
	return nil
}

func (p *postgres) stop(ctx context.Context, mode string) error {
	out, err := asPostgres(ctx, "pg_ctl", "-D", p.data, "-m", mode, "-w", "-t", "60", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// restartImmediate is the fault: `pg_ctl restart -m immediate` (every
// backend killed without a checkpoint, crash recovery on start).
func (p *postgres) restartImmediate(ctx context.Context) error {
	out, err := asPostgres(ctx, "pg_ctl", "-D", p.data, "-l", p.log(), "-m", "immediate",
		"-w", "-t", "60", "restart").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl restart: %v\n%s", err, out)
	}
	return nil
}

// newPostgres copies the template into dir and starts it on a free port;
// it is stopped when t ends.
func newPostgres(t testing.TB, dir string) *postgres {
	t.Helper()
	data := filepath.Join(dir, "pg")
	if out, err := exec.Command("cp", "-a", suite.pgTemplate, data).CombinedOutput(); err != nil {
		t.Fatalf("copy postgres template: %v\n%s", err, out)
	}
	p := &postgres{dir: dir, data: data, port: freePort()}
	if err := p.configure(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := p.start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := p.stop(ctx, "immediate"); err != nil {
			t.Logf("stop postgres: %v", err)
		}
	})
	return p
}

// redisServer is one scenario's private Redis, a child process. It starts
// with Redis's default configuration (no keyspace notifications, no
// persistence): enabling what seatmap needs is the server's job.
type redisServer struct {
	t    testing.TB
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func newRedis(t testing.TB, dir string) *redisServer {
	t.Helper()
	r := &redisServer{t: t, dir: filepath.Join(dir, "redis"), port: freePort()}
	os.MkdirAll(r.dir, 0o755)
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.kill() })
	return r
}

func (r *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

// log is the server's log file.
func (r *redisServer) log() string { return filepath.Join(r.dir, "redis.log") }

func (r *redisServer) start() error {
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--maxclients", "12000",
		"--logfile", r.log())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	writePID(filepath.Join(filepath.Dir(r.dir), "redis.pid"), cmd.Process.Pid)
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	c := redis.NewClient(&redis.Options{Addr: r.addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c.Ping(context.Background()).Err() == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("redis did not answer on %s", r.addr())
}

// kill stops Redis with SIGKILL (by PID) and waits for it.
func (r *redisServer) kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

func writePID(path string, pid int) { os.WriteFile(path, []byte(strconv.Itoa(pid)), 0o644) }

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// loadAverage returns the machine's 1-minute load average (context for
// timing figures: the suite may share the machine).
func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
