package app

import (
	"maps"
	"strings"
	"testing"

	"github.com/sensorsreport/smsgw/shared/config"
)

func TestConfigErrorsNameTheVariable(t *testing.T) {
	if _, err := config.LoadFrom[Config](map[string]string{}); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	base := map[string]string{"MODEM_PIN": "1234"}
	for k, v := range map[string]string{
		"MODEM_DEVICE": " ", "MODEM_BAUD": "fast", "MODEM_PIN": "12a4", "MODEM_TIMEOUT": "0", "MODEM_COUNTRY": "Romania",
		"NATS_URL": "poller:4222", "MODEM_MAX_PARTS": "300", "MODEM_KEEPALIVE": "soon",
	} {
		env := maps.Clone(base)
		env[k] = v
		_, err := config.LoadFrom[Config](env)
		if !config.IsConfig(err) || !strings.Contains(err.Error(), k) || !strings.Contains(err.Error(), "want ") {
			t.Errorf("%s=%q: %v", k, v, err)
		}
		if k == "MODEM_PIN" && strings.Contains(err.Error(), v) {
			t.Errorf("the PIN was printed: %v", err)
		}
	}
}
