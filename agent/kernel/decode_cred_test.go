package kernel

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"github.com/watchpost/watchpost/agent/event"
)

// credRecord builds a credential-change record as the kernel program lays
// it out: the task's ids after the call and the syscall's arguments.
func credRecord(op uint16, ret int64, euid, fsuid uint32, args ...uint64) []byte {
	var e wpWpSecEvent
	e.Hdr.Type = uint16(event.KindCredChange)
	e.Hdr.Pid, e.Hdr.Tid, e.Hdr.Uid, e.Hdr.Gid = 77, 77, euid, euid
	e.Op, e.Ret = op, ret
	e.Uid, e.Euid, e.Suid, e.Fsuid = euid, euid, euid, fsuid
	e.Gid, e.Egid, e.Sgid, e.Fsgid = euid, euid, euid, fsuid
	copy(e.Args[:], args)
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&e)), secFixedSize)...)
}

func TestDecodeCredChangeIDs(t *testing.T) {
	const nobody = 65534
	keep := uint64(^uint32(0)) // (uid_t)-1: leave unchanged
	for _, tc := range []struct {
		name string
		raw  []byte
		want *event.Security
	}{
		{"setuid(0) by root: new id 0 present, old from the process table",
			credRecord(63, 0, 0, 0, 0),
			&event.Security{Operation: "setuid", NewID: event.ID(0)}},
		{"failed setuid(0) by nobody: old is new, the asked id reported",
			credRecord(63, -1, nobody, nobody, 0),
			&event.Security{Operation: "setuid", Result: -1, Errno: "EPERM", OldID: event.ID(nobody), NewID: event.ID(nobody), Requested: []int64{0}}},
		{"failed setresuid(0, -1, 0): unchanged stays -1",
			credRecord(67, -1, nobody, nobody, 0, keep, 0),
			&event.Security{Operation: "setresuid", Result: -1, Errno: "EPERM", OldID: event.ID(nobody), NewID: event.ID(nobody), Requested: []int64{0, -1, 0}}},
		{"failed setreuid with the upper half of the register set",
			credRecord(65, -1, nobody, nobody, 1<<32|1000, ^uint64(0)),
			&event.Security{Operation: "setreuid", Result: -1, Errno: "EPERM", OldID: event.ID(nobody), NewID: event.ID(nobody), Requested: []int64{1000, -1}}},
		{"failed setresgid: the gid",
			credRecord(68, -1, 1000, 1000, 0, 0, 0),
			&event.Security{Operation: "setresgid", Result: -1, Errno: "EPERM", OldID: event.ID(1000), NewID: event.ID(1000), Requested: []int64{0, 0, 0}}},
		{"setfsuid(1000) by root: the return value is the old fs id, 0",
			credRecord(69, 0, 0, 1000, 1000),
			&event.Security{Operation: "setfsuid", OldID: event.ID(0), NewID: event.ID(1000)}},
		{"setfsuid(0) refused: the fs id stayed, the asked one reported",
			credRecord(69, nobody, nobody, nobody, 0),
			&event.Security{Operation: "setfsuid", Result: nobody, OldID: event.ID(nobody), NewID: event.ID(nobody), Requested: []int64{0}}},
		{"setfsuid(-1) only queries",
			credRecord(69, nobody, nobody, nobody, keep),
			&event.Security{Operation: "setfsuid", Result: nobody, OldID: event.ID(nobody), NewID: event.ID(nobody)}},
		{"failed setgroups: no ids to report (a pointer)",
			credRecord(72, -1, nobody, nobody, 1, 0x7ffd0000),
			&event.Security{Operation: "setgroups", Result: -1, Errno: "EPERM", OldID: event.ID(nobody), NewID: event.ID(nobody)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := newDecoder(newBootClock(), 1).decode(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, ev.Security); diff != "" {
				t.Errorf("security (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCredChangeJSONKeepsRoot: uid 0 before and after is written, not
// dropped as an empty field.
func TestCredChangeJSONKeepsRoot(t *testing.T) {
	ev, err := newDecoder(newBootClock(), 1).decode(credRecord(67, 0, 0, 0, 0, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	ev.Security.OldID = event.ID(0) // as the process table fills it for a root process
	b, err := ev.AppendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `"security":{"operation":"setresuid","old_id":0,"new_id":0,"result":0}`
	if !strings.Contains(string(b), want) {
		t.Errorf("JSON %s\nlacks %s", b, want)
	}
	if strings.Contains(string(b), `"auid"`) {
		t.Errorf("JSON %s carries an unset auid", b)
	}
}
