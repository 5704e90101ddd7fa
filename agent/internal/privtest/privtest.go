// Package privtest holds the helpers of the privileged test tier: tests that
// load real BPF programs into the running kernel and trigger real syscalls.
//
// A privileged test skips, saying why, only when it is not running as root.
// When it runs as root on a kernel that should support the sensor it fails
// rather than skips: a missing feature there is a bug to see, not to hide.
// WATCHPOST_REQUIRE_PRIVILEGED=1 (set by CI and the vmtests) turns the
// root skip into a failure too.
package privtest

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Require marks t as privileged.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("WATCHPOST_REQUIRE_PRIVILEGED") == "1" {
		t.Fatalf("privileged test needs root, and WATCHPOST_REQUIRE_PRIVILEGED=1 forbids skipping")
	}
	t.Skip("privileged test: needs root to load BPF programs (run `sudo make test`)")
}

// InVM reports whether the test runs inside a vmtests guest, and on which
// kernel series (e.g. "5.10").
func InVM() (string, bool) {
	if os.Getenv("WATCHPOST_VMTEST") != "1" {
		return "", false
	}
	return os.Getenv("WATCHPOST_VMTEST_KERNEL"), true
}

// HelperEnv selects what the test binary does when a test re-executes it
// as a helper process. Call HelperMain from TestMain.
const HelperEnv = "WATCHPOST_TEST_HELPER"

// HelperMain turns the test binary into a helper process when HelperEnv is
// set, and never returns in that case. Modes:
//
//	exit:N   exit with status N
//	sleep    block until killed
//	spawn    read one line from stdin, then run the rest of argv after "--child"
//	         as a child process, wait for it and exit 0
//	tcp      connect to $WATCHPOST_TEST_ADDR, write $WATCHPOST_TEST_N bytes,
//	         read $WATCHPOST_TEST_M bytes back, close
//	udp      send $WATCHPOST_TEST_N datagrams to $WATCHPOST_TEST_ADDR, reading
//	         a reply to each
//	listen   listen on TCP 127.0.0.1:0, print the port, hold every accepted
//	         connection until killed
//	modbus-server serve Modbus/TCP on a free port of $WATCHPOST_TEST_ADDR
//	         (a host), print the port, serve until killed (ModbusServer)
//	setuid   setuid($WATCHPOST_TEST_N) and exit 0
//	setresuid setresuid(0, -1, 0) in one raw call (not Go's all-threads
//	         setresuid) and exit 0 when it failed with EPERM (run it as
//	         an unprivileged user: AsUser of a SelfCopy with a child mode)
//	netns    unshare(CLONE_NEWNET), print "ready", block until killed
//	setns    setns() into the network namespace file $WATCHPOST_TEST_PATH, exit 0
//	asuser   drop to uid and gid $WATCHPOST_TEST_N (no supplementary
//	         groups), then exec the rest of argv after "--child" (in
//	         helper mode $WATCHPOST_TEST_HELPER_CHILD when set)
func HelperMain() {
	mode := os.Getenv(HelperEnv)
	if mode == "" {
		return
	}
	os.Exit(helper(mode))
}

func helper(mode string) int {
	switch {
	case strings.HasPrefix(mode, "exit:"):
		n, err := strconv.Atoi(strings.TrimPrefix(mode, "exit:"))
		if err != nil {
			return 100
		}
		return n
	case mode == "sleep":
		for {
			time.Sleep(time.Hour)
		}
	case mode == "tcp":
		return tcpClient(os.Getenv("WATCHPOST_TEST_ADDR"), envInt("WATCHPOST_TEST_N"), envInt("WATCHPOST_TEST_M"))
	case mode == "udp":
		return udpClient(os.Getenv("WATCHPOST_TEST_ADDR"), envInt("WATCHPOST_TEST_N"))
	case mode == "listen":
		return tcpServer()
	case mode == "modbus-server":
		return modbusServer(os.Getenv("WATCHPOST_TEST_ADDR"))
	case mode == "setuid":
		if err := syscall.Setuid(envInt("WATCHPOST_TEST_N")); err != nil {
			return 104
		}
		return 0
	case mode == "kill":
		if err := unix.Kill(envInt("WATCHPOST_TEST_N"), unix.SIGTERM); err != nil {
			return 105
		}
		return 0
	case mode == "setresuid":
		keep := uintptr(^uint32(0)) // (uid_t)-1, as C passes it
		if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, 0, keep, 0); errno != unix.EPERM {
			return 133
		}
		return 0
	case mode == "netns":
		runtime.LockOSThread() // namespaces belong to the calling thread
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return 130
		}
		fmt.Println("ready")
		for {
			time.Sleep(time.Hour)
		}
	case mode == "setns":
		runtime.LockOSThread()
		fd, err := unix.Open(os.Getenv("WATCHPOST_TEST_PATH"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return 131
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return 132
		}
		return 0
	case strings.HasPrefix(mode, "respond:"):
		return respondHelper(strings.TrimPrefix(mode, "respond:"))
	case mode == "asuser":
		return asUser(envInt("WATCHPOST_TEST_N"), os.Args)
	case mode == "spawn":
		var line string
		fmt.Fscanln(os.Stdin, &line)
		args := os.Args
		for i, a := range args {
			if a == "--child" && i+1 < len(args) {
				cmd := exec.Command(args[i+1], args[i+2:]...)
				cmd.Env = append(os.Environ(), HelperEnv+"="+os.Getenv(HelperEnv+"_CHILD"))
				if err := cmd.Run(); err != nil {
					return 101
				}
				return 0
			}
		}
		return 102
	}
	return 103
}

