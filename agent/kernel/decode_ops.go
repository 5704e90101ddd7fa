package kernel

import (
	"fmt"

	"golang.org/x/sys/unix"
	"net/netip"
	"path"
	"strconv"
	"unsafe"

	"github.com/watchpost/watchpost/agent/event"
)

var (
	fileFixedSize = int(unsafe.Offsetof(wpWpFileEvent{}.Buf))
	secFixedSize  = int(unsafe.Offsetof(wpWpSecEvent{}.Buf))
	netSize       = int(unsafe.Sizeof(wpWpNetEvent{}))
	memfdSize     = int(unsafe.Sizeof(wpWpMemfdExecEvent{}))
)

// Open flags that mean the caller may modify the file.
const writeOpenFlags = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 // O_WRONLY O_RDWR O_CREAT O_TRUNC O_APPEND

const atRemoveDir = 0x200

// regions splits a variable buffer into consecutive strings of the given lengths.
func regions(buf []byte, lens ...int) ([]string, error) {
	out := make([]string, len(lens))
	off := 0
	for i, n := range lens {
		if off+n > len(buf) {
			return nil, fmt.Errorf("string %d (%d bytes at %d) overruns the %d bytes sent", i, n, off, len(buf))
		}
		out[i] = string(buf[off : off+n])
		off += n
	}
	return out, nil
}

// joinName makes the absolute path of a name given relative to dir (the
// directory resolved in the kernel), or cleans an absolute name.
func joinName(dir, name string, relative bool) string {
	switch {
	case relative && name == "":
		return dir
	case relative:
		return path.Join(dir, name)
	case name != "":
		return path.Clean(name)
	}
	return dir
}

func (d *decoder) decodeFile(ev *event.Event, raw []byte) error {
	if len(raw) < fileFixedSize {
		return fmt.Errorf("file record of %d bytes: %w", len(raw), errShort)
	}
	e := &d.file
	n := copy(unsafe.Slice((*byte)(unsafe.Pointer(e)), unsafe.Sizeof(*e)), raw)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&e.Buf[0])), n-fileFixedSize)
	s, err := regions(buf, int(e.PathLen), int(e.NameLen), int(e.Path2Len), int(e.Name2Len))
	if err != nil {
		return fmt.Errorf("file record: %w", err)
	}
	flags := e.Hdr.Flags
	f := &event.File{
		Syscall:       OpName(e.Op),
		Path:          joinName(s[0], s[1], flags&uint16(wpWpFlagsWP_F_NAME_REL) != 0),
		PathTruncated: flags&uint16(wpWpFlagsWP_F_PATH_TRUNC) != 0,
		Watched:       flags&uint16(wpWpFlagsWP_F_WATCHED) != 0,
		Flags:         e.Flags,
		Mode:          e.Mode,
		Result:        int32(e.Ret),
		Errno:         event.ErrnoName(e.Ret),
		Inode:         e.Ino,
		UID:           e.OwnerUid,
		GID:           e.OwnerGid,
		Size:          e.Size,
		Write:         true,
	}
	if e.Dev != 0 || e.Ino != 0 {
		f.Dev = event.DevString(e.Dev)
	}
	switch e.I_mode & 0o170000 {
	case 0o020000:
		f.DevKind, f.RDev = "char", event.DevString(e.Rdev)
	case 0o060000:
		f.DevKind, f.RDev = "block", event.DevString(e.Rdev)
	}
	switch ev.Kind {
	case event.KindFileOpen:
		f.Write = e.Flags&writeOpenFlags != 0 || f.Syscall == "creat"
	case event.KindFileSymlink:
		f.NewPath = s[3] // the link's target, as given: never resolved
	case event.KindFileUnlink:
		if e.Flags&atRemoveDir != 0 {
			ev.Kind = event.KindFileRmdir
		}
	}
	if ev.Kind != event.KindFileSymlink && (e.Path2Len > 0 || e.Name2Len > 0) {
		f.NewPath = joinName(s[2], s[3], flags&uint16(wpWpFlagsWP_F_NAME2REL) != 0)
	}
	ev.File = f
	return nil
}

