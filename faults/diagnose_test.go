//go:build faults

package faults

import (
	"net"
	"regexp"
	"testing"
	"time"
)

// TestAcceptQueue: connections the kernel completed but nobody accepted
// are counted on the listener.
func TestAcceptQueue(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if q := acceptQueue(ln.Addr().String()); q != "0" {
		t.Fatalf("idle listener: accept queue %q, want 0", q)
	}
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if q := acceptQueue(ln.Addr().String()); q != "3" {
		t.Fatalf("three unaccepted connections: accept queue %q, want 3", q)
	}
}

// TestClusterDiagnose: what a failed restart logs names both proxies and
// Postgres seen directly, with the servers' backends. A server that has
// just started may still be opening connections (accepted by the proxy,
// not yet connected upstream), so the diagnosis is taken again until it
// describes the settled cluster, for up to 10 s.
func TestClusterDiagnose(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterConfig{servers: 1})
	want := []*regexp.Regexp{
		regexp.MustCompile(`proxy 127\.0\.0\.1:\d+ → ` + regexp.QuoteMeta(c.pg.addr()) + `: [1-9]\d* accepted, [1-9]\d* open \(0 not connected upstream\), 0 accept errors, 0 dial errors, slowest dial \S+; accept queue \d+`),
		regexp.MustCompile(`proxy 127\.0\.0\.1:\d+ → ` + regexp.QuoteMeta(c.redis.addr()) + `: [1-9]\d* accepted`),
		regexp.MustCompile(`postgres ` + regexp.QuoteMeta(c.pg.addr()) + `: accept queue \d+; direct connect took \d`),
		regexp.MustCompile(`client backends: [1-9]\d* idle/`),
	}
	var missing []string
	var d string
	for deadline := time.Now().Add(10 * time.Second); ; {
		d, missing = c.diagnose(), nil
		for _, re := range want {
			if !re.MatchString(d) {
				missing = append(missing, re.String())
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, re := range missing {
		t.Errorf("diagnosis lacks %s:\n%s", re, d)
	}
}
