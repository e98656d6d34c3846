package device_test

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/internal/device"
)

// reader collects what a port reads on a goroutine, so a test can wait
// for an answer with a deadline although Read itself blocks.
type reader struct {
	data chan string
	err  chan error
}

func startReader(p device.Port) *reader {
	r := &reader{data: make(chan string, 64), err: make(chan error, 1)}
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := p.Read(buf)
			if n > 0 {
				r.data <- string(buf[:n])
			}
			if err != nil {
				r.err <- err
				return
			}
		}
	}()
	return r
}

func (r *reader) waitFor(t *testing.T, want string) {
	t.Helper()
	var got strings.Builder
	deadline := time.After(10 * time.Second)
	for !strings.Contains(got.String(), want) {
		select {
		case s := <-r.data:
			got.WriteString(s)
		case err := <-r.err:
			t.Fatalf("read failed before %q arrived: %v (have %q)", want, err, got.String())
		case <-deadline:
			t.Fatalf("no %q; have %q", want, got.String())
		}
	}
}

func TestPTYUnplugAndReplug(t *testing.T) {
	sim := modemsim.New(modemsim.Config{})
	t.Cleanup(func() { _ = sim.Close() })
	link := filepath.Join(t.TempDir(), "usb-Quectel_EC25-if02-port0")
	if _, err := sim.ServePTY(link); err != nil {
		t.Fatal(err)
	}
	o := device.NewOpener(device.Config{Path: link})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	p, err := o.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Name() != sim.SlavePath() {
		t.Errorf("Name = %q, want the resolved link %q", p.Name(), sim.SlavePath())
	}
	r := startReader(p)
	if _, err := io.WriteString(p, "AT\r"); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "OK\r\n")

	// Pulling the modem out must end reads with an error, not a stream of
	// empty reads that would keep the AT engine spinning.
	if err := sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.err:
		if err == nil {
			t.Fatal("read ended without an error")
		}
	case <-ctx.Done():
		t.Fatal("reads did not fail after the unplug")
	}
	p.Close()

	// The link is gone until the modem comes back, possibly on another pty.
	if _, err := o.Open(ctx); err == nil {
		t.Fatal("Open succeeded while unplugged")
	}
	got := make(chan device.Port, 1)
	go func() {
		p, err := o.OpenWait(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- p
	}()
	if err := sim.Replug(); err != nil {
		t.Fatal(err)
	}
	p2 := <-got
	if p2 == nil {
		t.FailNow()
	}
	defer p2.Close()
	if p2.Name() != sim.SlavePath() {
		t.Errorf("Name after replug = %q, want %q", p2.Name(), sim.SlavePath())
	}
	r2 := startReader(p2)
	if _, err := io.WriteString(p2, "AT\r"); err != nil {
		t.Fatal(err)
	}
	r2.waitFor(t, "OK\r\n")
}
