package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Error is an unusable setting. It names the environment variable (and the
// legacy INI key when the value came from CONFIG_FILE) and says what is
// expected, on one line. Commands exit with code 2 when they meet one.
type Error struct {
	Var    string // the environment variable, e.g. SMS_API_URL
	Value  string // the offending value ("" when unset)
	Set    bool   // whether the variable was set at all
	Secret bool   // never print the value
	Want   string // what is expected, e.g. "an absolute http(s) URL"
	// Source is where the value came from when not the environment itself,
	// e.g. `[SERVICE] ServiceSMSURL in /etc/sms-gateway/config.ini`.
	Source string
	// Cause is the underlying error, if any, for errors.Is.
	Cause error
}

// Unwrap returns Cause.
func (e *Error) Unwrap() error { return e.Cause }

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Var)
	switch {
	case !e.Set:
		b.WriteString(" is not set")
	case e.Secret:
		b.WriteString(" (value hidden)")
	default:
		fmt.Fprintf(&b, "=%q", e.Value)
	}
	if e.Source != "" {
		b.WriteString(" (from " + e.Source + ")")
	}
	b.WriteString(": want " + e.Want)
	return b.String()
}

// Invalid returns an *Error for a variable that is set to v.
func Invalid(name, v, want string) *Error {
	return &Error{Var: name, Value: v, Set: true, Want: want}
}

// Missing returns an *Error for a variable that must be set.
func Missing(name, want string) *Error { return &Error{Var: name, Want: want} }

// Errors is several configuration errors at once; it prints on one line.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// IsConfig reports whether err is (or wraps) a configuration error.
func IsConfig(err error) bool {
	_, ok := errors.AsType[*Error](err)
	return ok
}

// Validator is a configuration that checks its own values after parsing;
// LoadFrom calls Validate and returns its *Error (or Errors) annotated with
// the INI key the value came from.
type Validator interface{ Validate() error }

// explain turns caarlos0/env's errors, which name struct fields, into
// *Errors that name the variables.
func explain[T any](err error, environ map[string]string) error {
	var list []error
	if ae, ok := errors.AsType[env.AggregateError](err); ok {
		list = ae.Errors
	} else {
		list = []error{err}
	}
	byField := fields[T]()
	var out Errors
	for _, e := range list {
		switch x := e.(type) {
		case env.ParseError:
			f, ok := byField[x.Name]
			if !ok {
				return err
			}
			ce := Invalid(f.Var, environ[f.Var], f.want())
			ce.Secret = f.Secret
			out = append(out, ce)
		case env.VarIsNotSetError:
			out = append(out, Missing(x.Key, wantOf(byVar[T](x.Key))))
		case env.EmptyVarError:
			out = append(out, &Error{Var: x.Key, Set: true, Want: "a non-empty value"})
		default:
			return err
		}
	}
	return out
}

// field describes one setting of a configuration struct.
type field struct {
	Name     string // Go field name
	Var      string
	Default  string
	HasDef   bool
	Required bool
	Secret   bool
	Help     string
	Type     reflect.Type
}

func (f field) want() string { return wantOf(f) }

// wantOf describes the expected syntax from the field's type and help.
func wantOf(f field) string {
	var kind string
	switch {
	case f.Type == reflect.TypeFor[Duration]():
		kind = "a duration such as 10s or 2m, or a number of seconds"
	case f.Type == nil:
		kind = "a value"
	case f.Type.Kind() == reflect.Slice:
		kind = "a comma-separated list"
	case f.Type.Kind() >= reflect.Int && f.Type.Kind() <= reflect.Int64:
		kind = "a whole number"
	case f.Type.Kind() == reflect.Bool:
		kind = "true or false"
	default:
		kind = "a value"
	}
	if f.Help != "" {
		kind += " (" + f.Help + ")"
	}
	return kind
}

// fields lists T's settings in declaration order, keyed by Go field name.
func fields[T any]() map[string]field {
	m := map[string]field{}
	for _, f := range settingsOf(reflect.TypeFor[T]()) {
		m[f.Name] = f
	}
	return m
}

func byVar[T any](name string) field {
	for _, f := range settingsOf(reflect.TypeFor[T]()) {
		if f.Var == name {
			return f
		}
	}
	return field{Var: name}
}

func settingsOf(t reflect.Type) []field {
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("env")
		if !ok {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" || name == "-" {
			continue
		}
		f := field{Name: sf.Name, Var: name, Help: sf.Tag.Get("help"), Type: sf.Type}
		f.Default, f.HasDef = sf.Tag.Lookup("envDefault")
		for _, o := range strings.Split(opts, ",") {
			switch o {
			case "required":
				f.Required = true
			case "unset":
				f.Secret = true
			}
		}
		out = append(out, f)
	}
	return out
}

// annotate adds the INI source to every *Error whose variable came from
// the legacy file.
func annotate(err error, fromINI map[string]string) error {
	if len(fromINI) == 0 {
		return err
	}
	var es Errors
	switch x := err.(type) {
	case *Error:
		es = Errors{x}
	case Errors:
		es = x
	default:
		return err
	}
	for _, e := range es {
		if src, ok := fromINI[e.Var]; ok && e.Source == "" {
			e.Source = src
		}
	}
	return err
}
