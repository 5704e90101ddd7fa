package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// capturedSyscalls are the syscalls whose every call Watchpost's full
// capture reports (agent/kernel/syscalls.go), by class. The send/recv
// family is hooked too but reported once per UDP flow, which auditd and
// bpftrace cannot express, so the peers do not trace it.
var capturedSyscalls = map[string][]string{
	"file": {"open", "openat", "openat2", "creat", "unlink", "unlinkat", "rmdir", "rename", "renameat", "renameat2",
		"chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "lchown", "fchown", "fchownat", "truncate", "ftruncate",
		"mkdir", "mkdirat", "link", "linkat", "symlink", "symlinkat"},
	"net":     {"connect", "accept", "accept4", "listen", "bind", "socket"},
	"process": {"execve", "execveat", "clone", "clone3", "fork", "vfork", "exit", "exit_group"},
	"security": {"init_module", "finit_module", "ptrace", "setuid", "setgid", "setreuid", "setregid", "setresuid",
		"setresgid", "setfsuid", "setfsgid", "capset", "setgroups", "bpf", "mount", "umount2", "move_mount",
		"settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "kill", "tkill", "tgkill", "rt_sigqueueinfo",
		"rt_tgsigqueueinfo", "pidfd_send_signal"},
}

var syscallClasses = []string{"file", "net", "process", "security"}

// ---- auditd ----

const auditKey = "wpbench"

// auditPeer runs Debian's auditd with one rule covering the captured
// syscalls. State it changes is restored by restore.
type auditPeer struct {
	wasRunning bool
	status     map[string]string // auditctl -s before the bench
	logDirNew  bool              // /var/log/audit did not exist before
	daemon     *exec.Cmd
	daemonDone chan struct{}
	skipped    []string // syscalls auditctl does not know
	rule       string
}

func prepareAudit(ctx context.Context, o *options, cleanups *cleanupStack) (*auditPeer, error) {
	_, statErr := os.Stat("/var/log/audit")
	p := &auditPeer{logDirNew: os.IsNotExist(statErr)}
	if err := ensurePackages(ctx, o, cleanups, "auditd"); err != nil {
		return nil, err
	}
	st, err := auditStatus()
	if err != nil {
		return nil, err
	}
	if st["enabled"] == "2" {
		return nil, errors.New("the audit configuration is locked (enabled 2): rules cannot be added")
	}
	p.status = st
	p.wasRunning = st["pid"] != "" && st["pid"] != "0"
	cleanups.push(p.restore)
	return p, nil
}

// auditStatus parses `auditctl -s`.
func auditStatus() (map[string]string, error) {
	out, err := exec.Command("auditctl", "-s").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("auditctl -s: %w: %s", err, out)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			m[f[0]] = f[1]
		}
	}
	return m, nil
}

