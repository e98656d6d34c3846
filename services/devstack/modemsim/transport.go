package modemsim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/creack/pty"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// session is one connection the modem talks over: a pty master or a TCP
// connection, with its reader and writer goroutines.
type session struct {
	rw       io.ReadWriteCloser
	gen      uint64
	stop     chan struct{}
	readDone chan struct{}
	once     sync.Once
}

// ptyLine is a plugged-in pseudo-terminal.
type ptyLine struct {
	*session
	slave *os.File // held open so the master never reads EIO between clients
	watch *os.File // inotify on the slave, to see clients open it
	path  string
}

// ServePTY plugs the modem into a new pseudo-terminal, points the symlink
// link at its slave (like /dev/serial/by-id/...) and boots. It returns the
// slave path. Clients open link like any serial device.
func (s *Sim) ServePTY(link string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return "", fmt.Errorf("serve pty: %w", ErrClosed)
	case s.linkPath != "" || s.ln != nil:
		return "", fmt.Errorf("serve pty: %w", ErrServing)
	}
	s.linkPath = link
	if err := s.plugPTYLocked(); err != nil {
		s.linkPath = ""
		return "", fmt.Errorf("serve pty: %w", err)
	}
	return s.pty.path, nil
}

// SlavePath returns the current pty slave path, "" when unplugged or on TCP.
func (s *Sim) SlavePath() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pty == nil {
		return ""
	}
	return s.pty.path
}

func (s *Sim) plugPTYLocked() error {
	master, slave, err := pty.Open()
	if err != nil {
		return fmt.Errorf("open pty: %w", err)
	}
	// creack/pty leaves the master in blocking mode, where Close waits for
	// a pending Read to return. A non-blocking duplicate goes through the
	// runtime poller, so Unplug can interrupt the reader and writer.
	// Close-on-exec, or a child process (the gateway under test) would
	// inherit the master and keep the line up after Unplug.
	fd, err := unix.FcntlInt(master.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	_ = master.Close()
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		_ = slave.Close()
		return fmt.Errorf("dup pty master: %w", err)
	}
	m := os.NewFile(uintptr(fd), "/dev/ptmx")
	p := &ptyLine{slave: slave, path: slave.Name()}
	// Raw at once: the client sets raw mode only when it opens the port,
	// and the boot URCs written before that would be echoed and mangled.
	err = makeRaw(slave)
	if err == nil {
		p.watch, err = watchOpens(p.path)
	}
	if err == nil {
		err = pointLink(s.linkPath, p.path)
	}
	if err != nil {
		_ = m.Close()
		_ = slave.Close()
		if p.watch != nil {
			_ = p.watch.Close()
		}
		return err
	}
	p.session = s.startLineLocked(m)
	s.pty = p
	s.wg.Add(1)
	go s.watchClients(p)
	s.plugged = true
	s.bootLocked()
	s.log.Info("pty plugged", zap.String("slave", p.path), zap.String("link", s.linkPath))
	return nil
}

// makeRaw is cfmakeraw(3): no echo, no line editing, no CR/LF mapping.
func makeRaw(f *os.File) error {
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("get termios: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("set termios: %w", err)
	}
	return nil
}

// pointLink makes link point at target atomically, as udev re-points
// /dev/serial/by-id links when a device re-enumerates.
func pointLink(link, target string) error {
	tmp := link + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("symlink: %w", err)
	}
	return nil
}

// watchOpens reports opens and closes of the slave through inotify: a tty
// has no other way to tell the master side about its clients.
func watchOpens(path string) (*os.File, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_OPEN|unix.IN_CLOSE); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("inotify watch %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), "inotify"), nil
}

// watchClients counts client opens, and after a client closes clears the
// exclusive mode (TIOCEXCL) go.bug.st/serial sets. A real port forgets it
// at its last close, but this slave stays open on the simulator's side,
// so without this a client that died without closing would lock its own
// restart out with EBUSY.
func (s *Sim) watchClients(p *ptyLine) {
	defer s.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := p.watch.Read(buf)
		if err != nil {
			return
		}
		opens, closes := 0, 0
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			if mask&unix.IN_OPEN != 0 {
				opens++
			}
			if mask&unix.IN_CLOSE != 0 {
				closes++
			}
			off += unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[off+12:]))
		}
		if closes > 0 {
			if rc, err := p.slave.SyscallConn(); err == nil {
				_ = rc.Control(func(fd uintptr) { _ = unix.IoctlSetInt(int(fd), unix.TIOCNXCL, 0) })
			}
		}
		s.mu.Lock()
		s.stats.Connections += opens
		s.notifyLocked()
		s.mu.Unlock()
	}
}

