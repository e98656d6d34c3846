package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/caarlos0/env/v11"
)

// FileSuffix marks the variable that names a file holding a secret: the
// Docker-secrets convention (NATS_PASSWORD_FILE=/run/secrets/nats_password).
const FileSuffix = "_FILE"

// maxSecretFile bounds what is read from a secret file; anything larger is
// not a password but a wrong path (a log, a device, /dev/zero).
const maxSecretFile = 64 << 10

// secretKeys lists the variables of T that hold secrets: those tagged
// `unset`, which caarlos0/env removes from the environment once read.
// Each of them may instead come from a file named by NAME_FILE.
func secretKeys[T any]() ([]string, error) {
	var zero T
	params, err := env.GetFieldParams(&zero)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, p := range params {
		if p.Unset {
			keys = append(keys, p.Key)
		}
	}
	return keys, nil
}

// resolveSecretFiles returns environ with every secret of T whose NAME_FILE
// is set replaced by the content of that file. Setting both NAME and
// NAME_FILE is an error; an empty value counts as unset, since compose
// passes a blank .env entry as "NAME=". It runs before the legacy INI is
// merged, so a secret from a file wins over the INI like any variable.
func resolveSecretFiles[T any](environ map[string]string) (map[string]string, error) {
	keys, err := secretKeys[T]()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var out map[string]string
	for _, key := range keys {
		path := environ[key+FileSuffix]
		if path == "" {
			continue
		}
		if environ[key] != "" {
			return nil, fmt.Errorf("config: %s and %s%s are both set; set only one of them", key, key, FileSuffix)
		}
		v, err := readSecretFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %s%s: %w", key, FileSuffix, err)
		}
		if out == nil {
			out = make(map[string]string, len(environ))
			for k, v := range environ {
				out[k] = v
			}
		}
		out[key] = v
	}
	if out == nil {
		return environ, nil
	}
	return out, nil
}

// readSecretFile returns the file's content without its trailing line
// break(s), which `echo secret > file` and most editors add.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		// A missing bind-mount source becomes a directory under Docker.
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s is larger than %d KiB; it is not a secret file", path, maxSecretFile>>10)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", errors.New(path + " is empty")
	}
	return v, nil
}
