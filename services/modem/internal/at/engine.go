// Package at is the AT command engine of the modem service: it runs one
// command at a time over any io.ReadWriter (serial port, pty, net.Pipe),
// splits the modem's output into lines and the "> " prompt in a single
// reader goroutine, tells command responses from unsolicited result codes
// (URCs), and turns final result codes into error values. It knows nothing
// about SMS beyond the AT+CMGS prompt flow; PDUs arrive as opaque hex.
// After a command is abandoned, the engine resynchronises before the next
// one so that a late answer is never taken for a fresh one.
package at

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

const (
	defaultTimeout       = 5 * time.Second
	defaultPromptTimeout = 10 * time.Second
	defaultResultTimeout = 120 * time.Second
	defaultQuietPeriod   = 200 * time.Millisecond
	// maxQueuedURCs bounds memory if the URC handler stalls; drops are logged.
	maxQueuedURCs = 1024
)

// Engine runs AT commands over one port. It is safe for concurrent use;
// commands are queued and sent one at a time.
type Engine struct {
	rw            io.ReadWriter
	log           *zap.Logger
	timeout       time.Duration
	promptTimeout time.Duration
	quiet         time.Duration
	onURC         func(URC)
	observe       func(cmd string, d time.Duration, err error)

	turn chan struct{} // holds a token while a caller owns the port

	mu          sync.Mutex // guards rt
	rt          router
	promptArmed atomic.Bool
	activity    chan struct{} // poked when a stray line is dropped

	urcMu   sync.Mutex
	urcs    []URC
	urcWake chan struct{}

	closeOnce sync.Once
	closed    chan struct{}
	cause     error // why the engine closed; read after <-closed
	closeErr  error // from closing rw
}

// Option configures an Engine.
type Option func(*Engine)

// WithTimeout sets the default per-command timeout (5 s).
func WithTimeout(d time.Duration) Option { return func(e *Engine) { e.timeout = d } }

// WithPromptTimeout sets how long SendPDU waits for the "> " prompt (10 s).
func WithPromptTimeout(d time.Duration) Option { return func(e *Engine) { e.promptTimeout = d } }

// WithQuietPeriod sets the silence that ends a resync drain (200 ms).
func WithQuietPeriod(d time.Duration) Option { return func(e *Engine) { e.quiet = d } }

// WithURCHandler sets the URC handler. It runs on a goroutine of its own,
// in arrival order, so it never stalls the reader; it should post events
// rather than run commands inline, because later URCs wait while it runs.
func WithURCHandler(h func(URC)) Option { return func(e *Engine) { e.onURC = h } }

// WithLogger sets the logger. At debug level it traces the traffic with
// PINs, PDUs and phone numbers redacted.
func WithLogger(l *zap.Logger) Option {
	return func(e *Engine) {
		if l != nil {
			e.log = l
		}
	}
}

// WithObserver is called once per command that got its turn, with the
// command name only ("+CSQ", "+CMGS", "I"; never arguments, which may be
// PINs), the time since it got its turn (resync included), and its error.
func WithObserver(f func(cmd string, d time.Duration, err error)) Option {
	return func(e *Engine) { e.observe = f }
}

// CmdOption configures one Command call.
type CmdOption func(*time.Duration)

// WithCmdTimeout overrides the engine's default timeout for one command.
func WithCmdTimeout(d time.Duration) CmdOption { return func(t *time.Duration) { *t = d } }

// New starts an engine on rw. It owns rw from now on: it reads it until EOF
// or error and closes it (if rw is an io.Closer) on Close.
func New(rw io.ReadWriter, opts ...Option) *Engine {
	e := &Engine{
		rw:            rw,
		log:           zap.NewNop(),
		timeout:       defaultTimeout,
		promptTimeout: defaultPromptTimeout,
		quiet:         defaultQuietPeriod,
		onURC:         func(URC) {},
		observe:       func(string, time.Duration, error) {},
		turn:          make(chan struct{}, 1),
		activity:      make(chan struct{}, 1),
		urcWake:       make(chan struct{}, 1),
		closed:        make(chan struct{}),
	}
	for _, o := range opts {
		o(e)
	}
	go e.readLoop()
	go e.dispatchURCs()
	return e
}

// Closed is closed when the port fails or Close is called.
func (e *Engine) Closed() <-chan struct{} { return e.closed }

