package kernel

import "golang.org/x/sys/unix"

// syscallNumbers maps the captured syscalls to their arm64 numbers. arm64
// has only the *at forms of the legacy file calls (no open, unlink ...).
var syscallNumbers = map[string]uint32{
	"openat": unix.SYS_OPENAT, "openat2": unix.SYS_OPENAT2,
	"unlinkat": unix.SYS_UNLINKAT, "renameat": unix.SYS_RENAMEAT, "renameat2": unix.SYS_RENAMEAT2,
	"fchmod": unix.SYS_FCHMOD, "fchmodat": unix.SYS_FCHMODAT, "fchmodat2": unix.SYS_FCHMODAT2,
	"fchown": unix.SYS_FCHOWN, "fchownat": unix.SYS_FCHOWNAT,
	"truncate": unix.SYS_TRUNCATE, "ftruncate": unix.SYS_FTRUNCATE, "mkdirat": unix.SYS_MKDIRAT,
	"linkat": unix.SYS_LINKAT, "symlinkat": unix.SYS_SYMLINKAT,
	"connect": unix.SYS_CONNECT, "accept": unix.SYS_ACCEPT, "accept4": unix.SYS_ACCEPT4, "listen": unix.SYS_LISTEN,
	"bind": unix.SYS_BIND, "socket": unix.SYS_SOCKET, "sendto": unix.SYS_SENDTO, "sendmsg": unix.SYS_SENDMSG,
	"sendmmsg": unix.SYS_SENDMMSG, "recvfrom": unix.SYS_RECVFROM, "recvmsg": unix.SYS_RECVMSG, "recvmmsg": unix.SYS_RECVMMSG,
	"init_module": unix.SYS_INIT_MODULE, "finit_module": unix.SYS_FINIT_MODULE, "ptrace": unix.SYS_PTRACE,
	"setuid": unix.SYS_SETUID, "setgid": unix.SYS_SETGID, "setreuid": unix.SYS_SETREUID, "setregid": unix.SYS_SETREGID,
	"setresuid": unix.SYS_SETRESUID, "setresgid": unix.SYS_SETRESGID, "setfsuid": unix.SYS_SETFSUID, "setfsgid": unix.SYS_SETFSGID,
	"capset": unix.SYS_CAPSET, "setgroups": unix.SYS_SETGROUPS, "bpf": unix.SYS_BPF, "mount": unix.SYS_MOUNT,
	"umount2": unix.SYS_UMOUNT2, "move_mount": unix.SYS_MOVE_MOUNT, "settimeofday": unix.SYS_SETTIMEOFDAY,
	"clock_settime": unix.SYS_CLOCK_SETTIME, "adjtimex": unix.SYS_ADJTIMEX, "clock_adjtime": unix.SYS_CLOCK_ADJTIME,
	"kill": unix.SYS_KILL, "tkill": unix.SYS_TKILL, "tgkill": unix.SYS_TGKILL, "rt_sigqueueinfo": unix.SYS_RT_SIGQUEUEINFO,
	"rt_tgsigqueueinfo": unix.SYS_RT_TGSIGQUEUEINFO, "pidfd_send_signal": unix.SYS_PIDFD_SEND_SIGNAL,
	"memfd_create": unix.SYS_MEMFD_CREATE, "userfaultfd": unix.SYS_USERFAULTFD,
	"clone": unix.SYS_CLONE, "clone3": unix.SYS_CLONE3, "unshare": unix.SYS_UNSHARE, "setns": unix.SYS_SETNS,
}
