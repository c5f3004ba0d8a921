// Package buildinfo says which build of JetSource a binary is, for
// --version.
package buildinfo

import (
	"runtime/debug"
)

// Version is the module version, and the commit with its time (and
// "modified" for a build from a changed tree) where the build recorded
// them, as Go does for builds inside a git checkout.
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		v += " commit " + rev[:min(len(rev), 12)]
		if t := settings["vcs.time"]; t != "" {
			v += " " + t
		}
		if settings["vcs.modified"] == "true" {
			v += " modified"
		}
	}
	return v + " " + info.GoVersion
}