// Close stops the engine and closes the port if it is an io.Closer (which
// also ends the reader goroutine). Calls in progress and all later calls
// return ErrClosed.
func (e *Engine) Close() error {
	e.shutdown(nil)
	return e.closeErr
}

// Command sends cmd (e.g. "AT+CSQ") and returns the response and info lines
// without the final result code. On error the lines received so far are
// returned too: a Wavecom answers AT+CPIN? with "+CPIN: READY" and no OK.
func (e *Engine) Command(ctx context.Context, cmd string, opts ...CmdOption) ([]string, error) {
	if len(cmd) < 2 || !strings.EqualFold(cmd[:2], "AT") || strings.ContainsAny(cmd, "\r\n\x1a\x1b") {
		return nil, fmt.Errorf("at command: %w: want one line starting with AT", ErrInvalidCommand)
	}
	s := parseCommand(cmd)
	if s.opensPrompt() {
		return nil, fmt.Errorf("at %s: %w: opens a > prompt, use SendPDU", s.name, ErrInvalidCommand)
	}
	timeout := e.timeout
	for _, o := range opts {
		o(&timeout)
	}
	if err := e.acquire(ctx); err != nil {
		return nil, fmt.Errorf("at %s: %w", s.name, err)
	}
	defer e.release()
	start := time.Now()
	lines, err := e.run(ctx, s, cmd, timeout)
	e.observe(s.name, time.Since(start), err)
	if err != nil {
		return lines, fmt.Errorf("at %s: %w", s.name, err)
	}
	return lines, nil
}

func (e *Engine) run(ctx context.Context, s spec, cmd string, timeout time.Duration) ([]string, error) {
	if err := e.resyncIfStale(ctx); err != nil {
		return nil, err
	}
	r := newRequest(s)
	if err := e.start(r, cmd+"\r"); err != nil {
		return nil, err
	}
	_, err := e.wait(ctx, r, nil, timeout)
	return r.lines, err
}

// SendPDU submits one SMS: AT+CMGS=<tpduLen>, the "> " prompt, then hexPDU
// and Ctrl-Z in one write. It returns the message reference from
// "+CMGS: <mr>", or -1 when the modem said OK without it (and with any
// error). resultTimeout <= 0 means 120 s. Errors matching ErrSubmitUnknown
// (ErrResultTimeout among them) mean the SMS may have been sent and must not
// be resent blindly; all other errors mean it was not.
func (e *Engine) SendPDU(ctx context.Context, tpduLen int, hexPDU string, resultTimeout time.Duration) (int, error) {
	if tpduLen <= 0 || hexPDU == "" || len(hexPDU)%2 != 0 || !isHex(hexPDU) {
		return -1, fmt.Errorf("at +CMGS: %w: want a positive length and hex PDU", ErrInvalidCommand)
	}
	if resultTimeout <= 0 {
		resultTimeout = defaultResultTimeout
	}
	if err := e.acquire(ctx); err != nil {
		return -1, fmt.Errorf("at +CMGS: %w", err)
	}
	defer e.release()
	start := time.Now()
	mr, err := e.sendPDU(ctx, tpduLen, hexPDU, resultTimeout)
	e.observe("+CMGS", time.Since(start), err)
	if err != nil {
		return -1, fmt.Errorf("at +CMGS: %w", err)
	}
	return mr, nil
}

func (e *Engine) sendPDU(ctx context.Context, tpduLen int, hexPDU string, resultTimeout time.Duration) (int, error) {
	if err := e.resyncIfStale(ctx); err != nil {
		return -1, err
	}
	r := newRequest(spec{name: "+CMGS", prefix: "+CMGS:", claim: true, set: true})
	r.pdu = hexPDU
	prompt := make(chan struct{})
	r.prompt = prompt
	if err := e.start(r, "AT+CMGS="+strconv.Itoa(tpduLen)+"\r"); err != nil {
		return -1, err
	}
	prompted, err := e.wait(ctx, r, prompt, e.promptTimeout)
	switch {
	case err == nil && !prompted:
		// OK instead of a prompt: nothing was submitted.
		_ = e.escape() // a failed write closes the engine; the verdict stands
		return -1, ErrPromptTimeout
	case expired(err):
		// The prompt may still open; ESC closes it without sending.
		_ = e.escape()
		if errors.Is(err, ErrTimeout) {
			return -1, ErrPromptTimeout
		}
		return -1, err
	case err != nil:
		return -1, err
	}

	if err := e.write(hexPDU + "\x1a"); err != nil {
		return -1, fmt.Errorf("%w: %w", ErrSubmitUnknown, err)
	}
	_, err = e.wait(ctx, r, nil, resultTimeout)
	switch {
	case expired(err):
		_ = e.escape()
		if errors.Is(err, ErrTimeout) {
			return -1, ErrResultTimeout
		}
		return -1, fmt.Errorf("%w: %w", ErrSubmitUnknown, err)
	case errors.Is(err, ErrClosed):
		return -1, fmt.Errorf("%w: %w", ErrSubmitUnknown, err)
	case err != nil:
		return -1, err
	}
	for _, l := range r.lines {
		if v, ok := strings.CutPrefix(l, "+CMGS:"); ok {
			if mr, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return mr, nil
			}
		}
	}
	return -1, nil
}

