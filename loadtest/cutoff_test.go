package loadtest

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawWSServer accepts one WebSocket, writes frames (raw bytes: fin flag,
// opcode, payload) and then closes the TCP connection (hangUp) or keeps it
// open until the test ends. It returns the server's ws:// URL.
func rawWSServer(t *testing.T, hangUp bool, frames ...[]byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n"))
		for _, f := range frames {
			c.Write(f)
		}
		if !hangUp {
			<-done
		}
	}()
	return "ws://" + ln.Addr().String() + "/"
}

// wsFrame encodes an unmasked server frame.
func wsFrame(fin bool, opcode byte, payload string) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	if len(payload) < 126 {
		return append([]byte{b0, byte(len(payload))}, payload...)
	}
	b := []byte{b0, 126, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(len(payload)))
	return append(b, payload...)
}

// TestReadTellsCutOffFromBadFrame: a message whose rest never comes
// because the server hung up is a read error (ws_read), not a bad frame,
// though coder/websocket would hand over the part that arrived as a whole
// message; an undecodable message on a socket that stays up is bad_frame.
// The fan's socket is dialled as in a run (client.dial).
func TestReadTellsCutOffFromBadFrame(t *testing.T) {
	part := `{"type":"snapshot","seq":3,"seats":{"A-1":"held",`
	rest := `"A-2":"sold"}}`
	tests := []struct {
		name   string
		hangUp bool
		frames [][]byte
		want   string
	}{
		{"first fragment, then the socket ends", true,
			[][]byte{wsFrame(false, 0x1, part)}, "ws_read"},
		{"a frame's header, then the socket ends before its payload", true,
			[][]byte{wsFrame(false, 0x1, part), wsFrame(true, 0x0, rest)[:2]}, "ws_read"},
		{"a whole message that is not a frame, socket up", false,
			[][]byte{wsFrame(false, 0x1, part), wsFrame(true, 0x0, `"A-2":"sold"`)}, "bad_frame"},
		{"a whole message, then the socket ends", true,
			[][]byte{wsFrame(false, 0x1, part), wsFrame(true, 0x0, rest)}, "ws_read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustCheckEnv(t, nil)
			s := newSession(e, true, false)
			url := rawWSServer(t, tt.hangUp, tt.frames...)
			cl := newClient(&Config{URLs: []string{strings.Replace(url, "ws", "http", 1)}, Event: "e", HTTPConns: 1})
			defer cl.close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, _, err := cl.dial(ctx, &fan{})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.CloseNow()
			err = s.read(ctx, conn)
			if got := readErrCode(err); got != tt.want {
				t.Fatalf("read error %v classified %q, want %q", err, got, tt.want)
			}
		})
	}
}
