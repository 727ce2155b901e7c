package loadtest

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A fan socket to a loopback server is bound to one of the source
// addresses with IP_BIND_ADDRESS_NO_PORT (without it, binding would reserve
// a port per socket: the limit the spreading is there to lift) and keeps
// its small receive buffer.
func TestFanSocketsAreSpread(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cfg := defaultConfig()
	cl := newClient(&cfg)
	dial := cl.wsc.Transport.(*http.Transport).DialContext
	for i := 0; i < 3; i++ {
		conn, err := dial(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if local := conn.LocalAddr().String(); !strings.HasPrefix(local, "127.0.1.") {
			t.Errorf("socket %d comes from %s, want 127.0.1.x", i, local)
		}
		raw, err := conn.(strictEOFConn).Conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var noPort, rcvbuf int
		var gerr error
		raw.Control(func(fd uintptr) {
			noPort, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT)
			if gerr == nil {
				rcvbuf, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
			}
		})
		if gerr != nil {
			t.Fatal(gerr)
		}
		if noPort != 1 {
			t.Errorf("socket %d: IP_BIND_ADDRESS_NO_PORT = %d, want 1", i, noPort)
		}
		if rcvbuf > 4*fanRecvBuffer {
			t.Errorf("socket %d: SO_RCVBUF %d, want about %d (Linux doubles it)", i, rcvbuf, 2*fanRecvBuffer)
		}
	}
}
