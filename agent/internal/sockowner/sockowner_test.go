package sockowner

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"0000000000000000FFFF00000100007F:01F6": "127.0.0.1:502",
		"00000000000000000000000001000000:01F6": "[::1]:502",
	} {
		got, ok := procAddr(in)
		if !ok || got != netip.MustParseAddrPort(want) {
			t.Errorf("%s: %v %v, want %s", in, got, ok, want)
		}
	}
	if _, ok := procAddr("zz:1"); ok {
		t.Error("garbage parsed")
	}
}

// TestProcInode reads a connection's inode from a net/tcp file, as on a
// kernel without sock_diag.
func TestProcInode(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	tcp := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:9C40 0100007F:01F6 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 20 4 30 10 -1\n"
	if err := os.WriteFile(filepath.Join(root, "net", "tcp"), []byte(tcp), 0o644); err != nil {
		t.Fatal(err)
	}
	if ino := procInode(root, netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:502")); ino != 4242 {
		t.Errorf("inode %d, want 4242", ino)
	}
	if ino := procInode(root, netip.MustParseAddrPort("127.0.0.1:40001"), netip.MustParseAddrPort("127.0.0.1:502")); ino != 0 {
		t.Errorf("inode %d of another connection", ino)
	}
}

// TestTCPOwnerOfOwnConnection finds this process as the holder of a
// loopback connection it made (no privilege needed: its own fds).
func TestTCPOwnerOfOwnConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local, remote := c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort()
	for name, ino := range map[string]uint32{"proc": procInode("/proc", local, remote)} {
		if ino == 0 {
			t.Errorf("%s: no inode for %s -> %s", name, local, remote)
		}
	}
	pid, err := TCPOwner("/proc", local, remote)
	if err != nil || pid != uint32(os.Getpid()) {
		t.Errorf("owner %d %v, want %d", pid, err, os.Getpid())
	}
}
