package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
)

// ErrNoGammu means gammu-smsd is not installed; the comparison is left out
// rather than failing the whole bench (CI images need not carry it).
var ErrNoGammu = errors.New("bench: gammu-smsd not installed (apt-get install gammu-smsd gammu)")

// errGammuExited means gammu-smsd stopped before sending everything.
var errGammuExited = errors.New("gammu-smsd exited early")

// gammuSettings are the [smsd] settings the comparison runs with, beyond
// the files backend's paths. Each departs from the default only to keep
// gammu-smsd from idling or polling for reasons that do not apply here.
var gammuSettings = []struct{ key, value, why string }{
	{"CommTimeout", "1", "rescan an empty outbox every 1 s instead of 30 s"},
	{"StatusFrequency", "0", "no battery or signal refresh between sends, as the manual advises for throughput"},
	{"CheckBattery", "0", "the modem has no battery"},
	{"CheckSignal", "0", "signal is not polled"},
	{"Receive", "0", "send-only, like this gateway; the simulator stores no incoming SMS"},
	{"DebugLevel", "0", "no debug logging"},
}

// gammuVersion returns "Gammu-smsd version x.y.z", or ErrNoGammu.
func gammuVersion(ctx context.Context) (string, error) {
	for _, tool := range []string{"gammu-smsd", "gammu-smsd-inject"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", ErrNoGammu
		}
	}
	out, err := exec.CommandContext(ctx, "gammu-smsd", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("gammu-smsd --version: %w", err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}

// gammuResult is gammu-smsd's side of the comparison.
type gammuResult struct {
	n           int
	latency     time.Duration
	throughput  float64 // at the simulator, measured as for our side
	utilisation float64
	peak        int64 // VmHWM
}

// gammu drives gammu-smsd, files backend, against a fresh simulator with
// the given latency: n single-part SMS dropped into its outbox before it
// starts, measured at the simulator like our side.
func (r *runner) gammu(ctx context.Context, name string, n int, latency time.Duration) (gammuResult, error) {
	res := gammuResult{n: n, latency: latency}
	dir := filepath.Join(r.work, name)
	for _, d := range []string{"inbox", "outbox", "sent", "error"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return res, err
		}
	}
	sim := modemsim.New(modemsim.Config{PartLatency: latency})
	defer sim.Close()
	link := filepath.Join(dir, "ttyGAMMU")
	if _, err := sim.ServePTY(link); err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	rc := filepath.Join(dir, "smsdrc")
	if err := os.WriteFile(rc, []byte(smsdrc(dir, link)), 0o644); err != nil {
		return res, err
	}
	for i := range n {
		m := message(name, i)
		cmd := exec.CommandContext(ctx, "gammu-smsd-inject", "-c", rc, "TEXT", m.PhoneNumber, "-text", m.Message)
		if out, err := cmd.CombinedOutput(); err != nil {
			return res, fmt.Errorf("%s: gammu-smsd-inject: %w: %s", name, err, lastLine(out))
		}
	}

	var stderr bytes.Buffer
	cmd := exec.Command("gammu-smsd", "-c", rc)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("%s: start gammu-smsd: %w", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer stopGammu(cmd, exited)

	wctx, cancel := context.WithTimeoutCause(ctx, time.Minute+time.Duration(n)*(latency+2*time.Second),
		fmt.Errorf("%s: gammu-smsd did not send %d SMS in time (log in %s)", name, n, dir))
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-wctx.Done():
		}
	}()
	if err := sim.WaitReceived(wctx, n); err != nil {
		if isClosed(exited) {
			return res, fmt.Errorf("%s: %w: %s", name, errGammuExited, lastLine(stderr.Bytes()))
		}
		return res, fmt.Errorf("%s: %w", name, context.Cause(wctx))
	}
	// The simulator has everything; gammu-smsd moves each file to sent/
	// right after the answer. Both are checked so a send it counted as
	// failed cannot pass.
	if err := waitFiles(wctx, filepath.Join(dir, "sent"), n); err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "error")); len(left) > 0 {
		return res, fmt.Errorf("%s: %d SMS in gammu's error dir: %w", name, len(left), ErrNotSent)
	}
	mem, err := MemOf(cmd.Process.Pid)
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	res.peak = mem.Peak
	res.throughput, res.utilisation, err = simWindow(sim, n)
	return res, err
}

func smsdrc(dir, link string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[gammu]\ndevice = %s\nconnection = at\n\n[smsd]\nservice = files\n", link)
	for _, d := range []struct{ key, sub string }{
		{"InboxPath", "inbox"}, {"OutboxPath", "outbox"}, {"SentSMSPath", "sent"}, {"ErrorSMSPath", "error"},
	} {
		fmt.Fprintf(&b, "%s = %s/\n", d.key, filepath.Join(dir, d.sub))
	}
	fmt.Fprintf(&b, "LogFile = %s\n", filepath.Join(dir, "smsd.log"))
	for _, s := range gammuSettings {
		fmt.Fprintf(&b, "%s = %s\n", s.key, s.value)
	}
	return b.String()
}

// waitFiles waits until dir holds n entries. A directory has no event to
// wait on without inotify, so it is polled; the condition is observable.
func waitFiles(ctx context.Context, dir string, n int) error {
	for {
		es, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		if len(es) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d files in %s: %w", len(es), n, dir, context.Cause(ctx))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stopGammu ends gammu-smsd the way its init script does, with SIGTERM.
func stopGammu(cmd *exec.Cmd, exited <-chan struct{}) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
