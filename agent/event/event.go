// Package event defines the agent's own event types: what the kernel layer
// produces, what enrichment fills in and what every output (stdout JSON, the
// collector shipper, the spool) consumes. The JSON field names are a stable,
// documented contract (docs/events.md): add fields, never rename them.
package event

import (
	"fmt"
	"time"
)

// Kind is the type of an event. The numeric values equal the kernel's
// enum wp_event_type (bpf/watchpost.h); agent-generated kinds start at 100.
type Kind uint16

// Kinds. The kernel-produced ones must keep the values of enum wp_event_type.
const (
	KindUnknown          Kind = 0
	KindExec             Kind = 1
	KindClone            Kind = 2
	KindExit             Kind = 3
	KindFileOpen         Kind = 4
	KindFileUnlink       Kind = 5
	KindFileRename       Kind = 6
	KindFileChmod        Kind = 7
	KindFileChown        Kind = 8
	KindFileTruncate     Kind = 9
	KindFileMkdir        Kind = 10
	KindFileRmdir        Kind = 11
	KindFileLink         Kind = 12
	KindFileSymlink      Kind = 13
	KindNetConnect       Kind = 14
	KindNetAccept        Kind = 15
	KindNetListen        Kind = 16
	KindNetBind          Kind = 17
	KindNetClose         Kind = 18
	KindNetUDPFlow       Kind = 19
	KindNetSocket        Kind = 20
	KindModuleLoad       Kind = 21
	KindPtrace           Kind = 22
	KindCredChange       Kind = 23
	KindBPF              Kind = 24
	KindMount            Kind = 25
	KindUmount           Kind = 26
	KindClockChange      Kind = 27
	KindSignal           Kind = 28
	KindMemfdExec        Kind = 29
	KindNamespace        Kind = 30 // setns, unshare, clone/clone3 with CLONE_NEW*
	KindUserfaultfd      Kind = 31
	KindMemfdCreate      Kind = 32
	KindNetConnectResult Kind = 33 // the outcome of a non-blocking connect
	// KindICSSegment: the industrial messages of one TCP segment, as the
	// kernel sends them; agent/industrial/inspect folds them into ics_op
	// events and never emits them.
	KindICSSegment Kind = 35
	// Response: a policy's rule matched in the kernel (agent/respond).
	KindResponseExec    Kind = 40 // an exec (kill at exec)
	KindResponseConnect Kind = 41 // a connect or an unconnected UDP send
	KindResponseSocket  Kind = 42 // a socket creation
	KindResponseDevice  Kind = 43 // a device open or mknod
	kindKernelMax       Kind = 45
	KindHealth          Kind = 100 // periodic agent health and counters
	KindGap             Kind = 101 // events were shed; how many and of what
	KindAgentStart      Kind = 102
	KindAgentStop       Kind = 103
	KindAlert           Kind = 104 // a detection rule fired (agent/detect)
	kindAgentMax        Kind = 105
	kindAgentKindBase   Kind = 100
	// KindICSOp: what a process told an industrial device, or a device
	// answered it (agent/industrial/inspect): one event per connection,
	// protocol, operation class and function per interval; the first write,
	// program or control operation of an interval at once.
	KindICSOp   Kind = 110
	kindICSBase Kind = 110
	kindICSMax  Kind = 111
	// KindResponse: the agent acted on (or, in monitor mode, would have
	// acted on) a detection: kill on detection.
	KindResponse Kind = 130
	// KindResponsePolicies: the policy set changed (loaded, reloaded,
	// refused, the kill switch); the state of every policy.
	KindResponsePolicies Kind = 131
	// Network context (agent/netctx): a socket found at start, a network
	// interface or an address that is present, appeared, changed or went.
	KindNetInventory Kind = 115
	KindNetInterface Kind = 116
	KindNetAddress   Kind = 117
	kindNetCtxBase   Kind = 115
	kindNetCtxMax    Kind = 118
	// KindAgentTamper: the agent found one of its own state files damaged
	// and rebuilt it.
	KindAgentTamper Kind = 140
)

