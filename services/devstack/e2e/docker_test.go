//go:build e2edocker

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// compose runs the demo profile of the real docker-compose.yml under its
// own project name and loopback ports, so it never touches a real install.
type compose struct {
	t    *testing.T
	root string
	env  []string
	api  string
}

func newCompose(t *testing.T) *compose {
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	c := &compose{t: t, root: root, api: "http://127.0.0.1:18090", env: []string{
		"COMPOSE_PROJECT_NAME=smsgw-e2e", "POLLER_HTTP_PORT=18080", "MODEM_HTTP_PORT=18081", "DEVSTACK_HTTP_PORT=18090",
		"POLL_INTERVAL=500ms", "LOG_FORMAT=json",
	}}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("docker is required for the container end-to-end test")
	}
	return c
}

func (c *compose) cmd(args ...string) *exec.Cmd {
	bin, pre := "docker", []string{"compose"}
	if exec.Command("docker", "compose", "version").Run() != nil {
		bin, pre = "docker-compose", nil
	}
	full := append(append(pre, "--env-file", "deploy/demo.env", "--profile", "demo"), args...)
	cmd := exec.Command(bin, full...)
	cmd.Dir = c.root
	cmd.Env = append(os.Environ(), c.env...)
	return cmd
}

func (c *compose) run(args ...string) string {
	c.t.Helper()
	out, err := c.cmd(args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (c *compose) container(svc string) string {
	c.t.Helper()
	id := strings.TrimSpace(c.run("ps", "-q", svc))
	if id == "" {
		c.t.Fatalf("no container for %s", svc)
	}
	return id
}

func (c *compose) state() smsapi.State {
	c.t.Helper()
	var st smsapi.State
	resp, err := http.Get(c.api + smsapi.DevPrefix + "state")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		c.t.Fatal(err)
	}
	return st
}

func (c *compose) received() []modemsim.Message {
	c.t.Helper()
	var ms []modemsim.Message
	resp, err := http.Get(c.api + "/_devstack/modem/received")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&ms); err != nil {
		c.t.Fatal(err)
	}
	return ms
}

func (c *compose) seed(text string) string {
	c.t.Helper()
	body, _ := json.Marshal(smsapi.SMS{Tenant: "demo", PhoneNumber: "+40722000111", Message: text, Timestamp: time.Now()})
	resp, err := http.Post(c.api+smsapi.DevPrefix+"sms", "application/json", bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Id string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Id == "" {
		c.t.Fatalf("seed: %v %q", err, out.Id)
	}
	return out.Id
}

// waitSent polls the stand-in (another process, in a container: there is
// no event to wait on) until at least n of ids are Sent.
func (c *compose) waitSent(ids []string, n int, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		sent := 0
		final := map[string]schema.Status{}
		for _, m := range c.state().SMS {
			final[m.ID] = m.Status
		}
		for _, id := range ids {
			if final[id] == schema.StatusSent {
				sent++
			}
		}
		if sent >= n {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("only %d of %d SMS Sent after %s\n%s", sent, n, d, c.cmdOutput("logs", "--tail", "30", "poller", "modem"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (c *compose) cmdOutput(args ...string) string {
	out, _ := c.cmd(args...).CombinedOutput()
	return string(out)
}

func waitHealthy(t *testing.T, addr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s (%v)", addr, d, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func TestComposeDemoSurvivesRestartsAndKills(t *testing.T) {
	c := newCompose(t)
	c.cmd("down", "-v", "--remove-orphans").Run()
	c.run("up", "-d", "--no-build")
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.cmdOutput("logs", "--tail", "60"))
		}
		c.cmd("down", "-v", "--remove-orphans").Run()
	})
	waitHealthy(t, "127.0.0.1:18081", 2*time.Minute)

	var ids []string
	for i := 0; i < 30; i++ {
		ids = append(ids, c.seed(fmt.Sprintf("container run SMS %02d", i)))
	}
	c.waitSent(ids, 5, 2*time.Minute)
	c.run("restart", "modem")
	c.waitSent(ids, 12, 2*time.Minute)
	c.run("restart", "poller")
	c.waitSent(ids, 18, 2*time.Minute)
	// A crash. The poller, not the modem: a modem killed mid-send rightly
	// reports that SMS Unknown (see the crash e2e test), which this test
	// would count as not Sent.
	docker(t, "kill", "-s", "KILL", c.container("poller"))
	c.run("up", "-d", "--no-build", "poller") // as the restart policy would
	c.waitSent(ids, 30, 3*time.Minute)

	got := map[string]int{}
	for _, m := range c.received() {
		got[m.Text]++
	}
	for i := 0; i < 30; i++ {
		if n := got[fmt.Sprintf("container run SMS %02d", i)]; n != 1 {
			t.Errorf("SMS %02d delivered %d times, want exactly once", i, n)
		}
	}
	for _, m := range c.state().SMS {
		if m.Status != schema.StatusSent {
			t.Errorf("%s is %v", m.ID, m.Status)
		}
	}
	if ms := c.state().Mistakes; len(ms) > 0 {
		t.Errorf("client mistakes: %v", ms)
	}

	// The broker is for the modem container only: not published.
	poller := c.container("poller")
	if ports := docker(t, "port", poller); strings.Contains(ports, "4222") {
		t.Errorf("broker port published: %s", ports)
	}
	if conn, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second); err == nil {
		conn.Close()
		t.Error("the broker answers on the host's 127.0.0.1:4222")
	}
	for _, svc := range []string{"poller", "modem"} {
		checkHardened(t, svc, c.container(svc))
	}
}

