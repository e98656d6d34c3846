package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
)

func msd(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, n := range v {
		out[i] = time.Duration(n) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * time.Millisecond // reversed: must be sorted first
	}
	for _, tc := range []struct {
		name string
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{"single", msd(7), 50, 7 * time.Millisecond},
		{"median odd", msd(5, 1, 3), 50, 3 * time.Millisecond},
		{"median even takes the lower", msd(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"max", msd(4, 9, 3), 100, 9 * time.Millisecond},
		{"p99 of 100", hundred, 99, 99 * time.Millisecond},
		{"p1 of 100", hundred, 1, 1 * time.Millisecond},
		{"tiny p is the minimum", msd(8, 6), 0.001, 6 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]time.Duration(nil), tc.ds...)
			got, err := Percentile(tc.ds, tc.p)
			if err != nil || got != tc.want {
				t.Fatalf("Percentile(%v, %v) = %v, %v; want %v", tc.ds, tc.p, got, err, tc.want)
			}
			for i := range in {
				if in[i] != tc.ds[i] {
					t.Fatalf("Percentile reordered its input: %v", tc.ds)
				}
			}
		})
	}
	for _, p := range []float64{0, -1, 101} {
		if _, err := Percentile(msd(1), p); !errors.Is(err, ErrNoData) {
			t.Errorf("Percentile(p=%v) err = %v, want ErrNoData", p, err)
		}
	}
	if _, err := Percentile(nil, 50); !errors.Is(err, ErrNoData) {
		t.Errorf("Percentile(nil) err = %v, want ErrNoData", err)
	}
}

func TestMean(t *testing.T) {
	got, err := Mean(msd(1, 2, 6))
	if err != nil || got != 3*time.Millisecond {
		t.Fatalf("Mean = %v, %v; want 3ms", got, err)
	}
	if _, err := Mean(nil); !errors.Is(err, ErrNoData) {
		t.Fatalf("Mean(nil) err = %v, want ErrNoData", err)
	}
}

func TestThroughputAndUtilisation(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	got, err := Throughput(1000, t0, t0.Add(8*time.Second))
	if err != nil || got != 125 {
		t.Fatalf("Throughput = %v, %v; want 125", got, err)
	}
	u, err := Utilisation(59*time.Second, t0, t0.Add(60*time.Second))
	if err != nil || math.Abs(u-59.0/60) > 1e-12 {
		t.Fatalf("Utilisation = %v, %v; want %v", u, err, 59.0/60)
	}
	for _, f := range []func() error{
		func() error { _, err := Throughput(10, t0, t0); return err },
		func() error { _, err := Throughput(0, t0, t0.Add(time.Second)); return err },
		func() error { _, err := Throughput(10, t0.Add(time.Second), t0); return err },
		func() error { _, err := Utilisation(time.Second, t0, t0); return err },
	} {
		if err := f(); !errors.Is(err, ErrNoData) {
			t.Errorf("degenerate window: err = %v, want ErrNoData", err)
		}
	}
}

func TestLifecycleOf(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	tr := func(s int, from, to schema.Status) smsapi.Transition {
		return smsapi.Transition{At: at(s), From: from, To: to}
	}
	seed := tr(0, schema.StatusPending, schema.StatusPending)
	claim := func(s int) smsapi.Transition { return tr(s, schema.StatusPending, schema.StatusEntrusted) }
	sent := func(s int) smsapi.Transition { return tr(s, schema.StatusEntrusted, schema.StatusSent) }

	// A claim that timed out and was handed out again counts from the
	// first claim: the SMS was in the gateway's hands since then.
	retried := []smsapi.Transition{seed, claim(1), tr(3, schema.StatusEntrusted, schema.StatusPending), claim(4), sent(5)}
	l, ok := LifecycleOf(retried)
	if !ok || !l.Claimed.Equal(at(1)) || !l.Sent.Equal(at(5)) {
		t.Fatalf("LifecycleOf(retried) = %+v, %v; want claimed +1s, sent +5s", l, ok)
	}
	for name, h := range map[string][]smsapi.Transition{
		"never claimed": {seed},
		"never sent":    {seed, claim(1)},
		"failed":        {seed, claim(1), tr(2, schema.StatusEntrusted, schema.StatusFailed)},
	} {
		if _, ok := LifecycleOf(h); ok {
			t.Errorf("LifecycleOf(%s) ok, want not ok", name)
		}
	}
}

