// Package version holds the build's version, set with -ldflags -X; the agent
// and the collector binaries share it.
package version

// Version is the release this binary was built from.
var Version = "dev"
