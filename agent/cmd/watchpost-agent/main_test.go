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
