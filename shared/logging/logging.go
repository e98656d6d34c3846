// Package logging builds the zap loggers both services use and the field
// helpers that keep personal data out of info-level logs.
package logging

import (
	"fmt"
	"os"
	"strings"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/config"
	"go.uber.org/zap/zapcore"
)

// New returns a logger writing to stderr. format is "json" (the default,
// for journald and Docker) or "console" for humans.
func New(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(strings.ToLower(strings.TrimSpace(level)))
	if err != nil {
		return nil, &config.Error{Var: "LOG_LEVEL", Value: level, Set: true, Want: "debug, info, warn or error"}
	}
	var cfg zap.Config
	switch strings.ToLower(format) {
	case "", "json":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "ts"
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.Development = false
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
		if Colour(os.Stderr) {
			cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		}
	default:
		return nil, &config.Error{Var: "LOG_FORMAT", Value: format, Set: true, Want: "json or console"}
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.DisableStacktrace = lvl > zapcore.DebugLevel
	return cfg.Build()
}

// Colour reports whether f is a terminal that should get colour: a
// character device, and NO_COLOR (no-color.org) unset. Pipes, files and
// journald get plain text.
func Colour(f *os.File) bool {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Sync flushes the logger, ignoring the EINVAL that syncing a terminal or
// pipe returns on Linux (uber-go/zap#328).
func Sync(l *zap.Logger) { _ = l.Sync() }

// MaskPhone keeps a number recognisable for operators without exposing it:
// the leading "+" and country code hint plus the last three digits remain.
func MaskPhone(s string) string {
	r := []rune(s)
	if len(r) <= 5 {
		return strings.Repeat("*", len(r))
	}
	head := 3
	if r[0] == '+' {
		head = 4
	}
	if head > len(r)-3 {
		head = len(r) - 3
	}
	return string(r[:head]) + strings.Repeat("*", len(r)-head-3) + string(r[len(r)-3:])
}

// Phone logs a phone number masked.
func Phone(n string) zap.Field { return zap.String("phone", MaskPhone(n)) }

// Secret marks a value that must never be logged; it renders as its length.
func Secret(key, v string) zap.Field {
	return zap.String(key, fmt.Sprintf("<redacted %d bytes>", len(v)))
}