// asUser becomes an unprivileged user and execs the program after "--child".
func asUser(id int, args []string) int {
	for i, a := range args {
		if a != "--child" || i+1 >= len(args) {
			continue
		}
		if syscall.Setgroups(nil) != nil || syscall.Setgid(id) != nil || syscall.Setuid(id) != nil {
			return 105
		}
		env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"}
		if child := os.Getenv(HelperEnv + "_CHILD"); child != "" {
			env = append(env, HelperEnv+"="+child)
		}
		_ = syscall.Exec(args[i+1], args[i+1:], env)
		return 106
	}
	return 102
}

// Nobody is the unprivileged uid (and gid) tests act as.
const Nobody = 65534

// AsUser returns a command that runs prog with args as user uid (and the
// group of the same number), started through the test binary so that no
// setpriv or su is needed on the host. Call HelperMain from TestMain.
func AsUser(t testing.TB, uid int, prog string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(Self(t), append([]string{"-test.run=^$", "--child", prog}, args...)...)
	cmd.Env = append(os.Environ(), HelperEnv+"=asuser", "WATCHPOST_TEST_N="+strconv.Itoa(uid))
	cmd.Dir = "/"
	return cmd
}

// FailedOpenLoop is a shell script for AsUser(..., "/bin/sh", "-c", script):
// children times, a new subshell (a new process) fails perChild opens for
// writing (ENOENT: a failed write is always reported) and exits. It is how
// an unprivileged user floods the sensor while staying under a
// per-process rate limit.
func FailedOpenLoop(children, perChild int) string {
	return fmt.Sprintf(`c=0; while [ $c -lt %d ]; do (i=0; while [ $i -lt %d ]; do true >/nonexistent-wp-flood/x; i=$((i+1)); done) 2>/dev/null; c=$((c+1)); done`, children, perChild)
}

func envInt(name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	return n
}

func tcpClient(addr string, n, m int) int {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 110
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, n)); err != nil {
		return 111
	}
	if _, err := io.ReadFull(c, make([]byte, m)); err != nil {
		return 112
	}
	return 0
}

// udpClient polls like a BACnet or DNP3 master: sendto and recvfrom on an
// unconnected socket.
func udpClient(addr string, n int) int {
	peer, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return 120
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 120
	}
	defer c.Close()
	buf := make([]byte, 64)
	for i := 0; i < n; i++ {
		if _, err := c.WriteToUDP([]byte("poll"), peer); err != nil {
			return 121
		}
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			return 122
		}
	}
	return 0
}

func tcpServer() int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 140
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	var held []net.Conn
	for {
		c, err := ln.Accept()
		if err != nil {
			return 141
		}
		held = append(held, c)
	}
}

// Listener starts a helper process that listens on TCP 127.0.0.1 (mode
// listen) and returns it and its port; it is killed when the test ends.
func Listener(t testing.TB) (*exec.Cmd, int) {
	t.Helper()
	cmd := exec.Command(Self(t), "-test.run=^$")
	cmd.Env = append(os.Environ(), HelperEnv+"=listen")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var port int
	if _, err := fmt.Fscanln(out, &port); err != nil || port == 0 {
		t.Fatalf("listening helper: port %d: %v", port, err)
	}
	return cmd, port
}

// Self returns the canonical path of the running test binary: what the
// kernel reports as the executable of a helper process.
func Self(t testing.TB) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err = filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Dir returns a canonical temporary directory for the test.
func Dir(t testing.TB) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Existing makes sure path exists, creating it empty (and removing it when
// the test ends) where it does not: the kernel matrix's guests boot from an
// initramfs without /etc/shadow or /etc/hostname.
func Existing(t testing.TB, path string, mode os.FileMode) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, mode); err != nil {
		t.Fatalf("creating %s: %v", path, err)
	}
	t.Cleanup(func() { os.Remove(path) })
}
