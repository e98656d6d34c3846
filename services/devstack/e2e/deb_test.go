//go:build e2edeb

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// debHost is a Debian rootfs (debootstrap minbase + systemd, imported with
// docker import by `make deb-rootfs`) running systemd as PID 1 in a
// container, without --privileged.
type debHost struct {
	t    *testing.T
	name string
	api  string
}

const debContainer = "smsgw-deb-e2e"

func startDebHost(t *testing.T) *debHost {
	deb, image, bin := os.Getenv("SMSGW_DEB"), os.Getenv("SMSGW_DEB_IMAGE"), os.Getenv("SMSGW_BIN")
	if deb == "" || image == "" || bin == "" {
		t.Fatal("SMSGW_DEB, SMSGW_DEB_IMAGE and SMSGW_BIN must be set: run `make e2e-deb`")
	}
	_ = exec.Command("docker", "rm", "-f", debContainer).Run()
	dockerOut(t, "run", "-d", "--name", debContainer, "--hostname", "smsgw-deb",
		"--cap-add", "SYS_ADMIN", "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
		"--tmpfs", "/run", "--tmpfs", "/run/lock", "-e", "container=docker",
		"-v", deb+":/pkg/"+filepath.Base(deb)+":ro",
		"-v", filepath.Join(bin, "devstack")+":/usr/local/bin/devstack:ro",
		"-p", "127.0.0.1::8090", image, "/sbin/init")
	h := &debHost{t: t, name: debContainer}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker", "exec", debContainer, "journalctl", "--no-pager", "-n", "80",
				"-u", "sms-poller", "-u", "sms-modem", "-u", "devstack").CombinedOutput()
			t.Logf("journal:\n%s", out)
		}
		_ = exec.Command("docker", "rm", "-f", debContainer).Run()
	})
	// PID 1's bus appears a few seconds after the container starts; from
	// outside there is nothing to wait on but the answer itself.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, _ := h.execErr("systemctl", "is-system-running", "--wait")
		s := strings.TrimSpace(out)
		if s == "running" || s == "degraded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd did not come up: %q", s)
		}
		time.Sleep(500 * time.Millisecond)
	}
	port := dockerOut(t, "port", debContainer, "8090/tcp")
	h.api = "http://" + strings.TrimSpace(strings.Split(port, "\n")[0])
	return h
}

func (h *debHost) execErr(args ...string) (string, error) {
	out, err := exec.Command("docker", append([]string{"exec", "-e", "DEBIAN_FRONTEND=noninteractive", "-w", "/pkg", h.name}, args...)...).CombinedOutput()
	return string(out), err
}

