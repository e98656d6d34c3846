package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type checked struct {
	URL    string   `env:"SMS_API_URL,required" help:"base URL"`
	Poll   Duration `env:"POLL_INTERVAL" envDefault:"10s"`
	Parts  int      `env:"MODEM_MAX_PARTS" envDefault:"10"`
	Secret string   `env:"KEYCLOAK_PASSWORD,unset"`
	Flag   bool     `env:"SOME_FLAG"`
}

func (c checked) Validate() error {
	if !strings.HasPrefix(c.URL, "http") {
		return Errors{Invalid("SMS_API_URL", c.URL, "an absolute http(s) URL")}
	}
	if c.Secret == "bad" {
		return &Error{Var: "KEYCLOAK_PASSWORD", Set: true, Secret: true, Want: "the right one"}
	}
	return nil
}

// Every configuration error names the variable and what is expected, on
// one line, never shows a secret, and says which INI key a value came from.
func TestErrorsNameTheVariable(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{}, []string{"SMS_API_URL is not set: want a value (base URL)"}},
		{map[string]string{"SMS_API_URL": "not a url"}, []string{`SMS_API_URL="not a url": want an absolute http(s) URL`}},
		{map[string]string{"SMS_API_URL": "http://x", "POLL_INTERVAL": "abc"}, []string{`POLL_INTERVAL="abc": want a duration`}},
		{map[string]string{"SMS_API_URL": "http://x", "POLL_INTERVAL": "abc", "MODEM_MAX_PARTS": "many", "SOME_FLAG": "perhaps"},
			[]string{`POLL_INTERVAL="abc"`, `MODEM_MAX_PARTS="many": want a whole number`, `SOME_FLAG="perhaps": want true or false`}},
		{map[string]string{"SMS_API_URL": "http://x", "KEYCLOAK_PASSWORD": "bad"}, []string{"KEYCLOAK_PASSWORD (value hidden): want the right one"}},
	} {
		_, err := LoadFrom[checked](c.env)
		if err == nil || !IsConfig(err) {
			t.Fatalf("%v: %v, want a configuration error", c.env, err)
		}
		msg := err.Error()
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%v: %q lacks %q", c.env, msg, w)
			}
		}
		if strings.Contains(msg, "\n") || strings.Contains(msg, "Poll") || strings.Contains(msg, `"bad"`) {
			t.Errorf("%v: %q", c.env, msg)
		}
	}

	path := filepath.Join(t.TempDir(), "config.ini")
	if err := os.WriteFile(path, []byte("[SERVICE]\nServiceSMSURL = ftp://old\nSleepTimeInSec = soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFrom[checked](map[string]string{"CONFIG_FILE": path})
	if err == nil || !strings.Contains(err.Error(), `POLL_INTERVAL="soon" (from [SERVICE] SleepTimeInSec in `+path+")") {
		t.Fatalf("INI source: %v", err)
	}
	_, err = LoadFrom[checked](map[string]string{"CONFIG_FILE": path, "POLL_INTERVAL": "5s"})
	if err == nil || !strings.Contains(err.Error(), `SMS_API_URL="ftp://old" (from [SERVICE] ServiceSMSURL in `) {
		t.Fatalf("INI source after parse: %v", err)
	}
	_, err = LoadFrom[checked](map[string]string{"CONFIG_FILE": filepath.Join(t.TempDir(), "missing.ini")})
	if ce, ok := errors.AsType[*Error](err); !ok || ce.Var != "CONFIG_FILE" {
		t.Fatalf("missing INI: %v", err)
	}
}

func TestSettingsComeFromTheTags(t *testing.T) {
	s := Settings[checked]()
	if len(s) != 5 || s[0].Var != "SMS_API_URL" || !s[0].Required || s[1].Default != "10s" || !s[3].Secret {
		t.Fatalf("%+v", s)
	}
	var b bytes.Buffer
	PrintSettings[checked](&b)
	if !strings.Contains(b.String(), "POLL_INTERVAL") || !strings.Contains(b.String(), "(required)") || !strings.Contains(b.String(), "(secret)") {
		t.Fatal(b.String())
	}
}
