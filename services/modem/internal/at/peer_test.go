package at

import (
	"net"
	"testing"
	"time"
)

// wait bounds every blocking step of a test; it is a hang detector, not a
// timing assertion.
const wait = 10 * time.Second

// peer is the scripted modem at the far end of a net.Pipe. It splits what
// the engine writes into units (a command up to CR, a PDU up to Ctrl-Z, a
// lone ESC) and answers from a script; every reply chunk is its own Write,
// so the engine sees the chunk boundaries as separate reads.
type peer struct {
	t    *testing.T
	conn net.Conn
	rx   chan string
}

// step is one exchange of a golden transcript: wait for want (skipped when
// empty), write the reply chunks, then run then (if set).
type step struct {
	want  string
	reply []string
	then  func()
}

func newPair(t *testing.T, opts ...Option) (*Engine, *peer) {
	t.Helper()
	a, b := net.Pipe()
	p := &peer{t: t, conn: b, rx: make(chan string, 64)}
	go p.readLoop()
	e := New(a, opts...)
	t.Cleanup(func() {
		e.Close()
		b.Close()
	})
	return e, p
}

func (p *peer) readLoop() {
	defer close(p.rx)
	var cur []byte
	buf := make([]byte, 256)
	for {
		n, err := p.conn.Read(buf)
		for _, c := range buf[:n] {
			switch c {
			case '\r', 0x1a, 0x1b:
				p.rx <- string(append(cur, c))
				cur = nil
			default:
				cur = append(cur, c)
			}
		}
		if err != nil {
			return
		}
	}
}

// expect checks the next unit the engine wrote.
func (p *peer) expect(want string) bool {
	select {
	case got, ok := <-p.rx:
		if !ok {
			p.t.Errorf("peer: port closed while waiting for %q", want)
			return false
		}
		if got != want {
			p.t.Errorf("peer: engine wrote %q, want %q", got, want)
			return false
		}
		return true
	case <-time.After(wait):
		p.t.Errorf("peer: engine wrote nothing, want %q", want)
		return false
	}
}

func (p *peer) send(chunks ...string) bool {
	for _, c := range chunks {
		if _, err := p.conn.Write([]byte(c)); err != nil {
			p.t.Errorf("peer: write %q: %v", c, err)
			return false
		}
	}
	return true
}

// script plays steps on a goroutine; the test waits for it in cleanup so
// that no error is reported after the test has returned.
func (p *peer) script(steps ...step) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, s := range steps {
			if s.want != "" && !p.expect(s.want) {
				return
			}
			if !p.send(s.reply...) {
				return
			}
			if s.then != nil {
				s.then()
			}
		}
	}()
	p.t.Cleanup(func() { <-done })
}

// urcSink collects URCs delivered by the engine.
type urcSink chan URC

func newSink() urcSink { return make(urcSink, 64) }

func (s urcSink) handler(u URC) { s <- u }

func (s urcSink) next(t *testing.T) URC {
	t.Helper()
	select {
	case u := <-s:
		return u
	case <-time.After(wait):
		t.Fatal("no URC delivered")
		return URC{}
	}
}

// expectURCs checks that the next URCs delivered are want, in order.
// Tests end a transcript with a marker URC to prove nothing came between.
func (s urcSink) expectURCs(t *testing.T, want ...URC) {
	t.Helper()
	for _, w := range want {
		if got := s.next(t); got != w {
			t.Errorf("URC = %+v, want %+v", got, w)
		}
	}
}
