package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is one of the gateway's binaries running as a child process.
type Proc struct {
	Name string
	path string
	env  []string
	out  io.Writer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func newProc(name, path string, env []string, out io.Writer) *Proc {
	return &Proc{Name: name, path: path, env: env, out: out}
}

// Start launches the binary; it is an error if it is already running.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s already running", p.Name)
	}
	cmd := exec.Command(p.path)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// Its own process group, so a signal to the test runner does not reach
	// it first and the harness decides when it stops.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		if p.cmd == cmd {
			p.cmd = nil
		}
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Pid returns the process id, or 0.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig and waits for the process to exit, escalating to SIGKILL
// after grace. It returns the process's exit error (nil for a clean exit).
func (p *Proc) Signal(sig syscall.Signal, grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not exit within %s of %s; killed", p.Name, grace, sig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if sig == syscall.SIGKILL {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return fmt.Errorf("%s exited: %w", p.Name, p.err)
	}
	return p.err
}

// Stop sends SIGTERM and waits (the graceful path).
func (p *Proc) Stop() error { return p.Signal(syscall.SIGTERM, 60*time.Second) }

// Kill sends SIGKILL and waits: a crash, as far as the process can tell.
func (p *Proc) Kill() error { return p.Signal(syscall.SIGKILL, 10*time.Second) }

// Restart stops the process with SIGTERM and starts it again.
func (p *Proc) Restart() error {
	if err := p.Stop(); err != nil {
		return err
	}
	return p.Start()
}

// Command returns the binary with the service's own environment and args:
// how the operator commands (check, sms, ledger) run against the stack.
func (p *Proc) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, p.path, args...)
	cmd.Env = append(os.Environ(), p.env...)
	return cmd
}