func auditctl(args ...string) error {
	out, err := exec.Command("auditctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("auditctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// start runs auditd in the foreground as wpbench's child (unless one was
// already running), with Debian's default backlog settings, and adds the rule.
func (p *auditPeer) start(ctx context.Context) error {
	if !p.wasRunning {
		p.daemon = exec.Command("/usr/sbin/auditd", "-n")
		p.daemon.Stdout, p.daemon.Stderr = io.Discard, io.Discard
		if err := p.daemon.Start(); err != nil {
			return fmt.Errorf("starting auditd: %w", err)
		}
		p.daemonDone = make(chan struct{})
		go func() { _ = p.daemon.Wait(); close(p.daemonDone) }()
		want := strconv.Itoa(p.daemon.Process.Pid)
		deadline := time.Now().Add(15 * time.Second)
		for {
			st, err := auditStatus()
			if err == nil && st["pid"] == want {
				break
			}
			if time.Now().After(deadline) {
				p.stopDaemon()
				return errors.New("auditd did not register with the kernel within 15 s")
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Debian's /etc/audit/rules.d/audit.rules sets these.
		if err := auditctl("-b", "8192", "--backlog_wait_time", "60000", "-f", "1"); err != nil {
			return err
		}
	}
	return p.addRule()
}

func (p *auditPeer) addRule() error {
	var all []string
	for _, c := range syscallClasses {
		all = append(all, capturedSyscalls[c]...)
	}
	args := []string{"-a", "always,exit", "-F", "arch=b64"}
	for _, s := range all {
		args = append(args, "-S", s)
	}
	args = append(args, "-k", auditKey)
	if err := auditctl(args...); err == nil {
		p.rule = strings.Join(args, " ")
		return nil
	}
	// Some names are newer than this auditctl: keep the ones it knows.
	var known []string
	p.skipped = nil
	for _, s := range all {
		if exec.Command("ausyscall", "x86_64", s, "--exact").Run() == nil {
			known = append(known, s)
		} else {
			p.skipped = append(p.skipped, s)
		}
	}
	args = []string{"-a", "always,exit", "-F", "arch=b64"}
	for _, s := range known {
		args = append(args, "-S", s)
	}
	args = append(args, "-k", auditKey)
	if err := auditctl(args...); err != nil {
		return err
	}
	p.rule = strings.Join(args, " ")
	return nil
}

func (p *auditPeer) stop() error {
	err := auditctl("-D", "-k", auditKey)
	if p.daemon != nil {
		p.stopDaemon()
		err = errors.Join(err, p.restoreStatus())
	}
	return err
}

func (p *auditPeer) stopDaemon() {
	if p.daemon == nil {
		return
	}
	_ = p.daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.daemonDone:
	case <-time.After(15 * time.Second):
		_ = p.daemon.Process.Kill()
		<-p.daemonDone
	}
	p.daemon = nil
}

// restoreStatus puts back the kernel's audit settings as they were.
func (p *auditPeer) restoreStatus() error {
	var errs []error
	for _, kv := range [][2]string{{"-b", "backlog_limit"}, {"--backlog_wait_time", "backlog_wait_time"},
		{"-f", "failure"}, {"-r", "rate_limit"}, {"-e", "enabled"}} {
		if v, ok := p.status[kv[1]]; ok {
			errs = append(errs, auditctl(kv[0], v))
		}
	}
	return errors.Join(errs...)
}

// restore is the final cleanup: no rule of ours, no daemon of ours, the
// settings as before, and no log directory that was not there.
func (p *auditPeer) restore() error {
	var errs []error
	if _, err := exec.LookPath("auditctl"); err == nil {
		_ = auditctl("-D", "-k", auditKey) // none left normally: the error says so
		if p.daemon != nil {
			p.stopDaemon()
		}
		if !p.wasRunning {
			errs = append(errs, p.restoreStatus())
		}
	}
	if p.logDirNew {
		errs = append(errs, os.RemoveAll("/var/log/audit"))
	}
	return errors.Join(errs...)
}

func (p *auditPeer) note() string {
	s := "Debian auditd 3.0.9, `auditctl " + strings.Join(strings.Fields(p.rule)[:4], " ") + " -S <" +
		strconv.Itoa(strings.Count(p.rule, "-S ")) + " syscalls> -k wpbench`, backlog 8192, log to /var/log/audit"
	if len(p.skipped) > 0 {
		s += "; not known to this auditctl: " + strings.Join(p.skipped, ", ")
	}
	return s
}

// ---- bpftrace ----

type bpftracePeer struct {
	script string
	probes int
	cmd    *exec.Cmd
	done   chan struct{}
	lost   int64
	mu     sync.Mutex
}

func prepareBpftrace(ctx context.Context, o *options, cleanups *cleanupStack) (*bpftracePeer, error) {
	if err := ensurePackages(ctx, o, cleanups, "bpftrace"); err != nil {
		return nil, err
	}
	script, n, err := bpftraceScript()
	if err != nil {
		return nil, err
	}
	p := &bpftracePeer{script: filepath.Join(o.workDir, "wpbench.bt"), probes: n}
	if err := os.WriteFile(p.script, []byte(script), 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

var tracefsRoot = "/sys/kernel/tracing/events"

// bpftraceScript prints one line per captured call, as Watchpost reports
// it: at sys_exit, with the process, the result and the first path
// argument (saved at sys_enter); plus exec, fork, exit and TCP close.
func bpftraceScript() (string, int, error) {
	var b strings.Builder
	n := 0
	b.WriteString("// generated by wpbench: one line per event Watchpost's full capture reports\n")
	for _, c := range syscallClasses {
		for _, s := range capturedSyscalls[c] {
			if c == "process" {
				continue // reported from the sched tracepoints below
			}
			tp := s
			if s == "umount2" {
				tp = "umount"
			}
			format, err := os.ReadFile(filepath.Join(tracefsRoot, "syscalls", "sys_enter_"+tp, "format"))
			if err != nil {
				continue // not on this kernel
			}
			field := firstStringField(string(format))
			if field != "" {
				fmt.Fprintf(&b, "tracepoint:syscalls:sys_enter_%s { @path[tid] = args->%s; }\n", tp, field)
				fmt.Fprintf(&b, "tracepoint:syscalls:sys_exit_%s { printf(\"%s %%d %%d %%s %%s %%d\\n\", nsecs, pid, comm, str(@path[tid]), args->ret); delete(@path[tid]); }\n", tp, s)
				n += 2
			} else {
				fmt.Fprintf(&b, "tracepoint:syscalls:sys_exit_%s { printf(\"%s %%d %%d %%s %%d\\n\", nsecs, pid, comm, args->ret); }\n", tp, s)
				n++
			}
		}
	}
	b.WriteString(`tracepoint:sched:sched_process_exec { printf("exec %d %d %s %s\n", nsecs, pid, comm, str(args->filename)); }
tracepoint:sched:sched_process_fork { printf("clone %d %d %s %d\n", nsecs, pid, comm, args->child_pid); }
tracepoint:sched:sched_process_exit { printf("exit %d %d %s\n", nsecs, pid, comm); }
tracepoint:sock:inet_sock_set_state /args->newstate == 7 && args->protocol == 6/ { printf("tcp_close %d %d %s %d %d\n", nsecs, pid, comm, args->sport, args->dport); }
END { clear(@path); }
`)
	n += 4
	return b.String(), n, nil
}

var stringField = regexp.MustCompile(`field:const char \* (\w+);`)

func firstStringField(format string) string {
	if m := stringField.FindStringSubmatch(format); m != nil {
		return m[1]
	}
	return ""
}

var attachingRe = regexp.MustCompile(`Attaching (\d+) probes`)
var lostRe = regexp.MustCompile(`Lost (\d+) events`)

// start runs bpftrace, reading (and discarding) what it prints, and
// returns once all its probes are attached.
func (p *bpftracePeer) start(ctx context.Context) error {
	p.cmd = exec.Command("bpftrace", p.script)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("starting bpftrace: %w", err)
	}
	p.done = make(chan struct{})
	attaching := make(chan int, 1)
	go func() {
		defer close(p.done)
		r := bufio.NewReaderSize(out, 1<<20)
		for {
			line, err := r.ReadSlice('\n')
			if len(line) > 0 && (line[0] == 'A' || line[0] == 'L') {
				if m := attachingRe.FindSubmatch(line); m != nil {
					n, _ := strconv.Atoi(string(m[1]))
					attaching <- n
				}
				if m := lostRe.FindSubmatch(line); m != nil {
					n, _ := strconv.ParseInt(string(m[1]), 10, 64)
					p.mu.Lock()
					p.lost += n
					p.mu.Unlock()
				}
			}
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				_ = p.cmd.Wait()
				return
			}
		}
	}()
	var want int
	select {
	case want = <-attaching:
	case <-p.done:
		return errors.New("bpftrace exited before attaching its probes")
	case <-time.After(120 * time.Second):
		p.stop()
		return errors.New("bpftrace did not start attaching within 120 s")
	case <-ctx.Done():
		p.stop()
		return ctx.Err()
	}
	// Each attached tracepoint holds a perf event (or BPF link) descriptor.
	deadline := time.Now().Add(120 * time.Second)
	for countAttachFDs(p.cmd.Process.Pid) < want {
		if time.Now().After(deadline) {
			p.stop()
			return fmt.Errorf("bpftrace attached fewer than %d probes within 120 s", want)
		}
		select {
		case <-p.done:
			return errors.New("bpftrace exited while attaching")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func countAttachFDs(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		t, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err == nil && (t == "anon_inode:[perf_event]" || t == "anon_inode:bpf_link") {
			n++
		}
	}
	return n
}

func (p *bpftracePeer) stop() error {
	if p.cmd == nil || p.cmd.Process == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return errors.New("bpftrace did not stop within 30 s of SIGINT; killed")
	}
	return nil
}

func (p *bpftracePeer) lostEvents() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lost
}

func (p *bpftracePeer) note() string {
	v, _ := exec.Command("bpftrace", "--version").Output()
	return fmt.Sprintf("Debian %s, %d tracepoint probes: printf of one line per event (pid, comm, path, result), read from a pipe and discarded",
		strings.TrimSpace(string(v)), p.probes)
}
