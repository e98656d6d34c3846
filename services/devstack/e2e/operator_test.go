//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
	"github.com/sensorsreport/smsgw/shared/schema"
)

type ran struct {
	code           int
	stdout, stderr string
}

func execute(t *testing.T, cmd *exec.Cmd) ran {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return ran{code, out.String(), errb.String()}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// The operator's path through a running gateway, all with the real
// binaries: check passes, sms send --wait follows an SMS through the real
// poller and modem to Sent, sms list/get and the modem's ledger show it,
// and check fails naming the settings once the modem is gone.
func TestOperatorCommands(t *testing.T) {
	st := start(t, harness.Options{PollInterval: 200 * time.Millisecond})
	poller := func(args ...string) ran { return execute(t, st.Poller.Command(ctxT(t, 2*time.Minute), args...)) }
	modem := func(args ...string) ran { return execute(t, st.Modem.Command(ctxT(t, time.Minute), args...)) }

	if err := st.WaitPollerReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	// The poller has heard the modem's ready heartbeat once claims can run;
	// a check right after start may still see none, so wait for it.
	var r ran
	for deadline := time.Now().Add(30 * time.Second); ; {
		if r = poller("check"); r.code == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // polling a separate process's state
	}
	if r.code != 0 || strings.Count(r.stdout, "\n") != 9 || !strings.Contains(r.stdout, "OK    modem") || strings.Contains(r.stdout, "\x1b[") {
		t.Fatalf("check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	text := "operator test " + time.Now().Format(time.RFC3339Nano)
	r = poller("sms", "send", "--to", "+40722000111", "--text", text, "--tenant", "tenant-a", "--wait", "90s")
	if r.code != 0 || !strings.Contains(r.stdout, "Pending") || !strings.Contains(r.stdout, "Sent  TrackingId mr:") || r.stderr != "" {
		t.Fatalf("sms send: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	id := strings.Fields(strings.TrimPrefix(r.stdout, "created "))[0]
	m, ok := st.API.Get(id)
	if !ok || m.Status != schema.StatusSent || deliveries(st)[text] != 1 {
		t.Fatalf("upstream %+v, delivered %d times", m, deliveries(st)[text])
	}

	r = poller("sms", "list", "--tenant", "tenant-a", "--status", "Sent")
	if r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, *m.TrackingID) {
		t.Fatalf("sms list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = poller("sms", "get", id, "--tenant", "tenant-a", "--json")
	var obj map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &obj) != nil || obj["Id"] != id || obj["Status"] != float64(2) || obj["Message"] != text {
		t.Fatalf("sms get: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = modem("ledger")
	if r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "Sent") {
		t.Fatalf("ledger: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = modem("ledger", "--unknown", "--json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("ledger --unknown: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	if err := st.Modem.Stop(); err != nil {
		t.Fatal(err)
	}
	r = poller("check")
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL  modem") || !strings.Contains(r.stdout, "NATS_PASSWORD") {
		t.Fatalf("check without a modem: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// Configuration errors: one line naming the variable and what is expected,
// exit 2, for both binaries and every subcommand; runtime errors printed
// once; no colour codes into a pipe; version and help say what they should.
func TestOperatorConfigurationErrors(t *testing.T) {
	bin := binDir(t)
	dir := t.TempDir()
	run := func(binary string, env []string, args ...string) ran {
		cmd := exec.CommandContext(ctxT(t, time.Minute), filepath.Join(bin, binary), args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
		cmd.Dir = dir
		return execute(t, cmd)
	}
	poller := []string{"SMS_API_URL=http://127.0.0.1:1", "NATS_USER=modem", "NATS_PASSWORD=x", "NATS_STORE_DIR=" + dir, "HTTP_ADDR=127.0.0.1:0"}
	modemEnv := []string{"MODEM_DEVICE=" + filepath.Join(dir, "ttyUSB0"), "MODEM_DATA_DIR=" + dir, "NATS_USER=modem", "NATS_PASSWORD=x"}
	with := func(base []string, kv ...string) []string { return append(append([]string{}, base...), kv...) }

	for _, c := range []struct {
		binary string
		env    []string
		args   []string
		want   string
	}{
		{"sms-poller", with(poller, "SMS_API_URL=not a url"), nil, `SMS_API_URL="not a url": want an absolute http(s) URL`},
		{"sms-poller", with(poller, "POLL_INTERVAL=abc"), nil, `POLL_INTERVAL="abc": want a duration`},
		{"sms-poller", with(poller, "LOG_LEVEL=loud"), nil, `LOG_LEVEL="loud": want debug, info, warn or error`},
		{"sms-poller", poller[:1], []string{"sms", "list"}, "NATS_USER is not set"},
		{"sms-poller", with(poller, "SMS_COUNTRIES=Romania"), []string{"provider", "show"}, "SMS_COUNTRIES"},
		{"sms-poller", with(poller, "KEYCLOAK_URL=keycloak.example.net"), []string{"sms", "get", "x", "--tenant", "t"}, "KEYCLOAK_URL"},
		{"sms-modem", with(modemEnv), []string{"diag"}, "MODEM_DEVICE=" + `"` + filepath.Join(dir, "ttyUSB0") + `": want an existing serial device`},
		{"sms-modem", with(modemEnv), []string{"send", "+40722000111", "hi"}, "MODEM_DEVICE="},
		{"sms-modem", with(modemEnv, "MODEM_BAUD=fast"), []string{"ledger"}, `MODEM_BAUD="fast": want a whole number`},
		{"sms-modem", with(modemEnv, "MODEM_DATA_DIR="+filepath.Join(dir, "none")), []string{"ledger"}, "MODEM_DATA_DIR="},
		{"sms-modem", modemEnv[:2], nil, "NATS_USER is not set"},
	} {
		r := run(c.binary, c.env, c.args...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 2 || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%s %v: exit %d, stderr:\n%s\nwant one line with %q", c.binary, c.args, r.code, r.stderr, c.want)
		}
	}

	r := run("sms-poller", with(poller, "SMS_API_URL=not a url"), "check")
	if r.code != 2 || !strings.HasPrefix(r.stdout, "FAIL  configuration") || !strings.Contains(r.stdout, "SMS_API_URL") {
		t.Errorf("check with a bad configuration: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A runtime failure is printed once, and console logs carry no colour
	// into a pipe.
	r = run("sms-poller", with(poller, "LOG_LEVEL=debug", "LOG_FORMAT=console"), "sms", "get", "66cdd7b2e4b0a1c2d3e4f501", "--tenant", "t")
	if r.code != 1 || strings.Count(r.stderr, "sms-poller: get sms") != 1 || strings.Contains(r.stderr, "\x1b[") {
		t.Errorf("runtime error: exit %d\n%s", r.code, r.stderr)
	}
	r = run("sms-poller", poller, "sms", "get", "66cdd7b2e4b0a1c2d3e4f501", "--tenant", "t")
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); r.code != 1 || len(lines) != 1 || !strings.Contains(lines[0], "SMS_API_URL") {
		t.Errorf("runtime error without debug logs: exit %d\n%s", r.code, r.stderr)
	}
	r = run("sms-poller", poller, "sms", "get", "--tenant", "t")
	if r.code != 2 || !strings.Contains(r.stderr, "usage:") {
		t.Errorf("usage error: exit %d\n%s", r.code, r.stderr)
	}

	for _, b := range []string{"sms-poller", "sms-modem"} {
		r = run(b, nil, "version")
		for _, w := range []string{b + " ", "commit:", "built:", "go:         go1.", "platform:"} {
			if r.code != 0 || !strings.Contains(r.stdout, w) {
				t.Errorf("%s version lacks %q:\n%s", b, w, r.stdout)
			}
		}
	}
	r = run("sms-poller", nil, "--help")
	// The column width follows the longest variable name.
	if r.code != 0 || !regexp.MustCompile(`SMS_API_PREFIX +/api`).MatchString(r.stdout) || !regexp.MustCompile(`SMS_API_URL +\(required\)`).MatchString(r.stdout) {
		t.Errorf("--help:\n%s", r.stdout)
	}
	r = run("sms-poller", nil, "help", "sms")
	if r.code != 0 || !strings.Contains(r.stdout, "sms-poller sms send   --to NUMBER --text TEXT --tenant T [--ttl MIN] [--wait DURATION]") {
		t.Errorf("help sms:\n%s", r.stdout)
	}
	r = run("sms-modem", nil, "help", "ledger")
	if r.code != 0 || !strings.Contains(r.stdout, "sms-modem ledger [--unknown] [--json]") || !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), "MODEM_DEVICE /dev/ttyUSB0 serial port") {
		t.Errorf("help ledger:\n%s", r.stdout)
	}
}
