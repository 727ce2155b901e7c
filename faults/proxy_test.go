//go:build faults

package faults

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echoServer accepts connections and echoes lines back until closed.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// roundTrip writes a line and reads it back, within timeout.
func roundTrip(c net.Conn, rd *bufio.Reader, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return 0, err
	}
	line, err := rd.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if line != "ping\n" {
		return 0, errors.New("garbled: " + line)
	}
	return time.Since(start), nil
}

func TestProxyFaults(t *testing.T) {
	t.Parallel()
	p, err := NewProxy("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd := bufio.NewReader(c)

	t.Run("forwards", func(t *testing.T) {
		if _, err := roundTrip(c, rd, time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("latency is added each way", func(t *testing.T) {
		p.SetLatency(50 * time.Millisecond)
		defer p.SetLatency(0)
		d, err := roundTrip(c, rd, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if d < 100*time.Millisecond {
			t.Fatalf("round trip %v with 50ms each way", d)
		}
	})
	t.Run("blackhole holds data until healed", func(t *testing.T) {
		p.Blackhole(true)
		if _, err := roundTrip(c, rd, 300*time.Millisecond); err == nil {
			t.Fatal("data got through a blackhole")
		}
		// A connection made now waits for the heal, and Health says so.
		c3, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c3.Close()
		want := "2 open (1 not connected upstream)"
		waitUntil(2*time.Second, func() bool { return strings.Contains(p.Health(), want) })
		if h := p.Health(); !strings.Contains(h, want) || !strings.Contains(h, "blackhole on") {
			t.Fatalf("health during a blackhole: %s; want %q and the blackhole", h, want)
		}
		p.Blackhole(false)
		// The held "ping" arrives now, in order.
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if line, err := rd.ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("after healing: %q %v", line, err)
		}
		if _, err := roundTrip(c, rd, time.Second); err != nil {
			t.Fatal(err)
		}
		if h := p.Health(); strings.Contains(h, "blackhole on") {
			t.Fatalf("health after healing: %s", h)
		}
		c3.Close()
		waitUntil(2*time.Second, func() bool { return p.Open() == 1 })
	})
	t.Run("reset drops every connection", func(t *testing.T) {
		if n := p.Reset(); n != 1 {
			t.Fatalf("reset %d connections, want 1", n)
		}
		if _, err := roundTrip(c, rd, time.Second); err == nil {
			t.Fatal("connection survived a reset")
		}
		c2, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		if _, err := roundTrip(c2, bufio.NewReader(c2), time.Second); err != nil {
			t.Fatalf("new connection after reset: %v", err)
		}
	})
}

// TestProxyHealthReportsDialFailures: a target that refuses is not a stuck
// proxy; Health says so, with the upstream error.
func TestProxyHealthReportsDialFailures(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now
	p, err := NewProxy("127.0.0.1:0", closed)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if h := p.Health(); !strings.Contains(h, "0 accepted") || !strings.Contains(h, "0 dial errors") {
		t.Fatalf("fresh proxy: %s", h)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read through a proxy whose target refuses succeeded")
	}
	// The link is forgotten just after its ends are closed.
	waitUntil(2*time.Second, func() bool { return p.Open() == 0 })
	h := p.Health()
	for _, want := range []string{"1 accepted", "0 open (0 not connected upstream)", "1 dial errors", "last dial error: dial tcp " + closed} {
		if !strings.Contains(h, want) {
			t.Errorf("health %q lacks %q", h, want)
		}
	}
}

// waitUntil polls cond every 10 ms until it holds or d has passed; the
// caller then checks what it needs.
func waitUntil(d time.Duration, cond func() bool) {
	for deadline := time.Now().Add(d); !cond() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}
