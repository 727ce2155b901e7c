package loadtest

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Config is one load test, as the flags describe it.
type Config struct {
	URLs        []string      // server base URLs, http://host:port; fan i uses URLs[i % len]
	Event       string        // event id to drive
	CreateEvent bool          // create Event first through the staff API
	StaffToken  string        // STAFF_TOKEN of the server (for --create-event)
	Sections    int           // --create-event: sections
	Rows        int           // --create-event: rows per section
	SeatsPerRow int           // --create-event: seats per row
	PriceCents  int64         // --create-event: price of the first section
	Scenario    string        // drop | idle | holds | checkout
	Fans        int           // drop, idle: simulated fans
	JoinRate    float64       // drop, idle: fans joining per second
	Duration    time.Duration // the run stops after this long at the latest
	HoldMin     int           // seats per hold, at least
	HoldMax     int           // seats per hold, at most
	Abandon     float64       // drop: fraction of fans who release their holds and leave
	Decline     float64       // drop, checkout: fraction of payments with the declining card
	Think       time.Duration // drop: a fan waits up to this long before each step
	Concurrency int           // holds, checkout: closed-loop workers
	Rate        float64       // holds, checkout: total requests per second (0: as fast as possible)
	MaxPerFan   int           // MAX_SEATS_PER_FAN of the server
	FanRate     float64       // holds: requests per second one fan sends at most
	Buyers      int           // idle: fans buying in the background
	ProbeEvery  time.Duration // drop, idle: time between two probe seat changes
	Procs       int           // worker processes (0: one per 15,000 sockets)
	HTTPConns   int           // HTTP connections (and requests in flight) per process
	SourceAddrs int           // fan sockets to a loopback server come from this many addresses
	JSON        bool          // print the result as one JSON object on stdout
	ServerPIDs  []int         // read RSS and CPU of these processes (one per URL, same order) from /proc
	PushEvery   time.Duration // drop, idle: the server's PUSH_INTERVAL (the map check waits 2× this + 1 s)
	Seed        uint64        // random seed (0: from the clock)
	Quiet       bool          // no progress lines
	CPUProfile  string        // write a CPU profile of each process here (workers: .w<index>)
}

// defaults are small enough for a quick run against the demo event.
func defaultConfig() Config {
	return Config{
		URLs: []string{"http://127.0.0.1:8080"}, Scenario: "drop",
		Sections: 3, Rows: 10, SeatsPerRow: 20, PriceCents: 5000,
		Fans: 200, JoinRate: 100, Duration: 20 * time.Second,
		HoldMin: 1, HoldMax: 4, Abandon: 0.1, Decline: 0.1, Think: 200 * time.Millisecond,
		Concurrency: 16, MaxPerFan: 6, FanRate: 4, Buyers: 2, ProbeEvery: 500 * time.Millisecond,
		HTTPConns: 256, SourceAddrs: 32, PushEvery: 100 * time.Millisecond,
	}
}

// maxServers is the most servers --url may list.
const maxServers = 64

// socketsPerProc is how many fan sockets one process opens at most: the
// sandbox allows 20,000 open files per process, and each process also needs
// its HTTP connections and a margin.
const socketsPerProc = 15000

// maxSocketsPerProc is the most fan sockets one process may be asked for.
const maxSocketsPerProc = 18000