var kindNames = map[Kind]string{
	KindExec: "exec", KindClone: "clone", KindExit: "exit",
	KindFileOpen: "file_open", KindFileUnlink: "file_unlink", KindFileRename: "file_rename",
	KindFileChmod: "file_chmod", KindFileChown: "file_chown", KindFileTruncate: "file_truncate",
	KindFileMkdir: "file_mkdir", KindFileRmdir: "file_rmdir", KindFileLink: "file_link",
	KindFileSymlink: "file_symlink",
	KindNetConnect:  "net_connect", KindNetAccept: "net_accept", KindNetListen: "net_listen",
	KindNetBind: "net_bind", KindNetClose: "net_close", KindNetUDPFlow: "net_udp_flow",
	KindNetSocket:  "net_socket",
	KindModuleLoad: "module_load", KindPtrace: "ptrace", KindCredChange: "cred_change",
	KindBPF: "bpf", KindMount: "mount", KindUmount: "umount", KindClockChange: "clock_change",
	KindSignal: "signal", KindMemfdExec: "memfd_exec",
	KindNamespace: "namespace", KindUserfaultfd: "userfaultfd", KindMemfdCreate: "memfd_create",
	KindNetConnectResult: "net_connect_result", KindICSSegment: "ics_segment", KindICSOp: "ics_op",
	KindResponseExec: "response_exec", KindResponseConnect: "response_connect",
	KindResponseSocket: "response_socket", KindResponseDevice: "response_device",
	KindResponse: "response", KindResponsePolicies: "response_policies",
	KindHealth: "health", KindGap: "gap", KindAgentStart: "agent_start", KindAgentStop: "agent_stop",
	KindAlert:        "alert",
	KindAgentTamper:  "agent_tamper",
	KindNetInventory: "net_inventory", KindNetInterface: "net_interface", KindNetAddress: "net_address",
}

var kindByName = func() map[string]Kind {
	m := make(map[string]Kind, len(kindNames))
	for k, n := range kindNames {
		m[n] = k
	}
	return m
}()

// String returns the stable name used in JSON, configuration and queries.
func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", uint16(k))
}

// ParseKind maps a name back to its Kind.
func ParseKind(name string) (Kind, error) {
	if k, ok := kindByName[name]; ok {
		return k, nil
	}
	return KindUnknown, fmt.Errorf("unknown event type %q", name)
}

// Kinds lists every known kind in numeric order.
func Kinds() []Kind {
	out := make([]Kind, 0, len(kindNames))
	for k := KindExec; k < kindKernelMax; k++ {
		if _, ok := kindNames[k]; ok {
			out = append(out, k)
		}
	}
	for k := kindAgentKindBase; k < kindAgentMax; k++ {
		out = append(out, k)
	}
	for k := kindICSBase; k < kindICSMax; k++ {
		out = append(out, k)
	}
	for k := kindNetCtxBase; k < kindNetCtxMax; k++ {
		out = append(out, k)
	}
	return append(out, KindResponse, KindResponsePolicies, KindAgentTamper)
}

// KernelKinds is the number of kernel-produced kinds (valid kernel type
// values are 1..KernelKinds-1).
const KernelKinds = int(kindKernelMax)

// MarshalText makes kinds appear by name in JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// AppendText appends the kind's name (encoding.TextAppender).
func (k Kind) AppendText(b []byte) ([]byte, error) { return append(b, k.String()...), nil }

// UnmarshalText parses a kind name.
func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// SecurityCritical reports whether a kind must never be rate limited or
// shed: process starts, privilege and kernel changes, tampering signals.
func (k Kind) SecurityCritical() bool {
	switch k {
	case KindExec, KindModuleLoad, KindPtrace, KindCredChange, KindBPF, KindMount,
		KindUmount, KindClockChange, KindMemfdExec, KindNamespace, KindUserfaultfd, KindGap, KindHealth, KindAgentStart, KindAgentStop, KindAlert, KindAgentTamper,
		KindResponseExec, KindResponseConnect, KindResponseSocket, KindResponseDevice, KindResponse, KindResponsePolicies,
		KindNetInterface, KindNetAddress:
		return true
	}
	return false
}

