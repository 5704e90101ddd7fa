package app_test

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/watchpost/watchpost/agent/internal/privtest"
	"github.com/watchpost/watchpost/collector/collectortest"
	"github.com/watchpost/watchpost/collector/store"
	"github.com/watchpost/watchpost/internal/agenttest"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// TestHostileUserCannotBlindTheSensor is the unprivileged attacker of
// findings 1 and 8, for real: the real agent ships to a real collector over
// mutual TLS while uid 65534 runs a fork flood (40 processes of 300 failed
// opens each, every process below its own rate bucket), execs a program
// with 1,500 arguments, and runs a shell with a 20 KB argument whose child
// carries it in its ancestry. Beside it root runs 50 marked shells that
// each write a file. Every one of root's 50 execs and 50 writes is stored
// (a write the kernel skipped on a preemptible one-CPU guest must show in
// the file program's recursion misses),
// the oversized events are stored shortened (tail kept) and flagged, and
// the collector refused no event.
func TestHostileUserCannotBlindTheSensor(t *testing.T) {
	privtest.Require(t)
	const id = "gw-hostile"
	c, pki := collectortest.Loopback(t, []string{id}, nil)
	ag := agenttest.Start(t, agenttest.Options{ID: id, CollectorAddr: c.Addr(), PKI: pki})
	dir := privtest.Dir(t)

	flood := privtest.AsUser(t, privtest.Nobody, "/bin/sh", "-c", privtest.FailedOpenLoop(40, 300))
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	many := make([]string, 1500)
	for i := range many {
		many[i] = strconv.Itoa(i + 1)
	}
	wide := privtest.AsUser(t, privtest.Nobody, "/bin/true", many...)
	if out, err := wide.CombinedOutput(); err != nil {
		t.Fatalf("1500 arguments: %v %s", err, out)
	}
	long := "H" + strings.Repeat("x", 20<<10) + "T"
	deep := privtest.AsUser(t, privtest.Nobody, "/bin/sh", "-c", "/bin/true wp-hostile-child; exit 0", long)
	if out, err := deep.CombinedOutput(); err != nil {
		t.Fatalf("20 KB argument: %v %s", err, out)
	}
	rootPIDs := map[uint32]bool{}
	for i := 0; i < 50; i++ {
		cmd := exec.Command("/bin/sh", "-c", fmt.Sprintf(": > %s/m%d", dir, i))
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		rootPIDs[uint32(cmd.Process.Pid)] = true
	}
	if err := flood.Wait(); err != nil {
		t.Fatalf("flood: %v", err)
	}

	query := func(f store.Filter) []*watchpostv1.Event {
		f.AgentID = id
		res, err := c.Store().Query(context.Background(), store.Query{Filter: f, Limit: 100_000})
		if err != nil {
			t.Fatal(err)
		}
		return res.Events
	}
	execs := []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_EXEC}
	var writes, rootExecs int
	deadline := time.Now().Add(60 * time.Second)
	for {
		writes, rootExecs = 0, 0
		for _, ev := range query(store.Filter{Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_FILE_OPEN}, PathPrefix: dir + "/m"}) {
			if ev.GetFile().GetWrite() && ev.Process.GetUid() == 0 {
				writes++
			}
		}
		for _, ev := range query(store.Filter{Types: execs, Exe: "sh"}) {
			if rootPIDs[ev.Process.GetPid()] && ev.Process.GetUid() == 0 {
				rootExecs++
			}
		}
		if writes == 50 && rootExecs == 50 {
			break
		}
		// On a preemptible kernel with one CPU a file program preempted
		// mid-run makes the next run skip (documented in docs/vmtests.md);
		// such a loss is counted, never silent. It may account for writes
		// only as far as the kernel counted skipped runs of the file
		// program, and only once the agent has caught up.
		if time.Now().After(deadline.Add(-45*time.Second)) && rootExecs == 50 {
			if missed := fileProgramMisses(ag); missed > 0 && writes+int(missed) >= 50 {
				t.Logf("root's writes stored: %d of 50; the kernel counted %d skipped runs of the file program (recursion_miss)", writes, missed)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("root's actions stored: %d of 50 execs, %d of 50 writes; %s", rootExecs, writes, lossReport(ag))
		}
		time.Sleep(200 * time.Millisecond)
	}

	var wideEv, childEv *watchpostv1.Event
	for _, ev := range query(store.Filter{Types: execs, Exe: "true"}) {
		switch {
		case ev.Process.GetPid() == uint32(wide.Process.Pid):
			wideEv = ev
		case len(ev.Process.GetArgs()) == 2 && ev.Process.Args[1] == "wp-hostile-child":
			childEv = ev
		}
	}
	if wideEv == nil || childEv == nil {
		t.Fatalf("oversized execs stored: 1500 arguments %v, child of the 20 KB argument %v", wideEv != nil, childEv != nil)
	}
	args := wideEv.Process.Args
	if len(args) == 0 || args[len(args)-1] != "1500" || !(wideEv.GetExec().GetArgsTruncated() || len(wideEv.Header.Truncated) > 0) || len(args) > 1024 {
		t.Fatalf("1500 arguments stored as %d ending %q, args_truncated %v, truncated %v", len(args), args[len(args)-1],
			wideEv.GetExec().GetArgsTruncated(), wideEv.Header.Truncated)
	}
	var parent *watchpostv1.Ancestor
	for _, a := range childEv.Ancestry {
		if a.Pid == uint32(deep.Process.Pid) {
			parent = a
		}
	}
	if parent == nil {
		t.Fatalf("the child's ancestry %v lacks the shell %d", childEv.Ancestry, deep.Process.Pid)
	}
	total := 0
	for _, a := range parent.Args {
		total += len(a)
	}
	if total > 2048 || !strings.HasSuffix(parent.Args[len(parent.Args)-1], "xT") || len(childEv.Header.Truncated) == 0 {
		t.Fatalf("the 20 KB argument in the ancestry: %d bytes, last %.20q, truncated %v", total, parent.Args[len(parent.Args)-1], childEv.Header.Truncated)
	}
	for _, r := range hostInfo(t, c, id).Refusals {
		if r.Kind == "event" && strings.HasPrefix(r.Reason, "refused_") || r.Kind == "batch" {
			t.Fatalf("the collector refused: %v", r)
		}
	}
}

