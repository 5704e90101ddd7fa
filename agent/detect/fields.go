package detect

import (
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
)

// fieldID indexes fieldDefs.
type fieldID uint16

// fieldDef is one field a rule can name: where it exists and how its value
// is read from an event. Values are strings, as Sigma compares them; a
// multi-valued field (ancestors) matches when any of its values does.
type fieldDef struct {
	name  string
	class fieldClass // which events carry it
	multi bool
	// get returns the i-th value; single-valued fields have only i == 0.
	// The string may point into the context's scratch buffer: valid until
	// the next event.
	get func(c *evalCtx, i int) (string, bool)
	doc string
	// kinds are the events of a registered field (class classKinds).
	kinds kindMask
}

// exists reports whether events of kind k carry the field.
func (d *fieldDef) exists(k event.Kind) bool {
	if d.class == classKinds {
		return d.kinds.has(k)
	}
	return d.class.has(k)
}

// fieldClass says which events have a field.
type fieldClass uint8

const (
	classAny fieldClass = iota // every event (the acting process)
	classFile
	classNet
	classSecurity
	classExec
	classNamespace
	classICS   // an industrial operation (ics_op)
	classKinds // a registered field: the kinds it was registered for
)

func (c fieldClass) has(k event.Kind) bool {
	switch c {
	case classAny:
		return true
	case classFile:
		return k >= event.KindFileOpen && k <= event.KindFileSymlink
	case classNet:
		return k >= event.KindNetConnect && k <= event.KindNetSocket || k == event.KindNetConnectResult || k == event.KindICSOp
	case classICS:
		return k == event.KindICSOp
	case classSecurity:
		return (k >= event.KindModuleLoad && k <= event.KindMemfdExec) || k == event.KindUserfaultfd ||
			k == event.KindMemfdCreate || k == event.KindNamespace
	case classExec:
		return k == event.KindExec
	case classNamespace:
		return k == event.KindNamespace
	}
	return false
}

// one returns a getter for a single-valued field.
func one(f func(c *evalCtx) string) func(c *evalCtx, i int) (string, bool) {
	return func(c *evalCtx, i int) (string, bool) {
		if i != 0 {
			return "", false
		}
		return f(c), true
	}
}

// buffered returns a getter whose value is built once per event into the
// field's scratch buffer.
func buffered(id *fieldID, build func(c *evalCtx, b []byte) []byte) func(c *evalCtx, i int) (string, bool) {
	return func(c *evalCtx, i int) (string, bool) {
		if i != 0 {
			return "", false
		}
		return c.built(*id, build), true
	}
}

func joinArgs(b []byte, args []string) []byte {
	for i, a := range args {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, a...)
	}
	return b
}

