// Package config loads a service's configuration from the environment with
// caarlos0/env, after optionally seeding the environment from a legacy
// config.ini named by CONFIG_FILE. Real environment variables always win.
package config

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"gopkg.in/ini.v1"
)

// Duration accepts Go duration syntax ("10s", "1m30s") and bare integers as
// seconds, the unit of every legacy *InSec key.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler for caarlos0/env.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		*d = Duration(time.Duration(n * float64(time.Second)))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: use 10s, 2m or a number of seconds", s)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// legacyKeys maps config.ini [SECTION]Key to the environment variables it
// feeds. One legacy key may feed several variables.
var legacyKeys = map[string][]string{
	"MODEM.ModemTimeOutInSec":       {"MODEM_TIMEOUT"},
	"MODEM.ModemNr":                 {"MODEM_NUMBER"},
	"MODEM.Country":                 {"MODEM_COUNTRY", "SMS_COUNTRIES"},
	"MODEM.Device":                  {"MODEM_DEVICE"},
	"MODEM.Pin":                     {"MODEM_PIN"},
	"SERVICE.ServiceSMSURL":         {"SMS_API_URL"},
	"SERVICE.SleepTimeInSec":        {"POLL_INTERVAL"},
	"KEYCLOAK.KeycloakUser":         {"KEYCLOAK_USER"},
	"KEYCLOAK.KeycloakPassword":     {"KEYCLOAK_PASSWORD"},
	"KEYCLOAK.KeycloakURL":          {"KEYCLOAK_URL"},
	"KEYCLOAK.KeycloakRealm":        {"KEYCLOAK_REALM"},
	"KEYCLOAK.KeycloakClientId":     {"KEYCLOAK_CLIENT_ID"},
	"KEYCLOAK.KeycloakClientSecret": {"KEYCLOAK_CLIENT_SECRET"},
	"LOGGING.LogLevel":              {"LOG_LEVEL"},
}

// legacySource names the INI key that feeds variable name.
func legacySource(name string) string {
	var keys []string
	for k, vars := range legacyKeys {
		for _, v := range vars {
			if v == name {
				sec, key, _ := strings.Cut(k, ".")
				keys = append(keys, "["+sec+"] "+key)
			}
		}
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}

// LegacyEnv reads a legacy config.ini and returns the environment variables
// it implies. Unknown keys are ignored: the old file had several dead ones.
func LegacyEnv(path string) (map[string]string, error) {
	f, err := ini.Load(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	out := map[string]string{}
	for _, sec := range f.Sections() {
		for _, k := range sec.Keys() {
			for _, name := range legacyKeys[sec.Name()+"."+k.Name()] {
				v := strings.TrimSpace(k.Value())
				if v == "" {
					continue
				}
				if name == "LOG_LEVEL" {
					v = strings.ToLower(v)
				}
				out[name] = v
			}
		}
	}
	return out, nil
}

// Load fills T from the environment. When CONFIG_FILE is set, the legacy INI
// file supplies values for variables the environment leaves unset.
func Load[T any]() (T, error) {
	environ := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			environ[k] = v
		}
	}
	return LoadFrom[T](environ)
}

// LoadFrom is Load with an explicit environment, for tests.
func LoadFrom[T any](environ map[string]string) (T, error) {
	var zero T
	fromINI := map[string]string{}
	if path := environ["CONFIG_FILE"]; path != "" {
		legacy, err := LegacyEnv(path)
		if err != nil {
			return zero, Invalid("CONFIG_FILE", path, "a readable legacy config.ini ("+err.Error()+")")
		}
		merged := make(map[string]string, len(environ)+len(legacy))
		for k, v := range legacy {
			merged[k] = v
		}
		for k, v := range environ {
			// An empty variable (compose passes "KEY=" for a blank .env
			// entry) does not wipe out a value the file sets.
			if _, inFile := legacy[k]; v == "" && inFile {
				continue
			}
			merged[k] = v
		}
		for k, v := range legacy {
			if merged[k] == v && environ[k] != v {
				fromINI[k] = legacySource(k) + " in " + path
			}
		}
		environ = merged
	}
	cfg, err := env.ParseAsWithOptions[T](env.Options{Environment: environ})
	if err != nil {
		return zero, annotate(explain[T](err, environ), fromINI)
	}
	if v, ok := any(cfg).(Validator); ok {
		if err := v.Validate(); err != nil {
			return zero, annotate(err, fromINI)
		}
	}
	return cfg, nil
}