// Process is the process an event is about (the actor).
type Process struct {
	PID         uint32   `json:"pid"`
	TID         uint32   `json:"tid,omitempty"`
	PPID        uint32   `json:"ppid"`
	UID         uint32   `json:"uid"`
	GID         uint32   `json:"gid"`
	EUID        uint32   `json:"euid"`
	EGID        uint32   `json:"egid"`
	LoginUID    AUID     `json:"auid,omitzero"` // absent when unset
	SessionID   uint32   `json:"session_id"`
	CgroupID    uint64   `json:"cgroup_id,omitempty"`
	Comm        string   `json:"comm"`
	Exe         string   `json:"exe,omitempty"`
	Args        []string `json:"args,omitempty"`
	Cwd         string   `json:"cwd,omitempty"`
	TTY         string   `json:"tty,omitempty"`
	StartBootNS uint64   `json:"start_boot_ns,omitempty"`
	Container   string   `json:"container,omitempty"` // container id (from the cgroup path)
	// Container details (agent/container): the runtime from the cgroup
	// path; image, name and pod from the runtime's API where reachable.
	ContainerRuntime string `json:"container_runtime,omitempty"`
	ContainerImage   string `json:"container_image,omitempty"`
	ContainerName    string `json:"container_name,omitempty"`
	PodName          string `json:"pod_name,omitempty"`
	PodNamespace     string `json:"pod_namespace,omitempty"`
}

// Ancestor is one step up the process tree: parent first, then grandparent.
type Ancestor struct {
	PID  uint32   `json:"pid"`
	Comm string   `json:"comm,omitempty"`
	Exe  string   `json:"exe,omitempty"`
	Args []string `json:"args,omitempty"`
	UID  uint32   `json:"uid"`
}

// Exec details. The executable path is the kernel's (mm->exe_file), never argv[0].
type Exec struct {
	ArgsTruncated bool   `json:"args_truncated,omitempty"`
	ExeTruncated  bool   `json:"exe_truncated,omitempty"`
	Argc          uint32 `json:"argc"`
	ExeInode      uint64 `json:"exe_inode"`
	ExeDev        string `json:"exe_dev"` // major:minor
	// Env holds the captured environment variables (exec_env: the listed
	// ones by default), values clamped. For a name given more than once it
	// holds the first value (what getenv returns).
	Env map[string]string `json:"env,omitempty"`
	// EnvDuplicates are the later NAME=value of names given more than
	// once: the dynamic loader acts on the last LD_PRELOAD, getenv on the
	// first, so a repeated name is itself a sign of evasion.
	EnvDuplicates []string `json:"env_duplicates,omitempty"`
	// EnvTruncated: the environment had more than was captured (more
	// variables or bytes than the limits, or a value was clamped).
	EnvTruncated bool `json:"env_truncated,omitempty"`
	// Envc is the number of variables in the new environment.
	Envc uint32 `json:"envc,omitempty"`
}

// Clone describes a fork or clone made by the event's process.
type Clone struct {
	ChildPID uint32 `json:"child_pid"`
	ChildTID uint32 `json:"child_tid"`
	Thread   bool   `json:"thread"`
}

// Exit describes the end of a process (its last thread).
type Exit struct {
	Code       int    `json:"code"`             // exit status when not signalled
	Signal     int    `json:"signal,omitempty"` // terminating signal, 0 when exited normally
	CoreDumped bool   `json:"core_dumped,omitempty"`
	LifetimeNS uint64 `json:"lifetime_ns"`
}

// File is a file-system action.
type File struct {
	Syscall       string `json:"syscall"`
	Path          string `json:"path"`
	NewPath       string `json:"new_path,omitempty"` // rename, link, symlink target
	PathTruncated bool   `json:"path_truncated,omitempty"`
	// Watched marks a read-only open reported because the file or a
	// directory above it is on filters.watch_reads.
	Watched bool   `json:"watched,omitempty"`
	Flags   uint32 `json:"flags,omitempty"` // open flags (O_*)
	Mode    uint32 `json:"mode,omitempty"`
	Write   bool   `json:"write,omitempty"` // opened for writing, or a modifying call
	Result  int32  `json:"result"`          // syscall return value (fd or -errno)
	Errno   string `json:"errno,omitempty"` // the errno's name when Result < 0
	Inode   uint64 `json:"inode,omitempty"`
	Dev     string `json:"dev,omitempty"`       // major:minor of the file system
	RDev    string `json:"rdev,omitempty"`      // major:minor for device files
	DevKind string `json:"dev_kind,omitempty"`  // "char" or "block" for device files
	UID     uint32 `json:"owner_uid,omitempty"` // chown
	GID     uint32 `json:"owner_gid,omitempty"` // chown
	Size    uint64 `json:"size,omitempty"`      // truncate
}

