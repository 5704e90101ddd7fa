package kernel

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// ErrUnsupported is wrapped by the error Probe returns when the host cannot
// run the agent.
var ErrUnsupported = errors.New("this host cannot run the Watchpost agent")

// Features is what the start-up probe found. It is reported in the agent's
// health so an operator can see which capture path a gateway uses.
type Features struct {
	Kernel       string `json:"kernel"`
	BTF          bool   `json:"btf"`
	RingBuf      bool   `json:"ringbuf"`
	TPBTF        bool   `json:"tp_btf"`
	RingbufQuery bool   `json:"ringbuf_query"`
	Kprobes      bool   `json:"kprobes"`
	Fentry       bool   `json:"fentry"`
	LSM          bool   `json:"lsm"`
	TaskPtRegs   bool   `json:"task_pt_regs"`
	// TracingAncestorCgroup: tracepoint programs may call
	// bpf_get_current_ancestor_cgroup_id (5.14+); before that the response
	// programs read the ancestors from the task's cgroup.
	TracingAncestorCgroup bool `json:"tracing_ancestor_cgroup"`
	// Cgroup2 is the cgroup v2 mount the cgroup hooks (response,
	// industrial inspection) attach at; empty when there is none (then
	// only the port tags remain of the inspection).
	Cgroup2 string `json:"cgroup2"`
	// CgroupSKB: cgroup_skb programs load here (the inspection's hooks).
	CgroupSKB   bool     `json:"cgroup_skb"`
	CapturePath string   `json:"capture_path"`
	SyscallArgs string   `json:"syscall_args"`
	Missing     []string `json:"missing,omitempty"`
}

// How the sys_exit programs get a syscall's arguments (Features.SyscallArgs).
const (
	// syscallArgsExitRegs: read at sys_exit from the registers the syscall
	// entry saved (bpf_task_pt_regs, 5.15+); nothing attached at sys_enter.
	syscallArgsExitRegs = "exit_regs"
	// syscallArgsEnterStash: a sys_enter program saves them in a hash map
	// keyed by thread (5.10-5.14).
	syscallArgsEnterStash = "enter_stash"
)

// probeOptions lets tests simulate a host without a feature.
type probeOptions struct {
	btfPath string
}

// Probe checks, once, everything the agent needs and what better hooks the
// kernel offers. When something required is missing it returns one error
// that lists all of it.
func Probe() (Features, error) {
	return probe(probeOptions{btfPath: btfPathFromEnv()})
}

// btfPathFromEnv allows pointing the probe at another BTF file; setting it
// to a missing path simulates a kernel without BTF.
func btfPathFromEnv() string {
	if p := os.Getenv("WATCHPOST_BTF_PATH"); p != "" {
		return p
	}
	return "/sys/kernel/btf/vmlinux"
}

