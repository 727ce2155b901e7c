package loadtest

import "golang.org/x/sys/unix"

// spreadSources reports whether fan sockets can be spread over source
// addresses here (see sourceAddr).
const spreadSources = true

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT on fd: binding to a source
// address then leaves the port to connect(), which needs only the whole
// four-tuple to be unused, not the port.
func bindNoPort(fd uintptr) error {
	return unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
}