func (h *debHost) sh(script string) string {
	h.t.Helper()
	out, err := h.execErr("sh", "-ec", script)
	if err != nil {
		h.t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return strings.TrimSpace(out)
}

func (h *debHost) get(path string, v any) {
	h.t.Helper()
	resp, err := http.Get(h.api + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		h.t.Fatal(err)
	}
}

func (h *debHost) seed(text string) string {
	h.t.Helper()
	body, _ := json.Marshal(smsapi.SMS{Tenant: "demo", PhoneNumber: "+40722000111", Message: text, Timestamp: time.Now()})
	resp, err := http.Post(h.api+smsapi.DevPrefix+"sms", "application/json", bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Id string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Id == "" {
		h.t.Fatalf("seed: %v %q", err, out.Id)
	}
	return out.Id
}

// waitSent polls the stand-in, a process in another container: there is
// no event to wait on.
func (h *debHost) waitSent(ids []string, d time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for {
		var st smsapi.State
		h.get(smsapi.DevPrefix+"state", &st)
		final := map[string]schema.Status{}
		for _, m := range st.SMS {
			final[m.ID] = m.Status
		}
		sent := 0
		for _, id := range ids {
			if final[id] == schema.StatusSent {
				sent++
			}
		}
		if sent == len(ids) {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("only %d of %d SMS Sent after %s", sent, len(ids), d)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// unitProp reads one systemd property of a unit.
func (h *debHost) unitProp(unit, prop string) string {
	h.t.Helper()
	return h.sh("systemctl show -P " + prop + " " + unit)
}

// waitRestarted waits for systemd to have restarted unit more than before
// times and for the new process to be up again.
func (h *debHost) waitRestarted(unit string, before int, d time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for {
		n, _ := strconv.Atoi(h.unitProp(unit, "NRestarts"))
		if n > before && h.unitProp(unit, "ActiveState") == "active" {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s not restarted after %s: NRestarts=%d, %s", unit, d, n, h.unitProp(unit, "ActiveState"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var exposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`)

func TestDebPackageOnSystemd(t *testing.T) {
	h := startDebHost(t)
	deb := filepath.Base(os.Getenv("SMSGW_DEB"))

	// The stand-ins: SMS API + OIDC on :8090 (published to the test),
	// the modem simulator on tcp://127.0.0.1:7000.
	h.sh("systemd-run --unit=devstack /usr/local/bin/devstack serve --http :8090 --modem-tcp 127.0.0.1:7000 --latency 50ms")

	// Install exactly as the README says.
	h.sh("apt install -y ./" + deb)
	if got := h.sh("stat -c '%a %U %G' /etc/smsgw/smsgw.env"); got != "640 root smsgw" {
		t.Errorf("smsgw.env is %q, want 640 root smsgw", got)
	}
	pw := h.sh("sed -n 's/^NATS_PASSWORD=//p' /etc/smsgw/smsgw.env")
	if len(pw) < 20 {
		t.Fatalf("NATS_PASSWORD not generated on first install: %q", pw)
	}
	h.sh("id smsgw")
	if st := h.unitProp("sms-poller", "UnitFileState"); st != "disabled" {
		t.Errorf("sms-poller is %s right after install; the operator enables it after configuring", st)
	}
	for _, u := range []string{"sms-poller.service", "sms-modem.service"} {
		out := h.sh("systemd-analyze security " + u + " | tail -1")
		m := exposure.FindStringSubmatch(out)
		if m == nil || (m[2] != "OK" && m[2] != "SAFE" && m[2] != "PERFECT") {
			t.Errorf("systemd-analyze security %s: %q, want OK or better", u, out)
		} else {
			t.Logf("systemd-analyze security %s: %s %s", u, m[1], m[2])
		}
	}

	// The operator points the configuration at the API, Keycloak and the
	// modem (here: the stand-ins), then enables both units.
	h.sh(fmt.Sprintf(`cat >> /etc/smsgw/smsgw.env <<'EOF'
SMS_API_URL=http://127.0.0.1:8090
KEYCLOAK_URL=http://127.0.0.1:8090
KEYCLOAK_CLIENT_SECRET=%s
KEYCLOAK_USER=%s
KEYCLOAK_PASSWORD=%s
MODEM_NUMBER=+40700000000
MODEM_DEVICE=tcp://127.0.0.1:7000
POLL_INTERVAL=500ms
EOF`, harness.ClientSecret, harness.User, harness.Password))
	h.sh("systemctl enable --now sms-poller sms-modem")
	for _, u := range []string{"sms-poller", "sms-modem"} {
		if st := h.unitProp(u, "ActiveState"); st != "active" {
			t.Fatalf("%s is %s", u, st)
		}
		if user := h.sh("stat -c %U /proc/" + h.unitProp(u, "MainPID")); user != "smsgw" {
			t.Errorf("%s runs as %q", u, user)
		}
		if ty, wd := h.unitProp(u, "Type"), h.unitProp(u, "WatchdogUSec"); ty != "notify" || wd != "30s" {
			t.Errorf("%s: Type=%s WatchdogSec=%s, want notify and 30s", u, ty, wd)
		}
	}
	// The broker listens on loopback only.
	if ls := h.sh("cat /proc/net/tcp"); !strings.Contains(ls, "0100007F:107E 00000000:0000 0A") {
		t.Errorf("no listener on 127.0.0.1:4222:\n%s", ls)
	} else if strings.Contains(ls, "00000000:107E 00000000:0000 0A") {
		t.Error("the broker listens on all addresses")
	}

	var ids []string
	batch := func(label string, n int) {
		var b []string
		for i := 0; i < n; i++ {
			b = append(b, h.seed(fmt.Sprintf("%s %02d", label, i)))
		}
		h.waitSent(b, 2*time.Minute)
		ids = append(ids, b...)
	}
	batch("deb first", 8)

	// A crash: systemd restarts the modem (Restart=on-failure).
	before, _ := strconv.Atoi(h.unitProp("sms-modem", "NRestarts"))
	pid := h.unitProp("sms-modem", "MainPID")
	h.sh("systemctl kill -s KILL sms-modem")
	h.waitRestarted("sms-modem", before, time.Minute)
	if h.unitProp("sms-modem", "MainPID") == pid {
		t.Fatal("sms-modem has the same PID after SIGKILL")
	}
	batch("deb after kill", 8)

	// A hang: a stopped process no longer feeds the watchdog, so systemd
	// kills and restarts it. A drop-in shortens the unit's 30 s to keep
	// the test quick.
	h.sh(`mkdir -p /run/systemd/system/sms-modem.service.d
printf '[Service]\nWatchdogSec=3s\nTimeoutAbortSec=2s\n' > /run/systemd/system/sms-modem.service.d/fast-watchdog.conf
systemctl daemon-reload
systemctl restart sms-modem`)
	before, _ = strconv.Atoi(h.unitProp("sms-modem", "NRestarts"))
	h.sh("systemctl kill -s STOP sms-modem")
	h.waitRestarted("sms-modem", before, time.Minute)
	if j := h.sh("journalctl -u sms-modem --no-pager | grep -c 'Watchdog timeout' || true"); j == "0" {
		t.Error("sms-modem restarted, but not by its watchdog")
	}
	h.sh("rm -r /run/systemd/system/sms-modem.service.d && systemctl daemon-reload")
	batch("deb after hang", 4)

	// An upgrade (here: the same package again) keeps the operator's file.
	h.sh("apt install -y --reinstall ./" + deb)
	if got := h.sh("sed -n 's/^NATS_PASSWORD=//p' /etc/smsgw/smsgw.env"); got != pw {
		t.Errorf("reinstall changed NATS_PASSWORD from %q to %q", pw, got)
	}
	if got := h.sh("grep -c '^SMS_API_URL=http://127.0.0.1:8090' /etc/smsgw/smsgw.env"); got != "1" {
		t.Error("reinstall lost the operator's edits to smsgw.env")
	}
	if st := h.unitProp("sms-poller", "ActiveState"); st != "active" {
		t.Errorf("sms-poller is %s after the reinstall", st)
	}
	batch("deb after reinstall", 4)

	// Exactly once, all of them.
	var got []modemsim.Message
	h.get("/_devstack/modem/received", &got)
	count := map[string]int{}
	for _, m := range got {
		count[m.Text]++
	}
	var st smsapi.State
	h.get(smsapi.DevPrefix+"state", &st)
	for _, m := range st.SMS {
		if count[m.Message] != 1 {
			t.Errorf("%q delivered %d times, want exactly once", m.Message, count[m.Message])
		}
	}
	if len(st.SMS) != len(ids) {
		t.Errorf("the API holds %d SMS, the test seeded %d", len(st.SMS), len(ids))
	}
	if len(st.Mistakes) > 0 {
		t.Errorf("client mistakes: %v", st.Mistakes)
	}

	// apt remove keeps the queue, the ledger and the configuration ...
	h.sh("apt remove -y smsgw")
	h.sh("! test -e /usr/bin/sms-poller")
	if st := h.unitProp("sms-poller", "ActiveState"); st != "inactive" {
		t.Errorf("sms-poller is %s after apt remove", st)
	}
	h.sh("test -d /var/lib/smsgw/broker/jetstream && test -n \"$(ls -A /var/lib/smsgw/modem)\" && test -f /etc/smsgw/smsgw.env")
	// ... apt purge deletes them.
	h.sh("apt purge -y smsgw")
	h.sh("! test -e /var/lib/smsgw && ! test -e /etc/smsgw && ! test -e /var/log/smsgw")
}

func dockerOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
