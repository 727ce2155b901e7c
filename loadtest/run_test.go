package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary act as a worker process: --procs re-executes
// os.Executable() with "loadtest --worker SPEC", as `seatmap` would.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == workerCommand[0] {
		if err := Run(context.Background(), os.Args[2:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runJSON runs the load test with --json --quiet and returns the decoded
// report, the raw object and Run's error.
func runJSON(t *testing.T, args ...string) (Report, map[string]any, error) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := Run(ctx, append(args, "--json", "--quiet"), &out, &errb)
	t.Logf("stderr:\n%s", errb.String())
	var rep Report
	var raw map[string]any
	if out.Len() > 0 {
		if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
			t.Fatalf("stdout is not one JSON report: %v\n%s", jerr, out.String())
		}
		json.Unmarshal(out.Bytes(), &raw)
	}
	return rep, raw, err
}

func fakeArgs(url, scenario string, extra ...string) []string {
	return append([]string{"--url", url, "--create-event", "--staff-token", "tok", "--event", "ev1",
		"--sections", "2", "--rows", "5", "--seats-per-row", "10", "--scenario", scenario, "--seed", "7"}, extra...)
}

func TestRunDropSellsOutWithoutDoubleSales(t *testing.T) {
	f, srv := newFakeServer(t, false)
	rep, _, err := runJSON(t, fakeArgs(srv.URL, "drop", "--fans", "80", "--join-rate", "400",
		"--think", "5ms", "--duration", "30s", "--probe-interval", "20ms")...)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !rep.SoldOut || rep.SoldOutS == nil || rep.SeatsSold != 100 || rep.SeatsTotal != 100 {
		t.Errorf("sold_out %v (%v s), seats_sold %d of %d; want all 100 sold", rep.SoldOut, rep.SoldOutS, rep.SeatsSold, rep.SeatsTotal)
	}
	if rep.DoubleSold != 0 || len(rep.Errors) != 0 {
		t.Errorf("double_sold %d, errors %v; want none", rep.DoubleSold, rep.Errors)
	}
	if rep.Fans != 80 || rep.Admitted != 80 || rep.Orders == 0 || rep.HoldsOK < rep.Orders {
		t.Errorf("fans %d admitted %d orders %d holds_ok %d", rep.Fans, rep.Admitted, rep.Orders, rep.HoldsOK)
	}
	for _, name := range []string{latJoin, latHold, latCheckout} {
		if l := rep.Latency[name]; l.Count == 0 || l.P50 <= 0 || l.P99 < l.P50 || l.Max < l.P99 {
			t.Errorf("latency %s = %+v", name, l)
		}
	}
	if rep.ServerRSSBytes != nil || rep.ServerCPUSeconds != nil {
		t.Errorf("server figures without --server-pid")
	}
	if f.statsAsked() == 0 {
		t.Errorf("sold out was not read from the staff stats")
	}
}

func TestRunDropReportsDoubleSales(t *testing.T) {
	_, srv := newFakeServer(t, true)
	rep, _, err := runJSON(t, fakeArgs(srv.URL, "drop", "--fans", "120", "--join-rate", "1000",
		"--think", "1ms", "--abandon", "0", "--decline", "0", "--duration", "3s")...)
	if err == nil || !strings.Contains(err.Error(), "sold twice") {
		t.Errorf("Run error = %v, want one about seats sold twice", err)
	}
	// 120 fans buy at least one seat each from 100 seats that never stay sold.
	if rep.DoubleSold == 0 || len(rep.DoubleSoldList) != rep.DoubleSold || !sort.StringsAreSorted(rep.DoubleSoldList) {
		t.Errorf("double_sold %d %v, want > 0 and the sorted list", rep.DoubleSold, rep.DoubleSoldList)
	}
	if rep.SoldOut {
		t.Errorf("a server that never keeps a seat sold cannot sell out")
	}
}

