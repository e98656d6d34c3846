// Package testlog gives the modem's tests a logger that keeps a test's
// logs and prints them only if it fails. Goroutines that outlive a test
// must not call t.Log, so the logs go to a buffer instead.
package testlog

import (
	"bytes"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

type buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *buffer) Sync() error { return nil }

// New returns a console logger at level whose output t prints on failure.
func New(t *testing.T, level zapcore.Level) *zap.Logger {
	t.Helper()
	b := &buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			b.mu.Lock()
			t.Logf("logs:\n%s", b.buf.String())
			b.mu.Unlock()
		}
	})
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), b, level))
}
