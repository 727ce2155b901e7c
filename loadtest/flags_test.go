package loadtest

import (
	"bytes"
	"context"
	"flag"
	"reflect"
	"strings"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func TestHelpDocumentsEveryFlag(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		t.Run(arg, func(t *testing.T) {
			var out, errb bytes.Buffer
			if err := Run(context.Background(), []string{"--fans", "3", arg}, &out, &errb); err != nil {
				t.Fatalf("Run(%s) = %v, want nil", arg, err)
			}
			help := out.String()
			for _, name := range []string{"url", "event", "create-event", "staff-token", "sections", "rows",
				"seats-per-row", "price-cents", "scenario", "fans", "join-rate", "duration", "hold-min", "hold-max",
				"abandon", "decline", "think", "concurrency", "rate", "max-seats-per-fan", "fan-rate", "buyers",
				"probe-interval", "procs", "http-conns", "source-addrs", "json", "server-pid", "push-interval", "seed", "quiet", "worker", "cpuprofile"} {
				if !strings.Contains(help, "\n  -"+name+" ") && !strings.Contains(help, "\n  -"+name+"\n") {
					t.Errorf("--help does not document -%s", name)
				}
			}
			for _, s := range []string{"drop", "idle", "holds", "checkout"} {
				if !strings.Contains(help, "  "+s+" ") {
					t.Errorf("--help does not describe scenario %s", s)
				}
			}
			if errb.Len() != 0 {
				t.Errorf("help wrote to stderr: %q", errb.String())
			}
		})
	}
}

// TestHelpListsAllDefinedFlags compares the documented flags with the
// FlagSet itself, so a new flag cannot be left out of the list above.
func TestHelpListsAllDefinedFlags(t *testing.T) {
	var out bytes.Buffer
	if _, _, err := parseFlags([]string{"--help"}, noEnv, &out, &bytes.Buffer{}); err != flag.ErrHelp {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	lines := 0
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "  -") {
			lines++
		}
	}
	if lines != 33 {
		t.Errorf("help lists %d flags, the test above checks 33: update both", lines)
	}
}

