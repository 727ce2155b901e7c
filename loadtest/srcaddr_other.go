//go:build !linux

package loadtest

// spreadSources is false: without IP_BIND_ADDRESS_NO_PORT, binding a
// source address would reserve a port per socket, so fan sockets keep the
// kernel's choice of address.
const spreadSources = false

func bindNoPort(uintptr) error { return nil }
