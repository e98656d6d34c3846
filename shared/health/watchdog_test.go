package health

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// notifySocket is systemd's end of the notify protocol: a real unixgram
// socket named by NOTIFY_SOCKET, as PID 1 provides it.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

func next(t *testing.T, c *net.UnixConn, d time.Duration) (string, bool) {
	t.Helper()
	buf := make([]byte, 256)
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", false
		}
		t.Fatal(err)
	}
	return string(buf[:n]), true
}

func expect(t *testing.T, c *net.UnixConn, want string) {
	t.Helper()
	if got, ok := next(t, c, 5*time.Second); !ok || got != want {
		t.Fatalf("notify socket: got %q (%v), want %q", got, ok, want)
	}
}

func TestSystemdReadyAndWatchdogFollowLiveness(t *testing.T) {
	sock := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "40000") // fed every 20 ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))

	var failing atomic.Bool
	calls := make(chan bool, 100)
	s := New(zap.NewNop())
	s.SetLive(func() error {
		f := failing.Load()
		select {
		case calls <- f:
		default:
		}
		if f {
			return errors.New("broker gone")
		}
		return nil
	})
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	expect(t, sock, "READY=1")
	expect(t, sock, "WATCHDOG=1")
	expect(t, sock, "WATCHDOG=1")

	// Not live: once the check has failed, nothing more may arrive.
	failing.Store(true)
	awaitFailingCall := func() {
		for !<-calls {
		}
	}
	awaitFailingCall()
	for {
		if _, ok := next(t, sock, time.Millisecond); !ok {
			break // drained what was sent before the check failed
		}
	}
	awaitFailingCall()
	awaitFailingCall()
	if m, ok := next(t, sock, time.Millisecond); ok {
		t.Fatalf("sent %q while not live", m)
	}

	failing.Store(false)
	expect(t, sock, "WATCHDOG=1")

	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for {
		m, ok := next(t, sock, 5*time.Second)
		if !ok {
			t.Fatal("no STOPPING=1")
		}
		if m == "STOPPING=1" {
			break
		}
	}
	// Shutdown has waited for the feeder: the socket stays silent.
	if m, ok := next(t, sock, 100*time.Millisecond); ok {
		t.Fatalf("sent %q after Shutdown", m)
	}
}

func TestNoSystemdNoNotifications(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	s := New(zap.NewNop())
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestWatchdogForAnotherProcessIsIgnored(t *testing.T) {
	sock := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "40000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	s := New(zap.NewNop())
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	expect(t, sock, "READY=1")
	if m, ok := next(t, sock, 200*time.Millisecond); ok {
		t.Fatalf("fed a watchdog meant for another PID: %q", m)
	}
	_ = s.Shutdown(context.Background())
}