func probe(o probeOptions) (Features, error) {
	var f Features
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		f.Kernel = unix.ByteSliceToString(uts.Release[:])
	}

	if missing := missingCapabilities(); len(missing) > 0 {
		f.Missing = append(f.Missing, "capabilities "+strings.Join(missing, ", ")+
			" (run as root, or grant CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN on kernels before 5.8)")
		// Without privileges nothing else can be probed meaningfully.
		return f, unsupported(f.Missing)
	}

	if _, err := os.Stat(o.btfPath); err != nil {
		f.Missing = append(f.Missing, fmt.Sprintf("kernel BTF (%s: %v; the kernel needs CONFIG_DEBUG_INFO_BTF=y)", o.btfPath, errors.Unwrap(err)))
	} else if _, err := btf.LoadKernelSpec(); err != nil {
		f.Missing = append(f.Missing, fmt.Sprintf("kernel BTF (loading %s: %v)", o.btfPath, err))
	} else {
		f.BTF = true
	}

	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		f.Missing = append(f.Missing, fmt.Sprintf("BPF ring buffer maps (kernel >= 5.8): %v", err))
	} else {
		f.RingBuf = true
	}
	if f.BTF {
		if err := probeTracing(ebpf.AttachTraceRawTp, "sched_process_exec"); err != nil {
			f.Missing = append(f.Missing, fmt.Sprintf("BTF-enabled tracepoints, tp_btf (kernel >= 5.5): %v", err))
		} else {
			f.TPBTF = true
		}
	}
	if f.RingBuf {
		if err := features.HaveProgramHelper(ebpf.TracePoint, asm.FnRingbufQuery); err == nil {
			f.RingbufQuery = true
		} else {
			f.Missing = append(f.Missing, fmt.Sprintf("bpf_ringbuf_query helper: %v", err))
		}
	}
	if len(f.Missing) > 0 {
		return f, unsupported(f.Missing)
	}

	// Better hooks are optional: record whether the kernel would have them.
	f.Kprobes = features.HaveProgramType(ebpf.Kprobe) == nil && fileExists("/sys/kernel/tracing/kprobe_events", "/sys/kernel/debug/tracing/kprobe_events")
	// vfs_read exists, with the same name, on every supported kernel.
	f.Fentry = probeTracing(ebpf.AttachTraceFEntry, "vfs_read") == nil
	f.LSM = features.HaveProgramType(ebpf.LSM) == nil && lsmActive()
	f.CapturePath = "tp_btf+tracepoint"
	// bpf_task_pt_regs (5.15+) lets the sys_exit programs read a syscall's
	// arguments from its saved registers, so no program runs at sys_enter.
	f.TaskPtRegs = features.HaveProgramHelper(ebpf.TracePoint, asm.FnTaskPtRegs) == nil
	f.TracingAncestorCgroup = features.HaveProgramHelper(ebpf.TracePoint, asm.FnGetCurrentAncestorCgroupId) == nil
	f.Cgroup2, _ = Cgroup2Root()
	f.CgroupSKB = features.HaveProgramType(ebpf.CGroupSKB) == nil
	f.SyscallArgs = syscallArgsEnterStash
	if f.TaskPtRegs {
		f.SyscallArgs = syscallArgsExitRegs
	}
	return f, nil
}

func unsupported(missing []string) error {
	return fmt.Errorf("%w; missing:\n  - %s", ErrUnsupported, strings.Join(missing, "\n  - "))
}

func fileExists(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// lsmActive reports whether "bpf" is in the active LSM list; BPF-LSM
// programs load but never run otherwise (e.g. Debian 5.10 without lsm=).
func lsmActive() bool {
	b, err := os.ReadFile("/sys/kernel/security/lsm")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), ",") {
		if l == "bpf" {
			return true
		}
	}
	return false
}

// probeTracing loads a minimal BTF tracing program (tp_btf or fentry).
// Some kernels refuse fentry even when the program type exists (lockdown,
// missing trampolines), so only a real load against a real target tells.
func probeTracing(at ebpf.AttachType, target string) error {
	spec := &ebpf.ProgramSpec{
		Type:       ebpf.Tracing,
		AttachType: at,
		AttachTo:   target,
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	}
	prog, err := ebpf.NewProgramWithOptions(spec, ebpf.ProgramOptions{})
	if err != nil {
		return err
	}
	return prog.Close()
}

// missingCapabilities lists the capabilities the agent lacks.
func missingCapabilities() []string {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return []string{fmt.Sprintf("(capget failed: %v)", err)}
	}
	has := func(c int) bool { return data[c/32].Effective&(1<<(uint(c)%32)) != 0 }
	if has(unix.CAP_SYS_ADMIN) {
		return nil
	}
	var missing []string
	if !has(unix.CAP_BPF) {
		missing = append(missing, "CAP_BPF")
	}
	if !has(unix.CAP_PERFMON) {
		missing = append(missing, "CAP_PERFMON")
	}
	return missing
}
