package proctable

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchpost/watchpost/agent/event"
)

func newTestTable(t *testing.T) *Table {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ProcRoot = t.TempDir() // an empty /proc: no lazy reads
	cfg.MaxExited = 1024
	tb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func execEv(pid, ppid uint32, exe string, args ...string) *event.Event {
	return &event.Event{Kind: event.KindExec, Process: event.Process{PID: pid, PPID: ppid, Exe: exe, Args: args, Comm: filepath.Base(exe)}}
}

func TestAncestryFollowsExecAndClone(t *testing.T) {
	tb := newTestTable(t)
	tb.Apply(execEv(100, 1, "/usr/sbin/sshd", "sshd", "-D"))
	tb.Apply(&event.Event{Kind: event.KindClone, Process: event.Process{PID: 100, PPID: 1}, Clone: &event.Clone{ChildPID: 200, ChildTID: 200}})
	tb.Apply(execEv(200, 100, "/usr/bin/bash", "bash", "-i"))
	ev := execEv(300, 200, "/usr/bin/python3", "python3", "write_coils.py")
	tb.Apply(ev)
	want := []event.Ancestor{
		{PID: 200, Comm: "bash", Exe: "/usr/bin/bash", Args: []string{"bash", "-i"}},
		{PID: 100, Comm: "sshd", Exe: "/usr/sbin/sshd", Args: []string{"sshd", "-D"}},
		{PID: 1},
	}
	if diff := cmp.Diff(want, ev.Ancestry); diff != "" {
		t.Errorf("ancestry (-want +got):\n%s", diff)
	}
	// A later non-exec event of pid 300 gets exe and args from the table.
	open := &event.Event{Kind: event.KindFileOpen, Process: event.Process{PID: 300, PPID: 200}}
	tb.Apply(open)
	if open.Process.Exe != "/usr/bin/python3" || len(open.Process.Args) != 2 {
		t.Errorf("enrichment: %+v", open.Process)
	}
}

func TestExitedParentStaysVisibleForItsChildren(t *testing.T) {
	tb := newTestTable(t)
	tb.Apply(execEv(10, 1, "/usr/bin/cron", "cron"))
	tb.Apply(&event.Event{Kind: event.KindExit, Process: event.Process{PID: 10, PPID: 1}})
	ev := execEv(11, 10, "/bin/sh", "sh", "-c", "backup")
	tb.Apply(ev)
	if len(ev.Ancestry) == 0 || ev.Ancestry[0].Exe != "/usr/bin/cron" {
		t.Errorf("ancestry after the parent exited: %+v", ev.Ancestry)
	}
}

// TestMemoryStaysBoundedOverManyLifetimes runs 100k process lifetimes
// (clone, exec, exit) through the table, with a slice of exits lost, and
// asserts that the table does not grow with them.
func TestMemoryStaysBoundedOverManyLifetimes(t *testing.T) {
	tb := newTestTable(t)
	tb.cfg.MaxEntries = 4096
	now := time.Unix(0, 0)
	tb.now = func() time.Time { return now }
	tb.Apply(execEv(1, 0, "/sbin/init", "init"))

	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var before uint64
	const lifetimes = 100_000
	for i := 0; i < lifetimes; i++ {
		pid := uint32(1000 + i%30000) // pids are reused, as on a real host
		now = now.Add(time.Millisecond)
		tb.Apply(&event.Event{Kind: event.KindClone, Process: event.Process{PID: 1}, Clone: &event.Clone{ChildPID: pid, ChildTID: pid}})
		tb.Apply(execEv(pid, 1, "/usr/bin/true", "true", "lifetime"))
		if i%100 != 0 { // every hundredth exit event is lost
			tb.Apply(&event.Event{Kind: event.KindExit, Process: event.Process{PID: pid, PPID: 1}})
		}
		if i == 10_000 {
			before = heap()
		}
	}
	tb.Sweep() // the empty proc root says every lost process is gone
	st := tb.Stats()
	t.Logf("after %d lifetimes: live %d exited %d evicted %d swept %d", lifetimes, st.Live, st.Exited, st.Evicted, st.Swept)
	if st.Live > 1 || st.Exited > tb.cfg.MaxExited {
		t.Errorf("table holds %d live and %d exited entries, want at most 1 and %d", st.Live, st.Exited, tb.cfg.MaxExited)
	}
	after := heap()
	if after > before+8<<20 {
		t.Errorf("heap grew from %d to %d bytes over %d lifetimes", before, after, lifetimes)
	}
}

func TestParseStatWithAwkwardComm(t *testing.T) {
	var e Entry
	stat := []byte("4242 (evil) (name)) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 100 18446744073709551615")
	if err := parseStat(stat, &e); err != nil {
		t.Fatal(err)
	}
	if e.Comm != "evil) (name)" || e.PPID != 17 || e.StartBootNS != 12345*10_000_000 {
		t.Errorf("parsed %+v", e)
	}
	if err := parseStat([]byte("garbage"), &e); err == nil {
		t.Error("garbage parsed")
	}
}

func TestSeedReadsThisProcess(t *testing.T) {
	cfg := DefaultConfig()
	tb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Seed(); err != nil {
		t.Fatal(err)
	}
	e, ok := tb.Lookup(uint32(os.Getpid()))
	if !ok {
		t.Fatal("this process is not in the seeded table")
	}
	exe, _ := os.Executable()
	if e.Exe != exe || e.PPID != uint32(os.Getppid()) || len(e.Args) == 0 || e.Args[0] != os.Args[0] {
		t.Errorf("seeded entry %+v", e)
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Depth = 1
	if err := cfg.Validate(); err == nil || err.Error()[:len("process_table.depth")] != "process_table.depth" {
		t.Errorf("got %v", err)
	}
}

// TestCredChangeOldIDFromTable: a successful change's id before is the
// table's, root's 0 included; a setfs* id before (from the kernel) stays.
func TestCredChangeOldIDFromTable(t *testing.T) {
	tb := newTestTable(t)
	tb.Apply(execEv(400, 1, "/usr/bin/sudo", "sudo", "-i")) // euid 0
	up := &event.Event{Kind: event.KindCredChange, Process: event.Process{PID: 400, UID: 1000, EUID: 1000, GID: 1000, EGID: 1000},
		Security: &event.Security{Operation: "setresuid", NewID: event.ID(1000)}}
	tb.Apply(up)
	if diff := cmp.Diff(&event.Security{Operation: "setresuid", OldID: event.ID(0), NewID: event.ID(1000)}, up.Security); diff != "" {
		t.Errorf("setresuid (-want +got):\n%s", diff)
	}
	fs := &event.Event{Kind: event.KindCredChange, Process: event.Process{PID: 400, UID: 1000, EUID: 1000, GID: 1000, EGID: 1000},
		Security: &event.Security{Operation: "setfsuid", OldID: event.ID(1000), NewID: event.ID(0)}}
	tb.Apply(fs)
	if got := *fs.Security.OldID; got != 1000 {
		t.Errorf("setfsuid: old fs id %d replaced by the table's euid", got)
	}
	group := &event.Event{Kind: event.KindCredChange, Process: event.Process{PID: 400, UID: 1000, EUID: 1000, GID: 50, EGID: 50},
		Security: &event.Security{Operation: "setgid", NewID: event.ID(50)}}
	tb.Apply(group)
	if got := group.Security.OldID; got == nil || *got != 1000 {
		t.Errorf("setgid: old gid %v, want 1000", got)
	}
}

// TestSignalAndPtraceNameTheirTarget: the target's exe, argv and uid come
// from the table (root's uid 0 included), also after the target exited;
// an unknown target keeps only its pid.
func TestSignalAndPtraceNameTheirTarget(t *testing.T) {
	tb := newTestTable(t)
	plc := execEv(500, 1, "/usr/local/bin/plc-runtime", "plc-runtime", "--cell", "1")
	tb.Apply(plc)
	tb.Apply(execEv(600, 1, "/usr/bin/gdb", "gdb", "-p", "500"))
	trace := &event.Event{Kind: event.KindPtrace, Process: event.Process{PID: 600, UID: 1000},
		Security: &event.Security{Operation: "PTRACE_ATTACH", TargetPID: 500}}
	tb.Apply(trace)
	want := &event.Security{Operation: "PTRACE_ATTACH", TargetPID: 500, TargetComm: "plc-runtime", TargetExe: "/usr/local/bin/plc-runtime",
		TargetArgs: []string{"plc-runtime", "--cell", "1"}, TargetUID: event.ID(0)}
	if diff := cmp.Diff(want, trace.Security); diff != "" {
		t.Errorf("ptrace (-want +got):\n%s", diff)
	}
	tb.Apply(&event.Event{Kind: event.KindExit, Process: event.Process{PID: 500}})
	kill := &event.Event{Kind: event.KindSignal, Process: event.Process{PID: 600, UID: 1000},
		Security: &event.Security{Operation: "kill", TargetPID: 500, Signal: 9}}
	tb.Apply(kill)
	if kill.Security.TargetExe != "/usr/local/bin/plc-runtime" || kill.Security.TargetUID == nil {
		t.Errorf("signal to an exited target: %+v", kill.Security)
	}
	unknown := &event.Event{Kind: event.KindSignal, Process: event.Process{PID: 600},
		Security: &event.Security{Operation: "kill", TargetPID: 999999, Signal: 15}}
	tb.Apply(unknown)
	if diff := cmp.Diff(&event.Security{Operation: "kill", TargetPID: 999999, Signal: 15}, unknown.Security); diff != "" {
		t.Errorf("unknown target (-want +got):\n%s", diff)
	}
}