func TestSpan(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	first, last, each, err := Span([]Lifecycle{
		{Claimed: at(10), Sent: at(30)},
		{Claimed: at(0), Sent: at(15)}, // the earliest claim need not be first
		{Claimed: at(20), Sent: at(90)},
	})
	if err != nil || !first.Equal(at(0)) || !last.Equal(at(90)) {
		t.Fatalf("Span = %v, %v, %v; want +0ms, +90ms", first, last, err)
	}
	want := msd(20, 15, 70)
	for i := range want {
		if each[i] != want[i] {
			t.Fatalf("Span each = %v, want %v", each, want)
		}
	}
	if _, _, _, err := Span(nil); !errors.Is(err, ErrNoData) {
		t.Fatalf("Span(nil) err = %v, want ErrNoData", err)
	}
}

func TestTargetMet(t *testing.T) {
	for _, tc := range []struct {
		t    Target
		v    float64
		want bool
	}{
		{Target{">=", 50}, 50, true},
		{Target{">=", 50}, 49.9, false},
		{Target{"<", 20}, 19.9, true},
		{Target{"<", 20}, 20, false},
		{Target{"<=", 10100}, 10100, true},
		{Target{"<=", 10100}, 10100.1, false},
		{Target{"==", 1}, 1, false},
	} {
		if got := tc.t.Met(tc.v); got != tc.want {
			t.Errorf("%+v.Met(%v) = %v, want %v", tc.t, tc.v, got, tc.want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0, "0"},
		{1234.5, "1234"},
		{100, "100"},
		{81.94, "81.9"},
		{9.876, "9.88"},
		{1, "1.00"},
		{0.991, "0.991"},
		{0.3104, "0.310"},
		{0.0123, "0.0123"},
		{0.0000001, "0.000000"},
		{-2.5, "-2.50"},
	} {
		if got := FormatValue(tc.v); got != tc.want {
			t.Errorf("FormatValue(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func sampleReport() *Report {
	r := &Report{
		Mode: "quick", StartedAt: time.Date(2026, 11, 25, 22, 58, 1, 0, time.UTC), Seconds: 76.4,
		Host: Host{OS: "linux", Arch: "arm64", CPUs: 4, GoVersion: "go1.26.8"},
	}
	r.add("1 Overhead", "throughput", 81.94, "SMS/s", &Target{">=", 50})
	r.add("2 Utilisation", "busy", 97.5, "%", &Target{">=", 98})
	r.add("4 Footprint", "idle CPU", 0.31, "s", &Target{"<", 0.2})
	r.add("5 vs gammu-smsd", "ratio", 87.2, "×", nil)
	r.note("POLL_INTERVAL=%s", 10*time.Second)
	return r
}

func TestReportResults(t *testing.T) {
	r := sampleReport()
	var got []string
	for _, f := range r.Figures {
		got = append(got, f.Result)
	}
	if want := []string{Pass, Miss, Miss, ""}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("results = %q, want %q", got, want)
	}
	var names []string
	for _, f := range r.Misses() {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "busy,idle CPU" {
		t.Fatalf("Misses = %q, want busy and idle CPU", names)
	}
}

func TestRender(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().Render(&b); err != nil {
		t.Fatal(err)
	}
	want := `Section          Measure     Value       Target      Result
1 Overhead       throughput  81.9 SMS/s  ≥ 50 SMS/s  PASS
2 Utilisation    busy        97.5%       ≥ 98%       MISS
4 Footprint      idle CPU    0.310 s     < 0.2 s     MISS
5 vs gammu-smsd  ratio       87.2×       -           -

Notes
  - POLL_INTERVAL=10s

quick mode, 76 s, linux/arm64, 4 CPUs, go1.26.8
`
	if b.String() != want {
		t.Fatalf("Render:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "results")
	r := sampleReport()
	latest, err := r.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	if latest != filepath.Join(dir, "latest.json") {
		t.Fatalf("Write returned %s", latest)
	}
	a, err := os.ReadFile(latest)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "20261125-225801.json"))
	if err != nil {
		t.Fatalf("timestamped copy: %v", err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("latest.json and the timestamped copy differ")
	}
	if !bytes.Contains(a, []byte(`"op": ">="`)) {
		t.Fatalf("targets are escaped or missing in:\n%s", a)
	}
	var back Report
	if err := json.Unmarshal(a, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Figures) != 4 || back.Figures[1].Result != Miss || back.Figures[1].Target.Value != 98 || back.Figures[3].Target != nil {
		t.Fatalf("round trip lost figures: %+v", back.Figures)
	}
	if !back.StartedAt.Equal(r.StartedAt) || back.Notes[0] != "POLL_INTERVAL=10s" {
		t.Fatalf("round trip lost fields: %+v", back)
	}
}

const statusText = `Name:	sms-modem
Umask:	0022
State:	S (sleeping)
VmPeak:	 1939704 kB
VmHWM:	   20220 kB
VmRSS:	   19240 kB
RssAnon:	    7088 kB
RssFile:	   12152 kB
Threads:	10
`

func TestParseStatus(t *testing.T) {
	m, err := ParseStatus([]byte(statusText))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Mem{RSS: 19240 << 10, Peak: 20220 << 10, Anon: 7088 << 10}); m != want {
		t.Fatalf("ParseStatus = %+v, want %+v", m, want)
	}
	for name, text := range map[string]string{
		"kernel thread, no Vm lines": "Name:\tkthreadd\nState:\tS (sleeping)\n",
		"bad number":                 strings.Replace(statusText, "19240", "19x40", 1),
		"other unit":                 strings.Replace(statusText, "19240 kB", "19240 MB", 1),
		"repeated key":               statusText + "VmRSS:\t1 kB\n",
	} {
		if _, err := ParseStatus([]byte(text)); !errors.Is(err, ErrProcFormat) {
			t.Errorf("%s: err = %v, want ErrProcFormat", name, err)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// Fields 14 and 15 (utime 250, stime 120 ticks); the command name holds
	// a space and a parenthesis to throw off naive splitting.
	stat := "4242 (sms (x) poller) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 120 0 0 20 0 10 0 123456 1946600000 7377 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	got, err := ParseStatCPU([]byte(stat))
	if err != nil || got != 3700*time.Millisecond {
		t.Fatalf("ParseStatCPU = %v, %v; want 3.7s", got, err)
	}
	for name, text := range map[string]string{
		"no command":  "4242 sms S 1",
		"short":       "4242 (sms) S 1 2 3",
		"bad utime":   strings.Replace(stat, " 250 ", " x ", 1),
		"negative":    strings.Replace(stat, " 120 ", " -1 ", 1),
		"empty input": "",
	} {
		if _, err := ParseStatCPU([]byte(text)); !errors.Is(err, ErrProcFormat) {
			t.Errorf("%s: err = %v, want ErrProcFormat", name, err)
		}
	}
}

func TestParseIOWrites(t *testing.T) {
	io := "rchar: 123\nwchar: 456\nsyscr: 7\nsyscw: 8\nread_bytes: 4096\nwrite_bytes: 53248\ncancelled_write_bytes: 0\n"
	if n, err := ParseIOWrites([]byte(io)); err != nil || n != 53248 {
		t.Fatalf("ParseIOWrites = %d, %v", n, err)
	}
	for name, text := range map[string]string{
		"missing":  "rchar: 1\n",
		"bad":      "write_bytes: lots\n",
		"negative": "write_bytes: -5\n",
		"empty":    "",
	} {
		if _, err := ParseIOWrites([]byte(text)); !errors.Is(err, ErrProcFormat) {
			t.Errorf("%s: err = %v, want ErrProcFormat", name, err)
		}
	}
}

// The parsers must read the real files of this kernel, not only fixtures.
func TestProcSelf(t *testing.T) {
	m, err := MemOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WritesOf(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.Peak < m.RSS || m.Anon <= 0 || m.Anon > m.RSS {
		t.Fatalf("MemOf(self) = %+v: want 0 < Anon ≤ RSS ≤ Peak", m)
	}
	if _, err := CPUOf(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := MemOf(0); err == nil {
		t.Fatal("MemOf(0) succeeded")
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(statusText))
	f.Add([]byte("VmRSS: 1 kB\nVmHWM: 2 kB\nRssAnon: 1 kB\n"))
	f.Add([]byte("VmRSS:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseStatus(b)
		if err == nil && (m.RSS < 0 || m.Peak < 0 || m.Anon < 0) {
			t.Fatalf("negative memory %+v from %q", m, b)
		}
	})
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("1 (a) S 1 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1"))
	f.Add([]byte("1 (a b) c) S"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseStatCPU(b)
		if err == nil && d < 0 {
			t.Fatalf("negative CPU time %v from %q", d, b)
		}
	})
}

func TestSMSDRC(t *testing.T) {
	rc := smsdrc("/w/g", "/w/g/ttyGAMMU")
	for _, want := range []string{
		"[gammu]\ndevice = /w/g/ttyGAMMU\nconnection = at\n",
		"[smsd]\nservice = files\n",
		"OutboxPath = /w/g/outbox/\n", "SentSMSPath = /w/g/sent/\n", "ErrorSMSPath = /w/g/error/\n", "InboxPath = /w/g/inbox/\n",
	} {
		if !strings.Contains(rc, want) {
			t.Errorf("smsdrc lacks %q:\n%s", want, rc)
		}
	}
	for _, s := range gammuSettings {
		if !strings.Contains(rc, "\n"+s.key+" = "+s.value+"\n") {
			t.Errorf("smsdrc lacks %s = %s:\n%s", s.key, s.value, rc)
		}
	}
}
