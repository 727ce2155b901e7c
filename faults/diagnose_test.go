//go:build faults

package faults

import (
	"net"
	"regexp"
	"testing"
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
// Postgres seen directly, with the servers' backends.
func TestClusterDiagnose(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterConfig{servers: 1})
	d := c.diagnose()
	for _, re := range []string{
		`proxy 127\.0\.0\.1:\d+ → ` + regexp.QuoteMeta(c.pg.addr()) + `: [1-9]\d* accepted, [1-9]\d* open \(0 not connected upstream\), 0 accept errors, 0 dial errors, slowest dial \S+; accept queue \d+`,
		`proxy 127\.0\.0\.1:\d+ → ` + regexp.QuoteMeta(c.redis.addr()) + `: [1-9]\d* accepted`,
		`postgres ` + regexp.QuoteMeta(c.pg.addr()) + `: accept queue \d+; direct connect took \d`,
		`client backends: [1-9]\d* idle/`,
	} {
		if !regexp.MustCompile(re).MatchString(d) {
			t.Errorf("diagnosis lacks %s:\n%s", re, d)
		}
	}
}
