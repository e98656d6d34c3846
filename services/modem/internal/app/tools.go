package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/ledger"
	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/health"
)

// Diag initialises the modem once and prints what it is. It returns an
// error saying what is wrong when the modem could not send now.
func Diag(ctx context.Context, cfg Config, log *zap.Logger, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	m := NewModem(cfg, log, health.New(log))
	defer m.Close()
	st, err := m.Probe(ctx)
	PrintStatus(w, st)
	printCanary(w, cfg)
	if err != nil {
		return probeError(cfg, err)
	}
	return m.Ready()
}

// probeError names the setting behind a probe failure where one is to
// blame: a device path that does not exist, or a PIN the SIM refuses.
func probeError(cfg Config, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist) && !strings.HasPrefix(cfg.Device, "tcp://"):
		ce := config.Invalid("MODEM_DEVICE", cfg.Device,
			"an existing serial device: "+cfg.Device+" does not exist (see ls -l /dev/serial/by-id/; is the modem plugged in?)")
		ce.Cause = err
		return ce
	case errors.Is(err, gsm.ErrWrongPIN):
		return &config.Error{Var: "MODEM_PIN", Set: cfg.PIN != "", Secret: true, Want: "the SIM's PIN: the SIM rejected this one", Cause: err}
	case errors.Is(err, gsm.ErrPINRequired) && cfg.PIN == "":
		return &config.Error{Var: "MODEM_PIN", Want: "the SIM's PIN: the SIM asks for one", Cause: err}
	}
	return fmt.Errorf("modem not usable: %w", err)
}

// Ledger lists the send ledger under MODEM_DATA_DIR, newest first: all
// entries, or with unknownOnly those whose outcome nobody knows.
func Ledger(cfg Config, w io.Writer, unknownOnly, asJSON bool) error {
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "ledger")); err != nil {
		return config.Invalid("MODEM_DATA_DIR", cfg.DataDir, "the modem's data directory, which holds ledger/ ("+err.Error()+")")
	}
	led, err := ledger.Open(cfg.DataDir)
	if err != nil {
		return err
	}
	defer led.Close()
	return PrintLedger(w, LedgerRows(led.Entries()), unknownOnly, asJSON)
}

// PrintStatus renders a status as a table for humans.
func PrintStatus(w io.Writer, st gsm.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\n", k, v)
	}
	row("Port", st.Port)
	row("State", string(st.State))
	if st.Reason != "" {
		row("Problem", st.Reason)
	}
	row("Manufacturer", st.Manufacturer)
	row("Model", st.Model)
	row("Revision", st.Revision)
	row("IMEI", st.IMEI)
	row("IMSI", st.IMSI)
	row("ICCID", st.ICCID)
	row("SIM", st.SIM)
	row("Registration", registrationText(st.Registration))
	row("Operator", st.Operator)
	row("Signal", signalText(st.Signal))
	row("SMS centre", st.SMSC)
	tw.Flush()
}

func registrationText(stat int) string {
	names := map[int]string{0: "not registered", 1: "home network", 2: "searching", 3: "denied",
		4: "unknown", 5: "roaming", 6: "home (SMS only)", 7: "roaming (SMS only)", 8: "emergency only",
		9: "home (CSFB not preferred)", 10: "roaming (CSFB not preferred)"}
	if n, ok := names[stat]; ok {
		return fmt.Sprintf("%s (%d)", n, stat)
	}
	return "unknown"
}

func signalText(rssi int) string {
	if rssi < 0 || rssi > 31 {
		return "unknown (99)"
	}
	bars := strings.Repeat("#", (rssi+4)/7) + strings.Repeat(".", 5-(rssi+4)/7)
	return fmt.Sprintf("%d dBm (CSQ %d) %s", -113+2*rssi, rssi, bars)
}

// Send sends one SMS directly, without the broker, and prints each part's
// message reference. For field checks.
func Send(ctx context.Context, cfg Config, log *zap.Logger, w io.Writer, number, text string) error {
	to, err := pdu.ParseNumber(number, cfg.Country)
	if err != nil {
		return err
	}
	parts, err := pdu.Encode(to, text, pdu.NewRefCounter(uint8(time.Now().UnixNano())), pdu.Options{MaxParts: cfg.MaxParts})
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	m := NewModem(cfg, log, health.New(log))
	defer m.Close()
	if _, err := m.Probe(pctx); err != nil {
		return probeError(cfg, err)
	}
	for _, p := range parts {
		sctx, cancel := context.WithTimeout(ctx, cfg.SendTimeout.D())
		mr, err := m.Submit(sctx, p.TPDULen, p.Hex)
		cancel()
		if err != nil {
			return fmt.Errorf("part %d of %d: %w (%s)", p.Seq, p.Total, err, gsm.Classify(err))
		}
		fmt.Fprintf(w, "part %d/%d sent, message reference %d\n", p.Seq, p.Total, mr)
	}
	return nil
}
