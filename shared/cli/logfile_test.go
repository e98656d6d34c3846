package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/logging"
)

type fileCfg struct {
	Level string `env:"LOG_LEVEL" envDefault:"info"`
	logging.File
}

func (c fileCfg) Logging() (string, string) { return c.Level, "json" }

func TestRunLogsToLOG_FILE(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CONFIG_FILE", "")
	t.Setenv("LOG_FILE", "gw.log")
	t.Setenv("LOGS_DIRECTORY", dir)
	code := Run("sms-test", func(_ context.Context, c fileCfg, log *zap.Logger) error {
		if c.MaxSize != 10<<20 || c.Backups != 5 {
			t.Errorf("defaults: %+v", c.File)
		}
		log.Info("hello file")
		return nil
	})
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	b, err := os.ReadFile(filepath.Join(dir, "gw.sms-test.log"))
	if err != nil || !strings.Contains(string(b), `"msg":"hello file"`) {
		t.Fatalf("log file: %q %v", b, err)
	}

	t.Setenv("LOG_FILE_BACKUPS", "0")
	if code := Run("sms-test", func(context.Context, fileCfg, *zap.Logger) error { return nil }); code != 2 {
		t.Fatalf("LOG_FILE_BACKUPS=0 gave exit %d, want 2 (configuration)", code)
	}
}