// expired reports whether wait gave up on its own (timer or context).
func expired(err error) bool {
	return errors.Is(err, ErrTimeout) || errors.Is(err, context.Canceled)
}

// Escape writes ESC, which closes an open "> " prompt without sending
// (Ctrl-Z would send whatever the modem buffered). It waits for the command
// in flight, and the next command resynchronises first.
func (e *Engine) Escape() error {
	if err := e.acquire(context.Background()); err != nil {
		return fmt.Errorf("at escape: %w", err)
	}
	defer e.release()
	if err := e.escape(); err != nil {
		return fmt.Errorf("at escape: %w", err)
	}
	return nil
}

// escape writes ESC and marks the line stale: some modems answer it.
func (e *Engine) escape() error {
	e.mu.Lock()
	e.rt.stale = true
	e.mu.Unlock()
	return e.write("\x1b")
}

func (e *Engine) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-e.closed:
		return e.closedErr()
	default:
	}
	select {
	case e.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-e.closed:
		return e.closedErr()
	}
	select {
	case <-e.closed:
		e.release()
		return e.closedErr()
	default:
		return nil
	}
}

func (e *Engine) release() { <-e.turn }

// start makes r the command in flight and writes line.
func (e *Engine) start(r *request, line string) error {
	e.mu.Lock()
	e.rt.cur = r
	e.promptArmed.Store(r.prompt != nil)
	e.mu.Unlock()
	if err := e.write(line); err != nil {
		e.mu.Lock()
		e.rt.cur = nil
		e.promptArmed.Store(false)
		e.mu.Unlock()
		return err
	}
	return nil
}

// wait blocks until r finishes, its prompt arrives (when prompt is not nil),
// d or ctx expire, or the port closes. When it gives up, r is withdrawn so
// the reader no longer touches it, and the line is marked stale.
func (e *Engine) wait(ctx context.Context, r *request, prompt <-chan struct{}, d time.Duration) (prompted bool, err error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	var giveUp error
	select {
	case err := <-r.done:
		return false, err
	case <-prompt:
		return true, nil
	case <-e.closed:
		giveUp = e.closedErr()
	case <-timer.C:
		giveUp = ErrTimeout
	case <-ctx.Done():
		giveUp = ctx.Err()
		if errors.Is(giveUp, context.DeadlineExceeded) {
			giveUp = fmt.Errorf("%w: %w", ErrTimeout, giveUp)
		}
	}
	e.mu.Lock()
	withdrawn := e.rt.cur == r
	if withdrawn {
		e.rt.cur = nil
		e.rt.stale = true
		e.promptArmed.Store(false)
	}
	e.mu.Unlock()
	if !withdrawn {
		// The reader finished r while the timer fired; its answer counts.
		return false, <-r.done
	}
	return false, giveUp
}

// resyncIfStale runs before every command once one was abandoned (timeout,
// cancelled context, Escape): its final result may still be on its way and
// must not be read as the next command's answer. The engine (1) waits until
// the port has been quiet for the quiet period, discarding late lines,
// (2) sends a bare "AT" and waits for any final result, and (3) waits for
// quiet again, so an old OK arriving just after the probe's is discarded
// too. A late answer that arrives after all that is indistinguishable from a
// fresh one; no portable AT command carries a token that would tell them
// apart, so the quiet periods make that window small instead.
func (e *Engine) resyncIfStale(ctx context.Context) error {
	e.mu.Lock()
	stale := e.rt.stale
	e.mu.Unlock()
	if !stale {
		return nil
	}
	if err := e.awaitQuiet(ctx); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	probe := newRequest(spec{name: "AT"})
	if err := e.start(probe, "AT\r"); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	// Any final result, even ERROR, shows the modem is answering again.
	if _, err := e.wait(ctx, probe, nil, e.timeout); expired(err) || errors.Is(err, ErrClosed) {
		return fmt.Errorf("resync: %w", err)
	}
	if err := e.awaitQuiet(ctx); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	e.mu.Lock()
	e.rt.stale = false
	e.mu.Unlock()
	e.log.Debug("at resynchronised")
	return nil
}

