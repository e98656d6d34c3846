package bench

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"time"
)

// ErrProcFormat means a /proc file did not have the expected layout.
var ErrProcFormat = errors.New("bench: unexpected /proc format")

// userHZ is the unit of the times in /proc/<pid>/stat. The kernel reports
// them in USER_HZ, which is 100 on every Linux architecture Go supports.
const userHZ = 100

// maxTicks bounds each of utime and stime so their sum converts to a
// time.Duration without overflow (about 1,460 years of CPU).
const maxTicks = math.MaxInt64 / int64(time.Second/userHZ) / 2

// Mem is a process's resident memory, in bytes.
type Mem struct {
	RSS  int64 // VmRSS: resident now
	Peak int64 // VmHWM: the most it was ever resident
	// Anon is the part of RSS that is the process's own (heap, stacks);
	// the rest is mostly the executable's pages, which the kernel can
	// drop and read back.
	Anon int64
}

// ParseStatus reads VmRSS, VmHWM and RssAnon from the text of
// /proc/<pid>/status.
func ParseStatus(b []byte) (Mem, error) {
	var m Mem
	var seen int
	for line := range bytes.Lines(b) {
		key, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(key) {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.Peak
		case "RssAnon":
			dst = &m.Anon
		default:
			continue
		}
		f := bytes.Fields(val)
		if len(f) != 2 || string(f[1]) != "kB" {
			return Mem{}, fmt.Errorf("%w: %s line %q", ErrProcFormat, key, bytes.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || kb < 0 || kb > math.MaxInt64>>10 {
			return Mem{}, fmt.Errorf("%w: %s line %q", ErrProcFormat, key, bytes.TrimSpace(line))
		}
		*dst = kb << 10
		seen++
	}
	if seen != 3 {
		return Mem{}, fmt.Errorf("%w: VmRSS, VmHWM or RssAnon missing or repeated", ErrProcFormat)
	}
	return m, nil
}

// ParseStatCPU returns utime+stime from the text of /proc/<pid>/stat. The
// command name (field 2) may hold spaces and parentheses, so the fields are
// counted from its last ')'.
func ParseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: no command name in stat", ErrProcFormat)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state), so utime (14) and stime (15) are f[11], f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: %d fields after the command name", ErrProcFormat, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil || n < 0 || n > maxTicks {
			return 0, fmt.Errorf("%w: cpu time %q", ErrProcFormat, s)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

// MemOf reads a live process's memory.
func MemOf(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	return ParseStatus(b)
}

// CPUOf reads a live process's CPU time so far, user plus system.
func CPUOf(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu time of %d: %w", pid, err)
	}
	return ParseStatCPU(b)
}

// ParseIOWrites returns write_bytes from the text of /proc/<pid>/io: the
// bytes the process caused to be sent to storage (its fsyncs and its share
// of writeback), not what it handed to write(2).
func ParseIOWrites(b []byte) (int64, error) {
	for _, line := range bytes.Split(b, []byte("\n")) {
		v, ok := bytes.CutPrefix(line, []byte("write_bytes:"))
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%w: write_bytes line %q", ErrProcFormat, line)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%w: no write_bytes in io", ErrProcFormat)
}

// WritesOf reads the bytes a live process has written to storage so far.
func WritesOf(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, fmt.Errorf("read io of %d: %w", pid, err)
	}
	return ParseIOWrites(b)
}

// mb converts bytes to megabytes (10⁶), the strict reading of the targets.
func mb(n int64) float64 { return float64(n) / 1e6 }
