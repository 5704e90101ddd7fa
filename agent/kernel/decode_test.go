package kernel

import (
	"bytes"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
)

// execRecord builds an exec record as the kernel program lays it out.
func execRecord(exe, cwd string, args []byte, flags uint16) []byte {
	return execEnvRecord(exe, cwd, args, nil, flags)
}

// execEnvRecord is execRecord with environment strings after argv.
func execEnvRecord(exe, cwd string, args, env []byte, flags uint16) []byte {
	var e wpWpExecEvent
	e.Hdr.Type = uint16(wpWpEventTypeWP_EV_EXEC)
	e.Hdr.Flags = flags
	e.Hdr.Pid, e.Hdr.Tid, e.Hdr.Ppid = 42, 42, 7
	e.Hdr.Uid, e.Hdr.Gid = 1000, 1001
	e.Hdr.TsBootNs = 5_000_000_000
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&e.Hdr.Comm[0])), len(e.Hdr.Comm)), "plc-agent")
	e.Euid, e.Egid, e.Auid, e.Sessionid = 0, 0, 1000, 3
	e.StartBootNs, e.ExeIno, e.ExeDev, e.Argc = 4_000_000_000, 99, 254<<20|1, 3
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&e.Tty[0])), len(e.Tty)), "pts0")
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&e.Buf[0])), len(e.Buf))
	n := copy(buf, exe)
	n += copy(buf[n:], cwd)
	n += copy(buf[n:], args)
	copy(buf[n:], env)
	e.ExeLen, e.CwdLen, e.ArgsLen, e.EnvLen = uint16(len(exe)), uint16(len(cwd)), uint16(len(args)), uint16(len(env))
	e.Envc = uint32(bytes.Count(env, []byte{0}))
	all := unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e))
	return append([]byte(nil), all[:execFixedSize+len(exe)+len(cwd)+len(args)+len(env)]...)
}

func TestDecodeExecEnvironment(t *testing.T) {
	d := newDecoder(newBootClock(), 8)
	env := []byte("PATH=/usr/bin\x00LD_PRELOAD=/dev/shm/x.so\x00EMPTY=\x00noequals\x00LD_PRELOAD=/tmp/y.so\x00")
	ev, err := d.decode(execEnvRecord("/bin/sh", "/", []byte("sh\x00"), env, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := &event.Exec{
		Argc: 3, ExeInode: 99, ExeDev: "254:1", Envc: 5, EnvTruncated: true,
		Env:           map[string]string{"PATH": "/usr/bin", "LD_PRELOAD": "/dev/shm", "EMPTY": ""},
		EnvDuplicates: []string{"LD_PRELOAD=/tmp/y.s"},
	}
	if diff := cmp.Diff(want, ev.Exec); diff != "" {
		t.Errorf("exec (-want +got):\n%s", diff)
	}
}

func TestDecodeNamespace(t *testing.T) {
	var e wpWpNsEvent
	e.Hdr.Type = uint16(wpWpEventTypeWP_EV_NAMESPACE)
	e.Op = 103 // setns
	e.TargetInum = 4026532999
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&e.TargetType[0])), len(e.TargetType)), "net")
	e.Inum = [8]uint32{1, 2, 3, 4026532999, 5, 6, 7, 8}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e))
	ev, err := newDecoder(newBootClock(), 1).decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	// nstype 0: the namespace type is the fd's.
	want := &event.Namespace{Operation: "setns", Namespaces: []string{"net"}, Inodes: map[string]uint32{"net": 4026532999}, TargetInode: 4026532999}
	if diff := cmp.Diff(want, ev.Namespace); diff != "" {
		t.Errorf("setns (-want +got):\n%s", diff)
	}
	e.Op, e.Flags, e.Ret, e.TargetInum, e.TargetType = 102, unix.CLONE_NEWNS|unix.CLONE_NEWUSER, 0, 0, [16]int8{}
	ev, _ = newDecoder(newBootClock(), 1).decode(raw)
	want = &event.Namespace{Operation: "unshare", Namespaces: []string{"mnt", "user"}, Flags: unix.CLONE_NEWNS | unix.CLONE_NEWUSER, Inodes: map[string]uint32{"mnt": 1, "user": 6}}
	if diff := cmp.Diff(want, ev.Namespace); diff != "" {
		t.Errorf("unshare (-want +got):\n%s", diff)
	}
	if _, err := newDecoder(newBootClock(), 1).decode(raw[:len(raw)-1]); err == nil {
		t.Error("a short namespace record was accepted")
	}
}