// awaitQuiet returns once no stray line has been dropped for the quiet
// period. A modem that keeps talking longer than the command timeout fails it.
func (e *Engine) awaitQuiet(ctx context.Context) error {
	limit := time.NewTimer(e.quiet + e.timeout)
	defer limit.Stop()
	quiet := time.NewTimer(e.quiet)
	defer quiet.Stop()
	for {
		select {
		case <-e.activity:
			quiet.Reset(e.quiet)
		case <-quiet.C:
			return nil
		case <-limit.C:
			return fmt.Errorf("%w: modem never went quiet", ErrTimeout)
		case <-ctx.Done():
			return ctx.Err()
		case <-e.closed:
			return e.closedErr()
		}
	}
}

func (e *Engine) write(s string) error {
	select {
	case <-e.closed:
		return e.closedErr()
	default:
	}
	if ce := e.log.Check(zap.DebugLevel, "at tx"); ce != nil {
		ce.Write(zap.String("data", redactTX(s)))
	}
	if _, err := io.WriteString(e.rw, s); err != nil {
		e.shutdown(fmt.Errorf("write: %w", err))
		return e.closedErr()
	}
	return nil
}

func (e *Engine) readLoop() {
	var tok tokenizer
	buf := make([]byte, 512)
	for {
		n, err := e.rw.Read(buf)
		tok.feed(buf[:n], e.promptArmed.Load, e.handle)
		if err != nil {
			e.shutdown(fmt.Errorf("read: %w", err))
			return
		}
	}
}

// handle routes one token. It runs on the reader goroutine and never blocks
// on a caller or on the URC handler.
func (e *Engine) handle(t token) {
	if ce := e.log.Check(zap.DebugLevel, "at rx"); ce != nil {
		if t.prompt {
			ce.Write(zap.String("line", ">"))
		} else {
			ce.Write(zap.String("line", redactRX(t.line)))
		}
	}
	e.mu.Lock()
	o := e.rt.route(t)
	if o.prompt != nil || o.finished != nil {
		e.promptArmed.Store(false)
	}
	e.mu.Unlock()
	if o.prompt != nil {
		close(o.prompt)
	}
	if o.finished != nil {
		o.finished.done <- o.err
	}
	if o.stray {
		select {
		case e.activity <- struct{}{}:
		default:
		}
		e.log.Debug("at dropped a line no command owns")
	}
	if o.urc != nil {
		e.queueURC(*o.urc)
	}
}

func (e *Engine) queueURC(u URC) {
	e.urcMu.Lock()
	full := len(e.urcs) >= maxQueuedURCs
	if !full {
		e.urcs = append(e.urcs, u)
	}
	e.urcMu.Unlock()
	if full {
		e.log.Warn("at URC queue full, dropping a URC; is the URC handler stuck?")
		return
	}
	select {
	case e.urcWake <- struct{}{}:
	default:
	}
}

func (e *Engine) dispatchURCs() {
	for {
		select {
		case <-e.urcWake:
			e.deliverURCs()
		case <-e.closed:
			e.deliverURCs()
			return
		}
	}
}

func (e *Engine) deliverURCs() {
	for {
		e.urcMu.Lock()
		batch := e.urcs
		e.urcs = nil
		e.urcMu.Unlock()
		if len(batch) == 0 {
			return
		}
		for _, u := range batch {
			e.onURC(u)
		}
	}
}

func (e *Engine) shutdown(cause error) {
	e.closeOnce.Do(func() {
		e.cause = cause
		close(e.closed)
		if c, ok := e.rw.(io.Closer); ok {
			e.closeErr = c.Close()
		}
		if cause != nil {
			e.log.Debug("at port closed", zap.Error(cause))
		}
	})
}

func (e *Engine) closedErr() error {
	if e.cause != nil {
		return fmt.Errorf("%w: %w", ErrClosed, e.cause)
	}
	return ErrClosed
}