var families = map[uint16]string{1: "unix", 2: "inet", 10: "inet6", 16: "netlink", 17: "packet", 29: "can"}
var sockTypes = map[uint16]string{1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 10: "packet"}
var netlinkProtocols = map[uint16]string{0: "route", 2: "usersock", 4: "sock_diag", 5: "nflog", 6: "xfrm", 7: "selinux",
	8: "iscsi", 9: "audit", 10: "fib_lookup", 11: "connector", 12: "netfilter", 13: "ip6_fw", 14: "dnrtmsg",
	15: "kobject_uevent", 16: "generic", 18: "scsitransport", 19: "ecryptfs", 20: "rdma", 21: "crypto", 22: "smc"}
var ipProtocols = map[uint16]string{1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 255: "raw"}

func lookupName(m map[uint16]string, v uint16) string {
	if n, ok := m[v]; ok {
		return n
	}
	return strconv.Itoa(int(v))
}

func addrString(family uint16, b [16]uint8) string {
	var a netip.Addr
	switch family {
	case 2:
		a = netip.AddrFrom4([4]byte(b[:4]))
	case 10:
		a = netip.AddrFrom16(b).Unmap() // v4-mapped addresses are IPv4
	default:
		return ""
	}
	return a.String()
}

func (d *decoder) decodeNet(ev *event.Event, raw []byte) error {
	if len(raw) < netSize {
		return fmt.Errorf("net record of %d bytes: %w", len(raw), errShort)
	}
	e := (*wpWpNetEvent)(unsafe.Pointer(&raw[0]))
	n := &event.Net{
		Syscall:    OpName(e.Op),
		Family:     lookupName(families, e.Family),
		SockType:   lookupName(sockTypes, e.SockType),
		Result:     int32(e.Ret),
		Errno:      event.ErrnoName(e.Ret),
		BytesSent:  e.BytesSent,
		BytesRecv:  e.BytesRecv,
		DurationNS: e.DurationNs,
		SrcPort:    e.Sport,
		DstPort:    e.Dport,
		SrcAddr:    addrString(e.Family, e.Saddr),
		DstAddr:    addrString(e.Family, e.Daddr),
	}
	switch e.Family {
	case 16:
		n.Protocol = lookupName(netlinkProtocols, e.Protocol)
	case 17:
		// Packet sockets carry an Ethernet protocol (network order) when
		// the kernel records one.
		if e.Protocol != 0 {
			n.Protocol = fmt.Sprintf("eth:0x%04x", e.Protocol>>8|e.Protocol<<8)
		}
	default:
		n.Protocol = lookupName(ipProtocols, e.Protocol)
	}
	if e.Family == 10 && n.DstAddr != "" && netip.MustParseAddr(n.DstAddr).Is4() {
		n.Family = "inet" // a v4-mapped peer on a dual-stack socket
	}
	switch ev.Kind {
	case event.KindNetConnect, event.KindNetAccept, event.KindNetUDPFlow, event.KindNetClose, event.KindNetConnectResult:
		n.Direction = "outbound"
		if e.Hdr.Flags&uint16(wpWpFlagsWP_F_INBOUND) != 0 {
			n.Direction = "inbound"
		}
	}
	switch ev.Kind {
	case event.KindNetClose:
		n.Syscall = ""
	case event.KindNetConnectResult:
		n.Syscall = ""
		n.State = connectOutcome(n.Result)
	}
	ev.Net = n
	return nil
}

// connectOutcome names how a non-blocking connect ended from its result.
func connectOutcome(result int32) string {
	switch -result {
	case 0:
		return "established"
	case int32(unix.ECONNREFUSED):
		return "refused"
	case int32(unix.ETIMEDOUT):
		return "timed_out"
	case int32(unix.EHOSTUNREACH), int32(unix.ENETUNREACH):
		return "unreachable"
	case int32(unix.ECONNABORTED):
		return "aborted"
	}
	return "failed"
}

