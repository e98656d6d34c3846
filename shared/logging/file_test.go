package logging

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestPathForKeepsServicesApart(t *testing.T) {
	for _, c := range []struct {
		f    File
		want string
	}{
		{File{Path: "/var/log/smsgw/smsgw.log"}, "/var/log/smsgw/smsgw.sms-modem.log"},
		{File{Path: "sms_gateway.log", LogsDir: "/var/log/smsgw"}, "/var/log/smsgw/sms_gateway.sms-modem.log"},
		{File{Path: "gw.log", LogsDir: "/var/log/a:/var/log/b"}, "/var/log/a/gw.sms-modem.log"},
		{File{Path: "/abs/gw", LogsDir: "/var/log/smsgw"}, "/abs/gw.sms-modem"},
		{File{Path: "rel.log"}, "rel.sms-modem.log"},
	} {
		if got := c.f.PathFor("sms-modem"); got != c.want {
			t.Errorf("%+v: %q, want %q", c.f, got, c.want)
		}
	}
}

func TestOpenWithoutFileLogsToStderr(t *testing.T) {
	for _, p := range []string{"", "-"} {
		log, closeLog, err := Open("info", "json", File{Path: p, MaxSize: 0, Backups: 0}, "svc")
		if err != nil || log == nil {
			t.Fatalf("%q: %v", p, err)
		}
		closeLog()
	}
}

func TestOpenRejectsUnusableFileSettings(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "plain")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		f    File
		want string
	}{
		"tiny":       {File{Path: filepath.Join(dir, "a.log"), MaxSize: 1000, Backups: 5}, "LOG_FILE_MAX_SIZE"},
		"no backups": {File{Path: filepath.Join(dir, "a.log"), MaxSize: 1 << 20, Backups: 0}, "LOG_FILE_BACKUPS"},
		"bad path":   {File{Path: filepath.Join(notDir, "a.log"), MaxSize: 1 << 20, Backups: 1}, "LOG_FILE " + notDir},
	} {
		_, _, err := Open("info", "json", c.f, "svc")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", name, err, c.want)
		}
	}
	if _, _, err := Open("info", "xml", File{Path: filepath.Join(dir, "a.log"), MaxSize: 1 << 20, Backups: 1}, "svc"); err == nil {
		t.Error("LOG_FORMAT=xml accepted with a log file")
	}
}

func TestOpenRotatesBySizeAndKeepsBackups(t *testing.T) {
	dir := t.TempDir()
	f := File{Path: "gw.log", LogsDir: dir, MaxSize: 1 << 20, Backups: 2}
	log, closeLog, err := Open("info", "json", f, "sms-poller")
	if err != nil {
		t.Fatal(err)
	}
	// The sampler passes 100 entries with one message per second, so each
	// message differs. ~4.5 MiB in 1 MiB files: at least four rotations.
	pad := strings.Repeat("x", 900)
	for i := 0; i < 5000; i++ {
		log.Info(fmt.Sprintf("line %d", i), zap.Int("i", i), zap.String("pad", pad))
	}
	log.Debug("below LOG_LEVEL")
	closeLog()

	cur := filepath.Join(dir, "gw.sms-poller.log")
	fh, err := os.Open(cur)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 1<<20)
	last := -1
	for sc.Scan() {
		var e struct {
			Level, Msg string
			I          int
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("not one JSON entry per line: %q: %v", sc.Text(), err)
		}
		if e.Msg != fmt.Sprintf("line %d", e.I) || e.Level != "info" {
			t.Fatalf("unexpected entry %+v", e)
		}
		last = e.I
	}
	if last != 4999 {
		t.Fatalf("last entry in the current file is %d, want 4999", last)
	}
	if st, _ := fh.Stat(); st.Size() > 1<<20 {
		t.Fatalf("current file is %d bytes, over LOG_FILE_MAX_SIZE", st.Size())
	}
	// lumberjack deletes surplus backups in its own goroutine: wait for
	// the directory to settle at the current file plus two backups.
	deadline := time.Now().Add(10 * time.Second)
	for {
		names, _ := filepath.Glob(filepath.Join(dir, "gw.sms-poller*.log"))
		if len(names) == 3 {
			break
		}
		if time.Now().After(deadline) {
			ents, _ := os.ReadDir(dir)
			t.Fatalf("want the file and 2 backups, have %v (%v)", names, ents)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
