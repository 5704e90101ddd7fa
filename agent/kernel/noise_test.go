package kernel

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/internal/privtest"
)

// TestNotFoundReadsAreCountedNotReported: a read-only open failing with
// ENOENT or ENOTDIR (a loader's or locale's search) is counted as filtered
// and not reported by default; a failed open for writing and a refused
// read are; filters.not_found_opens reports them all.
func TestNotFoundReadsAreCountedNotReported(t *testing.T) {
	dir := privtest.Dir(t)
	missing := filepath.Join(dir, "libmissing.so.6")
	notDir := filepath.Join(dir, "plain", "x")
	if err := os.WriteFile(filepath.Join(dir, "plain"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "recipe.key")
	if err := os.WriteFile(secret, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	readFails := func(t *testing.T, path string, want unix.Errno) {
		t.Helper()
		if fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != want {
			if err == nil {
				unix.Close(fd)
			}
			t.Fatalf("open %s: %v, want %v", path, err, want)
		}
	}

	t.Run("default", func(t *testing.T) {
		h := startSensor(t, kinds(event.KindFileOpen))
		readFails(t, missing, unix.ENOENT)
		readFails(t, notDir, unix.ENOTDIR)
		// A failed write, then a refused read by an unprivileged user.
		if _, err := os.OpenFile(missing, os.O_WRONLY, 0); err == nil {
			t.Fatal("opening a missing file for writing succeeded")
		}
		h.waitFor("failed write", fileAt(event.KindFileOpen, missing))
		reader := privtest.AsUser(t, privtest.Nobody, "/bin/sh", "-c", "exec 3<"+secret)
		if err := reader.Run(); err == nil {
			t.Fatal("uid 65534 read a 0600 root file")
		}
		refused := h.waitFor("refused read", func(ev *event.Event) bool {
			return ev.Kind == event.KindFileOpen && ev.Process.PID == uint32(reader.Process.Pid) && ev.File.Path == secret
		})
		if refused.File.Errno != "EACCES" || refused.File.Write {
			t.Errorf("refused read: %+v", refused.File)
		}
		h.stop()
		if n := h.count(fileAt(event.KindFileOpen, notDir)); n != 0 {
			t.Errorf("ENOTDIR read reported %d times", n)
		}
		if n := h.count(fileAt(event.KindFileOpen, missing)); n != 1 {
			t.Errorf("%d events for %s, want only the failed write", n, missing)
		}
		st, err := h.sensor.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if f := st.Kinds[event.KindFileOpen].Filtered; f < 2 {
			t.Errorf("file_open filtered %d, want at least the 2 not-found reads", f)
		}
	})

	t.Run("not_found_opens", func(t *testing.T) {
		h := startSensor(t, with(kinds(event.KindFileOpen), func(c *Config) { c.Filters.NotFoundOpens = true }))
		readFails(t, missing, unix.ENOENT)
		readFails(t, notDir, unix.ENOTDIR)
		if ev := h.waitFor("not-found read", fileAt(event.KindFileOpen, missing)); ev.File.Errno != "ENOENT" || ev.File.Write {
			t.Errorf("not-found read: %+v", ev.File)
		}
		h.waitFor("not-a-directory read", fileAt(event.KindFileOpen, notDir))
	})
}

// TestNetlinkSocketsNameTheirProtocol: a netlink socket to the audit
// subsystem or the device event channel is reported with its protocol; NETLINK_ROUTE, which
// every name lookup opens, is counted and not reported.
func TestNetlinkSocketsNameTheirProtocol(t *testing.T) {
	h := startSensor(t, kinds(event.KindNetSocket))
	open := func(proto int) int {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			t.Fatalf("netlink socket %d: %v", proto, err)
		}
		unix.Close(fd)
		return fd
	}
	route := open(unix.NETLINK_ROUTE)
	audit := open(unix.NETLINK_AUDIT)
	// Both built into every kernel of the matrix (nfnetlink is a module).
	uevent := open(unix.NETLINK_KOBJECT_UEVENT)
	for proto, fd := range map[string]int{"audit": audit, "kobject_uevent": uevent} {
		ev := h.waitFor("netlink "+proto, mine(event.KindNetSocket, func(ev *event.Event) bool { return ev.Net.Protocol == proto }))
		if ev.Net.Family != "netlink" || ev.Net.SockType != "raw" || ev.Net.Result != int32(fd) {
			t.Errorf("netlink %s socket: %+v", proto, ev.Net)
		}
	}
	h.stop()
	if n := h.count(mine(event.KindNetSocket, func(ev *event.Event) bool { return ev.Net.Protocol == "route" })); n != 0 {
		t.Errorf("NETLINK_ROUTE socket (fd %d) reported %d times", route, n)
	}
	st, err := h.sensor.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if f := st.Kinds[event.KindNetSocket].Filtered; f < 1 {
		t.Errorf("net_socket filtered %d, want the NETLINK_ROUTE socket counted", f)
	}
}