// Net is a socket action. Addresses are strings (IPv4-mapped IPv6 is
// normalised to IPv4).
type Net struct {
	Syscall    string `json:"syscall,omitempty"`
	Family     string `json:"family"`   // inet, inet6, packet, unix, ...
	Protocol   string `json:"protocol"` // tcp, udp, raw, ...
	SockType   string `json:"sock_type,omitempty"`
	SrcAddr    string `json:"src_addr,omitempty"`
	SrcPort    uint16 `json:"src_port,omitempty"`
	DstAddr    string `json:"dst_addr,omitempty"`
	DstPort    uint16 `json:"dst_port,omitempty"`
	Result     int32  `json:"result"`
	Errno      string `json:"errno,omitempty"` // the errno's name when Result < 0
	BytesSent  uint64 `json:"bytes_sent,omitempty"`
	BytesRecv  uint64 `json:"bytes_recv,omitempty"`
	DurationNS uint64 `json:"duration_ns,omitempty"`
	Direction  string `json:"direction,omitempty"` // outbound, inbound
	// State is the socket's state in a start-up inventory (net_inventory):
	// listen or established; for net_connect_result the connect's outcome:
	// established, refused, timed_out, unreachable, aborted or failed.
	State string `json:"state,omitempty"`
	// Interface and Zone are the host interface holding the local address
	// and its zone (agent/netctx); PeerZone is the zone of the remote
	// address. Empty when unknown or unconfigured.
	Interface string `json:"interface,omitempty"`
	Zone      string `json:"zone,omitempty"`
	PeerZone  string `json:"peer_zone,omitempty"`
}

// NetInterface is one of the host's network interfaces (net_interface) or
// one of its addresses (net_address), as netlink reports it.
type NetInterface struct {
	// Action: present (at start), added, changed, removed.
	Action string `json:"action"`
	Index  uint32 `json:"index"`
	Name   string `json:"name"`
	// Type is the link type: device, veth, dummy, bridge, vlan, tun, wireguard ...
	Type string `json:"type,omitempty"`
	MAC  string `json:"mac,omitempty"`
	MTU  uint32 `json:"mtu,omitempty"`
	// Up: administratively up; OperState: the kernel's RFC 2863 state (up,
	// down, lowerlayerdown, dormant, unknown ...).
	Up        bool   `json:"up"`
	OperState string `json:"oper_state,omitempty"`
	// Zone is the interface's zone from the configuration.
	Zone string `json:"zone,omitempty"`
	// Addresses are the interface's addresses (CIDR form) on net_interface.
	Addresses []string `json:"addresses,omitempty"`
	// Address is the address a net_address event is about (CIDR form), and
	// AddressZone its zone.
	Address     string `json:"address,omitempty"`
	AddressZone string `json:"address_zone,omitempty"`
	// Changed names what changed (name, up, oper_state, mac, mtu);
	// PreviousName is the name before a rename.
	Changed      []string `json:"changed,omitempty"`
	PreviousName string   `json:"previous_name,omitempty"`
}

// Security is a privilege, kernel-integrity or tampering action.
type Security struct {
	Operation  string `json:"operation"`            // e.g. setuid, capset, init_module, attach
	TargetPID  uint32 `json:"target_pid,omitempty"` // ptrace, signal
	TargetComm string `json:"target_comm,omitempty"`
	// TargetExe, TargetArgs and TargetUID describe a ptrace or signal
	// target from the process table, as it was when the call was made;
	// absent when the table does not know the target.
	TargetExe  string   `json:"target_exe,omitempty"`
	TargetArgs []string `json:"target_args,omitempty"`
	TargetUID  *int64   `json:"target_uid,omitempty"`
	Signal     int      `json:"signal,omitempty"`
	Name       string   `json:"name,omitempty"` // module name, mount source, bpf command ...
	Path       string   `json:"path,omitempty"` // mount point, memfd name ...
	FSType     string   `json:"fs_type,omitempty"`
	// OldID and NewID are a credential change's effective id (fs id for
	// setfs*, gid for the group calls) before and after the call: set
	// whenever known, 0 (root) included; nil only when unknown.
	OldID *int64 `json:"old_id,omitempty"`
	NewID *int64 `json:"new_id,omitempty"`
	// Requested are the ids a failed credential change asked for, in
	// argument order, -1 for "leave unchanged" (setresuid(0, -1, 0): [0, -1, 0]).
	Requested []int64 `json:"requested,omitempty"`
	Flags     uint64  `json:"flags,omitempty"`
	Params    string  `json:"params,omitempty"` // module parameters
	Result    int32   `json:"result"`
	Errno     string  `json:"errno,omitempty"` // the errno's name when Result < 0
}

