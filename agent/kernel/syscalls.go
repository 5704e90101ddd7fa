package kernel

import "github.com/watchpost/watchpost/agent/event"

// na marks an absent argument index (WP_ARG_NONE).
const na = 0xff

// sysSpec describes how the kernel programs read one syscall. The op id is
// stable: it is what records carry, and Op names it.
type sysSpec struct {
	name     string // the syscall's name (and its tracepoint's, unless tp is set)
	tp       string // tracepoint name when it differs (SYSCALL_DEFINE name)
	op       uint16
	kind     event.Kind
	class    uint8
	sub      uint8 // path kind, net op or security op
	dirfd    uint8
	name1    uint8
	dirfd2   uint8
	name2    uint8
	fd       uint8
	flags    uint8
	mode     uint8
	str      uint8
	str2     uint8
	str3     uint8
	howFlags uint8
	write    uint8 // 1 modifies, 2 chown (uid, gid at mode, mode+1), 3 truncate (length at mode)
	optional bool  // absent on some kernels (newer syscalls)
}

func (s sysSpec) tracepoint() string {
	if s.tp != "" {
		return s.tp
	}
	return s.name
}

const (
	classFile = uint8(wpWpSysClassWP_SYS_FILE)
	classNet  = uint8(wpWpSysClassWP_SYS_NET)
	classSec  = uint8(wpWpSysClassWP_SYS_SEC)
	classNs   = uint8(wpWpSysClassWP_SYS_NS)

	pathRetFD = uint8(wpWpPathKindWP_PATH_RET_FD)
	pathArgFD = uint8(wpWpPathKindWP_PATH_ARG_FD)
	pathName  = uint8(wpWpPathKindWP_PATH_NAME)

	netConnect = uint8(wpWpNetOpWP_NET_CONNECT)
	netAccept  = uint8(wpWpNetOpWP_NET_ACCEPT)
	netListen  = uint8(wpWpNetOpWP_NET_LISTEN)
	netBind    = uint8(wpWpNetOpWP_NET_BIND)
	netSocket  = uint8(wpWpNetOpWP_NET_SOCKET)
	netSend    = uint8(wpWpNetOpWP_NET_SEND)
	netRecv    = uint8(wpWpNetOpWP_NET_RECV)

	secGeneric = uint8(wpWpSecOpWP_SEC_GENERIC)
	secPtrace  = uint8(wpWpSecOpWP_SEC_PTRACE)
	secBPF     = uint8(wpWpSecOpWP_SEC_BPF)
	secAdjtime = uint8(wpWpSecOpWP_SEC_ADJTIME)
	secSignal  = uint8(wpWpSecOpWP_SEC_SIGNAL)
	secCred    = uint8(wpWpSecOpWP_SEC_CRED)
	secFinit   = uint8(wpWpSecOpWP_SEC_FINIT)
	secCapset  = uint8(wpWpSecOpWP_SEC_CAPSET)
	secQuiet   = uint8(wpWpSecOpWP_SEC_QUIET)

	nsClone   = uint8(wpWpNsOpWP_NS_CLONE)
	nsClone3  = uint8(wpWpNsOpWP_NS_CLONE3)
	nsUnshare = uint8(wpWpNsOpWP_NS_UNSHARE)
	nsSetns   = uint8(wpWpNsOpWP_NS_SETNS)
)

// file, net and sec build specs with every index absent by default.
func file(op uint16, name string, k event.Kind, sub uint8) sysSpec {
	return sysSpec{name: name, op: op, kind: k, class: classFile, sub: sub, dirfd: na, name1: na, dirfd2: na, name2: na, fd: na, flags: na, mode: na, str: na, str2: na, str3: na}
}

func netSpec(op uint16, name string, k event.Kind, sub uint8) sysSpec {
	s := file(op, name, k, sub)
	s.class = classNet
	return s
}

func sec(op uint16, name string, k event.Kind, sub uint8) sysSpec {
	s := file(op, name, k, sub)
	s.class = classSec
	return s
}

func nsSpec(op uint16, name string, sub uint8) sysSpec {
	s := file(op, name, event.KindNamespace, sub)
	s.class = classNs
	return s
}

func (s sysSpec) with(f func(*sysSpec)) sysSpec { f(&s); return s }

