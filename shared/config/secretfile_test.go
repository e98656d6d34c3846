package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type secrets struct {
	User     string `env:"KEYCLOAK_USER"`
	Password string `env:"KEYCLOAK_PASSWORD,unset"`
	Secret   string `env:"KEYCLOAK_CLIENT_SECRET,unset"`
	NATSPass string `env:"NATS_PASSWORD,required,unset"`
	PIN      string `env:"MODEM_PIN,unset"`
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSecretsComeFromFiles(t *testing.T) {
	c, err := LoadFrom[secrets](map[string]string{
		"KEYCLOAK_PASSWORD_FILE":      writeFile(t, "kc pass\n"),
		"KEYCLOAK_CLIENT_SECRET_FILE": writeFile(t, "client-secret\r\n"),
		"NATS_PASSWORD_FILE":          writeFile(t, "nats=pass+/ \n\n"),
		"MODEM_PIN_FILE":              writeFile(t, "4321"),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Trailing line breaks go; everything else, spaces included, stays.
	if c.Password != "kc pass" || c.Secret != "client-secret" || c.NATSPass != "nats=pass+/ " || c.PIN != "4321" {
		t.Fatalf("%+v", c)
	}
}

func TestSecretPlainVariableStillWorks(t *testing.T) {
	c, err := LoadFrom[secrets](map[string]string{"NATS_PASSWORD": "plain", "MODEM_PIN": "0000", "MODEM_PIN_FILE": ""})
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSPass != "plain" || c.PIN != "0000" {
		t.Fatalf("%+v", c)
	}
	// A blank plain variable (compose passes a blank .env entry as NAME=)
	// does not conflict with the file.
	c, err = LoadFrom[secrets](map[string]string{"NATS_PASSWORD": "", "NATS_PASSWORD_FILE": writeFile(t, "from-file\n")})
	if err != nil || c.NATSPass != "from-file" {
		t.Fatalf("%+v, %v", c, err)
	}
}

func TestSecretFileErrorsNameTheVariable(t *testing.T) {
	dir := t.TempDir()
	big := writeFile(t, strings.Repeat("x", maxSecretFile+1))
	for name, tc := range map[string]struct {
		environ map[string]string
		want    []string
	}{
		"both set": {
			map[string]string{"NATS_PASSWORD": "a", "NATS_PASSWORD_FILE": writeFile(t, "b")},
			[]string{"NATS_PASSWORD and NATS_PASSWORD_FILE are both set"},
		},
		"both set, PIN": {
			map[string]string{"NATS_PASSWORD": "a", "MODEM_PIN": "1", "MODEM_PIN_FILE": writeFile(t, "2")},
			[]string{"MODEM_PIN and MODEM_PIN_FILE are both set"},
		},
		"missing file": {
			map[string]string{"KEYCLOAK_PASSWORD_FILE": filepath.Join(dir, "nope"), "NATS_PASSWORD": "a"},
			[]string{"KEYCLOAK_PASSWORD_FILE", "no such file"},
		},
		// Docker turns a missing bind-mount source into a directory.
		"directory": {
			map[string]string{"KEYCLOAK_CLIENT_SECRET_FILE": dir, "NATS_PASSWORD": "a"},
			[]string{"KEYCLOAK_CLIENT_SECRET_FILE", "not a regular file"},
		},
		"device": {
			map[string]string{"NATS_PASSWORD_FILE": os.DevNull},
			[]string{"NATS_PASSWORD_FILE", "not a regular file"},
		},
		"empty": {
			map[string]string{"NATS_PASSWORD_FILE": writeFile(t, "\n")},
			[]string{"NATS_PASSWORD_FILE", "is empty"},
		},
		"too big": {
			map[string]string{"NATS_PASSWORD_FILE": big},
			[]string{"NATS_PASSWORD_FILE", "larger than 64 KiB"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadFrom[secrets](tc.environ)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// Only secrets (tagged unset) take a _FILE: other variables keep their
// meaning, and a stray NAME_FILE for them is not read.
func TestFileSuffixOnlyForSecrets(t *testing.T) {
	c, err := LoadFrom[secrets](map[string]string{"NATS_PASSWORD": "a", "KEYCLOAK_USER_FILE": "/nonexistent"})
	if err != nil || c.User != "" {
		t.Fatalf("%+v, %v", c, err)
	}
}

// A secret from a file is a real variable: it wins over the legacy INI.
func TestSecretFileWinsOverLegacyINI(t *testing.T) {
	ini := writeFile(t, "[KEYCLOAK]\nKeycloakPassword = from-ini\nKeycloakUser = ini-user\n")
	c, err := LoadFrom[secrets](map[string]string{
		"CONFIG_FILE": ini, "NATS_PASSWORD": "a", "KEYCLOAK_PASSWORD_FILE": writeFile(t, "from-file"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Password != "from-file" || c.User != "ini-user" {
		t.Fatalf("%+v", c)
	}
}