func TestDecodeExec(t *testing.T) {
	d := newDecoder(newBootClock(), DefaultEnv().MaxValueBytes)
	raw := execRecord("/opt/plc/bin/agent", "/var/lib/plc", []byte("agent\x00--port\x00502\x00"), uint16(wpWpFlagsWP_F_ARGS_TRUNC))
	ev, err := d.decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := event.Process{
		PID: 42, TID: 42, PPID: 7, UID: 1000, GID: 1001, EUID: 0, EGID: 0, LoginUID: 1000, SessionID: 3,
		Comm: "plc-agent", Exe: "/opt/plc/bin/agent", Args: []string{"agent", "--port", "502"},
		Cwd: "/var/lib/plc", TTY: "pts0", StartBootNS: 4_000_000_000,
	}
	if diff := cmp.Diff(want, ev.Process); diff != "" {
		t.Errorf("process (-want +got):\n%s", diff)
	}
	wantExec := &event.Exec{ArgsTruncated: true, Argc: 3, ExeInode: 99, ExeDev: "254:1"}
	if diff := cmp.Diff(wantExec, ev.Exec); diff != "" {
		t.Errorf("exec (-want +got):\n%s", diff)
	}
	if ev.Kind != event.KindExec || ev.BootNS != 5_000_000_000 {
		t.Errorf("kind %v boot %d", ev.Kind, ev.BootNS)
	}
}

func TestDecodeRejectsInconsistentLengths(t *testing.T) {
	d := newDecoder(newBootClock(), DefaultEnv().MaxValueBytes)
	raw := execRecord("/bin/sh", "/", []byte("sh\x00"), 0)
	if _, err := d.decode(raw[:len(raw)-1]); err == nil {
		t.Fatal("a record shorter than its declared lengths was accepted")
	}
	if _, err := d.decode(raw[:hdrSize-1]); err == nil {
		t.Fatal("a record shorter than the header was accepted")
	}
}

func TestDecodeExitStatus(t *testing.T) {
	cases := []struct {
		code uint32
		want event.Exit
	}{
		{3 << 8, event.Exit{Code: 3, LifetimeNS: 10}},
		{9, event.Exit{Signal: 9, LifetimeNS: 10}},
		{11 | 0x80, event.Exit{Signal: 11, CoreDumped: true, LifetimeNS: 10}},
		{0, event.Exit{LifetimeNS: 10}},
	}
	for _, c := range cases {
		if diff := cmp.Diff(&c.want, decodeExit(c.code, 20, 10)); diff != "" {
			t.Errorf("code %#x (-want +got):\n%s", c.code, diff)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	if diff := cmp.Diff([]string{"a", "", "b c"}, splitArgs([]byte("a\x00\x00b c\x00"))); diff != "" {
		t.Error(diff)
	}
	if got := splitArgs([]byte("trunc")); len(got) != 1 || got[0] != "trunc" {
		t.Errorf("truncated last argument: %q", got)
	}
}

// FuzzDecode: no input may crash the decoder, and a decoded exec record
// never reports more than the record carried.
func FuzzDecode(f *testing.F) {
	f.Add(execRecord("/usr/bin/python3", "/home/op", []byte("python3\x00-m\x00pymodbus\x00"), 0))
	var cl wpWpCloneEvent
	cl.Hdr.Type = uint16(wpWpEventTypeWP_EV_CLONE)
	f.Add(append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&cl)), unsafe.Sizeof(cl))...))
	f.Add([]byte{})
	f.Add(execEnvRecord("/bin/sh", "/", []byte("sh\x00"), []byte("PATH=/bin\x00A=\x00"), 0))
	var ns wpWpNsEvent
	ns.Hdr.Type = uint16(wpWpEventTypeWP_EV_NAMESPACE)
	f.Add(append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&ns)), unsafe.Sizeof(ns))...))
	for _, t := range []wpWpEventType{wpWpEventTypeWP_EV_RESP_EXEC, wpWpEventTypeWP_EV_RESP_CONNECT, wpWpEventTypeWP_EV_RESP_SOCKET, wpWpEventTypeWP_EV_RESP_DEVICE} {
		var r wpWpRespEvent
		r.Hdr.Type = uint16(t)
		f.Add(append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Sizeof(r))...))
	}
	// A decoder outside a sensor has no policy table: response records
	// still decode, with numbered policies.
	d := newDecoder(newBootClock(), DefaultEnv().MaxValueBytes)
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := d.decode(raw)
		if err != nil {
			return
		}
		if ev.Kind == event.KindExec && len(ev.Process.Exe)+len(ev.Process.Cwd)+len(ev.Exec.EnvDuplicates) > len(raw) {
			t.Fatalf("decoded more bytes than the record holds")
		}
	})
}