const usageHead = `usage: seatmap loadtest [flags]

Drives a running seatmap server through its public API only (HTTP JSON and
the WebSocket /api/events/{event}/ws) and reports what a crowd of fans got.

Scenarios (--scenario):
  drop      --fans fans join at --join-rate through the waiting room, wait to
            be admitted, pick --hold-min..--hold-max adjacent free seats from
            their own live map, hold them, then pay (a --decline fraction
            with the declining card first) or, for an --abandon fraction,
            release them and leave. Ends when the event is sold out or after
            --duration.
  idle      --fans fans connect and are admitted, then only listen; a probe
            fan and --buyers buyers change seats. Measures server memory and
            seat-change -> delivered latency to every listener.
  holds     --concurrency workers in a closed loop: hold seats (a disjoint
            slice of the event per worker), release them, again; each worker
            rotates over as many fans as --fan-rate needs. Endpoint throughput.
  checkout  --concurrency fans in a closed loop: hold fresh seats and buy
            them (new fan after --max-seats-per-fan seats). Ends when the
            seats run out or after --duration.

The server should run with RATE_LIMIT_PER_ADDRESS=0 and MAX_CONNS_PER_ADDRESS=0
(every fan comes from one address) and a high ADMIT_RATE for idle/holds/checkout.

Several servers: --url takes a comma-separated list of servers sharing one
Postgres, one Redis and the same SESSION_SECRET. Fans are spread over them
round-robin; a fan sends every request and opens its socket on its own
server. Staff calls (--create-event, the sold-out check) and the truth of the
map check go to the first. --server-pid takes the servers' pids in the same
order; the report then has RSS and CPU per server ("servers") and their sums.

Map check (drop, idle): when the run ends, fans still on the page keep their
sockets (in drop: fans who saw the event sold out or were still buying; in
idle: a sample of the listeners, at most 64 MiB of maps per process). After
2x --push-interval + 1 s, a fresh snapshot from the first server (the truth,
itself checked against the staff stats and the orders the fans got) is
compared with every such fan's live map: maps_checked, maps_diverged. While
any differ, the check is repeated every 5 s (up to 12 rounds; it stops when
two rounds in a row bring no fewer diverged maps): a map still behind its
server catches up, a lost change never does. A map still diverged at the
end is a lost change: the run then exits non-zero, as it does for a seat
sold twice.

Progress goes to stderr once a second; the summary to stdout (to stderr with
--json, which prints one JSON object on stdout). Latencies: join_to_admitted
(POST queue sent -> admitted), hold and checkout (request -> response),
change_to_delivered (probe request sent -> the change read from each
listener's socket, all clocks in this machine).

Flags:
`

// parseFlags parses the arguments of `seatmap loadtest`. It returns
// flag.ErrHelp (with usage written to stdout) for -h/--help.
func parseFlags(args []string, getenv func(string) string, stdout, stderr io.Writer) (Config, string, error) {
	c := defaultConfig()
	c.StaffToken = getenv("STAFF_TOKEN")
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var((*urlList)(&c.URLs), "url", "base `URL` of the seatmap server, or several comma-separated (fans are spread round-robin; staff calls go to the first)")
	fs.StringVar(&c.Event, "event", c.Event, "event id to drive (required unless --create-event; with it, default lt-<time>)")
	fs.BoolVar(&c.CreateEvent, "create-event", c.CreateEvent, "create the event first with POST /api/staff/events (needs --staff-token)")
	fs.StringVar(&c.StaffToken, "staff-token", c.StaffToken, "the server's STAFF_TOKEN (for --create-event; default $STAFF_TOKEN)")
	fs.IntVar(&c.Sections, "sections", c.Sections, "--create-event: number of sections")
	fs.IntVar(&c.Rows, "rows", c.Rows, "--create-event: rows per section")
	fs.IntVar(&c.SeatsPerRow, "seats-per-row", c.SeatsPerRow, "--create-event: seats per row")
	fs.Int64Var(&c.PriceCents, "price-cents", c.PriceCents, "--create-event: price of the first section in cents")
	fs.StringVar(&c.Scenario, "scenario", c.Scenario, "drop, idle, holds or checkout")
	fs.IntVar(&c.Fans, "fans", c.Fans, "drop, idle: number of simulated fans")
	fs.Float64Var(&c.JoinRate, "join-rate", c.JoinRate, "drop, idle: fans joining per second")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "stop after this long at the latest")
	fs.IntVar(&c.HoldMin, "hold-min", c.HoldMin, "seats per hold, at least")
	fs.IntVar(&c.HoldMax, "hold-max", c.HoldMax, "seats per hold, at most")
	fs.Float64Var(&c.Abandon, "abandon", c.Abandon, "drop: fraction of fans who release their holds instead of paying (0..1)")
	fs.Float64Var(&c.Decline, "decline", c.Decline, "drop, checkout: fraction of payments tried first with the declining card (0..1)")
	fs.DurationVar(&c.Think, "think", c.Think, "drop: a fan waits a random time up to this before each step")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "holds, checkout: closed-loop workers (one fan each)")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "holds, checkout: total attempts per second across all workers (0: closed loop, as fast as possible)")
	fs.IntVar(&c.MaxPerFan, "max-seats-per-fan", c.MaxPerFan, "the server's MAX_SEATS_PER_FAN")
	fs.Float64Var(&c.FanRate, "fan-rate", c.FanRate, "holds: hold requests per second per fan; a worker adds fans to stay under it (the server allows 5/s per session)")
	fs.IntVar(&c.Buyers, "buyers", c.Buyers, "idle: fans holding and buying seats in the background, about one seat a second each")
	fs.DurationVar(&c.ProbeEvery, "probe-interval", c.ProbeEvery, "drop, idle: time between two seat changes of the probe fan")
	fs.IntVar(&c.Procs, "procs", c.Procs, "worker processes (re-executions of this binary); 0: one per 15000 fans")
	fs.IntVar(&c.HTTPConns, "http-conns", c.HTTPConns, "HTTP connections, and so requests in flight, per process")
	fs.IntVar(&c.SourceAddrs, "source-addrs", c.SourceAddrs, "fan sockets to a server on an IPv4 loopback address come from this many local addresses, 127.0.1.1 onwards, as real fans come from many (Linux); 0: the kernel's choice, one address, where connect() slows to ~1.8 ms of kernel CPU per socket past ~14,000 sockets")
	fs.BoolVar(&c.JSON, "json", c.JSON, "print the result as one JSON object on stdout")
	fs.Var((*pidList)(&c.ServerPIDs), "server-pid", "`pid` of the server (same machine), or one per --url server, comma-separated in the same order: report RSS and CPU from /proc")
	fs.DurationVar(&c.PushEvery, "push-interval", c.PushEvery, "drop, idle: the server's PUSH_INTERVAL; the map check waits twice this plus 1s for changes to settle")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "random seed (0: from the clock)")
	fs.BoolVar(&c.Quiet, "quiet", c.Quiet, "no progress lines")
	fs.StringVar(&c.CPUProfile, "cpuprofile", c.CPUProfile, "write the load generator's own CPU profile to this file (worker N's to FILE.wN), for go tool pprof")
	worker := fs.String("worker", "", "internal: run as worker process of --procs (JSON spec from the coordinator)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			fs.SetOutput(stdout)
			fs.Usage()
			return c, "", flag.ErrHelp
		}
	}
	if err := fs.Parse(args); err != nil {
		return c, "", err
	}
	if fs.NArg() > 0 {
		return c, "", fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *worker != "" {
		return c, *worker, nil
	}
	if c.CreateEvent && c.Event == "" {
		c.Event = "lt-" + strings.ToLower(fmt.Sprintf("%x", time.Now().UnixNano()))
	}
	return c, "", c.Validate()
}

var eventIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate reports the first flag value that cannot work.
func (c *Config) Validate() error {
	switch {
	case len(c.URLs) == 0:
		return errors.New("--url: want at least one http://host:port")
	case len(c.URLs) > maxServers:
		return fmt.Errorf("--url: %d servers, at most %d", len(c.URLs), maxServers)
	case len(c.ServerPIDs) > 0 && len(c.ServerPIDs) != len(c.URLs):
		return fmt.Errorf("--server-pid: %d pid(s) for %d --url server(s); want one per server, in the same order", len(c.ServerPIDs), len(c.URLs))
	}
	switch {
	case c.Event == "":
		return errors.New("--event is required (or --create-event)")
	case !eventIDPattern.MatchString(c.Event):
		return fmt.Errorf("--event %q: want [A-Za-z0-9_-]{1,64}", c.Event)
	case c.CreateEvent && c.StaffToken == "":
		return errors.New("--create-event needs --staff-token (or $STAFF_TOKEN)")
	case c.CreateEvent && (c.Sections < 1 || c.Sections > 26 || c.Rows < 1 || c.SeatsPerRow < 1 || c.Sections*c.Rows*c.SeatsPerRow > 200000):
		return errors.New("--sections 1..26, --rows and --seats-per-row ≥ 1, at most 200000 seats")
	case c.PriceCents < 0:
		return errors.New("--price-cents must be ≥ 0")
	}
	switch c.Scenario {
	case "drop", "idle", "holds", "checkout":
	default:
		return fmt.Errorf("--scenario %q: want drop, idle, holds or checkout", c.Scenario)
	}
	switch {
	case c.Fans < 1 || c.Fans > 1_000_000:
		return errors.New("--fans must be 1..1000000")
	case !(c.JoinRate > 0):
		return errors.New("--join-rate must be > 0")
	case c.Duration <= 0 || c.Duration > 24*time.Hour:
		return errors.New("--duration must be > 0 and ≤ 24h")
	case c.HoldMin < 1 || c.HoldMax < c.HoldMin || c.HoldMax > 64:
		return errors.New("--hold-min/--hold-max: want 1 ≤ min ≤ max ≤ 64")
	case !(c.Abandon >= 0 && c.Abandon <= 1):
		return errors.New("--abandon must be in 0..1")
	case !(c.Decline >= 0 && c.Decline <= 1):
		return errors.New("--decline must be in 0..1")
	case c.Think < 0:
		return errors.New("--think must be ≥ 0")
	case c.Concurrency < 1 || c.Concurrency > 100000:
		return errors.New("--concurrency must be 1..100000")
	case !(c.Rate >= 0):
		return errors.New("--rate must be ≥ 0")
	case c.MaxPerFan < 1:
		return errors.New("--max-seats-per-fan must be ≥ 1")
	case !(c.FanRate > 0):
		return errors.New("--fan-rate must be > 0")
	case c.HoldMax > c.MaxPerFan:
		return fmt.Errorf("--hold-max %d exceeds --max-seats-per-fan %d", c.HoldMax, c.MaxPerFan)
	case c.Buyers < 0 || c.Buyers > 1000:
		return errors.New("--buyers must be 0..1000")
	case c.ProbeEvery < 10*time.Millisecond:
		return errors.New("--probe-interval must be ≥ 10ms")
	case c.Procs < 0 || c.Procs > 64:
		return errors.New("--procs must be 0..64")
	case c.HTTPConns < 1 || c.HTTPConns > 4096:
		return errors.New("--http-conns must be 1..4096")
	case c.SourceAddrs < 0 || c.SourceAddrs > 254:
		return errors.New("--source-addrs must be 0..254")
	case c.PushEvery < 0 || c.PushEvery > time.Minute:
		return errors.New("--push-interval must be 0..1m")
	}
	if p := c.procs(); (c.Scenario == "drop" || c.Scenario == "idle") && (c.Fans+p-1)/p > maxSocketsPerProc {
		return fmt.Errorf("--fans %d over --procs %d is more than %d sockets per process: raise --procs", c.Fans, p, maxSocketsPerProc)
	}
	return nil
}

