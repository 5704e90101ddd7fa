package privtest

import (
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Helper modes of the response tests (HelperEnv "respond:<mode>"). Each
// exits 0 when the operation succeeded and with the errno it failed with
// otherwise (EPERM is 1), 200 for another failure:
//
//	connect  TCP connect to $WATCHPOST_TEST_ADDR
//	sendto   one UDP datagram from an unconnected socket to $WATCHPOST_TEST_ADDR
//	packet   socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)
//	raw      socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)
//	open     open $WATCHPOST_TEST_PATH for reading and writing
func respondHelper(mode string) int {
	var err error
	switch mode {
	case "connect":
		var c net.Conn
		c, err = net.DialTimeout("tcp", os.Getenv("WATCHPOST_TEST_ADDR"), 5*time.Second)
		if err == nil {
			c.Close()
		}
	case "sendto":
		var c *net.UDPConn
		c, err = net.ListenUDP("udp", nil)
		if err == nil {
			var a *net.UDPAddr
			if a, err = net.ResolveUDPAddr("udp", os.Getenv("WATCHPOST_TEST_ADDR")); err == nil {
				_, err = c.WriteToUDP([]byte("x"), a)
			}
			c.Close()
		}
	case "packet":
		var fd int
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err == nil {
			unix.Close(fd)
		}
	case "raw":
		var fd int
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
		if err == nil {
			unix.Close(fd)
		}
	case "open":
		var fd int
		fd, err = unix.Open(os.Getenv("WATCHPOST_TEST_PATH"), unix.O_RDWR|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
		if err == nil {
			unix.Close(fd)
		}
	default:
		return 200
	}
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return int(errno)
	}
	return 200
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// RespondCmd runs the test binary at exe (a copy of it, see CopyExe) in
// respond helper mode, in the cgroup cg when it is not "".
func RespondCmd(t testing.TB, exe, mode, cg string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), HelperEnv+"=respond:"+mode), env...)
	if cg != "" {
		InCgroup(t, cmd, cg)
	}
	return cmd
}

// InCgroup starts cmd directly in cgroup directory cg (clone3 with
// CLONE_INTO_CGROUP), so it never runs anywhere else.
func InCgroup(t testing.TB, cmd *exec.Cmd, cg string) {
	t.Helper()
	fd, err := unix.Open(cg, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("opening cgroup %s: %v", cg, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = fd
}

// ExitCode runs cmd and returns its exit status; a signal fails the test.
func ExitCode(t testing.TB, cmd *exec.Cmd) int {
	t.Helper()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode()
	}
	t.Fatalf("%s: %v\n%s", cmd.Path, err, out)
	return -1
}

// Cgroup2Root is the cgroup v2 mount point from /proc/mounts, or a skip.
func Cgroup2Root(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "cgroup2" {
			return f[1]
		}
	}
	t.Skip("no cgroup2 mount in /proc/mounts: the cgroup response hooks need the unified hierarchy")
	return ""
}

// Cgroup makes a child cgroup of the cgroup v2 root (and the named
// children below it) for the test, and removes them at cleanup after
// killing whatever the test left in them.
func Cgroup(t testing.TB, children ...string) string {
	t.Helper()
	root := Cgroup2Root(t)
	dir, err := os.MkdirTemp(root, "watchpost-test-")
	if err != nil {
		t.Fatalf("creating a test cgroup under %s: %v", root, err)
	}
	for _, c := range children {
		if err := os.Mkdir(filepath.Join(dir, c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, c := range append(children, "") {
			d := filepath.Join(dir, c)
			_ = os.WriteFile(filepath.Join(d, "cgroup.kill"), []byte("1"), 0)
			for i := 0; i < 100; i++ {
				if err := os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("test cgroup %s left behind", dir)
		}
	})
	return dir
}

// SelfCopy is a copy of the test binary that an unprivileged user can run
// (the go tool's build directory is root's alone), in a directory removed
// when the test ends.
func SelfCopy(t testing.TB, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wp-self-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return CopyExe(t, Self(t), dir, name)
}

// CopyExe copies the executable src to dir/name (a new inode: policies
// identify executables by inode) and returns its path.
func CopyExe(t testing.TB, src, dir, name string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(dir, name)
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}