func TestRunIdleMeasuresDelivery(t *testing.T) {
	_, srv := newFakeServer(t, false)
	rep, _, err := runJSON(t, fakeArgs(srv.URL, "idle", "--fans", "30", "--join-rate", "300",
		"--duration", "2s", "--probe-interval", "20ms", "--buyers", "1")...)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	d := rep.Latency[latDelivered]
	if rep.ProbeChanges == 0 || d.Count == 0 {
		t.Fatalf("probe changes %d, deliveries %d; want both > 0", rep.ProbeChanges, d.Count)
	}
	// Every listener reports each probe change at most once.
	if d.Count > uint64(rep.ProbeChanges)*30 {
		t.Errorf("%d deliveries from %d changes to 30 listeners", d.Count, rep.ProbeChanges)
	}
	if rep.ConnectedPeak < 30 || rep.Admitted < 30 || rep.Orders == 0 {
		t.Errorf("connected_peak %d admitted %d orders %d", rep.ConnectedPeak, rep.Admitted, rep.Orders)
	}
	if d.P50 > 1000 {
		t.Errorf("p50 delivery %v ms from an in-process fake pushing every 10 ms", d.P50)
	}
}

func TestRunHoldsClosedLoop(t *testing.T) {
	_, srv := newFakeServer(t, false)
	rep, _, err := runJSON(t, fakeArgs(srv.URL, "holds", "--concurrency", "4", "--duration", "1s",
		"--hold-min", "1", "--hold-max", "2", "--fan-rate", "50")...)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.HoldsOK == 0 || rep.HoldsConflict != 0 || rep.Releases < rep.HoldsOK || rep.HoldsPerS <= 0 {
		t.Errorf("holds_ok %d conflict %d releases %d holds/s %v", rep.HoldsOK, rep.HoldsConflict, rep.Releases, rep.HoldsPerS)
	}
	if rep.Orders != 0 || len(rep.Errors) != 0 {
		t.Errorf("orders %d errors %v", rep.Orders, rep.Errors)
	}
}

// TestRunCheckoutBuysEverySeat drives an existing event without a staff
// token: sold out is then read from GET /api/events.
func TestRunCheckoutBuysEverySeat(t *testing.T) {
	f, srv := newFakeServer(t, false)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/staff/events",
		strings.NewReader(`{"id":"ev2","sections":[{"rows":4,"seats_per_row":25}]}`))
	req.Header.Set("Authorization", "Bearer tok")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create event: %v %v", resp, err)
	}
	rep, _, err := runJSON(t, "--url", srv.URL, "--event", "ev2", "--scenario", "checkout",
		"--concurrency", "5", "--duration", "30s", "--decline", "0.5")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if f.statsAsked() != 0 {
		t.Errorf("stats asked %d times without a staff token", f.statsAsked())
	}
	if !rep.SoldOut || rep.SeatsSold != 100 || rep.DoubleSold != 0 || rep.Declined == 0 {
		t.Errorf("sold_out %v seats_sold %d double_sold %d declined %d", rep.SoldOut, rep.SeatsSold, rep.DoubleSold, rep.Declined)
	}
	if rep.CheckoutsPerS <= 0 || rep.Latency[latCheckout].Count < uint64(rep.Orders+rep.Declined) {
		t.Errorf("checkouts/s %v, checkout samples %d for %d orders + %d declines",
			rep.CheckoutsPerS, rep.Latency[latCheckout].Count, rep.Orders, rep.Declined)
	}
}

// TestRunWorkerProcesses runs the drop in two worker processes (this test
// binary, re-executed) and checks their results are merged.
func TestRunWorkerProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	_, srv := newFakeServer(t, false)
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	rep, _, err := runJSON(t, fakeArgs(srv.URL, "drop", "--fans", "60", "--join-rate", "600", "--procs", "2",
		"--think", "2ms", "--duration", "30s", "--cpuprofile", prof)...)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Procs != 2 || rep.Fans != 60 || rep.Admitted != 60 || !rep.SoldOut || rep.SeatsSold != 100 || rep.DoubleSold != 0 {
		t.Errorf("procs %d fans %d admitted %d sold_out %v seats_sold %d double_sold %d",
			rep.Procs, rep.Fans, rep.Admitted, rep.SoldOut, rep.SeatsSold, rep.DoubleSold)
	}
	if rep.Latency[latHold].Count == 0 || rep.Latency[latCheckout].Count == 0 {
		t.Errorf("latencies of the workers were not merged: %+v", rep.Latency)
	}
	// The coordinator's profile and each worker's: pprof's gzipped protobuf.
	for _, f := range []string{prof, prof + ".w0", prof + ".w1"} {
		b, err := os.ReadFile(f)
		if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			t.Errorf("--cpuprofile: %s is not a profile (%d bytes, %v)", f, len(b), err)
		}
	}
}

