// Package modemsim simulates a USB cellular modem speaking 27.005/27.007 AT
// commands, so the gateway's modem service can be tested end to end and
// demonstrated without hardware. The simulator serves one line, either a
// real pseudo-terminal behind a /dev/serial/by-id style symlink or a TCP
// socket, answers the initialisation commands, PIN entry and PDU-mode
// AT+CMGS like a real modem, and decodes what it is sent with its own
// SMS-SUBMIT decoder (independent of services/modem on purpose, as a
// cross-check). Tests script faults (error replies, hangs, unplug and
// replug, reboots, URC and line noise, lost registration) while a client
// talks, and wait on observable events instead of sleeping.
package modemsim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Errors returned by the transport methods.
var (
	ErrClosed     = errors.New("modemsim: closed")
	ErrServing    = errors.New("modemsim: already serving a line")
	ErrNotServing = errors.New("modemsim: not serving")
	ErrPlugged    = errors.New("modemsim: already plugged in")
)

// Config describes the simulated modem. Zero values take the defaults
// noted on each field.
type Config struct {
	PIN string // SIM PIN; empty means the SIM is not locked
	// RegistrationDelay is how long the modem reports "searching" (stat 2)
	// after the SIM becomes ready before it is registered. Default 0.
	RegistrationDelay time.Duration
	// PartLatency is the network time per AT+CMGS, from Ctrl-Z to the
	// answer. Default 0; change it at runtime with SetPartLatency.
	PartLatency time.Duration

	Manufacturer string // default "Quectel"
	Model        string // default "EC25"
	Revision     string // default "EC25EFAR06A06M4G"
	IMEI         string // default "490154203237518"
	IMSI         string // default "001010123456789"
	ICCID        string // default "89001012345678901234"
	Operator     string // default "SIM Sim"
	SMSC         string // default "+40722270333"

	// Number is the SIM's own number: SMS sent to it come back as
	// incoming SMS (loopback), as a real network does. "" turns loopback off.
	Number string
	// StoreCapacity is how many messages the SIM store holds. Default 30.
	StoreCapacity int
	// FailRecipient gets permanent-failure status reports. Default none.
	FailRecipient string
	// StoredReportsOnly refuses AT+CNMI with <ds>=1 (+CDS), as many
	// Qualcomm-based modules do: status reports can only be stored (+CDSI).
	StoredReportsOnly bool
	// ReportDelay is how long after a part is accepted its status report
	// arrives, and a looped-back SMS comes back. Default 100ms.
	ReportDelay time.Duration

	Seed   uint64      // seeds the noise generator
	Logger *zap.Logger // nil means no logging
}

func (c Config) withDefaults() Config {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Manufacturer, "Quectel")
	def(&c.Model, "EC25")
	def(&c.Revision, "EC25EFAR06A06M4G")
	def(&c.IMEI, "490154203237518")
	def(&c.IMSI, "001010123456789")
	def(&c.ICCID, "89001012345678901234")
	def(&c.Operator, "SIM Sim")
	def(&c.SMSC, "+40722270333")
	if c.StoreCapacity <= 0 {
		c.StoreCapacity = 30
	}
	if c.ReportDelay <= 0 {
		c.ReportDelay = 100 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Message is a complete SMS as the network received it, reassembled from
// its parts.
type Message struct {
	To             string
	Text           string
	Parts          int
	Refs           []int // the TP-MR the modem answered for each part, in part order
	Encoding       Encoding
	StatusReport   bool          // TP-SRR set on any part
	ValidityPeriod time.Duration // relative TP-VP of the first part, 0 if absent
	At             time.Time     // when the last part was accepted
}

// Submit is one PDU the client sent after a prompt.
type Submit struct {
	At     time.Time // when Ctrl-Z arrived
	Length int       // <length> from AT+CMGS
	PDU    string    // the hex as received
	TPDU   *TPDU     // nil when the PDU was rejected as invalid
	// Result is the answer written: "+CMGS: <mr>", the error line as
	// AT+CMEE formats it (e.g. "+CMS ERROR: 304"), or "" when none was
	// written (a hang, a reboot or an unplug came first).
	Result string
}

// Stats are running counters since New.
type Stats struct {
	Connections int // TCP accepts plus opens of the pty slave by clients
	Commands    int // command lines heard, including those ignored while hung
	Prompts     int // "> " prompts written
	Accepted    int // parts the network took (answered with +CMGS unless hung)
	Rejected    int // parts refused with an error after Ctrl-Z
	Aborted     int // prompts closed by ESC
	Boots       int // power-ons: serve, replug, reboot
	NoiseURCs   int // noise URCs written
	DupParts    int // parts of a message already held (client resent a part)
	Delivered   int // incoming SMS the network delivered (Deliver and loopback)
	Held        int // incoming parts the network held because the store was full
	Deleted     int // store entries deleted by AT+CMGD
	Reports     int // status reports the network sent
	Loopbacks   int // SMS to Config.Number scheduled to come back
}

// Sim is one simulated modem. All methods are safe for concurrent use.
type Sim struct {
	cfg Config
	log *zap.Logger

	input chan chunk    // bytes read from the line, consumed by run
	done  chan struct{} // closed by Close
	wg    sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	changed chan struct{} // closed and replaced whenever observations change
	rng     *rand.Rand

	m       modem         // power-cycle state; see modem.go
	epoch   uint64        // bumped by every power-off, to drop stale work
	resetCh chan struct{} // closed at power-off, wakes an in-flight send
	gen     uint64        // identifies the current connection's input
	regT    *time.Timer   // pending registration change

	// SIM and modem facts that survive reboots.
	pinTries int
	nextMR   int
	latency  time.Duration
	smsc     string

	// Faults.
	cmsErrs   []int
	hung      bool
	hangCMGS  HangPoint
	hangOn    string
	noise     bool
	lineNoise bool
	regLost   bool

	// Receive side; the store is on the SIM and survives reboots.
	store      []Stored
	held       []held
	inRef      int
	noLoopback bool

	// Line. out is drained by the writer of the current session.
	out      []byte
	outSig   chan struct{}
	plugged  bool
	linkPath string // symlink to the pty slave when serving a pty
	pty      *ptyLine
	ln       net.Listener
	tcp      *session
	cur      string // name of the command being executed, for noise

	// Observations.
	stats    Stats
	commands []string
	submits  []Submit
	received []Message
	partial  map[partKey]*assembly
	busy     time.Duration
	starts   []time.Time
}

type chunk struct {
	gen  uint64
	data []byte
}

// New returns a powered-off simulator; ServePTY or ServeTCP plugs it in.
func New(cfg Config) *Sim {
	cfg = cfg.withDefaults()
	s := &Sim{
		cfg:      cfg,
		log:      cfg.Logger,
		input:    make(chan chunk, 16),
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
		rng:      rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9E3779B97F4A7C15)),
		resetCh:  make(chan struct{}),
		pinTries: 3,
		latency:  cfg.PartLatency,
		smsc:     cfg.SMSC,
		outSig:   make(chan struct{}, 1),
		partial:  make(map[partKey]*assembly),
	}
	s.wg.Add(1)
	go s.run()
	return s
}

