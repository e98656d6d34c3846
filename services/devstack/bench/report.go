package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"
)

// Result of comparing a figure with its target.
const (
	Pass = "PASS"
	Miss = "MISS"
)

// Target is the bound a figure should meet: Op is ">=", "<" or "<=".
type Target struct {
	Op    string  `json:"op"`
	Value float64 `json:"value"`
}

// Met reports whether v meets the target. An unknown Op never does.
func (t Target) Met(v float64) bool {
	switch t.Op {
	case ">=":
		return v >= t.Value
	case "<":
		return v < t.Value
	case "<=":
		return v <= t.Value
	}
	return false
}

// Figure is one measured value, with its target when the issue set one.
type Figure struct {
	Section string  `json:"section"`
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
	Target  *Target `json:"target,omitempty"`
	Result  string  `json:"result,omitempty"` // Pass, Miss, or empty without a target
}

// Report is what a run measured: the table and latest.json.
type Report struct {
	Mode      string    `json:"mode"` // "full" or "quick"
	StartedAt time.Time `json:"started_at"`
	Seconds   float64   `json:"duration_s"`
	Host      Host      `json:"host"`
	Figures   []Figure  `json:"figures"`
	Notes     []string  `json:"notes"` // settings and method, one line each
}

// Host describes where the figures were taken, since they depend on it.
type Host struct {
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	Kernel    string `json:"kernel,omitempty"`
	GoVersion string `json:"go_version"`
	Gammu     string `json:"gammu,omitempty"`
}

// add records a figure; a nil target makes it informational.
func (r *Report) add(section, name string, v float64, unit string, t *Target) {
	f := Figure{Section: section, Name: name, Value: v, Unit: unit, Target: t}
	if t != nil {
		f.Result = Miss
		if t.Met(v) {
			f.Result = Pass
		}
	}
	r.Figures = append(r.Figures, f)
}

func (r *Report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Misses returns the figures that missed their target.
func (r *Report) Misses() []Figure {
	var out []Figure
	for _, f := range r.Figures {
		if f.Result == Miss {
			out = append(out, f)
		}
	}
	return out
}

// Render writes the table: every figure next to its target, then the notes.
func (r *Report) Render(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Section\tMeasure\tValue\tTarget\tResult")
	for _, f := range r.Figures {
		target, result := "-", "-"
		if f.Target != nil {
			op := map[string]string{">=": "≥", "<=": "≤"}[f.Target.Op]
			if op == "" {
				op = f.Target.Op
			}
			target = op + " " + withUnit(strconv.FormatFloat(f.Target.Value, 'f', -1, 64), f.Unit)
			result = f.Result
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Section, f.Name, withUnit(FormatValue(f.Value), f.Unit), target, result)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nNotes")
		for _, n := range r.Notes {
			fmt.Fprintln(w, "  - "+n)
		}
	}
	_, err := fmt.Fprintf(w, "\n%s mode, %.0f s, %s/%s, %d CPUs, %s\n", r.Mode, r.Seconds, r.Host.OS, r.Host.Arch, r.Host.CPUs, r.Host.GoVersion)
	return err
}

func withUnit(v, unit string) string {
	switch unit {
	case "":
		return v
	case "%", "×":
		return v + unit
	}
	return v + " " + unit
}

// FormatValue prints a figure with about three significant digits, never in
// exponent form: tables are read by people comparing with a target.
func FormatValue(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'f', -1, 64)
	case a >= 100 || a == 0:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	// Below one: three significant digits, capped so noise stays readable.
	d := min(2-int(math.Floor(math.Log10(a))), 6)
	return strconv.FormatFloat(v, 'f', d, 64)
}

// Write stores the report as latest.json and as a timestamped copy in dir.
// Only latest.json is meant to be committed.
func (r *Report) Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("write report: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep ">=" readable: the file is read by people too
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return "", fmt.Errorf("write report: %w", err)
	}
	b := buf.Bytes()
	latest := filepath.Join(dir, "latest.json")
	stamped := filepath.Join(dir, r.StartedAt.UTC().Format("20060102-150405")+".json")
	for _, p := range []string{stamped, latest} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return "", fmt.Errorf("write report: %w", err)
		}
	}
	return latest, nil
}