// Namespace is a change of namespaces: setns, unshare, or a clone that
// creates new ones.
type Namespace struct {
	Operation string `json:"operation"` // setns, unshare, clone, clone3
	// Namespaces are the types involved (mnt, uts, ipc, net, pid, user,
	// cgroup, time), from the flags or, for setns, the fd.
	Namespaces []string `json:"namespaces,omitempty"`
	Flags      uint64   `json:"flags,omitempty"` // CLONE_NEW* as given; setns: nstype
	// Inodes are the caller's namespaces of the types involved after the
	// call (for pid and time: the ones its children get), by type.
	Inodes      map[string]uint32 `json:"inodes,omitempty"`
	TargetInode uint32            `json:"target_inode,omitempty"` // setns: the namespace the fd names
	TargetPID   uint32            `json:"target_pid,omitempty"`   // setns through a pidfd: the process
	Result      int32             `json:"result"`
	Errno       string            `json:"errno,omitempty"` // the errno's name when Result < 0
}

// Industrial tags link an event to plant protocols and fieldbus devices.
type Industrial struct {
	Protocol string `json:"protocol,omitempty"` // modbus, s7comm, dnp3 ...
	Fieldbus string `json:"fieldbus,omitempty"` // ttyS, ttyUSB, ttyACM ...
	Device   string `json:"device,omitempty"`   // the device path that was opened
	Sniffing bool   `json:"sniffing,omitempty"` // raw or packet socket
}