// secArg returns argument idx of the record, or 0 when absent.
func secArg(e *wpWpSecEvent, idx uint8) uint64 {
	if idx < 6 {
		return e.Args[idx]
	}
	return 0
}

var ptraceRequests = map[uint64]string{0: "PTRACE_TRACEME", 4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSER", 13: "PTRACE_SETREGS", 16: "PTRACE_ATTACH", 0x4206: "PTRACE_SEIZE"}
var bpfCommands = map[uint64]string{5: "BPF_PROG_LOAD", 8: "BPF_PROG_ATTACH", 17: "BPF_RAW_TRACEPOINT_OPEN", 28: "BPF_LINK_CREATE"}
var clockIDs = map[uint64]string{0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 7: "CLOCK_BOOTTIME", 11: "CLOCK_TAI"}

var specsByOp = func() map[uint16]sysSpec {
	m := make(map[uint16]sysSpec, len(syscallSpecs))
	for _, s := range syscallSpecs {
		m[s.op] = s
	}
	return m
}()

func (d *decoder) decodeSec(ev *event.Event, raw []byte) error {
	if len(raw) < secFixedSize {
		return fmt.Errorf("security record of %d bytes: %w", len(raw), errShort)
	}
	e := &d.sec
	n := copy(unsafe.Slice((*byte)(unsafe.Pointer(e)), unsafe.Sizeof(*e)), raw)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&e.Buf[0])), n-secFixedSize)
	s, err := regions(buf, int(e.StrLen), int(e.Str2Len), int(e.Str3Len))
	if err != nil {
		return fmt.Errorf("security record: %w", err)
	}
	spec, ok := specsByOp[e.Op]
	if !ok {
		return fmt.Errorf("security record: unknown operation %d", e.Op)
	}
	x := &event.Security{Operation: spec.name, Result: int32(e.Ret), Errno: event.ErrnoName(e.Ret)}
	// The task's credentials after the call.
	p := &ev.Process
	p.UID, p.EUID, p.GID, p.EGID = e.Uid, e.Euid, e.Gid, e.Egid
	switch ev.Kind {
	case event.KindModuleLoad:
		if spec.name == "finit_module" {
			x.Path, x.Params = s[0], s[1]
		} else {
			x.Params = s[0]
		}
	case event.KindPtrace:
		x.Name = ptraceRequests[e.Args[0]]
		x.TargetPID = uint32(e.Args[1])
	case event.KindMemfdCreate:
		x.Name, x.Flags = s[0], e.Args[1]
	case event.KindUserfaultfd:
		x.Flags = e.Args[0]
	case event.KindCredChange:
		if spec.name == "capset" {
			x.Flags = e.CapEffective
		}
		x.OldID, x.NewID, x.Requested = credIDs(spec.name, e)
	case event.KindBPF:
		x.Name = bpfCommands[e.Args[0]]
	case event.KindMount:
		if spec.name == "mount" {
			x.Name, x.Path, x.FSType, x.Flags = s[0], s[1], s[2], e.Args[3]
		} else {
			x.Name, x.Path = s[0], s[1]
		}
	case event.KindUmount:
		x.Path, x.Flags = s[0], e.Args[1]
	case event.KindClockChange:
		if spec.name == "clock_settime" || spec.name == "clock_adjtime" {
			x.Name = clockIDs[e.Args[0]]
		}
	case event.KindSignal:
		x.Signal = int(secArg(e, spec.mode))
		if spec.fd != na {
			x.TargetPID = uint32(secArg(e, spec.fd))
		} else {
			x.TargetPID = uint32(e.Args[0]) // pidfd_send_signal: resolved in the kernel
		}
	}
	ev.Security = x
	return nil
}

