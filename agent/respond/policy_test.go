package respond

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/watchpost/watchpost/agent/kernel"
)

const goodPolicies = `
policies:
  - id: plc-egress
    description: only the poller reaches the PLCs on Modbus/TCP
    action: deny_connect
    mode: enforce
    allow:
      exe: /opt/scada/bin/poller
    connect:
      destinations: [10.20.0.0/16, "fd00::1"]
      ports: [502, "20000-20010"]
      protocol: tcp
  - id: no-sniffing
    action: deny_socket
    allow: {exe: [/usr/sbin/tcpdump]}
    sockets:
      - {family: packet}
      - {family: inet, type: raw}
  - id: fieldbus
    action: deny_device
    allow: {unit: [fieldbus-gw.service]}
    devices:
      - {name: ttyUSB}
      - {major: 4, minor: "64-95", access: [read, write]}
  - id: no-netcat
    action: kill_exec
    selector: {exe: [/usr/bin/nc.openbsd], user: ["0"]}
  - id: contain-shells
    action: kill_on_detection
    selector: {rule: ["ot.*"], unit: [hmi.service]}
    kill: {group: true}
`

func TestParseValidPolicies(t *testing.T) {
	pols, err := Parse("policies.yaml", []byte(goodPolicies))
	if err != nil {
		t.Fatal(err)
	}
	if len(pols) != 5 {
		t.Fatalf("%d policies", len(pols))
	}
	c := pols[0]
	want := &Connect{Destinations: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("fd00::1/128")},
		Ports: [][2]uint16{{502, 502}, {20000, 20010}}, Protocol: "tcp"}
	if diff := cmp.Diff(want, c.Connect, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" || c.Mode != ModeEnforce || c.Line != 3 {
		t.Errorf("deny_connect: %s mode %s line %d", diff, c.Mode, c.Line)
	}
	if pols[1].Mode != ModeMonitor {
		t.Errorf("the default mode is %q, want monitor", pols[1].Mode)
	}
	if d := pols[2].Devices[0]; d.Major != 188 || d.Type != "char" || d.MinorHi != 1<<20-1 {
		t.Errorf("ttyUSB: %+v", d)
	}
	if !pols[4].Group || pols[4].Selector.Rule[0] != "ot.*" {
		t.Errorf("kill_on_detection: %+v", pols[4])
	}

	cs, err := compile("policies.yaml", pols, nil, compileEnv{cgroupRoot: t.TempDir(),
		lookupUser: func(string) (uint32, error) { return 0, nil }})
	if err != nil {
		t.Fatal(err)
	}
	// 2 destinations x 2 port ranges; 2 sockets; 2 devices; 1 exec.
	for h, n := range map[kernel.Hook]int{kernel.HookConnect: 4, kernel.HookSocket: 2, kernel.HookDevice: 2, kernel.HookExec: 1} {
		if got := len(cs.set.Rules[h]); got != n {
			t.Errorf("%s: %d rules, want %d", h, got, n)
		}
	}
	if m := cs.set.Exes["/opt/scada/bin/poller"]; m.Allow != kernel.Bit(0) || m.Sel != 0 {
		t.Errorf("poller masks %+v", m)
	}
	if r := cs.set.Rules[kernel.HookExec][0]; !r.Exe || r.UID == nil || *r.UID != 0 || r.Enforce {
		t.Errorf("kill_exec rule %+v", r)
	}
	if notes := cs.notes["fieldbus"]; len(notes) != 1 || !strings.Contains(notes[0], "fieldbus-gw.service") {
		t.Errorf("a unit that is not running is noted: %v", notes)
	}
}

// Every error names the file, the line and the key, and all are reported.
func TestParseErrorsNameFileLineAndKey(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"unknown top-level key", "polices: []\n", []string{"p.yaml:1: polices: unknown key"}},
		{"not yaml", "policies: [\n", []string{"p.yaml:1: did not find expected node content"}},
		{"unknown action and mode", `
policies:
  - id: a
    action: block
    mode: on
`, []string{`p.yaml:4: policies[0].action: "block" is not one of`, `p.yaml:5: policies[0].mode: "on" is not monitor or enforce`}},
		{"missing id and duplicate", `
policies:
  - action: kill_exec
    selector: {exe: /bin/x}
  - {id: b, action: kill_exec, selector: {exe: /bin/x}}
  - {id: b, action: kill_exec, selector: {exe: /bin/y}}
`, []string{"p.yaml:3: policies[0].id: required", `p.yaml:6: policies[2].id: "b" is also the id of the policy at line 5`}},
		{"bad port and address", `
policies:
  - id: c
    action: deny_connect
    connect:
      destinations: [10.0.0.300/8]
      ports: [502, 70000]
      protocl: tcp
`, []string{`p.yaml:6: policies[0].connect.destinations[0]: "10.0.0.300/8" is not an address or CIDR`,
			`p.yaml:7: policies[0].connect.ports[1]: "70000" is not a port`, "p.yaml:8: policies[0].connect.protocl: unknown key"}},
		{"kill_exec without selector", "policies:\n  - {id: d, action: kill_exec}\n",
			[]string{"p.yaml:2: policies[0].selector: required for kill_exec"}},
		{"pattern in a kernel selector", "policies:\n  - {id: e, action: kill_exec, selector: {exe: /usr/bin/python*}}\n",
			[]string{`p.yaml:2: policies[0].selector: "/usr/bin/python*": kernel actions name executables by exact path`}},
		{"section of another action", "policies:\n  - id: f\n    action: kill_exec\n    selector: {exe: /bin/x}\n    connect: {ports: [1]}\n",
			[]string{"p.yaml:5: policies[0].connect: only for action deny_connect"}},
		{"device without major", "policies:\n  - id: g\n    action: deny_device\n    devices: [{minor: 3}]\n",
			[]string{"p.yaml:4: policies[0].devices[0].major: required"}},
		{"rule outside kill_on_detection", "policies:\n  - id: h\n    action: deny_socket\n    selector: {rule: [x]}\n    sockets: [{family: packet}]\n",
			[]string{"p.yaml:4: policies[0].selector.rule: only for kill_on_detection"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestEmptyFileIsNoPolicies(t *testing.T) {
	pols, err := Parse("p.yaml", []byte("# nothing yet\n"))
	if err != nil || len(pols) != 0 {
		t.Fatalf("%v %v", pols, err)
	}
}
