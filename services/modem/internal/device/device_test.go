package device

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"testing"
	"time"

	"go.bug.st/serial/enumerator"
)

func TestFindFollowsRenumbering(t *testing.T) {
	before := []*enumerator.PortDetails{
		{Name: "/dev/ttyS0"},
		{Name: "/dev/ttyUSB0", IsUSB: true, VID: "2c7c", PID: "0125", SerialNumber: "abc"},
		{Name: "/dev/ttyUSB1", IsUSB: true, VID: "2c7c", PID: "0125", SerialNumber: "abc"},
		{Name: "/dev/ttyUSB2", IsUSB: true, VID: "2c7c", PID: "0125", SerialNumber: "abc"},
		{Name: "/dev/ttyUSB3", IsUSB: true, VID: "2c7c", PID: "0125", SerialNumber: "abc"},
	}
	id := identify(before, "/dev/ttyUSB2")
	if id == nil || id.index != 2 {
		t.Fatalf("identify = %+v, want index 2", id)
	}
	// After a reset the old fds were still open, so the kernel numbered the
	// modem's interfaces from ttyUSB4; another adapter took ttyUSB0.
	after := []*enumerator.PortDetails{
		{Name: "/dev/ttyUSB0", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "ftdi"},
		{Name: "/dev/ttyUSB10", IsUSB: true, VID: "2c7c", PID: "0125", SerialNumber: "abc"},
		{Name: "/dev/ttyUSB4", IsUSB: true, VID: "2c7c", PID: "0125", SerialNumber: "abc"},
		{Name: "/dev/ttyUSB5", IsUSB: true, VID: "2C7C", PID: "0125", SerialNumber: "abc"},
		{Name: "/dev/ttyUSB6", IsUSB: true, VID: "2c7c", PID: "0125", SerialNumber: "abc"},
	}
	if got := find(after, *id); got != "/dev/ttyUSB6" {
		t.Fatalf("find = %q, want /dev/ttyUSB6 (third interface of the same modem)", got)
	}
	if got := find(after[:2], *id); got != "" {
		t.Fatalf("find with the modem half-enumerated = %q, want nothing", got)
	}
	if identify(before, "/dev/ttyS0") != nil {
		t.Fatal("a non-USB port has no USB identity")
	}
}

func TestOpenMissingPathIsNotExist(t *testing.T) {
	o := NewOpener(Config{Path: t.TempDir() + "/no-such-tty", List: func() ([]*enumerator.PortDetails, error) { return nil, nil }})
	_, err := o.Open(context.Background())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open = %v, want fs.ErrNotExist", err)
	}
}

func TestOpenWaitTCPComesBack(t *testing.T) {
	// Reserve a port, close it, and only start listening after OpenWait has
	// failed at least once: the opener must keep trying.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	o := NewOpener(Config{Path: "tcp://" + addr})
	if _, err := o.Open(context.Background()); err == nil {
		t.Fatal("Open succeeded with nothing listening")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		p, err := o.OpenWait(ctx)
		if err == nil {
			p.Close()
		}
		got <- err
	}()
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := <-got; err != nil {
		t.Fatalf("OpenWait = %v", err)
	}
}

func TestOpenWaitStopsWithContext(t *testing.T) {
	o := NewOpener(Config{Path: "/nonexistent/tty", List: func() ([]*enumerator.PortDetails, error) { return nil, nil }})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := o.OpenWait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("OpenWait = %v, want context.Canceled", err)
	}
}