func TestRunServerPID(t *testing.T) {
	_, srv := newFakeServer(t, false)
	// The fake server runs in this process: its /proc entry is ours.
	rep, _, err := runJSON(t, fakeArgs(srv.URL, "idle", "--fans", "5", "--duration", "600ms",
		"--server-pid", fmt.Sprint(os.Getpid()))...)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.ServerRSSBytes == nil || *rep.ServerRSSBytes == 0 || rep.ServerCPUSeconds == nil || *rep.ServerCPUSeconds < 0 {
		t.Errorf("server_rss_bytes %v server_cpu_seconds %v", rep.ServerRSSBytes, rep.ServerCPUSeconds)
	}
}

func TestRunFailsOnMissingEvent(t *testing.T) {
	_, srv := newFakeServer(t, false)
	var out, errb bytes.Buffer
	err := Run(context.Background(), []string{"--url", srv.URL, "--event", "nope", "--quiet"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Errorf("Run = %v, want a not_found error", err)
	}
}

func TestRunCreateEventNeedsStaffToken(t *testing.T) {
	_, srv := newFakeServer(t, false)
	var out, errb bytes.Buffer
	err := Run(context.Background(), []string{"--url", srv.URL, "--create-event", "--staff-token", "wrong", "--quiet"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("Run = %v, want unauthorized", err)
	}
}

func urlsOf(srvs []*httptest.Server) string {
	var urls []string
	for _, s := range srvs {
		urls = append(urls, s.URL)
	}
	return strings.Join(urls, ",")
}

// TestRunDropAcrossServers runs the drop against three servers sharing one
// state (as three processes share Redis and Postgres): fans are spread
// round-robin, every map converges, and each server gets its own figures.
func TestRunDropAcrossServers(t *testing.T) {
	f, srvs := newFakeCluster(t, 3, nil)
	pid := fmt.Sprint(os.Getpid()) // the fake servers run in this process
	rep, raw, err := runJSON(t, fakeArgs(urlsOf(srvs), "drop", "--fans", "90", "--join-rate", "600",
		"--think", "5ms", "--duration", "30s", "--probe-interval", "20ms", "--server-pid", pid+","+pid+","+pid)...)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !rep.SoldOut || rep.SeatsSold != 100 || rep.DoubleSold != 0 || len(rep.Errors) != 0 {
		t.Errorf("sold_out %v seats_sold %d double_sold %d errors %v", rep.SoldOut, rep.SeatsSold, rep.DoubleSold, rep.Errors)
	}
	if rep.MapsDiverged != 0 || rep.MapsChecked < 2 || rep.MapsError != "" || !strings.Contains(rep.MapsTruth, srvs[0].URL) {
		t.Errorf("maps_checked %d maps_diverged %d error %q truth %q examples %v",
			rep.MapsChecked, rep.MapsDiverged, rep.MapsError, rep.MapsTruth, rep.MapsExamples)
	}
	if rep.AdmittedPerS <= 0 || rep.URL != urlsOf(srvs) {
		t.Errorf("admitted_per_s %v url %q", rep.AdmittedPerS, rep.URL)
	}
	if len(rep.Servers) != 3 {
		t.Fatalf("servers = %+v, want 3", rep.Servers)
	}
	var cpu float64
	var rss, checked uint64
	for i, sv := range rep.Servers {
		if sv.URL != srvs[i].URL || sv.Fans != 30 || sv.PID == nil || *sv.PID != os.Getpid() ||
			sv.RSSBytes == nil || sv.RSSBaseBytes == nil || sv.CPUSeconds == nil {
			t.Errorf("server %d = %+v; want its url, 30 fans, pid and figures", i, sv)
			continue
		}
		if f.socketsOn(i) < 30 {
			t.Errorf("server %d accepted %d sockets; its 30 fans open one each", i, f.socketsOn(i))
		}
		cpu += *sv.CPUSeconds
		rss += *sv.RSSBytes
		checked += uint64(sv.MapsChecked)
	}
	if rep.ServerRSSBytes == nil || *rep.ServerRSSBytes != rss || rep.ServerCPUSeconds == nil || math.Abs(*rep.ServerCPUSeconds-cpu) > 0.01 {
		t.Errorf("totals rss %v cpu %v, want the sums %d and %.3f", rep.ServerRSSBytes, rep.ServerCPUSeconds, rss, cpu)
	}
	if checked != uint64(rep.MapsChecked) {
		t.Errorf("servers' maps_checked add up to %d, report says %d", checked, rep.MapsChecked)
	}
	s0 := raw["servers"].([]any)[0].(map[string]any)
	for _, k := range []string{"url", "pid", "fans", "maps_checked", "maps_diverged", "rss_bytes", "rss_base_bytes", "cpu_seconds"} {
		if _, ok := s0[k]; !ok {
			t.Errorf("servers[0] lacks %q: %v", k, s0)
		}
	}
}

// TestRunDropReportsLostChanges: the second server's sockets never hear of
// a sale, so its fans' maps keep those seats held; the run fails on it.
func TestRunDropReportsLostChanges(t *testing.T) {
	_, srvs := newFakeCluster(t, 2, func(f *fakeServer) { f.loseSoldOn = 2 })
	rep, _, err := runJSON(t, fakeArgs(urlsOf(srvs), "drop", "--fans", "120", "--join-rate", "1000",
		"--think", "2ms", "--abandon", "0", "--duration", "20s")...)
	if err == nil || !strings.Contains(err.Error(), "diverged") {
		t.Errorf("Run error = %v, want one about diverged maps", err)
	}
	if rep.MapsDiverged == 0 || len(rep.Servers) != 2 || rep.Servers[1].MapsDiverged == 0 || rep.Servers[0].MapsDiverged != 0 {
		t.Fatalf("maps_diverged %d servers %+v; want the second server's fans diverged, the first's not", rep.MapsDiverged, rep.Servers)
	}
	// The socket is named by its own address: one of --source-addrs.
	socket := "(socket 127.0.0.1:"
	if spreadSources {
		socket = "(socket 127.0.1."
	}
	if len(rep.MapsExamples) == 0 || !strings.Contains(rep.MapsExamples[0], srvs[1].URL) || !strings.Contains(rep.MapsExamples[0], "truth sold") ||
		!strings.Contains(rep.MapsExamples[0], socket) {
		t.Errorf("examples %q, want one naming %s, the fan's socket and a seat sold in truth", rep.MapsExamples, srvs[1].URL)
	}
	if rep.DoubleSold != 0 {
		t.Errorf("double_sold %d: the sales themselves were fine", rep.DoubleSold)
	}
}

// TestRunWorkersAcrossServers: worker processes get the server list too.
func TestRunWorkersAcrossServers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	f, srvs := newFakeCluster(t, 2, nil)
	rep, _, err := runJSON(t, fakeArgs(urlsOf(srvs), "drop", "--fans", "60", "--join-rate", "600", "--procs", "2",
		"--think", "2ms", "--duration", "30s")...)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Procs != 2 || !rep.SoldOut || rep.DoubleSold != 0 || rep.MapsDiverged != 0 || rep.MapsChecked == 0 {
		t.Errorf("procs %d sold_out %v double_sold %d maps %d/%d", rep.Procs, rep.SoldOut, rep.DoubleSold, rep.MapsDiverged, rep.MapsChecked)
	}
	if len(rep.Servers) != 2 || rep.Servers[0].Fans != 30 || rep.Servers[1].Fans != 30 || f.socketsOn(0) < 30 || f.socketsOn(1) < 30 {
		t.Errorf("servers %+v, sockets %d/%d; want 30 fans on each", rep.Servers, f.socketsOn(0), f.socketsOn(1))
	}
}
