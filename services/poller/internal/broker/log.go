package broker

import (
	"fmt"

	"go.uber.org/zap"
)

// serverLogger adapts zap to nats-server's Logger interface. The stock
// logger exits the process on Fatalf; here a fatal condition (a listener or
// JetStream that failed to start) is logged and reported to the broker, so
// the poller can shut down through its own cleanup path instead.
type serverLogger struct {
	l       *zap.SugaredLogger
	onFatal func(msg string)
}

func (s serverLogger) Noticef(format string, v ...any) { s.l.Infof(format, v...) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warnf(format, v...) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Errorf(format, v...) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debugf(format, v...) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Debugf(format, v...) }

func (s serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	s.l.Error(msg)
	s.onFatal(msg)
}
