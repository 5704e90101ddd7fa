package main

import (
	"encoding/json"
	"maps"
	"net"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/watchpost/watchpost/collector/collectortest"
	"github.com/watchpost/watchpost/internal/agenttest"
)

// TestEventsJSONIsTheAgentSchema: one JSON schema for the agent's stdout
// and `watchpost events --json`. A real agent prints its events and ships
// them to a real collector; the test execs a program with a marker
// argument, writes a marker file and makes a TCP connection over loopback. Every event the CLI prints for the agent
// is the agent's own line for the same sequence number, field for field
// and value for value (type names, RFC 3339 times, an absent login uid), with only the collector's agent_id and boot_id added; the
// run's exec, file, connect and agent_start events are among them.
func TestEventsJSONIsTheAgentSchema(t *testing.T) {
	requireRoot(t)
	const id = "gw-cli-schema"
	col, pki := collectortest.Loopback(t, []string{id}, nil)
	srv := "--server=" + col.QueryAddr()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ag := agenttest.Start(t, agenttest.Options{ID: id, CollectorAddr: col.Addr(), PKI: pki, Lines: true})

	marker := filepath.Join(dir, "wp-schema-marker")
	if out, err := exec.Command("/bin/sh", "-c", "echo x > "+marker+"; exec /bin/true "+marker).CombinedOutput(); err != nil {
		t.Fatalf("sh: %v %s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	// From a child: the agent runs in this process and leaves its own
	// actions out.
	if out, err := exec.Command("/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/"+strconv.Itoa(port)+" && echo "+marker+" >&3").CombinedOutput(); err != nil {
		t.Fatalf("bash connect: %v %s", err, out)
	}

	// stored: the CLI's events of the run that name the marker, plus its
	// connect and start, by sequence number.
	want := map[string]bool{"exec": false, "file_open": false, "agent_start": false, "net_connect": false}
	var stored map[uint64]map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := cli(t, "events", srv, "--agent", id, "--since", "10m", "--limit", "5000", "--json")
		if err != nil {
			t.Fatal(err)
		}
		stored = map[uint64]map[string]any{}
		for k := range want {
			want[k] = false
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue // nothing stored yet
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("events --json printed a line that is not JSON: %v\n%s", err, line)
			}
			typ, _ := m["type"].(string)
			mine := strings.Contains(line, marker) || typ == "agent_start" ||
				(typ == "net_connect" && strings.Contains(line, `"dst_port":`+strconv.Itoa(port)+`,`))
			if !mine {
				continue
			}
			if _, ok := want[typ]; ok {
				want[typ] = true
			}
			stored[uint64(m["seq"].(float64))] = m
		}
		if !slices.Contains(slices.Collect(maps.Values(want)), false) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector never had all of %v (had %v):\n%s", slices.Sorted(maps.Keys(want)), want, out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	printed := map[uint64]map[string]any{}
	for _, line := range ag.Lines() {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("the agent printed a line that is not JSON: %v\n%s", err, line)
		}
		printed[uint64(m["seq"].(float64))] = m
	}
	for seq, m := range stored {
		if m["agent_id"] != id || m["boot_id"] == "" || m["boot_id"] == nil {
			t.Errorf("seq %d: agent_id %v, boot_id %v: the collector's identity is missing", seq, m["agent_id"], m["boot_id"])
		}
		delete(m, "agent_id")
		delete(m, "boot_id")
		a, ok := printed[seq]
		if !ok {
			t.Errorf("seq %d (%v): stored, but the agent never printed it", seq, m["type"])
			continue
		}
		if d := jsonDiff("", m, a); len(d) > 0 {
			t.Errorf("seq %d (%v): the CLI and the agent differ (cli ≠ agent): %s", seq, m["type"], strings.Join(d, "; "))
		}
	}
	// The fields a reader relies on, as the agent writes them.
	for _, m := range stored {
		if _, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil {
			t.Errorf("%v: time %v is not RFC 3339: %v", m["type"], m["time"], err)
		}
	}
}

// jsonDiff lists where two decoded JSON values differ, by path.
// emptyList says whether v is an empty list, printed as [] or null: a list
// field the agent left nil prints null, and the protobuf copy cannot tell
// the two apart, so both mean "none".
func emptyList(v any) bool {
	l, ok := v.([]any)
	return v == nil || ok && len(l) == 0
}

func jsonDiff(path string, a, b any) []string {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		var out []string
		for _, k := range slices.Sorted(maps.Keys(am)) {
			out = append(out, jsonDiff(path+"."+k, am[k], bm[k])...)
		}
		for _, k := range slices.Sorted(maps.Keys(bm)) {
			if _, ok := am[k]; !ok {
				out = append(out, jsonDiff(path+"."+k, nil, bm[k])...)
			}
		}
		return out
	}
	al, aok := a.([]any)
	bl, bok := b.([]any)
	if aok && bok && len(al) == len(bl) {
		var out []string
		for i := range al {
			out = append(out, jsonDiff(path+"["+strconv.Itoa(i)+"]", al[i], bl[i])...)
		}
		return out
	}
	if reflect.DeepEqual(a, b) || emptyList(a) && emptyList(b) {
		return nil
	}
	ab, _ := json.Marshal(a)
	bb, _ := json.Marshal(b)
	return []string{path + ": " + string(ab) + " ≠ " + string(bb)}
}