// syscallSpecs is every syscall Watchpost captures. Op ids never change.
var syscallSpecs = []sysSpec{
	// Files. Legacy calls without a dirfd exist on x86_64 only.
	file(1, "open", event.KindFileOpen, pathRetFD).with(func(s *sysSpec) { s.name1, s.flags, s.mode = 0, 1, 2 }),
	file(2, "openat", event.KindFileOpen, pathRetFD).with(func(s *sysSpec) { s.dirfd, s.name1, s.flags, s.mode = 0, 1, 2, 3 }),
	file(3, "openat2", event.KindFileOpen, pathRetFD).with(func(s *sysSpec) { s.dirfd, s.name1, s.howFlags = 0, 1, 1; s.optional = true }),
	file(4, "creat", event.KindFileOpen, pathRetFD).with(func(s *sysSpec) { s.name1, s.mode, s.write = 0, 1, 1 }),
	file(5, "unlink", event.KindFileUnlink, pathName).with(func(s *sysSpec) { s.name1, s.write = 0, 1 }),
	file(6, "unlinkat", event.KindFileUnlink, pathName).with(func(s *sysSpec) { s.dirfd, s.name1, s.flags, s.write = 0, 1, 2, 1 }),
	file(7, "rmdir", event.KindFileRmdir, pathName).with(func(s *sysSpec) { s.name1, s.write = 0, 1 }),
	file(8, "rename", event.KindFileRename, pathName).with(func(s *sysSpec) { s.name1, s.name2, s.write = 0, 1, 1 }),
	file(9, "renameat", event.KindFileRename, pathName).with(func(s *sysSpec) { s.dirfd, s.name1, s.dirfd2, s.name2, s.write = 0, 1, 2, 3, 1 }),
	file(10, "renameat2", event.KindFileRename, pathName).with(func(s *sysSpec) { s.dirfd, s.name1, s.dirfd2, s.name2, s.flags, s.write = 0, 1, 2, 3, 4, 1 }),
	file(11, "chmod", event.KindFileChmod, pathName).with(func(s *sysSpec) { s.name1, s.mode, s.write = 0, 1, 1 }),
	file(12, "fchmod", event.KindFileChmod, pathArgFD).with(func(s *sysSpec) { s.fd, s.mode, s.write = 0, 1, 1 }),
	file(13, "fchmodat", event.KindFileChmod, pathName).with(func(s *sysSpec) { s.dirfd, s.name1, s.mode, s.write = 0, 1, 2, 1 }),
	file(14, "fchmodat2", event.KindFileChmod, pathName).with(func(s *sysSpec) { s.dirfd, s.name1, s.mode, s.flags, s.write = 0, 1, 2, 3, 1; s.optional = true }),
	file(15, "chown", event.KindFileChown, pathName).with(func(s *sysSpec) { s.name1, s.mode, s.write = 0, 1, 2 }),
	file(16, "lchown", event.KindFileChown, pathName).with(func(s *sysSpec) { s.name1, s.mode, s.write = 0, 1, 2 }),
	file(17, "fchown", event.KindFileChown, pathArgFD).with(func(s *sysSpec) { s.fd, s.mode, s.write = 0, 1, 2 }),
	file(18, "fchownat", event.KindFileChown, pathName).with(func(s *sysSpec) { s.dirfd, s.name1, s.mode, s.flags, s.write = 0, 1, 2, 4, 2 }),
	file(19, "truncate", event.KindFileTruncate, pathName).with(func(s *sysSpec) { s.name1, s.mode, s.write = 0, 1, 3 }),
	file(20, "ftruncate", event.KindFileTruncate, pathArgFD).with(func(s *sysSpec) { s.fd, s.mode, s.write = 0, 1, 3 }),
	file(21, "mkdir", event.KindFileMkdir, pathName).with(func(s *sysSpec) { s.name1, s.mode, s.write = 0, 1, 1 }),
	file(22, "mkdirat", event.KindFileMkdir, pathName).with(func(s *sysSpec) { s.dirfd, s.name1, s.mode, s.write = 0, 1, 2, 1 }),
	file(23, "link", event.KindFileLink, pathName).with(func(s *sysSpec) { s.name1, s.name2, s.write = 0, 1, 1 }),
	file(24, "linkat", event.KindFileLink, pathName).with(func(s *sysSpec) { s.dirfd, s.name1, s.dirfd2, s.name2, s.flags, s.write = 0, 1, 2, 3, 4, 1 }),
	file(25, "symlink", event.KindFileSymlink, pathName).with(func(s *sysSpec) { s.str, s.name1, s.write = 0, 1, 1 }),
	file(26, "symlinkat", event.KindFileSymlink, pathName).with(func(s *sysSpec) { s.str, s.dirfd, s.name1, s.write = 0, 1, 2, 1 }),

	// Network.
	netSpec(40, "connect", event.KindNetConnect, netConnect).with(func(s *sysSpec) { s.fd = 0 }),
	netSpec(41, "accept", event.KindNetAccept, netAccept),
	netSpec(42, "accept4", event.KindNetAccept, netAccept),
	netSpec(43, "listen", event.KindNetListen, netListen).with(func(s *sysSpec) { s.fd = 0 }),
	netSpec(44, "bind", event.KindNetBind, netBind).with(func(s *sysSpec) { s.fd = 0 }),
	netSpec(45, "socket", event.KindNetSocket, netSocket),
	netSpec(46, "sendto", event.KindNetUDPFlow, netSend).with(func(s *sysSpec) { s.fd, s.str = 0, 4 }),
	netSpec(47, "sendmsg", event.KindNetUDPFlow, netSend).with(func(s *sysSpec) { s.fd, s.str2 = 0, 1 }),
	netSpec(48, "sendmmsg", event.KindNetUDPFlow, netSend).with(func(s *sysSpec) { s.fd, s.str2 = 0, 1 }),
	netSpec(49, "recvfrom", event.KindNetUDPFlow, netRecv).with(func(s *sysSpec) { s.fd, s.str = 0, 4 }),
	netSpec(50, "recvmsg", event.KindNetUDPFlow, netRecv).with(func(s *sysSpec) { s.fd, s.str2 = 0, 1 }),
	netSpec(51, "recvmmsg", event.KindNetUDPFlow, netRecv).with(func(s *sysSpec) { s.fd, s.str2 = 0, 1 }),

	// Security.
	sec(60, "init_module", event.KindModuleLoad, secGeneric).with(func(s *sysSpec) { s.str = 2 }),
	sec(61, "finit_module", event.KindModuleLoad, secFinit).with(func(s *sysSpec) { s.fd, s.str2 = 0, 1 }),
	sec(62, "ptrace", event.KindPtrace, secPtrace),
	sec(63, "setuid", event.KindCredChange, secCred),
	sec(64, "setgid", event.KindCredChange, secCred),
	sec(65, "setreuid", event.KindCredChange, secCred),
	sec(66, "setregid", event.KindCredChange, secCred),
	sec(67, "setresuid", event.KindCredChange, secCred),
	sec(68, "setresgid", event.KindCredChange, secCred),
	sec(69, "setfsuid", event.KindCredChange, secCred),
	sec(70, "setfsgid", event.KindCredChange, secCred),
	sec(71, "capset", event.KindCredChange, secCapset),
	sec(72, "setgroups", event.KindCredChange, secCred),
	sec(73, "bpf", event.KindBPF, secBPF),
	sec(74, "mount", event.KindMount, secGeneric).with(func(s *sysSpec) { s.str, s.str2, s.str3 = 0, 1, 2 }),
	sec(75, "umount2", event.KindUmount, secGeneric).with(func(s *sysSpec) { s.tp = "umount"; s.str = 0 }),
	sec(76, "move_mount", event.KindMount, secGeneric).with(func(s *sysSpec) { s.str, s.str2 = 1, 3; s.optional = true }),
	sec(77, "settimeofday", event.KindClockChange, secGeneric),
	sec(78, "clock_settime", event.KindClockChange, secGeneric),
	sec(79, "adjtimex", event.KindClockChange, secAdjtime).with(func(s *sysSpec) { s.fd = 0 }),
	sec(80, "clock_adjtime", event.KindClockChange, secAdjtime).with(func(s *sysSpec) { s.fd = 1 }),
	sec(81, "kill", event.KindSignal, secSignal).with(func(s *sysSpec) { s.fd, s.mode = 0, 1 }),
	sec(82, "tkill", event.KindSignal, secSignal).with(func(s *sysSpec) { s.fd, s.mode = 0, 1 }),
	sec(83, "tgkill", event.KindSignal, secSignal).with(func(s *sysSpec) { s.fd, s.mode = 0, 2 }),
	sec(84, "rt_sigqueueinfo", event.KindSignal, secSignal).with(func(s *sysSpec) { s.fd, s.mode = 0, 1 }),
	sec(85, "rt_tgsigqueueinfo", event.KindSignal, secSignal).with(func(s *sysSpec) { s.fd, s.mode = 0, 2 }),
	sec(86, "pidfd_send_signal", event.KindSignal, secSignal).with(func(s *sysSpec) { s.mode = 1; s.optional = true }),
	sec(87, "memfd_create", event.KindMemfdCreate, secQuiet).with(func(s *sysSpec) { s.str, s.flags = 0, 1 }),
	sec(88, "userfaultfd", event.KindUserfaultfd, secGeneric).with(func(s *sysSpec) { s.flags = 0; s.optional = true }),

	// Namespaces: the flag test runs in the kernel, so plain forks and
	// threads cost one short program run.
	nsSpec(100, "clone", nsClone),
	nsSpec(101, "clone3", nsClone3).with(func(s *sysSpec) { s.optional = true }),
	nsSpec(102, "unshare", nsUnshare),
	nsSpec(103, "setns", nsSetns),
}

var opNames = func() map[uint16]string {
	m := make(map[uint16]string, len(syscallSpecs))
	for _, s := range syscallSpecs {
		m[s.op] = s.name
	}
	return m
}()

// OpName returns the syscall name of an op id.
func OpName(op uint16) string { return opNames[op] }

func (s sysSpec) desc() wpWpSysDesc {
	return wpWpSysDesc{
		Type: uint16(s.kind), Class: s.class, Kind: s.sub, DirfdIdx: s.dirfd, NameIdx: s.name1,
		Dirfd2Idx: s.dirfd2, Name2Idx: s.name2, FdIdx: s.fd, FlagsIdx: s.flags, ModeIdx: s.mode,
		StrIdx: s.str, Str2Idx: s.str2, Str3Idx: s.str3, HowFlags: s.howFlags, Write: s.write, Op: s.op,
	}
}
