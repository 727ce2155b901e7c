package web

import (
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
)

// A hijacked fan socket's kernel send buffer is capped at wsSendBuffer
// (Linux reports twice what was set), not left to grow with autotuning.
func TestFanSocketSendBufferIsCapped(t *testing.T) {
	t.Parallel()
	got := make(chan int, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := (&smallReadBuffer{ResponseWriter: w}).Hijack()
		if err != nil {
			t.Error(err)
			got <- -1
			return
		}
		defer c.Close()
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Error(err)
			got <- -1
			return
		}
		v := -1
		raw.Control(func(fd uintptr) { v, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF) })
		if err != nil {
			t.Error(err)
		}
		got <- v
	}))
	defer srv.Close()
	c, err := net.DialTimeout("tcp", srv.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		if v != 2*wsSendBuffer {
			t.Fatalf("SO_SNDBUF %d, want %d (twice wsSendBuffer)", v, 2*wsSendBuffer)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not run")
	}
}
