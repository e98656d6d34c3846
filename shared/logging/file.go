package logging

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/sensorsreport/smsgw/shared/config"
)

// File is the optional log file with size-based rotation. Both services
// embed it in their configuration; the legacy config.ini keys LogFile,
// MaxLogFileSize and LogBackupCount feed the same variables.
type File struct {
	// Path is LOG_FILE. Empty or "-" logs to stderr (the journal under
	// systemd, the container log under Docker).
	Path    string          `env:"LOG_FILE" help:"log to this file (the service name is inserted) instead of stderr"`
	MaxSize config.ByteSize `env:"LOG_FILE_MAX_SIZE" envDefault:"10M" help:"rotate the log file at this size"`
	Backups int             `env:"LOG_FILE_BACKUPS" envDefault:"5" help:"rotated log files kept"`
	// LogsDir is set by systemd for units with LogsDirectory=; a relative
	// LOG_FILE is resolved there (else in the working directory).
	LogsDir string `env:"LOGS_DIRECTORY" help:"set by systemd (LogsDirectory=): where a relative LOG_FILE goes"`
}

// LogFile returns f. Through embedding it tells cli.Run that a
// configuration has log file settings.
func (f File) LogFile() File { return f }

// Enabled reports whether logs go to a file rather than stderr.
func (f File) Enabled() bool { return f.Path != "" && f.Path != "-" }

// PathFor is the file service writes: the service name goes before the
// extension, because both services read the same LOG_FILE and two
// processes must never rotate one file ("smsgw.log" becomes
// "smsgw.sms-poller.log" and "smsgw.sms-modem.log").
func (f File) PathFor(service string) string {
	p := f.Path
	if !filepath.IsAbs(p) && f.LogsDir != "" {
		dir, _, _ := strings.Cut(f.LogsDir, ":")
		p = filepath.Join(dir, p)
	}
	ext := filepath.Ext(p)
	return strings.TrimSuffix(p, ext) + "." + service + ext
}

// Open returns the logger for service and a function that flushes it and
// closes its file. Without a log file it is New's stderr logger. With one,
// the file is opened (and its directory created) at once, so an unusable
// path is a configuration error at start rather than lost logs, and
// lumberjack rotates it at LOG_FILE_MAX_SIZE, keeping LOG_FILE_BACKUPS
// old files.
func Open(level, format string, f File, service string) (*zap.Logger, func(), error) {
	cfg, err := newConfig(level, format)
	if err != nil {
		return nil, nil, err
	}
	if !f.Enabled() {
		log, err := cfg.Build()
		if err != nil {
			return nil, nil, err
		}
		return log, func() { Sync(log) }, nil
	}
	if f.MaxSize < 1<<20 {
		return nil, nil, fmt.Errorf("LOG_FILE_MAX_SIZE %d: want at least 1M (rotation counts whole MiB)", f.MaxSize)
	}
	if f.Backups < 1 {
		return nil, nil, fmt.Errorf("LOG_FILE_BACKUPS %d: want at least 1", f.Backups)
	}
	lj := &lumberjack.Logger{
		Filename:   f.PathFor(service),
		MaxSize:    int((f.MaxSize + 1<<20 - 1) >> 20),
		MaxBackups: f.Backups,
	}
	if _, err := lj.Write(nil); err != nil {
		return nil, nil, fmt.Errorf("LOG_FILE %s: %w", lj.Filename, err)
	}
	// The file gets no terminal colours.
	if cfg.Encoding == "console" {
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
	}
	enc := zapcore.NewJSONEncoder(cfg.EncoderConfig)
	if cfg.Encoding == "console" {
		enc = zapcore.NewConsoleEncoder(cfg.EncoderConfig)
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(lj), cfg.Level)
	if s := cfg.Sampling; s != nil {
		core = zapcore.NewSamplerWithOptions(core, time.Second, s.Initial, s.Thereafter)
	}
	opts := []zap.Option{zap.AddCaller(), zap.ErrorOutput(zapcore.Lock(os.Stderr))}
	if !cfg.DisableStacktrace {
		opts = append(opts, zap.AddStacktrace(zapcore.ErrorLevel))
	}
	log := zap.New(core, opts...)
	return log, func() { Sync(log); _ = lj.Close() }, nil
}