// ICS is an ics_op event: operations of one class and function that a
// process sent on one connection, or answered on it, in one interval
// (docs/events.md).
type ICS struct {
	Protocol string `json:"protocol"` // modbus
	// Role is the process's side of the connection: client (it sent the
	// requests) or server (it received them).
	Role     string `json:"role"`
	Class    string `json:"class"`    // read, write, program, control, diagnostic, recon, other
	Function string `json:"function"` // read_holding_registers, write_single_register ...
	Code     uint8  `json:"code"`     // the function code
	Unit     uint8  `json:"unit"`     // the unit id of the first operation
	// Count is the requests counted in this event; Responses the answers
	// that were not exceptions.
	Count     uint64 `json:"count"`
	Responses uint64 `json:"responses,omitempty"`
	// FirstNS and LastNS are the boot-relative times of the first and last
	// message counted (First and Last on the wall clock).
	FirstNS uint64    `json:"first_boot_ns"`
	LastNS  uint64    `json:"last_boot_ns"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
	// Ranges are the address ranges the requests named, merged, at most
	// a few; RangesTruncated says more were left out.
	Ranges          []ICSRange `json:"ranges,omitempty"`
	RangesTruncated bool       `json:"ranges_truncated,omitempty"`
	// Values are the first values the reported operation wrote (urgent
	// events: the operation itself), at most 8 registers or coil bytes.
	Values []uint16 `json:"values,omitempty"`
	// Exceptions are the exception responses, by code.
	Exceptions []ICSException `json:"exceptions,omitempty"`
	// Urgent: the first write, program or control operation of its
	// interval, reported on its own at once; later ones are summarised.
	Urgent bool `json:"urgent,omitempty"`
	// Connection is the socket's cookie; Owner how its process was found:
	// kernel (at connect or accept), lookup (sock_diag and /proc, when the
	// kernel had no record) or unknown.
	Connection uint64 `json:"connection"`
	Owner      string `json:"owner"`
}

// ICSRange is a run of addresses: Count of them from Address.
type ICSRange struct {
	Address uint16 `json:"address"`
	Count   uint32 `json:"count"`
}

// ICSException counts exception responses of one code.
type ICSException struct {
	Code  uint8  `json:"code"`
	Name  string `json:"name"`
	Count uint64 `json:"count"`
}

// Counter is one named drop or delivery counter.
type Counter struct {
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
}

// Health is the agent's periodic self-report.
type Health struct {
	Version     string    `json:"version"`
	Kernel      string    `json:"kernel"`
	CapturePath string    `json:"capture_path"`
	Programs    []string  `json:"programs"`
	Produced    uint64    `json:"produced"`
	Delivered   uint64    `json:"delivered"`
	Filtered    uint64    `json:"filtered"`
	Dropped     uint64    `json:"dropped"`
	SpoolBytes  uint64    `json:"spool_bytes,omitempty"`
	Counters    []Counter `json:"counters,omitempty"`
	// Detection is the rule engine's state (nil when detection is off).
	Detection *Detection `json:"detection,omitempty"`
	// Baseline is the learned baseline's state (nil when it is off).
	Baseline *Baseline `json:"baseline,omitempty"`
	// Response is the policy set's state (nil when response is off).
	Response *Policies `json:"response,omitempty"`
	// Inspection is the industrial inspection's state (nil when it is off).
	Inspection *Inspection `json:"inspection,omitempty"`
}

// Inspection is the industrial protocol inspection's state as health
// events report it (docs/events.md).
type Inspection struct {
	// Attached: the packet programs are attached; else Error says why not
	// (no cgroup v2, a program this kernel refuses). Port tags stay either way.
	Attached bool   `json:"attached"`
	Error    string `json:"error,omitempty"`
	Cgroup   string `json:"cgroup,omitempty"`
	// Ports are the inspected ports as protocol:port.
	Ports []string `json:"ports,omitempty"`
	// Kernel counters: segments with payload on an inspected port, the
	// messages parsed, malformed bytes by reason (truncated, protocol_id,
	// length, overrun), segments with more messages than parsed, and
	// segments sent without the socket's process.
	Segments  uint64            `json:"segments"`
	Messages  uint64            `json:"messages"`
	Malformed map[string]uint64 `json:"malformed,omitempty"`
	Unparsed  uint64            `json:"unparsed,omitempty"`
	NoOwner   uint64            `json:"no_owner,omitempty"`
	// Retransmitted: segments whose bytes were all inspected before (TCP
	// retransmissions, tail loss probes), not counted again.
	Retransmitted uint64 `json:"retransmitted,omitempty"`
	// Agent counters: ics_op events sent (Urgent of them at once), owner
	// lookups and those that found nothing, and what was lost (a full
	// queue, too many operation groups in one interval).
	Events       uint64 `json:"events"`
	Urgent       uint64 `json:"urgent"`
	OwnerLookups uint64 `json:"owner_lookups,omitempty"`
	OwnerUnknown uint64 `json:"owner_unknown,omitempty"`
	QueueFull    uint64 `json:"queue_full,omitempty"`
	GroupsFull   uint64 `json:"groups_full,omitempty"`
}

// Alert is raised by a detection rule (agent/detect): which rule, why it
// fired and the events behind it. The event's process and ancestry are
// those of the event that completed the match.
type Alert struct {
	RuleID      string   `json:"rule_id"`
	Title       string   `json:"title"`
	Level       string   `json:"level"`                // informational, low, medium, high, critical
	Techniques  []string `json:"techniques,omitempty"` // ATT&CK ids: T0807, T1059.004
	Tags        []string `json:"tags,omitempty"`
	Source      string   `json:"source"`                // pack:host, pack:ot, or the rules file
	Correlation string   `json:"correlation,omitempty"` // event_count, value_count, temporal, temporal_ordered
	Count       uint64   `json:"count,omitempty"`       // events or distinct values counted by a correlation
	// Matches are the fields and values that made the rule fire.
	Matches []Match `json:"matches"`
	// Events are the events behind the alert, oldest first; the last one
	// completed the match.
	Events []EventRef `json:"events"`
	// Cgroup is the process's cgroup v2 path (exceptions by cgroup or unit).
	Cgroup string `json:"cgroup,omitempty"`
	// Folded is how many matches of the rule by the same actor (executable
	// and user) were folded since its previous alert (detection.alert_burst).
	Folded uint64 `json:"folded,omitempty"`
	// Baseline is set when the alert is an item outside the host's learned
	// baseline (agent/baseline) rather than a rule's match.
	Baseline *Anomaly `json:"baseline,omitempty"`
}

// Anomaly is an item first seen after the baseline was learned.
type Anomaly struct {
	Family string `json:"family"` // exec, args, user, file_write, connect, accept, listen, device, module, ics
	// Item is the item's fields, in the family's order (docs/baseline.md).
	Item []string `json:"item"`
	// Known are up to a few items of the same family and subject (the
	// executable) that the baseline has, for the explanation.
	Known      []string `json:"known,omitempty"`
	KnownCount int      `json:"known_count"` // items of the same subject in the baseline
	LearnedNS  uint64   `json:"learned_ns"`  // how long the baseline learned (uptime)
	// Also are the other new items of the same event ("family fields"):
	// one event raises one alert.
	Also []string `json:"also,omitempty"`
}

// Baseline is the learned baseline's state as health events report it.
type Baseline struct {
	Mode string `json:"mode"` // learning, enforcing
	// LearnedNS is the uptime learned so far; PeriodNS the learning period.
	LearnedNS uint64           `json:"learned_ns"`
	PeriodNS  uint64           `json:"period_ns"`
	Since     time.Time        `json:"since"` // when this baseline started learning
	Families  []BaselineFamily `json:"families"`
	Alerts    uint64           `json:"alerts"`              // anomalies raised since the agent started
	Throttled uint64           `json:"throttled,omitempty"` // anomalies not raised: over the alert rate
	// LearnedUnder counts items learned while enforcing because a
	// package manager (baseline.learn_under) made them.
	LearnedUnder uint64 `json:"learned_under,omitempty"`
	// Clocks are the items an operator allowed that still learn on their own.
	Clocks    int       `json:"clocks,omitempty"`
	SavedAt   time.Time `json:"saved_at"`
	SaveError string    `json:"save_error,omitempty"`
	// LoadError is why the baseline file found at start was set aside.
	LoadError string `json:"load_error,omitempty"`
}

// BaselineFamily counts one family's items.
type BaselineFamily struct {
	Family  string `json:"family"`
	Items   int    `json:"items"`             // learned (or allowed) items
	Pending int    `json:"pending,omitempty"` // items that alerted and are not allowed
	Dropped uint64 `json:"dropped,omitempty"` // items not kept: the family was full
}

// Match is one field of an event and the value a rule matched in it.
type Match struct {
	Field string `json:"field"`
	Value string `json:"value"`
}

// EventRef names an event of this agent run by its sequence number.
type EventRef struct {
	Seq    uint64    `json:"seq"`
	Kind   Kind      `json:"type"`
	Time   time.Time `json:"time"`
	BootNS uint64    `json:"boot_ns"`
	PID    uint32    `json:"pid"`
}

// Detection is the detection engine's state as health events report it.
type Detection struct {
	Rules      int               `json:"rules"`                // rules loaded and enabled
	Generation uint64            `json:"generation"`           // rule sets loaded since start
	LoadedAt   time.Time         `json:"loaded_at"`            // when the current set was loaded
	Errors     []string          `json:"errors,omitempty"`     // the last reload's errors (file:line: message)
	Alerts     uint64            `json:"alerts"`               // alerts raised since start
	Suppressed map[string]uint64 `json:"suppressed,omitempty"` // matches suppressed by an exception, by rule
	Folded     map[string]uint64 `json:"folded,omitempty"`     // matches folded into an actor's earlier alerts, by rule
	Dropped    uint64            `json:"dropped,omitempty"`    // correlation state evicted at its bound
	Exceptions int               `json:"exceptions"`           // exceptions in force
}

// Response is what a policy did, or in monitor mode would have done
// (agent/respond, docs/response.md).
type Response struct {
	Policy string `json:"policy"` // the policy's id
	// Action: kill_exec, deny_connect, deny_socket, deny_device, kill_on_detection.
	Action string `json:"action"`
	Mode   string `json:"mode"` // monitor or enforce
	// Outcome: would_kill, killed, would_block, blocked, failed.
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"` // why an enforcing action failed
	// Exe is the executable at exec (kill_exec), as the policy named it.
	Exe string `json:"exe,omitempty"`
	// Connect and UDP send: the destination.
	Family   string `json:"family,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	SockType string `json:"sock_type,omitempty"`
	DstAddr  string `json:"dst_addr,omitempty"`
	DstPort  uint16 `json:"dst_port,omitempty"`
	Send     bool   `json:"send,omitempty"` // an unconnected UDP send, not a connect
	// Device: "char" or "block", major:minor and the access asked for
	// (mknod, read, write).
	DevKind string   `json:"dev_kind,omitempty"`
	Device  string   `json:"device,omitempty"`
	Access  []string `json:"access,omitempty"`
	// Kill on detection: the rule and alert behind it and the processes
	// signalled (the whole group when the policy says so).
	RuleID  string   `json:"rule_id,omitempty"`
	Targets []uint32 `json:"targets,omitempty"`
	Group   bool     `json:"group,omitempty"`
}

// Policies is the response policy set as the agent holds it.
type Policies struct {
	File       string    `json:"file,omitempty"`
	Generation uint64    `json:"generation"`
	LoadedAt   time.Time `json:"loaded_at"`
	// Source of the set in force: file or collector.
	Source string `json:"source,omitempty"`
	// Errors: why the last load was refused (file:line: key: message);
	// the set in force is the previous one.
	Errors []string `json:"errors,omitempty"`
	// Enforcing is false when the kill switch is on: nothing is enforced.
	Enforcing bool           `json:"enforcing"`
	Policies  []PolicyStatus `json:"policies"`
}

// PolicyStatus is one policy's state and counts since the agent started.
type PolicyStatus struct {
	ID     string `json:"id"`
	Action string `json:"action"`
	Mode   string `json:"mode"`
	// Unenforceable says why this kernel cannot carry the policy out (the
	// hook is missing); the policy then only reports itself so.
	Unenforceable string `json:"unenforceable,omitempty"`
	Acted         uint64 `json:"acted"`      // killed or blocked
	WouldHave     uint64 `json:"would_have"` // monitor mode: would have killed or blocked
	Failed        uint64 `json:"failed"`     // an enforcing action that did not take
}

// Gap records events that were shed rather than delivered.
type Gap struct {
	Reason   string    `json:"reason"`
	Counters []Counter `json:"counters"`
}

// Tamper reports one of the agent's own files found damaged and rebuilt.
type Tamper struct {
	What   string `json:"what"` // spool_state, spool_counters, baseline
	File   string `json:"file"`
	Action string `json:"action"`
	Error  string `json:"error"`
}

// Event is one observation. Exactly one of the detail pointers matching
// Kind is set (none for kinds without details).
type Event struct {
	Kind     Kind       `json:"type"`
	Time     time.Time  `json:"time"`    // wall clock
	BootNS   uint64     `json:"boot_ns"` // boot-relative (CLOCK_BOOTTIME) nanoseconds
	Seq      uint64     `json:"seq"`     // per-agent-run sequence number
	Host     string     `json:"host,omitempty"`
	CPU      uint32     `json:"cpu"`
	Process  Process    `json:"process"`
	Ancestry []Ancestor `json:"ancestry,omitempty"`

	Exec       *Exec       `json:"exec,omitempty"`
	Clone      *Clone      `json:"clone,omitempty"`
	Exit       *Exit       `json:"exit,omitempty"`
	File       *File       `json:"file,omitempty"`
	Net        *Net        `json:"net,omitempty"`
	Security   *Security   `json:"security,omitempty"`
	Namespace  *Namespace  `json:"namespace,omitempty"`
	Industrial *Industrial `json:"industrial,omitempty"`
	ICS        *ICS        `json:"ics,omitempty"`
	Health     *Health     `json:"health,omitempty"`
	Gap        *Gap        `json:"gap,omitempty"`
	Alert      *Alert      `json:"alert,omitempty"`
	Tamper     *Tamper     `json:"tamper,omitempty"`
	Response   *Response   `json:"response,omitempty"`
	Policies   *Policies   `json:"policies,omitempty"`
	// Interface is set on net_interface and net_address.
	Interface *NetInterface `json:"interface,omitempty"`
	// Truncated lists the fields shortened to the limits (Clamp).
	Truncated []Truncation `json:"truncated,omitempty"`
}

// DevString formats a kernel dev_t (new encoding, as in struct
// super_block.s_dev and inode.i_rdev) as "major:minor".
func DevString(dev uint32) string {
	return fmt.Sprintf("%d:%d", dev>>20, dev&((1<<20)-1))
}
