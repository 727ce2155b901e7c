package loadtest

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat: 100
// on every Linux architecture Go supports (the kernel's ABI fixes it).
const clockTicks = 100

// procSample is a reading of another process's resource use.
type procSample struct {
	RSSBytes   uint64
	CPUSeconds float64 // user + system since the process started
}

// readProc reads /proc/<pid>/stat and /proc/<pid>/statm.
func readProc(pid int) (procSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, err
	}
	statm, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return procSample{}, err
	}
	cpu, err := parseStatCPU(string(stat))
	if err != nil {
		return procSample{}, err
	}
	rss, err := parseStatmRSS(string(statm), os.Getpagesize())
	if err != nil {
		return procSample{}, err
	}
	return procSample{RSSBytes: rss, CPUSeconds: cpu}, nil
}

// parseStatCPU returns utime+stime in seconds from a /proc/<pid>/stat line.
// The command name (field 2) is in parentheses and may itself contain
// spaces and parentheses, so fields are counted from the last ')'.
func parseStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("proc stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	// After the name: state(3) ppid(4) ... utime(14) stime(15): indexes 11, 12.
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after the name, want ≥ 13", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	stm, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("proc stat: %w", err)
	}
	return float64(ut+stm) / clockTicks, nil
}

// parseStatmRSS returns the resident set in bytes from /proc/<pid>/statm
// (second field, in pages).
func parseStatmRSS(statm string, pageSize int) (uint64, error) {
	f := strings.Fields(statm)
	if len(f) < 2 {
		return 0, errors.New("proc statm: want ≥ 2 fields")
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc statm: %w", err)
	}
	return pages * uint64(pageSize), nil
}