// credArgs is how many uid_t/gid_t arguments each credential call takes
// (setgroups and capset pass pointers: none).
var credArgs = map[string]int{
	"setuid": 1, "setgid": 1, "setfsuid": 1, "setfsgid": 1,
	"setreuid": 2, "setregid": 2, "setresuid": 3, "setresgid": 3,
}

// credIDs returns a credential change's id before and after (the
// effective id; the fs id for setfs*; the gid for the group calls) and,
// for a failed call, the ids it asked for. The record's credentials are
// those after the call: a failed call changed nothing, so before is after;
// setfs* return the previous fs id and never fail, so a refused setfs*
// shows as an fs id that is not the one asked for. Before a successful
// call the id is the process table's (proctable), nil when unknown.
func credIDs(op string, e *wpWpSecEvent) (before, after *int64, requested []int64) {
	switch op {
	case "setfsuid":
		before, after = event.ID(e.Ret), event.ID(e.Fsuid)
	case "setfsgid":
		before, after = event.ID(e.Ret), event.ID(e.Fsgid)
	case "setgid", "setregid", "setresgid", "setgroups":
		after = event.ID(e.Egid)
	default:
		after = event.ID(e.Euid)
	}
	failed := e.Ret < 0
	if failed {
		before = after
	}
	if op == "setfsuid" || op == "setfsgid" {
		failed = uint32(e.Args[0]) != uint32(*after) && uint32(e.Args[0]) != ^uint32(0)
	}
	if n := credArgs[op]; failed && n > 0 {
		requested = make([]int64, n)
		for i := range requested {
			requested[i] = credArg(e.Args[i])
		}
	}
	return before, after, requested
}

// credArg is one uid_t/gid_t argument: -1 (leave unchanged) stays -1.
func credArg(a uint64) int64 {
	if id := uint32(a); id != ^uint32(0) {
		return int64(id)
	}
	return -1
}

func (d *decoder) decodeMemfd(ev *event.Event, raw []byte) error {
	if len(raw) < memfdSize {
		return fmt.Errorf("memfd exec record of %d bytes: %w", len(raw), errShort)
	}
	e := (*wpWpMemfdExecEvent)(unsafe.Pointer(&raw[0]))
	name := cString(e.Name[:])
	ev.Security = &event.Security{Operation: "exec", Name: name, Path: "/memfd:" + name}
	return nil
}

// nsTypes are the namespace names by enum wp_ns_index.
var nsTypes = [wpWpNsIndexWP_NSI_MAX]string{"mnt", "uts", "ipc", "net", "pid", "user", "cgroup", "time"}

// nsFlags are the CLONE_NEW* flags by enum wp_ns_index.
var nsFlags = [wpWpNsIndexWP_NSI_MAX]uint64{
	unix.CLONE_NEWNS, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWNET,
	unix.CLONE_NEWPID, unix.CLONE_NEWUSER, unix.CLONE_NEWCGROUP, unix.CLONE_NEWTIME,
}

func decodeNamespace(e *wpWpNsEvent) *event.Namespace {
	ns := &event.Namespace{Operation: OpName(e.Op), Flags: e.Flags, Result: int32(e.Ret), Errno: event.ErrnoName(e.Ret),
		TargetInode: e.TargetInum, TargetPID: e.TargetPid}
	want := e.Flags
	if target := cString(e.TargetType[:]); target != "" && want == 0 {
		// setns(fd, 0): the type is the fd's
		for i, t := range nsTypes {
			if t == target {
				want = nsFlags[i]
			}
		}
	}
	for i, f := range nsFlags {
		if want&f == 0 {
			continue
		}
		ns.Namespaces = append(ns.Namespaces, nsTypes[i])
		if ns.Inodes == nil {
			ns.Inodes = make(map[string]uint32, 2)
		}
		ns.Inodes[nsTypes[i]] = e.Inum[i]
	}
	return ns
}
