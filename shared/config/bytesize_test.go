package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestByteSizeAcceptsBytesAndBinarySuffixes(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"10485760": 10 << 20, "10M": 10 << 20, "10MiB": 10 << 20, "10mb": 10 << 20,
		" 512K ": 512 << 10, "1G": 1 << 30, "0": 0, "7B": 7,
	} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err != nil || b != want {
			t.Errorf("%q: %d, %v; want %d", in, b, err, want)
		}
	}
	for _, bad := range []string{"", "M", "-1", "10X", "1.5M", "10 MB extra", "99999999999G", "0x10", "1e6"} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q accepted as %d", bad, b)
		}
	}
}

func FuzzByteSize(f *testing.F) {
	for _, s := range []string{"10485760", "10M", "1GiB", "", "-5", "9223372036854775807", "8388608T", "1\x00M"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b ByteSize
		if err := b.UnmarshalText([]byte(s)); err != nil {
			if !strings.Contains(err.Error(), "invalid size") {
				t.Fatalf("%q: unhelpful error %v", s, err)
			}
			return
		}
		if b < 0 {
			t.Fatalf("%q parsed to negative %d", s, b)
		}
	})
}

type logSample struct {
	File    string   `env:"LOG_FILE"`
	Size    ByteSize `env:"LOG_FILE_MAX_SIZE" envDefault:"10M"`
	Backups int      `env:"LOG_FILE_BACKUPS" envDefault:"5"`
}

func TestLegacyLogFileKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.ini")
	ini := "[LOGGING]\nLogFile = /var/log/sms-gateway/sms_gateway.log\nMaxLogFileSize = 2097152\nLogBackupCount = 3\n"
	if err := os.WriteFile(path, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadFrom[logSample](map[string]string{"CONFIG_FILE": path})
	if err != nil {
		t.Fatal(err)
	}
	if c.File != "/var/log/sms-gateway/sms_gateway.log" || c.Size != 2<<20 || c.Backups != 3 {
		t.Fatalf("legacy logging keys not applied: %+v", c)
	}
	// The container images set LOG_FILE=- (stderr): a real variable wins.
	c, err = LoadFrom[logSample](map[string]string{"CONFIG_FILE": path, "LOG_FILE": "-"})
	if err != nil || c.File != "-" {
		t.Fatalf("LOG_FILE from the environment must win: %+v %v", c, err)
	}
	if err := os.WriteFile(path, []byte("[LOGGING]\nMaxLogFileSize = ten megabytes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Naming the variable in every parse error is shared/config's job
	// (issue 11); here the value must at least be refused and quoted.
	if _, err := LoadFrom[logSample](map[string]string{"CONFIG_FILE": path}); err == nil || !strings.Contains(err.Error(), `"ten megabytes"`) {
		t.Fatalf("a bad MaxLogFileSize must be refused: %v", err)
	}
}
