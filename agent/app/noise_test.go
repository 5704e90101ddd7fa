package app_test

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/internal/privtest"
	"github.com/watchpost/watchpost/collector/collectortest"
	"github.com/watchpost/watchpost/collector/store"
	"github.com/watchpost/watchpost/internal/agenttest"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// TestDefaultCaptureIsQuiet runs the default agent while ordinary
// programs probe for files that are not there (the locale and loader
// search of a program started under a missing locale, a name lookup,
// Python's start-up, apt-cache when installed) and a shell probes 20
// missing paths: the collector stores none of the not-found reads, the
// kernel counts them, no netlink socket is tagged sniffing and
// NETLINK_ROUTE is not reported, while a real packet socket still is.
func TestDefaultCaptureIsQuiet(t *testing.T) {
	privtest.Require(t)
	const id = "gw-quiet"
	c, pki := collectortest.Loopback(t, []string{id}, nil)
	ag := agenttest.Start(t, agenttest.Options{ID: id, CollectorAddr: c.Addr(), PKI: pki})
	before := kindStats(t, ag)

	const probes = 20
	workload := [][]string{
		{"/bin/sh", "-c", `i=0; while [ $i -lt 20 ]; do true </nonexistent-wp-probe/lib$i.so; i=$((i+1)); done 2>/dev/null; exit 0`},
		{"env", "LC_ALL=de_DE.UTF-8", "LANGUAGE=de:fr", "ls", "/"},
		{"getent", "ahosts", "localhost"},
		{"python3", "-c", "import json, email.parser, xml.dom.minidom"},
		{"apt-cache", "policy", "coreutils"},
	}
	for _, w := range workload {
		if _, err := exec.LookPath(w[0]); err != nil {
			t.Logf("%s is not installed here: not part of the workload", w[0])
			continue
		}
		cmd := exec.Command(w[0], w[1:]...)
		cmd.Dir = privtest.Dir(t)
		if out, err := cmd.CombinedOutput(); err != nil && w[0] != "getent" {
			t.Fatalf("%s: %v %s", strings.Join(w, " "), err, out)
		}
	}
	pkt := exec.Command(privtest.Self(t), "-test.run=^$")
	pkt.Env = append(os.Environ(), privtest.HelperEnv+"=respond:packet")
	if out, err := pkt.CombinedOutput(); err != nil {
		t.Fatalf("packet socket helper: %v %s", err, out)
	}

	query := func(types ...watchpostv1.EventType) []*watchpostv1.Event {
		res, err := c.Store().Query(t.Context(), store.Query{Filter: store.Filter{AgentID: id, Types: types}, Limit: 100_000})
		if err != nil {
			t.Fatal(err)
		}
		return res.Events
	}
	sockets := []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_NET_SOCKET}
	var packet *watchpostv1.Event
	for deadline := time.Now().Add(waitStored()); packet == nil; time.Sleep(200 * time.Millisecond) {
		for _, ev := range query(sockets...) {
			if ev.Process.GetPid() == uint32(pkt.Process.Pid) && ev.GetNet().GetFamily() == "packet" {
				packet = ev
			}
		}
		if packet == nil && time.Now().After(deadline) {
			t.Fatalf("the packet socket was not stored; %s", lossReport(ag))
		}
	}
	if !packet.GetIndustrial().GetSniffing() {
		t.Errorf("packet socket not tagged sniffing: %v", packet)
	}
	for _, ev := range query(sockets...) {
		n := ev.GetNet()
		if n.GetFamily() == "netlink" && (ev.GetIndustrial().GetSniffing() || n.GetProtocol() == "route") {
			t.Errorf("netlink socket stored as %v (sniffing %v)", n, ev.GetIndustrial().GetSniffing())
		}
	}
	for _, ev := range query(watchpostv1.EventType_EVENT_TYPE_FILE_OPEN) {
		f := ev.GetFile()
		if !f.GetWrite() && (f.GetErrno() == "ENOENT" || f.GetErrno() == "ENOTDIR") {
			t.Errorf("a not-found read was stored: %s %v (%s)", f.GetPath(), f.GetErrno(), ev.Process.GetExe())
		}
	}
	after := kindStats(t, ag)
	if got := after[event.KindFileOpen].Filtered - before[event.KindFileOpen].Filtered; got < probes {
		t.Errorf("file_open filtered grew by %d, want at least the shell's %d probes", got, probes)
	}
}

func kindStats(t *testing.T, ag *agenttest.Agent) map[event.Kind]struct{ Filtered uint64 } {
	t.Helper()
	st, err := ag.App.Sensor.Stats()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[event.Kind]struct{ Filtered uint64 })
	for k, ks := range st.Kinds {
		out[k] = struct{ Filtered uint64 }{ks.Filtered}
	}
	return out
}

// waitStored is how long an event may take to reach the collector's
// store: longer in the emulated guests of the kernel matrix.
func waitStored() time.Duration {
	if _, vm := privtest.InVM(); vm {
		return 180 * time.Second
	}
	return 30 * time.Second
}

// TestShadowReadAlertsUnderTheDefaults: with nothing configured, a shell
// reading /etc/shadow (a read-only open, reported because it is on the
// read watch list) raises the sensitive-read alert.
func TestShadowReadAlertsUnderTheDefaults(t *testing.T) {
	privtest.Require(t)
	privtest.Existing(t, "/etc/shadow", 0o640)
	ag := agenttest.Start(t, agenttest.Options{ID: "gw-shadow"})
	reader := exec.Command("/bin/sh", "-c", "exec 3</etc/shadow; : wp-shadow-probe")
	if out, err := reader.CombinedOutput(); err != nil {
		t.Fatalf("reading /etc/shadow: %v %s", err, out)
	}
	al := ag.Wait(t, "wp-host-sensitive-read", "wp-shadow-probe")
	if !slices.Contains(al.Event.Alert.Matches, event.Match{Field: "TargetFilename", Value: "/etc/shadow"}) ||
		al.Event.Process.PID != uint32(reader.Process.Pid) {
		t.Errorf("the alert: %s", al.JSON)
	}
}