// Close unplugs the line, removes the symlink and stops every goroutine.
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.powerOffLocked()
	if s.ln != nil {
		_ = s.ln.Close()
	}
	s.notifyLocked()
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// run is the modem's processor: it consumes input in order and blocks for
// the network latency of a send, like a real modem that answers nothing
// else while AT+CMGS is in progress.
func (s *Sim) run() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case c := <-s.input:
			data := c.data
			for len(data) > 0 {
				s.mu.Lock()
				if c.gen != s.gen {
					s.mu.Unlock()
					break // input of a connection that is gone
				}
				n, j := s.consumeLocked(data)
				s.mu.Unlock()
				data = data[n:]
				if j != nil {
					s.network(j)
				}
			}
		}
	}
}

// notifyLocked wakes every waiter.
func (s *Sim) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// wait blocks until cond, evaluated under the lock, holds.
func (s *Sim) wait(ctx context.Context, what string, cond func() bool) error {
	for {
		s.mu.Lock()
		ok, closed, ch := cond(), s.closed, s.changed
		s.mu.Unlock()
		switch {
		case ok:
			return nil
		case closed:
			return fmt.Errorf("wait for %s: %w", what, ErrClosed)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		}
	}
}

// WaitReceived returns when at least n messages are complete.
func (s *Sim) WaitReceived(ctx context.Context, n int) error {
	return s.wait(ctx, fmt.Sprintf("%d messages", n), func() bool { return len(s.received) >= n })
}

// WaitCommand returns when at least n command lines starting with prefix
// (case-insensitive, e.g. "AT+CMGS=") have been heard since New. Counting
// from New rather than from the call makes the wait race-free.
func (s *Sim) WaitCommand(ctx context.Context, prefix string, n int) error {
	return s.wait(ctx, fmt.Sprintf("%d× %q", n, prefix), func() bool {
		return s.countCommandsLocked(prefix) >= n
	})
}

// WaitConnected returns when at least n client connections have been made
// since New (TCP accepts, or opens of the pty slave by any process).
func (s *Sim) WaitConnected(ctx context.Context, n int) error {
	return s.wait(ctx, fmt.Sprintf("%d connections", n), func() bool { return s.stats.Connections >= n })
}

// WaitSubmits returns when at least n PDUs have been answered or dropped.
func (s *Sim) WaitSubmits(ctx context.Context, n int) error {
	return s.wait(ctx, fmt.Sprintf("%d submits", n), func() bool { return len(s.submits) >= n })
}

func (s *Sim) countCommandsLocked(prefix string) int {
	n := 0
	for _, c := range s.commands {
		if len(c) >= len(prefix) && strings.EqualFold(c[:len(prefix)], prefix) {
			n++
		}
	}
	return n
}

// Received returns the complete messages in order of completion.
func (s *Sim) Received() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.received)
	for i := range out {
		out[i].Refs = slices.Clone(out[i].Refs)
	}
	return out
}

// Submits returns every PDU sent after a prompt, in order. A submit is
// listed once Ctrl-Z has arrived; its Result is filled in when answered.
func (s *Sim) Submits() []Submit {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.submits)
	for i, sub := range out {
		if sub.TPDU == nil {
			continue
		}
		t := *sub.TPDU
		if t.Concat != nil {
			c := *t.Concat
			t.Concat = &c
		}
		out[i].TPDU = &t
	}
	return out
}

// Commands returns every command line heard, without the terminator. The
// history is unbounded: this is a test tool.
func (s *Sim) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.commands)
}

// Stats returns the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// CMGSBusy is the total time spent between a PDU's Ctrl-Z and the answer
// to it (+CMGS or +CMS ERROR), for benchmarks to subtract from wall time.
func (s *Sim) CMGSBusy() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busy
}

// CMGSStarts returns when each AT+CMGS= line was received, so benchmarks
// can measure the client's idle time between sends.
func (s *Sim) CMGSStarts() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.starts)
}
