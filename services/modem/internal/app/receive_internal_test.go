package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/config"
)

func TestReceiveConfigErrorsNameTheVariable(t *testing.T) {
	base := Config{Receive: true, DeliveryReports: true, ReassemblyTimeout: config.Duration(10 * time.Minute),
		CanaryTimeout: config.Duration(5 * time.Minute), Country: "RO", DataDir: t.TempDir()}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"zero reassembly timeout", func(c *Config) { c.ReassemblyTimeout = 0 }, "MODEM_REASSEMBLY_TIMEOUT"},
		{"canary without a number", func(c *Config) { c.CanaryInterval = config.Duration(time.Minute) }, "CANARY_NUMBER"},
		{"canary with a bad number", func(c *Config) {
			c.CanaryInterval, c.CanaryNumber = config.Duration(time.Minute), "not a number"
		}, "CANARY_NUMBER"},
		{"canary with a bad MODEM_NUMBER", func(c *Config) {
			c.CanaryInterval, c.Number = config.Duration(time.Minute), "12"
		}, "MODEM_NUMBER"},
		{"negative canary interval", func(c *Config) { c.CanaryInterval = config.Duration(-time.Second) }, "CANARY_INTERVAL"},
		{"canary without receiving", func(c *Config) {
			c.CanaryInterval, c.Number, c.Receive = config.Duration(time.Minute), "+40722999099", false
		}, "MODEM_RECEIVE"},
		{"canary with a zero timeout", func(c *Config) {
			c.CanaryInterval, c.Number, c.CanaryTimeout = config.Duration(time.Minute), "+40722999099", 0
		}, "CANARY_TIMEOUT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.mod(&cfg)
			stop, err := startReceive(context.Background(), cfg, nil, nil, zap.NewNop(), nil)
			if err == nil {
				stop()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
		})
	}
}

func TestReceiveSettingsAreValidatedWithTheConfiguration(t *testing.T) {
	env := map[string]string{"MODEM_DEVICE": "/dev/ttyUSB2", "NATS_USER": "u", "NATS_PASSWORD": "p", "CANARY_INTERVAL": "1h"}
	_, err := config.LoadFrom[Config](env)
	if !config.IsConfig(err) || !strings.Contains(err.Error(), "CANARY_NUMBER") {
		t.Fatalf("CANARY_INTERVAL without a number: %v", err)
	}
	env["MODEM_NUMBER"] = "+40722999099"
	if cfg, err := config.LoadFrom[Config](env); err != nil || !cfg.Receive || !cfg.DeliveryReports || cfg.ReassemblyTimeout.D() != 10*time.Minute || cfg.CanaryTimeout.D() != 5*time.Minute {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
}
