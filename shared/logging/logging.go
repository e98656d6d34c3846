// Package logging builds the zap loggers both services use and the field
// helpers that keep personal data out of info-level logs.
package logging

import (
	"fmt"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a logger writing to stderr. format is "json" (the default,
// for journald and Docker) or "console" for humans.
func New(level, format string) (*zap.Logger, error) {
	cfg, err := newConfig(level, format)
	if err != nil {
		return nil, err
	}
	return cfg.Build()
}

// newConfig is the zap configuration for LOG_LEVEL and LOG_FORMAT, shared by
// the stderr logger (New) and the file logger (Open).
func newConfig(level, format string) (zap.Config, error) {
	lvl, err := zapcore.ParseLevel(strings.ToLower(strings.TrimSpace(level)))
	if err != nil {
		return zap.Config{}, fmt.Errorf("LOG_LEVEL: %w", err)
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
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
	default:
		return zap.Config{}, fmt.Errorf("LOG_FORMAT %q: want json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.DisableStacktrace = lvl > zapcore.DebugLevel
	return cfg, nil
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
