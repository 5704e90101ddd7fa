package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsAreValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"kernel:\n  ring_bytes: 1000\n", "kernel.ring_bytes: 1000 is not a power of two"},
		{"kernel:\n  syscall_args: fast\n", `kernel.syscall_args: "fast" is not auto, exit_regs or enter_stash`},
		{"kernel:\n  events: [exec, telnet]\n", `kernel.events[1]: unknown event type "telnet"`},
		{"filters:\n  ports:\n    exclude: [\"502\", \"70000\"]\n", `filters.ports.exclude[1]: "70000" is not a port`},
		{"filters:\n  networks:\n    include: [10.0.0.0/8, plc]\n", `filters.networks.include[1]: "plc" is not an address or CIDR`},
		{"filters:\n  paths:\n    exclude: [var/log]\n", `filters.paths[0]: "var/log" is not an absolute path prefix`},
		{"industrial:\n  protocols:\n    - {name: modbus, transport: tcp, ports: \"0\"}\n", `industrial.protocols[0].ports: "0" is not a port or range`},
		{"industrial:\n  inspect:\n    enabled: true\n    protocols:\n      - {name: dnp3, ports: \"20000\"}\n", `industrial.inspect.protocols[0].name: "dnp3" has no parser (parsers: modbus)`},
		{"industrial:\n  inspect:\n    interval: 10ms\n", `industrial.inspect.interval: 10ms must be between 1s and 1h`},
		{"output: collector\n", "collector.ca: required"},
		{"process_table:\n  depth: 40\n", "process_table.depth: 40 must be between 2 and 16"},
		{"filters:\n  watch_reads_extra: [/opt/plc, projects]\n", `filters.watch_reads_extra[1]: "projects" is neither an absolute path nor ~/path`},
	}
	for _, c := range cases {
		cfg, err := Load(writeConfig(t, c.yaml))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error containing %q", c.yaml, err, c.want)
		}
	}
}

func TestUnknownKeyIsRejectedWithItsLine(t *testing.T) {
	_, err := Load(writeConfig(t, "kernel:\n  ring_byte: 4096\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "ring_byte") {
		t.Errorf("got %v", err)
	}
}

func TestFiltersReachTheKernelConfig(t *testing.T) {
	cfg, err := Load(writeConfig(t, `
filters:
  read_opens: true
  rate_limit: {per_second: 10, burst: 20}
  paths: {exclude: [/var/log/]}
  networks: {exclude: [192.168.0.0/16, "::1"]}
  ports: {include: ["502", "20000"]}
  not_found_opens: true
  watch_reads_extra: [/var/opt/plc-projects, ~/hmi]
`))
	if err != nil {
		t.Fatal(err)
	}
	k, err := cfg.KernelConfig()
	if err != nil {
		t.Fatal(err)
	}
	f := k.Filters
	if !f.ReadOpens || f.RatePerSec != 10 || f.RateBurst != 20 || len(f.ExcludePaths) != 1 ||
		len(f.ExcludeCIDRs) != 2 || f.ExcludeCIDRs[1].Bits() != 128 || len(f.IncludePorts) != 2 || f.IncludePorts[0] != 502 ||
		!f.NotFoundOpens || !slices.Contains(f.WatchReads, "/etc/shadow") || f.WatchReads[len(f.WatchReads)-1] != "~/hmi" {
		t.Errorf("kernel filters: %+v", f)
	}
}
