package config

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
)

// Setting is one variable of a configuration struct as its tags declare it:
// the tags are the only place defaults live, and --help is generated from
// them.
type Setting struct {
	Var      string
	Default  string // "" when there is none
	Required bool
	Secret   bool
	Help     string
}

// Settings lists T's variables in declaration order.
func Settings[T any]() []Setting {
	fs := settingsOf(reflect.TypeFor[T]())
	out := make([]Setting, len(fs))
	for i, f := range fs {
		out[i] = Setting{Var: f.Var, Default: f.Default, Required: f.Required, Secret: f.Secret, Help: f.Help}
	}
	return out
}

// PrintSettings writes T's variables as a table: name, default, meaning.
func PrintSettings[T any](w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range Settings[T]() {
		def := s.Default
		switch {
		case s.Required:
			def = "(required)"
		case def == "":
			def = "-"
		}
		help := s.Help
		if s.Secret {
			help = strings.TrimSpace(help + " (secret)")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Var, def, help)
	}
	_ = tw.Flush()
}
