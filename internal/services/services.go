// Package services starts the daemons the fleet mode runs on — a private
// PostgreSQL server and nats-server processes forming a JetStream cluster —
// on loopback ports and private directories, for tests, benchmarks and
// `make run-fleet`. Everything it starts it stops; nothing is left running
// and no system service is touched.
package services

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrMissing marks a daemon binary that is not installed.
var ErrMissing = errors.New("not installed")

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitTCP waits until addr accepts connections or ctx ends.
func waitTCP(ctx context.Context, addr string, exited <-chan struct{}) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", addr, ctx.Err())
		case <-exited:
			return fmt.Errorf("waiting for %s: the process exited", addr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// proc is a started daemon process.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    *bytes.Buffer
}

func startProc(cmd *exec.Cmd) (*proc, error) {
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid, cmd.SysProcAttr.Pdeathsig = true, syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{}), log: &log}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// stop signals the process and waits up to d before killing it.
func (p *proc) stop(sig syscall.Signal, d time.Duration) {
	if p == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// dropTo returns the credentials of an unprivileged account to run a daemon
// as when the caller is root (PostgreSQL refuses to run as root), or nil.
func dropTo(name string) (*syscall.Credential, int, int, error) {
	if os.Geteuid() != 0 {
		return nil, -1, -1, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("running as root needs the %s account to run the daemon as: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
}

// pid is the process id of a started daemon (0 when it is not running).
func (p *proc) pid() int {
	if p == nil || p.cmd.Process == nil {
		return 0
	}
	select {
	case <-p.exited:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// CPUSeconds is the user and system CPU time of the processes and of all
// their descendants still running, from /proc (clock ticks of 1/100 s).
func CPUSeconds(pids ...int) float64 {
	children := map[int][]int{}
	stats := map[int]float64{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces: fields follow its closing parenthesis.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		children[ppid] = append(children[ppid], pid)
		stats[pid] = (ut + st) / 100
	}
	total := 0.0
	var walk func(int)
	walk = func(pid int) {
		total += stats[pid]
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, p := range pids {
		if p > 0 {
			walk(p)
		}
	}
	return total
}
