// Package durable writes the small state files of the receive path (partial
// messages, sent parts) so that a power cut leaves the old file or the new
// one, never a torn one.
package durable

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile writes b to name atomically and durably: a temporary file,
// fsync, rename over name, fsync of the directory.
func WriteFile(name string, b []byte) error {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if d, err := os.Open(filepath.Dir(name)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
