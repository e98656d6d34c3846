//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
)

// An idle poller (nothing to claim, nothing to report) stops promptly on
// SIGTERM, and so does the modem after it: no long poll or drain timer holds it up. 5 s is a generous
// bound for what should take well under a second or two.
func TestIdlePollerStopsPromptlyOnSIGTERM(t *testing.T) {
	st := start(t, harness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.WaitPollerReady(ctx); err != nil {
		t.Fatal(err)
	}
	// Let it settle into its idle waits (claim interval, results pull).
	time.Sleep(2 * time.Second)
	began := time.Now()
	if err := st.Poller.Signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	took := time.Since(began)
	t.Logf("idle poller exited %s after SIGTERM", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("idle poller took %s to exit after SIGTERM, want a second or two", took)
	}
	// The modem, its broker now gone, has no one to say goodbye to and
	// nothing to finish: it stops as promptly.
	began = time.Now()
	if err := st.Modem.Signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("SIGTERM to the modem: %v", err)
	}
	took = time.Since(began)
	t.Logf("idle modem without a broker exited %s after SIGTERM", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("idle modem took %s to exit after SIGTERM, want a second or two", took)
	}
}

// A broker error the poller cannot recover from ends the process with a
// non-zero exit and one line that says why, so Docker's restart policy or
// systemd takes over.
func TestFatalBrokerErrorEndsThePoller(t *testing.T) {
	bin := filepath.Join(binDir(t), "sms-poller")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	notDir := filepath.Join(t.TempDir(), "store")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		env  []string
		want string
	}{
		"broker port taken": {[]string{"NATS_LISTEN=" + taken.Addr().String(), "NATS_STORE_DIR=" + t.TempDir()}, "listening on port"},
		"store unusable":    {[]string{"NATS_LISTEN=127.0.0.1:0", "NATS_STORE_DIR=" + notDir}, "JetStream"},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = append(os.Environ(), append([]string{
				// The API is never reached: the broker starts first.
				"SMS_API_URL=http://127.0.0.1:9", "KEYCLOAK_URL=http://127.0.0.1:9", "NATS_USER=modem", "NATS_PASSWORD=pw",
				"HTTP_ADDR=127.0.0.1:0", "LOG_FORMAT=json",
			}, tc.env...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want exit status 1\n%s", err, stderr.String())
			}
			// The last line on stderr is the reason: the ERROR log line
			// that ends the process.
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			var last struct{ Level, Msg, Error string }
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil ||
				last.Level != "error" || last.Msg != "sms-poller failed" || !strings.Contains(last.Error, tc.want) {
				t.Errorf("last stderr line %q, want the ERROR line \"sms-poller failed\" saying %s", lines[len(lines)-1], tc.want)
			}
		})
	}
}