// ServeTCP listens on addr and serves one client connection at a time;
// further clients wait in the backlog. The modem is powered on once: its
// state, and any output nobody has read yet, carry over from one client
// to the next, as with a serial cable plugged into a running modem.
func (s *Sim) ServeTCP(addr string) (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, fmt.Errorf("serve tcp: %w", ErrClosed)
	case s.linkPath != "" || s.ln != nil:
		return nil, fmt.Errorf("serve tcp: %w", ErrServing)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve tcp: %w", err)
	}
	s.ln = ln
	s.plugged = true
	s.bootLocked()
	s.wg.Add(1)
	go s.acceptLoop(ln)
	s.log.Info("tcp listening", zap.Stringer("addr", ln.Addr()))
	return ln.Addr(), nil
}

func (s *Sim) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if !s.plugged || s.closed {
			s.mu.Unlock()
			_ = c.Close() // an unplugged modem drops the line at once
			continue
		}
		l := s.startLineLocked(c)
		s.tcp = l
		s.stats.Connections++
		s.notifyLocked()
		s.mu.Unlock()
		select {
		case <-l.readDone:
		case <-s.done:
		}
		s.mu.Lock()
		s.stopLineLocked(l)
		if s.tcp == l {
			s.tcp = nil
		}
		s.mu.Unlock()
	}
}

// startLineLocked starts reading and writing rw as the current line. The
// parser starts clean: a new connection has no half-typed command.
func (s *Sim) startLineLocked(rw io.ReadWriteCloser) *session {
	s.gen++
	l := &session{rw: rw, gen: s.gen, stop: make(chan struct{}), readDone: make(chan struct{})}
	s.m.line, s.m.inPDU = s.m.line[:0], false
	s.wg.Add(2)
	go s.readLoop(l)
	go s.writeLoop(l)
	return l
}

func (s *Sim) stopLineLocked(l *session) {
	l.once.Do(func() {
		close(l.stop)
		_ = l.rw.Close()
	})
	if s.gen == l.gen {
		s.gen++ // drop input still queued from this line
	}
}

func (s *Sim) readLoop(l *session) {
	defer s.wg.Done()
	defer close(l.readDone)
	buf := make([]byte, 1024)
	for {
		n, err := l.rw.Read(buf)
		if n > 0 {
			select {
			case s.input <- chunk{gen: l.gen, data: append([]byte(nil), buf[:n]...)}:
			case <-l.stop:
				return
			case <-s.done:
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("line read", zap.Error(err))
			}
			return
		}
	}
}

// writeLoop drains the output queue into the line. Only the writer of the
// current line takes from the queue; one that finds itself stale passes
// the wake-up on to its successor.
func (s *Sim) writeLoop(l *session) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if s.gen != l.gen {
			s.mu.Unlock()
			s.wake()
			return
		}
		b := s.out
		s.out = nil
		s.mu.Unlock()
		if len(b) > 0 {
			if _, err := l.rw.Write(b); err != nil {
				return
			}
			continue
		}
		select {
		case <-s.outSig:
		case <-l.stop:
			s.wake()
			return
		case <-s.done:
			return
		}
	}
}

func (s *Sim) wake() {
	select {
	case s.outSig <- struct{}{}:
	default:
	}
}

// Unplug pulls the modem out: the line closes under the client (EIO on a
// pty, a closed connection on TCP), the symlink disappears, and the modem
// loses power with anything in flight. TCP clients are refused until
// Replug.
func (s *Sim) Unplug() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return fmt.Errorf("unplug: %w", ErrClosed)
	case s.linkPath == "" && s.ln == nil:
		return fmt.Errorf("unplug: %w", ErrNotServing)
	}
	s.powerOffLocked()
	s.log.Info("unplugged")
	return nil
}

// Replug plugs the modem back in and boots it. On a pty this is a new
// pseudo-terminal (a new /dev/pts/N) behind the same symlink.
func (s *Sim) Replug() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return fmt.Errorf("replug: %w", ErrClosed)
	case s.linkPath == "" && s.ln == nil:
		return fmt.Errorf("replug: %w", ErrNotServing)
	case s.plugged:
		return fmt.Errorf("replug: %w", ErrPlugged)
	}
	if s.linkPath != "" {
		if err := s.plugPTYLocked(); err != nil {
			return fmt.Errorf("replug: %w", err)
		}
		return nil
	}
	s.plugged = true
	s.bootLocked()
	return nil
}

// powerOffLocked closes the line and drops all power-cycle state.
func (s *Sim) powerOffLocked() {
	s.resetLocked()
	s.plugged = false
	s.out = nil
	if s.tcp != nil {
		s.stopLineLocked(s.tcp)
		s.tcp = nil
	}
	if p := s.pty; p != nil {
		s.stopLineLocked(p.session)
		_ = p.slave.Close()
		_ = p.watch.Close()
		if err := os.Remove(s.linkPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("remove symlink", zap.Error(err))
		}
		s.pty = nil
	}
	s.notifyLocked()
}