// checkHardened asserts least privilege on a running container, both as
// configured (docker inspect) and as the kernel applies it to its process
// (/proc/PID/status).
func checkHardened(t *testing.T, svc, id string) {
	t.Helper()
	var info []struct {
		Config struct {
			User string
			Env  []string
		}
		HostConfig struct {
			Privileged      bool
			CapAdd, CapDrop []string
			SecurityOpt     []string
			ReadonlyRootfs  bool
			GroupAdd        []string
		}
		State struct{ Pid int }
	}
	if err := json.Unmarshal([]byte(docker(t, "inspect", id)), &info); err != nil || len(info) != 1 {
		t.Fatalf("inspect %s: %v", svc, err)
	}
	in := info[0]
	if in.HostConfig.Privileged {
		t.Errorf("%s is privileged", svc)
	}
	if len(in.HostConfig.CapAdd) > 0 || !slices.Contains(in.HostConfig.CapDrop, "ALL") {
		t.Errorf("%s capabilities: add %v, drop %v; want none added and ALL dropped", svc, in.HostConfig.CapAdd, in.HostConfig.CapDrop)
	}
	if !slices.ContainsFunc(in.HostConfig.SecurityOpt, func(o string) bool {
		return strings.HasPrefix(o, "no-new-privileges") && !strings.HasSuffix(o, "false")
	}) {
		t.Errorf("%s security options %v, want no-new-privileges", svc, in.HostConfig.SecurityOpt)
	}
	if !in.HostConfig.ReadonlyRootfs {
		t.Errorf("%s root file system is writable", svc)
	}
	if u := in.Config.User; u == "" || u == "0" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root") {
		t.Errorf("%s user %q, want a non-root user", svc, u)
	}
	for _, e := range in.Config.Env {
		name, _, _ := strings.Cut(e, "=")
		if name == "NATS_PASSWORD" {
			t.Errorf("%s has the broker password in its environment; it is a secret file", svc)
		}
		if svc == "modem" && strings.HasPrefix(name, "KEYCLOAK_") {
			t.Errorf("the modem sees %s", name)
		}
	}
	if svc == "modem" && !slices.Contains(in.HostConfig.GroupAdd, "20") {
		t.Errorf("modem groups %v, want the dialout group 20", in.HostConfig.GroupAdd)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", in.State.Pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	if uid := strings.Fields(fields["Uid"]); len(uid) == 0 || uid[0] == "0" || uid[1] == "0" {
		t.Errorf("%s process runs as root: Uid %s", svc, fields["Uid"])
	}
	for _, c := range []string{"CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if fields[c] != "0000000000000000" {
			t.Errorf("%s process %s = %s, want no capabilities", svc, c, fields[c])
		}
	}
	if fields["NoNewPrivs"] != "1" {
		t.Errorf("%s process NoNewPrivs = %q, want 1", svc, fields["NoNewPrivs"])
	}
}
