package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/watchpost/watchpost/agent/internal/privtest"
)

// TestUnsupportedKernelGivesOneClearError starts the agent as on a kernel
// without BTF: it must exit with status 3 and name what is missing.
func TestUnsupportedKernelGivesOneClearError(t *testing.T) {
	privtest.Require(t)
	t.Setenv("WATCHPOST_BTF_PATH", "/nonexistent/vmlinux")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), nil, &stdout, &stderr)
	if code != exitUnsupported {
		t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitUnsupported, stderr.String())
	}
	msg := stderr.String()
	for _, want := range []string{"this host cannot run the Watchpost agent", "kernel BTF (/nonexistent/vmlinux", "CONFIG_DEBUG_INFO_BTF=y"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr lacks %q:\n%s", want, msg)
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("events were written: %q", stdout.String())
	}
}

func TestBadFlagsAndConfigAreUsageErrors(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--output", "tape"}, &stdout, &stderr); code != exitUsage {
		t.Errorf("--output tape: exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(stderr.String(), `output: "tape" is not one of stdout, collector, both`) {
		t.Errorf("stderr: %s", stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"--config", "/nonexistent.yaml"}, &stdout, &stderr); code != exitUsage {
		t.Errorf("missing config: exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(stderr.String(), "/nonexistent.yaml") {
		t.Errorf("stderr does not name the file: %s", stderr.String())
	}
}

// TestHelpAndFlagStyle: --help and -h print the usage to stdout and exit
// 0, in the flag syntax of the other two binaries; a wrong flag or an
// argument is a usage error that says how to get help.
func TestHelpAndFlagStyle(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{arg}, &stdout, &stderr); code != exitOK {
			t.Fatalf("%s: exit %d, want 0; stderr %s", arg, code, stderr.String())
		}
		for _, want := range []string{"Usage:\n  watchpost-agent [flags]", "      --config string", "  -h, --help"} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("%s: usage lacks %q:\n%s", arg, want, stdout.String())
			}
		}
	}
	for _, tc := range []struct{ args, want string }{
		{"--bogus", "watchpost-agent: unknown flag: --bogus\nRun 'watchpost-agent --help' for usage.\n"},
		{"-config=x", "watchpost-agent: unknown shorthand flag: 'c' in -config=x\nRun 'watchpost-agent --help' for usage.\n"},
		{"probe", "watchpost-agent: unexpected argument \"probe\"\nRun 'watchpost-agent --help' for usage.\n"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), strings.Fields(tc.args), &stdout, &stderr); code != exitUsage || stderr.String() != tc.want {
			t.Errorf("%s: exit %d, stderr %q; want %d, %q", tc.args, code, stderr.String(), exitUsage, tc.want)
		}
	}
}
