// Package sdnotify speaks systemd's notify protocol for units with
// Type=notify and WatchdogSec= (deploy/deb): READY=1 once a service serves,
// WATCHDOG=1 only while it is live, so systemd restarts a hung process.
// Outside systemd (no NOTIFY_SOCKET, e.g. in a container) every call is a
// no-op. The protocol itself is github.com/coreos/go-systemd/v22/daemon.
package sdnotify

import (
	"context"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
)

// Ready tells systemd that start-up has finished. It reports whether a
// notification was sent.
func Ready() (bool, error) { return daemon.SdNotify(false, daemon.SdNotifyReady) }

// Stopping tells systemd that the service is shutting down.
func Stopping() (bool, error) { return daemon.SdNotify(false, daemon.SdNotifyStopping) }

// Watchdog feeds systemd's watchdog until ctx ends. Every half of the
// interval systemd asked for (WATCHDOG_USEC) it calls live and sends
// WATCHDOG=1 only when live returns nil, so a process that is stuck, or
// that reports itself not live, is killed and restarted after WatchdogSec.
// Without a watchdog it returns at once.
func Watchdog(ctx context.Context, live func() error, log *zap.Logger) {
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog settings unusable; not feeding it", zap.Error(err))
		return
	}
	if every <= 0 {
		return
	}
	every /= 2
	log.Info("feeding the systemd watchdog", zap.Duration("every", every))
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		if err := live(); err != nil {
			if !failing {
				log.Error("not live: no longer feeding the systemd watchdog, which will restart this service", zap.Error(err))
			}
			failing = true
		} else {
			if failing {
				log.Info("live again: feeding the systemd watchdog")
			}
			failing = false
			if _, err := daemon.SdNotify(false, daemon.SdNotifyWatchdog); err != nil {
				log.Warn("systemd watchdog notification failed", zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
