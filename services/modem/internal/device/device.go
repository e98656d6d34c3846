// Package device opens the modem's port: a serial tty through go.bug.st/serial,
// or tcp://host:port for modems behind a serial server (and the simulator).
// After a USB unplug the path may vanish and come back under another
// /dev/ttyUSB number; the opener waits with back-off and, when the
// configured path stays missing, finds the same USB device again by its
// vendor, product and serial number.
package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.bug.st/serial"
	"go.bug.st/serial/enumerator"
	"go.uber.org/zap"
)

// Port is an open modem port.
type Port interface {
	io.ReadWriteCloser
	// Name is the path or address actually opened.
	Name() string
}

// Config says which port to open.
type Config struct {
	Path string // tty path (symlinks are resolved at every open) or tcp://host:port
	Baud int
	Log  *zap.Logger
	// List enumerates serial ports; nil uses go.bug.st/serial/enumerator.
	List func() ([]*enumerator.PortDetails, error)
}

// Opener opens the port, remembering the USB identity of the last tty it
// opened so it can follow the device when its ttyUSB number changes.
type Opener struct {
	cfg Config
	log *zap.Logger

	mu   sync.Mutex
	last *usbIdentity
}

type usbIdentity struct {
	vid, pid, serial string
	index            int // position among that device's ports (interface order)
}

// NewOpener returns an opener for cfg.
func NewOpener(cfg Config) *Opener {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Baud <= 0 {
		cfg.Baud = 115200
	}
	if cfg.List == nil {
		cfg.List = func() ([]*enumerator.PortDetails, error) { return enumerator.GetDetailedPortsList() }
	}
	return &Opener{cfg: cfg, log: cfg.Log}
}

// Open tries once.
func (o *Opener) Open(ctx context.Context) (Port, error) {
	if addr, ok := strings.CutPrefix(o.cfg.Path, "tcp://"); ok {
		d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", o.cfg.Path, err)
		}
		return &tcpPort{Conn: c, name: o.cfg.Path}, nil
	}
	path := o.cfg.Path
	p, err := o.openTTY(path)
	if errors.Is(err, fs.ErrNotExist) {
		if alt := o.rediscover(); alt != "" && alt != path {
			o.log.Warn("modem path missing; found the same USB device elsewhere", zap.String("configured", path), zap.String("found", alt))
			p, err = o.openTTY(alt)
		}
	}
	return p, err
}

// OpenWait retries Open with exponential back-off until it succeeds or ctx
// ends. A vanished path is the normal state during a USB re-enumeration.
func (o *Opener) OpenWait(ctx context.Context) (Port, error) {
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		p, err := o.Open(ctx)
		if err == nil {
			return p, nil
		}
		if attempt == 1 || attempt%10 == 0 {
			o.log.Warn("modem port not available; retrying", zap.String("path", o.cfg.Path), zap.Int("attempt", attempt), zap.Error(err))
		}
		d := delay/2 + time.Duration(rand.Int64N(int64(delay/2)+1))
		delay = min(delay*2, 5*time.Second)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (o *Opener) openTTY(path string) (Port, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	sp, err := serial.Open(real, &serial.Mode{BaudRate: o.cfg.Baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		var pe *serial.PortError
		if errors.As(err, &pe) && pe.Code() == serial.PortNotFound {
			return nil, fmt.Errorf("open %s: %w", path, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// Stale bytes from before (a previous process, boot noise) are not ours.
	_ = sp.ResetInputBuffer()
	o.remember(real)
	return &ttyPort{Port: sp, name: real}, nil
}

// remember records the USB identity of the tty just opened, if it is USB.
func (o *Opener) remember(real string) {
	ports, err := o.cfg.List()
	if err != nil {
		return
	}
	if id := identify(ports, real); id != nil {
		o.mu.Lock()
		o.last = id
		o.mu.Unlock()
	}
}

// rediscover finds the port of the last opened USB device in the current
// port list, or "".
func (o *Opener) rediscover() string {
	o.mu.Lock()
	id := o.last
	o.mu.Unlock()
	if id == nil {
		return ""
	}
	ports, err := o.cfg.List()
	if err != nil {
		return ""
	}
	return find(ports, *id)
}

// identify returns the identity of the port named name.
func identify(ports []*enumerator.PortDetails, name string) *usbIdentity {
	var target *enumerator.PortDetails
	for _, p := range ports {
		if p.Name == name {
			target = p
		}
	}
	if target == nil || !target.IsUSB {
		return nil
	}
	id := &usbIdentity{vid: target.VID, pid: target.PID, serial: target.SerialNumber}
	for _, n := range sameDevice(ports, *id) {
		if n == name {
			break
		}
		id.index++
	}
	return id
}

// find returns the port at the remembered position among the device's ports.
func find(ports []*enumerator.PortDetails, id usbIdentity) string {
	names := sameDevice(ports, id)
	if id.index < len(names) {
		return names[id.index]
	}
	return ""
}

// sameDevice lists the device's ports in name order (ttyUSB2 before ttyUSB10).
func sameDevice(ports []*enumerator.PortDetails, id usbIdentity) []string {
	var names []string
	for _, p := range ports {
		if p.IsUSB && strings.EqualFold(p.VID, id.vid) && strings.EqualFold(p.PID, id.pid) && p.SerialNumber == id.serial {
			names = append(names, p.Name)
		}
	}
	sortNatural(names)
	return names
}

func sortNatural(s []string) {
	less := func(a, b string) bool {
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return a < b
	}
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && less(s[j], s[j-1]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

type ttyPort struct {
	serial.Port
	name string
}

func (p *ttyPort) Name() string { return p.name }

// Read turns the (0, nil) a hung-up tty can return into io.EOF, so the AT
// engine sees the unplug instead of spinning.
func (p *ttyPort) Read(b []byte) (int, error) {
	n, err := p.Port.Read(b)
	if n == 0 && err == nil {
		if _, statErr := os.Stat(p.name); statErr != nil {
			return 0, io.EOF
		}
	}
	return n, err
}

type tcpPort struct {
	net.Conn
	name string
}

func (p *tcpPort) Name() string { return p.name }
