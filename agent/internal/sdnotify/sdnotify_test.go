package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestNotifyAndWatchdog(t *testing.T) {
	if ok, err := Notify(Ready); ok || err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v %v", ok, err)
	}
	sock := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	for _, msg := range []string{Ready, Watchdog, Stopping} {
		if ok, err := Notify(msg); !ok || err != nil {
			t.Fatalf("%s: %v %v", msg, ok, err)
		}
		buf := make([]byte, 64)
		_ = l.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := l.Read(buf)
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("received %q %v, want %q", buf[:n], err, msg)
		}
	}

	t.Setenv("WATCHDOG_USEC", "60000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	if d := WatchdogInterval(); d != 30*time.Second {
		t.Errorf("interval %s, want 30s", d)
	}
	t.Setenv("WATCHDOG_PID", "1")
	if d := WatchdogInterval(); d != 0 {
		t.Errorf("interval %s for another pid's watchdog", d)
	}
}
