package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/sensorsreport/smsgw/shared/config"
)

// Stamped at build time with -ldflags "-X .../shared/cli.Version=..." (and
// Commit, BuildDate); what is not stamped comes from the build information
// Go embeds (VCS revision and time when built from a checkout).
var (
	Version   = "dev"
	Commit    = ""
	BuildDate = ""
)

// PrintVersion writes the binary's version, commit, build date, Go version
// and platform, one per line.
func PrintVersion(w io.Writer, name string) {
	commit, date, goVersion := Commit, BuildDate, runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && commit == "":
				commit = s.Value
			case s.Key == "vcs.time" && date == "":
				date = s.Value
			case s.Key == "vcs.modified" && s.Value == "true" && Commit == "" && commit != "":
				commit += "-dirty"
			}
		}
	}
	if commit == "" {
		commit = "unknown"
	}
	if date == "" {
		date = "unknown"
	}
	fmt.Fprintf(w, "%s %s\ncommit:     %s\nbuilt:      %s\ngo:         %s\nplatform:   %s/%s\n",
		name, Version, commit, date, goVersion, runtime.GOOS, runtime.GOARCH)
}

// Usage writes the command summary followed by every setting of T with its
// default, generated from T's struct tags (the only place defaults live).
func Usage[T any](w io.Writer, name, commands string) {
	fmt.Fprintf(w, "usage: %s [command]\n\n%s\nSettings (environment variables; CONFIG_FILE may name a legacy config.ini,\nwhich the environment overrides):\n\n", name, commands)
	config.PrintSettings[T](w)
}
