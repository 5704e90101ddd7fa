package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelp: --help prints the usage and succeeds (exit 0), for the root
// and a subcommand.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "-h"}} {
		var out bytes.Buffer
		root := newRoot()
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil || !strings.Contains(out.String(), "Usage:") || !strings.Contains(out.String(), "-h, --help") {
			t.Fatalf("%v: %v\n%s", args, err, out.String())
		}
	}
}