// procs returns how many worker processes the run uses.
func (c *Config) procs() int {
	if c.Procs > 0 {
		return c.Procs
	}
	if c.Scenario == "holds" || c.Scenario == "checkout" {
		return 1
	}
	return (c.Fans + socketsPerProc - 1) / socketsPerProc
}

// urlList is the value of --url: one or more server base URLs.
type urlList []string

func (l *urlList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *urlList) Set(s string) error {
	urls, err := parseURLs(s)
	if err != nil {
		return err
	}
	*l = urls
	return nil
}

// parseURLs parses a comma-separated list of server base URLs
// (http[s]://host[:port][/prefix]), trimming spaces and trailing slashes. It
// rejects an empty list or entry, other schemes and a server listed twice.
func parseURLs(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		raw := strings.TrimSpace(part)
		u, err := url.Parse(raw)
		if raw == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("%q: want http://host:port (several: comma-separated)", raw)
		}
		base := strings.TrimRight(raw, "/")
		if seen[base] {
			return nil, fmt.Errorf("%q is listed twice", base)
		}
		seen[base] = true
		out = append(out, base)
	}
	return out, nil
}

// pidList is the value of --server-pid: no pid, or one per server.
type pidList []int

func (l *pidList) String() string {
	if l == nil || len(*l) == 0 {
		return "0"
	}
	parts := make([]string, len(*l))
	for i, p := range *l {
		parts[i] = strconv.Itoa(p)
	}
	return strings.Join(parts, ",")
}

func (l *pidList) Set(s string) error {
	pids, err := parsePIDs(s)
	if err != nil {
		return err
	}
	*l = pids
	return nil
}

// parsePIDs parses a comma-separated list of process ids; "" and "0" mean
// none (nil). Every listed pid must be a positive number.
func parsePIDs(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return nil, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || p <= 0 {
			return nil, fmt.Errorf("%q: want a positive pid (several: comma-separated)", strings.TrimSpace(part))
		}
		out = append(out, p)
	}
	return out, nil
}
