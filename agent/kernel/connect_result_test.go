package kernel

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
)

// TestNonBlockingConnectReportsItsOutcome starts non-blocking connects on
// loopback that end each way a handshake can end and expects one
// net_connect_result per connect, from the connecting process, with its
// source port and the outcome.
func TestNonBlockingConnectReportsItsOutcome(t *testing.T) {
	h := startSensor(t, kinds(event.KindNetConnect, event.KindNetConnectResult))

	// A listener, and one whose accept queue (backlog 0) the first
	// connection fills: the kernel drops later SYNs, so they time out.
	open := listener(t, 16)
	full := listener(t, 0)
	if fd, _ := connectNB(t, full, 0); !established(fd) {
		t.Fatal("the connection filling the accept queue did not complete")
	}
	// A port nothing listens on: the handshake is refused.
	closed := listener(t, -1)

	cases := []struct {
		name    string
		port    int
		synCnt  int
		abort   bool
		state   string
		errno   string
		minTime time.Duration
	}{
		{name: "established", port: open, state: "established"},
		{name: "refused", port: closed, state: "refused", errno: "ECONNREFUSED"},
		{name: "timed out", port: full, synCnt: 1, state: "timed_out", errno: "ETIMEDOUT", minTime: time.Second},
		{name: "aborted by its owner", port: full, abort: true, state: "aborted", errno: "ECONNABORTED"},
	}
	for _, c := range cases {
		func() {
			fd, sport := connectNB(t, c.port, c.synCnt)
			if c.abort {
				unix.Close(fd)
			}
			// A refused connect has released its port when the call
			// returns: it is matched by its peer, and both events must
			// still carry the port it used.
			match := func(k event.Kind) func(*event.Event) bool {
				return mine(k, func(ev *event.Event) bool {
					return (ev.Net.SrcPort == sport || sport == 0) && ev.Net.DstPort == uint16(c.port)
				})
			}
			conn := h.waitFor(c.name+" connect", match(event.KindNetConnect))
			if conn.Net.Errno != "EINPROGRESS" || conn.Net.SrcPort == 0 {
				t.Fatalf("%s: connect event %+v, want EINPROGRESS from a source port", c.name, conn.Net)
			}
			sport = conn.Net.SrcPort
			res := h.waitFor(c.name+" connect result", match(event.KindNetConnectResult))
			var result int32
			if c.errno != "" {
				result = res.Net.Result // its value is checked by name
			}
			want := &event.Net{Family: "inet", Protocol: "tcp", SockType: "stream", SrcAddr: "127.0.0.1", SrcPort: sport,
				DstAddr: "127.0.0.1", DstPort: uint16(c.port), Result: result, Errno: c.errno, Direction: "outbound",
				State: c.state, DurationNS: res.Net.DurationNS}
			if diff := cmp.Diff(want, res.Net); diff != "" {
				t.Errorf("%s: connect result (-want +got):\n%s", c.name, diff)
			}
			if d := time.Duration(res.Net.DurationNS); d < c.minTime || d > time.Minute {
				t.Errorf("%s: duration %s, want at least %s", c.name, d, c.minTime)
			}
			if c.errno != "" && event.ErrnoName(int64(res.Net.Result)) != c.errno {
				t.Errorf("%s: result %d is not -%s", c.name, res.Net.Result, c.errno)
			}
			if n := h.count(match(event.KindNetConnectResult)); n != 1 {
				t.Errorf("%s: %d results for one connect, want 1", c.name, n)
			}
		}()
	}
}

// listener returns the port of a loopback TCP socket listening with the
// given backlog; a negative backlog leaves it bound and not listening,
// so connects to it are refused.
func listener(t *testing.T, backlog int) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if backlog >= 0 {
		if err := unix.Listen(fd, backlog); err != nil {
			t.Fatal(err)
		}
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*unix.SockaddrInet4).Port
}

// connectNB starts a non-blocking connect to a loopback port (with at
// most synCnt SYN retransmissions when positive) and returns the socket
// and its source port.
func connectNB(t *testing.T, port, synCnt int) (int, uint16) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if synCnt > 0 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, synCnt); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); !errors.Is(err, unix.EINPROGRESS) {
		t.Fatalf("non-blocking connect to port %d: %v, want EINPROGRESS", port, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, uint16(sa.(*unix.SockaddrInet4).Port)
}

// established waits up to 5 s for a non-blocking connect to complete.
func established(fd int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if n, err := unix.Poll(pfd, 5000); err != nil || n != 1 {
		return false
	}
	soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	return err == nil && soErr == 0
}