// fileProgramMisses is the number of runs of the file program the kernel
// skipped.
func fileProgramMisses(ag *agenttest.Agent) uint64 {
	st, err := ag.App.Sensor.Stats()
	if err != nil {
		return 0
	}
	return st.ProgramMisses["wp_sys_exit_file"]
}

// lossReport names every counter that could account for a missing event.
func lossReport(ag *agenttest.Agent) string {
	var b strings.Builder
	if st, err := ag.App.Sensor.Stats(); err == nil {
		for k, ks := range st.Kinds {
			if ks.Missed+ks.RingFull+ks.RateLimited+ks.QueueFull > 0 {
				fmt.Fprintf(&b, "%s %+v; ", k, ks)
			}
		}
		fmt.Fprintf(&b, "program misses %v, decode errors %d; ", st.ProgramMisses, st.DecodeErrors)
	}
	if ag.App.Shipper != nil {
		sh := ag.App.Shipper.Stats()
		fmt.Fprintf(&b, "shipper dropped %v by kind %v, refused %d", sh.Dropped, sh.DroppedByKind, sh.EventsRefused)
	}
	return b.String()
}

func hostInfo(t *testing.T, c interface {
	Store() store.Store
}, id string) *watchpostv1.HostInfo {
	t.Helper()
	hosts, err := c.Store().Hosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if h.AgentId == id {
			return h
		}
	}
	t.Fatalf("no host %s", id)
	return nil
}
