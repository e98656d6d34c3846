package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sensorsreport/smsgw/shared/config"
)

// Every secret the modem reads may come from a Docker secret file.
func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	file := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := config.LoadFrom[Config](map[string]string{
		"NATS_PASSWORD_FILE": file("nats", "n-pass"),
		"MODEM_PIN_FILE":     file("pin", "4321"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSPass != "n-pass" || c.PIN != "4321" {
		t.Fatalf("%+v", c)
	}
	_, err = config.LoadFrom[Config](map[string]string{"MODEM_PIN": "1", "MODEM_PIN_FILE": file("pin", "4321")})
	if err == nil || !strings.Contains(err.Error(), "MODEM_PIN and MODEM_PIN_FILE") {
		t.Fatalf("both set: %v", err)
	}
}