func bstr(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// Field ids that the engine itself refers to.
var (
	fCommandLine, fParentCommandLine, fUser, fParentUser, fLogonID, fProcessID, fParentProcessID      fieldID
	fTerminalSession, fUID, fEUID, fGID, fEGID, fCgroupID, fTargetFilename, fOpenFlags, fMode         fieldID
	fResult, fOwnerUID, fOwnerGID, fSize, fSourceIP, fSourcePort, fDestIP, fDestPort, fBytesSent      fieldID
	fBytesRecv, fOldID, fNewID, fSecFlags, fSignal, fTargetPID, fTargetImage, fTargetCmd, fTargetUser fieldID
	fTargetIsChild, fInitiated, fNamespaces                                                           fieldID
)

var fieldDefs []fieldDef
var fieldByName = map[string]fieldID{}

func def(id *fieldID, f fieldDef) {
	if id != nil {
		*id = fieldID(len(fieldDefs))
	}
	fieldByName[f.name] = fieldID(len(fieldDefs))
	fieldDefs = append(fieldDefs, f)
}

func uintField(id *fieldID, name string, class fieldClass, v func(c *evalCtx) uint64, doc string) {
	def(id, fieldDef{name: name, class: class, doc: doc, get: buffered(id, func(c *evalCtx, b []byte) []byte {
		return strconv.AppendUint(b, v(c), 10)
	})})
}

func intField(id *fieldID, name string, class fieldClass, v func(c *evalCtx) int64, doc string) {
	def(id, fieldDef{name: name, class: class, doc: doc, get: buffered(id, func(c *evalCtx, b []byte) []byte {
		return strconv.AppendInt(b, v(c), 10)
	})})
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func init() {
	// The acting process (every event), named as in Sysmon for Linux.
	def(nil, fieldDef{name: "EventType", doc: "the Watchpost event type (exec, file_open, ptrace ...)",
		get: one(func(c *evalCtx) string { return c.ev.Kind.String() })})
	def(nil, fieldDef{name: "Image", doc: "the process's executable, as the kernel resolved it",
		get: one(func(c *evalCtx) string { return c.ev.Process.Exe })})
	def(&fCommandLine, fieldDef{name: "CommandLine", doc: "argv joined by spaces",
		get: buffered(&fCommandLine, func(c *evalCtx, b []byte) []byte { return joinArgs(b, c.ev.Process.Args) })})
	def(nil, fieldDef{name: "CurrentDirectory", doc: "the working directory",
		get: one(func(c *evalCtx) string { return c.ev.Process.Cwd })})
	def(&fUser, fieldDef{name: "User", doc: "the user name of the real uid (the uid in decimal when it has no name)",
		get: buffered(&fUser, func(c *evalCtx, b []byte) []byte { return c.users.appendName(b, c.ev.Process.UID) })})
	logonID := buffered(&fLogonID, func(c *evalCtx, b []byte) []byte { return strconv.AppendUint(b, uint64(c.ev.Process.LoginUID), 10) })
	def(&fLogonID, fieldDef{name: "LogonId", class: classAny, doc: "the login uid (auid); absent when unset",
		get: func(c *evalCtx, i int) (string, bool) {
			if c.ev.Process.LoginUID.IsZero() {
				return "", false
			}
			return logonID(c, i)
		}})
	uintField(&fProcessID, "ProcessId", classAny, func(c *evalCtx) uint64 { return uint64(c.ev.Process.PID) }, "pid (thread group id)")
	uintField(&fParentProcessID, "ParentProcessId", classAny, func(c *evalCtx) uint64 { return uint64(c.ev.Process.PPID) }, "the parent's pid")
	uintField(&fTerminalSession, "TerminalSessionId", classAny, func(c *evalCtx) uint64 { return uint64(c.ev.Process.SessionID) },
		"the audit session id: 4294967295 when unset")
	def(nil, fieldDef{name: "ParentImage", doc: "the parent's executable",
		get: one(func(c *evalCtx) string {
			if len(c.ev.Ancestry) == 0 {
				return ""
			}
			return c.ev.Ancestry[0].Exe
		})})
	def(&fParentCommandLine, fieldDef{name: "ParentCommandLine", doc: "the parent's argv joined by spaces",
		get: buffered(&fParentCommandLine, func(c *evalCtx, b []byte) []byte {
			if len(c.ev.Ancestry) == 0 {
				return b
			}
			return joinArgs(b, c.ev.Ancestry[0].Args)
		})})
	def(&fParentUser, fieldDef{name: "ParentUser", doc: "the user name of the parent's uid",
		get: buffered(&fParentUser, func(c *evalCtx, b []byte) []byte {
			if len(c.ev.Ancestry) == 0 || c.ev.Ancestry[0].Exe == "" {
				return b
			}
			return c.users.appendName(b, c.ev.Ancestry[0].UID)
		})})
	// Watchpost extensions on the acting process.
	def(nil, fieldDef{name: "AncestorImage", multi: true, doc: "any ancestor's executable (parent first, process_table.depth of them)",
		get: func(c *evalCtx, i int) (string, bool) {
			if i >= len(c.ev.Ancestry) {
				return "", false
			}
			return c.ev.Ancestry[i].Exe, true
		}})
	def(nil, fieldDef{name: "AncestorCommandLine", multi: true, doc: "any ancestor's argv joined by spaces",
		get: func(c *evalCtx, i int) (string, bool) {
			if i >= len(c.ev.Ancestry) {
				return "", false
			}
			return c.ancestorArgs(i), true
		}})
	def(nil, fieldDef{name: "Comm", doc: "the kernel's 15-byte task name",
		get: one(func(c *evalCtx) string { return c.ev.Process.Comm })})
	uintField(&fUID, "Uid", classAny, func(c *evalCtx) uint64 { return uint64(c.ev.Process.UID) }, "real uid")
	uintField(&fEUID, "Euid", classAny, func(c *evalCtx) uint64 { return uint64(c.ev.Process.EUID) }, "effective uid")
	uintField(&fGID, "Gid", classAny, func(c *evalCtx) uint64 { return uint64(c.ev.Process.GID) }, "real gid")
	uintField(&fEGID, "Egid", classAny, func(c *evalCtx) uint64 { return uint64(c.ev.Process.EGID) }, "effective gid")
	def(nil, fieldDef{name: "Tty", doc: "the controlling terminal (pts0, tty1), empty without one",
		get: one(func(c *evalCtx) string { return c.ev.Process.TTY })})
	def(nil, fieldDef{name: "Container", doc: "the container id, when known",
		get: one(func(c *evalCtx) string { return c.ev.Process.Container })})
	uintField(&fCgroupID, "CgroupId", classAny, func(c *evalCtx) uint64 { return c.ev.Process.CgroupID }, "the cgroup v2 id")
	def(nil, fieldDef{name: "Host", doc: "the agent's host name",
		get: one(func(c *evalCtx) string { return c.host })})
	// Industrial tags (every event; empty when untagged).
	def(nil, fieldDef{name: "IndustrialProtocol", doc: "the industrial protocol tag of a socket (modbus, s7comm, dnp3 ...); ics_op: the protocol parsed",
		get: one(func(c *evalCtx) string {
			switch {
			case c.ev.ICS != nil:
				return c.ev.ICS.Protocol
			case c.ev.Industrial == nil:
				return ""
			}
			return c.ev.Industrial.Protocol
		})})
	def(nil, fieldDef{name: "Fieldbus", doc: "the fieldbus class of an opened serial device (ttyS, ttyUSB ...)",
		get: one(func(c *evalCtx) string {
			if c.ev.Industrial == nil {
				return ""
			}
			return c.ev.Industrial.Fieldbus
		})})
	def(nil, fieldDef{name: "Device", doc: "the fieldbus device path that was opened",
		get: one(func(c *evalCtx) string {
			if c.ev.Industrial == nil {
				return ""
			}
			return c.ev.Industrial.Device
		})})
	def(nil, fieldDef{name: "Sniffing", doc: "true for a packet or raw socket",
		get: one(func(c *evalCtx) string { return boolString(c.ev.Industrial != nil && c.ev.Industrial.Sniffing) })})

	// Files.
	def(&fTargetFilename, fieldDef{name: "TargetFilename", class: classFile,
		doc: "the file acted on: the new name of a rename or hard link, the link a symlink creates",
		get: one(func(c *evalCtx) string {
			f := c.ev.File
			if f == nil {
				return ""
			}
			if c.ev.Kind == event.KindFileRename || c.ev.Kind == event.KindFileLink {
				return f.NewPath
			}
			return f.Path
		})})
	def(nil, fieldDef{name: "SourceFilename", class: classFile,
		doc: "the old name of a rename, the existing file of a hard link, the target a symlink points to",
		get: one(func(c *evalCtx) string {
			f := c.ev.File
			if f == nil {
				return ""
			}
			switch c.ev.Kind {
			case event.KindFileRename, event.KindFileLink:
				return f.Path
			case event.KindFileSymlink:
				return f.NewPath
			}
			return ""
		})})
	def(&fOpenFlags, fieldDef{name: "OpenFlags", class: classFile, doc: "open flags by name: O_WRONLY|O_CREAT|O_TRUNC",
		get: buffered(&fOpenFlags, func(c *evalCtx, b []byte) []byte {
			if c.ev.Kind != event.KindFileOpen || c.ev.File == nil {
				return b
			}
			return appendOpenFlags(b, c.ev.File.Flags)
		})})
	def(&fMode, fieldDef{name: "Mode", class: classFile, doc: "permission bits in four octal digits (4755 is setuid)",
		get: buffered(&fMode, func(c *evalCtx, b []byte) []byte {
			if c.ev.File == nil {
				return b
			}
			m := c.ev.File.Mode & 0o7777
			for shift := 9; shift >= 0; shift -= 3 {
				b = append(b, byte('0'+(m>>uint(shift))&7))
			}
			return b
		})})
	def(nil, fieldDef{name: "Write", class: classFile, doc: "true when the file was opened to modify it",
		get: one(func(c *evalCtx) string { return boolString(c.ev.File != nil && c.ev.File.Write) })})
	intField(&fResult, "Result", classAny, func(c *evalCtx) int64 { return int64(c.result()) }, "the syscall's result: 0 or a descriptor, -errno on failure")
	def(nil, fieldDef{name: "Syscall", doc: "the syscall that made a file or network event",
		get: one(func(c *evalCtx) string {
			switch {
			case c.ev.File != nil:
				return c.ev.File.Syscall
			case c.ev.Net != nil:
				return c.ev.Net.Syscall
			}
			return ""
		})})
	def(nil, fieldDef{name: "DeviceType", class: classFile, doc: "char or block for a device node",
		get: one(func(c *evalCtx) string {
			if c.ev.File == nil {
				return ""
			}
			return c.ev.File.DevKind
		})})
	def(nil, fieldDef{name: "DeviceNumber", class: classFile, doc: "major:minor of a device node",
		get: one(func(c *evalCtx) string {
			if c.ev.File == nil {
				return ""
			}
			return c.ev.File.RDev
		})})
	fileNum := func(f func(*event.File) uint64) func(c *evalCtx) uint64 {
		return func(c *evalCtx) uint64 {
			if c.ev.File == nil {
				return 0
			}
			return f(c.ev.File)
		}
	}
	uintField(&fOwnerUID, "OwnerUid", classFile, fileNum(func(f *event.File) uint64 { return uint64(f.UID) }), "chown: the new owner")
	uintField(&fOwnerGID, "OwnerGid", classFile, fileNum(func(f *event.File) uint64 { return uint64(f.GID) }), "chown: the new group")
	uintField(&fSize, "Size", classFile, fileNum(func(f *event.File) uint64 { return f.Size }), "truncate: the new length")

	// Network, with Sysmon's direction: the source initiated the connection.
	def(&fSourceIP, fieldDef{name: "SourceIp", class: classNet, doc: "the initiator's address (the peer of an accepted connection)",
		get: one(func(c *evalCtx) string {
			if n := c.ev.Net; n != nil {
				if c.inbound() {
					return n.DstAddr
				}
				return n.SrcAddr
			}
			return ""
		})})
	uintField(&fSourcePort, "SourcePort", classNet, func(c *evalCtx) uint64 {
		if n := c.ev.Net; n != nil {
			if c.inbound() {
				return uint64(n.DstPort)
			}
			return uint64(n.SrcPort)
		}
		return 0
	}, "the initiator's port")
	def(&fDestIP, fieldDef{name: "DestinationIp", class: classNet, doc: "the address connected to (this host's for an accepted connection)",
		get: one(func(c *evalCtx) string {
			if n := c.ev.Net; n != nil {
				if c.inbound() {
					return n.SrcAddr
				}
				return n.DstAddr
			}
			return ""
		})})
	uintField(&fDestPort, "DestinationPort", classNet, func(c *evalCtx) uint64 {
		if n := c.ev.Net; n != nil {
			if c.inbound() {
				return uint64(n.SrcPort)
			}
			return uint64(n.DstPort)
		}
		return 0
	}, "the port connected to")
	def(nil, fieldDef{name: "DestinationHostname", class: classNet, doc: "always empty: the agent sees addresses, not DNS names",
		get: one(func(c *evalCtx) string { return "" })})
	def(&fInitiated, fieldDef{name: "Initiated", class: classNet, doc: "true when this process opened the connection or sent first",
		get: one(func(c *evalCtx) string { return boolString(c.ev.Net != nil && !c.inbound()) })})
	def(nil, fieldDef{name: "Protocol", class: classNet, doc: "tcp, udp, raw ...",
		get: one(func(c *evalCtx) string {
			if c.ev.Net == nil {
				return ""
			}
			return c.ev.Net.Protocol
		})})
	def(nil, fieldDef{name: "Family", class: classNet, doc: "inet, inet6, packet ...",
		get: one(func(c *evalCtx) string {
			if c.ev.Net == nil {
				return ""
			}
			return c.ev.Net.Family
		})})
	def(nil, fieldDef{name: "SockType", class: classNet, doc: "stream, dgram, raw ...",
		get: one(func(c *evalCtx) string {
			if c.ev.Net == nil {
				return ""
			}
			return c.ev.Net.SockType
		})})
	netNum := func(f func(*event.Net) uint64) func(c *evalCtx) uint64 {
		return func(c *evalCtx) uint64 {
			if c.ev.Net == nil {
				return 0
			}
			return f(c.ev.Net)
		}
	}
	uintField(&fBytesSent, "BytesSent", classNet, netNum(func(n *event.Net) uint64 { return n.BytesSent }), "net_close: payload bytes sent")
	uintField(&fBytesRecv, "BytesReceived", classNet, netNum(func(n *event.Net) uint64 { return n.BytesRecv }), "net_close: payload bytes received")

	// Security events.
	secStr := func(name, doc string, f func(*event.Security) string) {
		def(nil, fieldDef{name: name, class: classSecurity, doc: doc, get: one(func(c *evalCtx) string {
			if c.ev.Security == nil {
				return ""
			}
			return f(c.ev.Security)
		})})
	}
	def(nil, fieldDef{name: "Operation", class: classSecurity, doc: "the syscall (setuid, finit_module, kill, setns, unshare ...)",
		get: one(func(c *evalCtx) string {
			switch {
			case c.ev.Security != nil:
				return c.ev.Security.Operation
			case c.ev.Namespace != nil:
				return c.ev.Namespace.Operation
			}
			return ""
		})})
	secStr("Name", "ptrace request, bpf command, mount source, clock, memfd name", func(s *event.Security) string { return s.Name })
	secStr("Path", "module file, mount point, /memfd:name", func(s *event.Security) string { return s.Path })
	secStr("FsType", "mount: the file system type", func(s *event.Security) string { return s.FSType })
	secStr("Params", "module_load: the module parameters", func(s *event.Security) string { return s.Params })
	secInt := func(id *fieldID, name, doc string, f func(*event.Security) int64) {
		intField(id, name, classSecurity, func(c *evalCtx) int64 {
			if c.ev.Security == nil {
				return 0
			}
			return f(c.ev.Security)
		}, doc)
	}
	// A credential id the event does not know is absent, never 0 (root).
	secID := func(id *fieldID, name, doc string, f func(*event.Security) *int64) {
		build := buffered(id, func(c *evalCtx, b []byte) []byte { return strconv.AppendInt(b, *f(c.ev.Security), 10) })
		def(id, fieldDef{name: name, class: classSecurity, doc: doc, get: func(c *evalCtx, i int) (string, bool) {
			if c.ev.Security == nil || f(c.ev.Security) == nil {
				return "", false
			}
			return build(c, i)
		}})
	}
	secID(&fOldID, "OldId", "cred_change: the effective id before (absent when unknown)", func(s *event.Security) *int64 { return s.OldID })
	secID(&fNewID, "NewId", "cred_change: the effective id after", func(s *event.Security) *int64 { return s.NewID })
	secInt(&fSecFlags, "Flags", "mount and umount flags, capset effective set", func(s *event.Security) int64 { return int64(s.Flags) })
	secInt(&fSignal, "Signal", "signal: the signal number", func(s *event.Security) int64 { return int64(s.Signal) })
	secInt(&fTargetPID, "TargetProcessId", "ptrace and signal: the target's pid", func(s *event.Security) int64 { return int64(s.TargetPID) })
	icsStr := func(name, doc string, get func(*event.ICS) string) {
		def(nil, fieldDef{name: name, class: classICS, doc: doc, get: one(func(c *evalCtx) string {
			if c.ev.ICS == nil {
				return ""
			}
			return get(c.ev.ICS)
		})})
	}
	icsStr("OperationClass", "ics_op: read, write, program, control, diagnostic, recon or other", func(i *event.ICS) string { return i.Class })
	icsStr("FunctionName", "ics_op: the function (write_single_register ...)", func(i *event.ICS) string { return i.Function })
	icsStr("FunctionCode", "ics_op: the function code, decimal", func(i *event.ICS) string { return strconv.Itoa(int(i.Code)) })
	icsStr("UnitId", "ics_op: the unit (slave) id of the first operation, decimal", func(i *event.ICS) string { return strconv.Itoa(int(i.Unit)) })
	icsStr("IndustrialRole", "ics_op: the process's side: client (it sent the requests) or server", func(i *event.ICS) string { return i.Role })
	def(&fNamespaces, fieldDef{name: "Namespaces", class: classNamespace, doc: "namespace: the types involved, comma-separated (net,mnt)",
		get: buffered(&fNamespaces, func(c *evalCtx, b []byte) []byte {
			if c.ev.Namespace == nil {
				return b
			}
			for i, n := range c.ev.Namespace.Namespaces {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, n...)
			}
			return b
		})})
	def(nil, fieldDef{name: "Environment", class: classExec, multi: true,
		doc: "exec: each captured environment variable as NAME=value (exec_env), in name order",
		get: func(c *evalCtx, i int) (string, bool) { return c.envVar(i) }})
	def(&fTargetImage, fieldDef{name: "TargetImage", class: classSecurity, doc: "ptrace and signal: the target's executable",
		get: one(func(c *evalCtx) string { return c.target().Exe })})
	def(&fTargetCmd, fieldDef{name: "TargetCommandLine", class: classSecurity, doc: "ptrace and signal: the target's argv",
		get: buffered(&fTargetCmd, func(c *evalCtx, b []byte) []byte { return joinArgs(b, c.target().Args) })})
	def(&fTargetUser, fieldDef{name: "TargetUser", class: classSecurity, doc: "ptrace and signal: the user name of the target's uid",
		get: buffered(&fTargetUser, func(c *evalCtx, b []byte) []byte {
			t := c.target()
			if !t.Known {
				return b
			}
			return c.users.appendName(b, t.UID)
		})})
	def(&fTargetIsChild, fieldDef{name: "TargetIsChild", class: classSecurity, doc: "ptrace and signal: true when the target is a child of the actor",
		get: one(func(c *evalCtx) string { t := c.target(); return boolString(t.Known && t.PPID == c.ev.Process.PID) })})
}

var openFlagNames = []struct {
	bit  uint32
	name string
}{
	{unix.O_CREAT, "O_CREAT"}, {unix.O_EXCL, "O_EXCL"}, {unix.O_NOCTTY, "O_NOCTTY"}, {unix.O_TRUNC, "O_TRUNC"},
	{unix.O_APPEND, "O_APPEND"}, {unix.O_NONBLOCK, "O_NONBLOCK"}, {unix.O_DSYNC, "O_DSYNC"},
	{unix.O_DIRECT, "O_DIRECT"}, {unix.O_LARGEFILE, "O_LARGEFILE"}, {unix.O_DIRECTORY, "O_DIRECTORY"},
	{unix.O_NOFOLLOW, "O_NOFOLLOW"}, {unix.O_NOATIME, "O_NOATIME"}, {unix.O_CLOEXEC, "O_CLOEXEC"},
	{unix.O_PATH, "O_PATH"},
}

// appendOpenFlags names the access mode, then every other flag set.
func appendOpenFlags(b []byte, flags uint32) []byte {
	switch flags & unix.O_ACCMODE {
	case unix.O_WRONLY:
		b = append(b, "O_WRONLY"...)
	case unix.O_RDWR:
		b = append(b, "O_RDWR"...)
	default:
		b = append(b, "O_RDONLY"...)
	}
	rest := flags &^ unix.O_ACCMODE
	if rest&unix.O_TMPFILE == unix.O_TMPFILE {
		b = append(b, "|O_TMPFILE"...)
		rest &^= unix.O_TMPFILE
	}
	if rest&unix.O_SYNC == unix.O_SYNC {
		b = append(b, "|O_SYNC"...)
		rest &^= unix.O_SYNC
	}
	for _, f := range openFlagNames {
		if rest&f.bit != 0 {
			b = append(b, '|')
			b = append(b, f.name...)
		}
	}
	return b
}

// FieldNames lists every field a rule may use, for the documentation.
func FieldNames() []string {
	out := make([]string, len(fieldDefs))
	for i, f := range fieldDefs {
		out[i] = f.name
	}
	return out
}

// lookupField resolves a rule's field name.
func lookupField(name string) (fieldID, bool) {
	id, ok := fieldByName[name]
	return id, ok
}

// hasHighByte reports whether s has a byte above 0x7f (such a value is
// lower-cased as Unicode before a case-insensitive scan).
func hasHighByte(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}
