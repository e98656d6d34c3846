package ledger

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// List returns every entry, most recently updated first, for the
// operator's `sms-modem ledger`. An unreadable entry is listed as
// attempting, as Get treats it.
func (l *Ledger) List() ([]Entry, error) {
	des, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, fmt.Errorf("ledger list: %w", err)
	}
	var out []Entry
	for _, de := range des {
		name := de.Name()
		if de.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(l.dir, name))
		if err != nil {
			continue // pruned or forgotten meanwhile
		}
		var e Entry
		if json.Unmarshal(b, &e) != nil || e.JobID == "" {
			e = Entry{JobID: strings.TrimSuffix(name, ".json"), State: Attempting}
			if info, err := de.Info(); err == nil {
				e.Updated = info.ModTime().UTC()
			}
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b Entry) int { return b.Updated.Compare(a.Updated) })
	return out, nil
}

// Dir is the directory holding the entries.
func (l *Ledger) Dir() string { return l.dir }