func TestParseFlags(t *testing.T) {
	env := func(k string) string {
		if k == "STAFF_TOKEN" {
			return "from-env"
		}
		return ""
	}
	tests := []struct {
		name    string
		args    []string
		env     func(string) string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{
			name: "defaults are a quick run against the demo event",
			args: []string{"--url", "http://127.0.0.1:8080/", "--event", "demo"},
			check: func(t *testing.T, c Config) {
				if !reflect.DeepEqual(c.URLs, []string{"http://127.0.0.1:8080"}) || c.ServerPIDs != nil || c.PushEvery != 100*time.Millisecond || c.Scenario != "drop" || c.Fans != 200 || c.Duration != 20*time.Second ||
					c.HoldMin != 1 || c.HoldMax != 4 || c.procs() != 1 {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "every flag is read",
			args: []string{"--url", "https://h:1", "--event", "e-1", "--scenario", "checkout", "--fans", "9", "--join-rate", "3.5",
				"--duration", "1m", "--hold-min", "2", "--hold-max", "3", "--abandon", "0.25", "--decline", "0.5", "--think", "1s",
				"--concurrency", "7", "--rate", "100", "--max-seats-per-fan", "8", "--fan-rate", "2", "--buyers", "4",
				"--probe-interval", "1s", "--procs", "3", "--http-conns", "10", "--source-addrs", "0", "--json", "--server-pid", "42", "--seed", "5", "--quiet",
				"--push-interval", "250ms"},
			check: func(t *testing.T, c Config) {
				want := Config{URLs: []string{"https://h:1"}, Event: "e-1", Scenario: "checkout", Fans: 9, JoinRate: 3.5, Duration: time.Minute,
					HoldMin: 2, HoldMax: 3, Abandon: 0.25, Decline: 0.5, Think: time.Second, Concurrency: 7, Rate: 100,
					MaxPerFan: 8, FanRate: 2, Buyers: 4, ProbeEvery: time.Second, Procs: 3, HTTPConns: 10, SourceAddrs: 0, JSON: true,
					ServerPIDs: []int{42}, Seed: 5, Quiet: true, Sections: 3, Rows: 10, SeatsPerRow: 20, PriceCents: 5000,
					PushEvery: 250 * time.Millisecond}
				if !reflect.DeepEqual(c, want) {
					t.Errorf("config\n got %+v\nwant %+v", c, want)
				}
			},
		},
		{
			name: "create-event invents an id and takes the token from the environment",
			args: []string{"--create-event", "--sections", "2", "--rows", "3", "--seats-per-row", "4"},
			env:  env,
			check: func(t *testing.T, c Config) {
				if !strings.HasPrefix(c.Event, "lt-") || c.StaffToken != "from-env" || c.Sections*c.Rows*c.SeatsPerRow != 24 {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "several servers and their pids, in the same order",
			args: []string{"--event", "e", "--url", "http://127.0.0.1:8081, http://127.0.0.1:8082/,http://127.0.0.1:8083",
				"--server-pid", "101,102, 103"},
			check: func(t *testing.T, c Config) {
				if !reflect.DeepEqual(c.URLs, []string{"http://127.0.0.1:8081", "http://127.0.0.1:8082", "http://127.0.0.1:8083"}) ||
					!reflect.DeepEqual(c.ServerPIDs, []int{101, 102, 103}) {
					t.Errorf("urls %q pids %v", c.URLs, c.ServerPIDs)
				}
			},
		},
		{
			name: "server-pid 0 means none",
			args: []string{"--event", "e", "--url", "http://a:1,http://b:2", "--server-pid", "0"},
			check: func(t *testing.T, c Config) {
				if len(c.URLs) != 2 || c.ServerPIDs != nil {
					t.Errorf("urls %q pids %v", c.URLs, c.ServerPIDs)
				}
			},
		},
		{
			name: "auto procs: one per 15000 fans",
			args: []string{"--event", "e", "--scenario", "idle", "--fans", "20000"},
			check: func(t *testing.T, c Config) {
				if c.procs() != 2 {
					t.Errorf("procs() = %d, want 2", c.procs())
				}
			},
		},
		{name: "event required", args: []string{}, wantErr: "--event is required"},
		{name: "create-event needs a token", args: []string{"--create-event"}, wantErr: "--staff-token"},
		{name: "bad url", args: []string{"--event", "e", "--url", "ftp://x"}, wantErr: "-url"},
		{name: "one bad url of several", args: []string{"--event", "e", "--url", "http://a:1,b:2"}, wantErr: "-url"},
		{name: "fewer pids than servers", args: []string{"--event", "e", "--url", "http://a:1,http://b:2", "--server-pid", "7"}, wantErr: "1 pid(s) for 2"},
		{name: "more pids than servers", args: []string{"--event", "e", "--server-pid", "7,8"}, wantErr: "2 pid(s) for 1"},
		{name: "bad pid", args: []string{"--event", "e", "--server-pid", "x"}, wantErr: "-server-pid"},
		{name: "too many source addresses", args: []string{"--event", "e", "--source-addrs", "255"}, wantErr: "--source-addrs"},
		{name: "negative push interval", args: []string{"--event", "e", "--push-interval", "-1s"}, wantErr: "--push-interval"},
		{name: "bad event id", args: []string{"--event", "a b"}, wantErr: "--event"},
		{name: "unknown scenario", args: []string{"--event", "e", "--scenario", "soak"}, wantErr: "--scenario"},
		{name: "hold range", args: []string{"--event", "e", "--hold-min", "3", "--hold-max", "2"}, wantErr: "--hold-min"},
		{name: "hold above the fan limit", args: []string{"--event", "e", "--hold-max", "7"}, wantErr: "--max-seats-per-fan"},
		{name: "fraction", args: []string{"--event", "e", "--abandon", "1.5"}, wantErr: "--abandon"},
		{name: "decline fraction", args: []string{"--event", "e", "--decline", "-0.1"}, wantErr: "--decline"},
		{name: "zero join rate", args: []string{"--event", "e", "--join-rate", "0"}, wantErr: "--join-rate"},
		{name: "zero duration", args: []string{"--event", "e", "--duration", "0s"}, wantErr: "--duration"},
		{name: "too many sockets per process", args: []string{"--event", "e", "--fans", "40000", "--procs", "2"}, wantErr: "raise --procs"},
		{name: "stray argument", args: []string{"--event", "e", "extra"}, wantErr: "unexpected argument"},
		{name: "unknown flag", args: []string{"--event", "e", "--nope"}, wantErr: "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := tt.env
			if getenv == nil {
				getenv = noEnv
			}
			c, worker, err := parseFlags(tt.args, getenv, &bytes.Buffer{}, &bytes.Buffer{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || worker != "" {
				t.Fatalf("err = %v, worker %q", err, worker)
			}
			tt.check(t, c)
		})
	}
}

func TestRunReturnsFlagErrors(t *testing.T) {
	var out, errb bytes.Buffer
	err := Run(context.Background(), []string{"--scenario", "nope", "--event", "e"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "--scenario") {
		t.Errorf("Run = %v", err)
	}
}

func TestSplitShare(t *testing.T) {
	c := defaultConfig()
	c.Fans, c.Concurrency, c.JoinRate, c.Rate, c.Buyers = 10, 7, 90, 30, 2
	totalFans, totalWorkers := 0, 0
	for i := range 3 {
		s := splitShare(&c, i, 3)
		if s.workerBase != totalWorkers {
			t.Errorf("share %d: workerBase %d, want %d", i, s.workerBase, totalWorkers)
		}
		totalFans += s.fans
		totalWorkers += s.workers
		if s.joinRate != 30 || s.rate != 10 || s.workersAll != 7 {
			t.Errorf("share %d = %+v", i, s)
		}
		if (i == 0) != (s.buyers == 2) {
			t.Errorf("share %d has %d buyers; only the first has them", i, s.buyers)
		}
	}
	if totalFans != 10 || totalWorkers != 7 {
		t.Errorf("shares add up to %d fans, %d workers", totalFans, totalWorkers)
	}
}

func TestPartitionIsDisjointAndComplete(t *testing.T) {
	seen := map[int32]int{}
	for w := range 4 {
		for _, s := range partition(10, 33, w, 4) {
			seen[s]++
		}
	}
	if len(seen) != 23 {
		t.Errorf("%d seats covered, want 23", len(seen))
	}
	for s, n := range seen {
		if n != 1 || s < 10 || s >= 33 {
			t.Errorf("seat %d given %d times", s, n)
		}
	}
	if partition(0, 10, 4, 4) != nil || partition(5, 5, 0, 1) != nil {
		t.Error("out-of-range worker or empty range must give nothing")
	}
}

func TestPacing(t *testing.T) {
	tests := []struct {
		rate    float64
		workers int
		want    time.Duration
	}{
		{0, 4, 0},
		{100, 4, 40 * time.Millisecond},
		{1, 1, time.Second},
		{10, 0, 0},
	}
	for _, tt := range tests {
		if got := pacing(tt.rate, tt.workers); got != tt.want {
			t.Errorf("pacing(%v, %d) = %v, want %v", tt.rate, tt.workers, got, tt.want)
		}
	}
}

func TestPacerKeepsTheRate(t *testing.T) {
	p := newPacer(10 * time.Millisecond)
	ctx := context.Background()
	start := time.Now()
	for range 20 {
		if !p.wait(ctx) {
			t.Fatal("wait failed")
		}
	}
	// 20 attempts at 100/s: the first at once, the last ~190 ms later.
	if el := time.Since(start); el < 180*time.Millisecond || el > 2*time.Second {
		t.Errorf("20 paced attempts took %v, want about 190ms", el)
	}
	// A worker 300 ms late makes up for it at once (no sleep)...
	p.next = time.Now().Add(-300 * time.Millisecond)
	t0 := time.Now()
	for range 30 {
		p.wait(ctx)
	}
	if el := time.Since(t0); el > 100*time.Millisecond {
		t.Errorf("catching up 30 attempts took %v", el)
	}
	// ...but a backlog over maxCatchUp is dropped.
	p.next = time.Now().Add(-2 * maxCatchUp)
	p.wait(ctx)
	if d := time.Until(p.next); d < 5*time.Millisecond {
		t.Errorf("after a long stall the next attempt is due in %v, want one interval", d)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	p.next = time.Now().Add(time.Hour)
	if p.wait(cctx) {
		t.Error("wait on a cancelled context reported true")
	}
}

func TestParseURLs(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
		wantErr  string
	}{
		{"one", "http://127.0.0.1:8080", []string{"http://127.0.0.1:8080"}, ""},
		{"trailing slash trimmed", "http://127.0.0.1:8080/", []string{"http://127.0.0.1:8080"}, ""},
		{"three, spaces around commas", " http://a:1 ,https://b:2/, http://c:3",
			[]string{"http://a:1", "https://b:2", "http://c:3"}, ""},
		{"a path prefix is kept", "http://a:1/seatmap/", []string{"http://a:1/seatmap"}, ""},
		{"empty", "", nil, "want http://host:port"},
		{"empty entry", "http://a:1,,http://b:2", nil, "want http://host:port"},
		{"trailing comma", "http://a:1,", nil, "want http://host:port"},
		{"no scheme", "a:1", nil, "want http://host:port"},
		{"websocket scheme", "ws://a:1", nil, "want http://host:port"},
		{"no host", "http://", nil, "want http://host:port"},
		{"query", "http://a:1/?x=1", nil, "want http://host:port"},
		{"listed twice", "http://a:1,http://a:1/", nil, "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseURLs(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseURLs(%q) = %q, %v; want an error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseURLs(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParsePIDs(t *testing.T) {
	tests := []struct {
		name, in string
		want     []int
		wantErr  bool
	}{
		{"none", "", nil, false},
		{"zero is none", "0", nil, false},
		{"one", "4242", []int{4242}, false},
		{"three in order", "3,1, 2", []int{3, 1, 2}, false},
		{"zero in a list", "1,0", nil, true},
		{"negative", "-5", nil, true},
		{"not a number", "12a", nil, true},
		{"empty entry", "1,,2", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePIDs(tt.in)
			if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parsePIDs(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestFansAreSpreadRoundRobin(t *testing.T) {
	c := defaultConfig()
	c.URLs = []string{"http://a:1", "http://b:2", "http://c:3"}
	c.Fans = 10
	per := make([]int, 3)
	for i := range 2 { // two processes: the global index runs on
		sh := splitShare(&c, i, 2)
		e := &env{cfg: &c, share: sh}
		for k := 0; k < sh.fans; k++ {
			per[e.fanServer(sh.fanBase+k)]++
		}
	}
	if !reflect.DeepEqual(per, []int{4, 3, 3}) {
		t.Errorf("fans per server = %v, want [4 3 3]", per)
	}
	e := &env{cfg: &c}
	var got []int
	for range 4 {
		got = append(got, e.anyServer())
	}
	if !reflect.DeepEqual(got, []int{0, 1, 2, 0}) {
		t.Errorf("anyServer sequence = %v", got)
	}
}
