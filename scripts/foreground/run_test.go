package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// requireRoot skips without root (make run loads the agent's programs),
// unless WATCHPOST_REQUIRE_PRIVILEGED=1 makes that a failure.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("WATCHPOST_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal("make run starts the real agent: needs root, and WATCHPOST_REQUIRE_PRIVILEGED=1 forbids skipping")
	}
	t.Skip("make run starts the real agent, which loads eBPF programs: needs root (run `sudo make test`)")
}

// openPTY returns a new pseudo-terminal's master and slave.
func openPTY(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("opening /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlocking the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening the pty slave: %v", err)
	}
	return m, s
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// terminal collects what a program wrote to its terminal.
type terminal struct {
	mu  sync.Mutex
	out bytes.Buffer
}

func (o *terminal) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.out.Write(b)
}

func (o *terminal) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.out.String()
}

// makeRun is one `make run` on its own terminal, with its state in dir.
type makeRun struct {
	cmd   *exec.Cmd
	pty   *os.File
	term  *terminal
	query string
	done  chan error
}

func startMakeRun(t *testing.T, dir string) *makeRun {
	t.Helper()
	m, s := openPTY(t)
	r := &makeRun{pty: m, term: &terminal{}, done: make(chan error, 1)}
	ingest, query := freePort(t), freePort(t)
	r.query = "127.0.0.1:" + query
	r.cmd = exec.Command("make", "--no-print-directory", "run")
	r.cmd.Dir = filepath.Join("..", "..")
	r.cmd.Env = append(os.Environ(), "WATCHPOST_RUN_DIR="+dir, "WATCHPOST_INGEST_PORT="+ingest, "WATCHPOST_QUERY_PORT="+query, "TERM=dumb")
	r.cmd.Stdin, r.cmd.Stdout, r.cmd.Stderr = s, s, s
	// make gets the terminal as its controlling terminal, as in a shell.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	go func() { _, _ = io.Copy(r.term, m) }()
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		}
		m.Close()
	})
	return r
}

// waitStored waits until the collector of r has stored n events of type typ.
func (r *makeRun) waitStored(t *testing.T, typ string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute) // the first make run builds the binaries
	for {
		select {
		case err := <-r.done:
			t.Fatalf("make run ended before the agent ran: %v\n%s", err, r.term)
		default:
		}
		resp, err := http.Get("http://" + r.query + "/api/v1/events?type=" + typ)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Count(string(b), `"type":"EVENT_TYPE_`+strings.ToUpper(typ)+`"`) >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d %s events stored\n%s", n, typ, r.term)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (r *makeRun) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(2 * time.Minute):
		t.Fatalf("make run did not stop\n%s", r.term)
	}
	return nil
}

// checkStopped asserts the order of a clean stop in the terminal, and no
// error line from make or the script.
func checkStopped(t *testing.T, out string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "Error") || strings.HasPrefix(line, "make: ***") {
			t.Errorf("error line in the terminal: %q", line)
		}
	}
	a, c, s := strings.Index(out, "run: stopping the agent"), strings.Index(out, "run: stopping the collector"), strings.Index(out, "run: stopped;")
	if a < 0 || c < a || s < c {
		t.Errorf("stop messages out of order (agent %d, collector %d, stopped %d):\n%s", a, c, s, out)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\r\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// storedStops is the number of agent_stop events in the run's store.
func storedStops(t *testing.T, dir string) int {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(dir, "data", "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := st.Query(context.Background(), store.Query{Filter: store.Filter{Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_AGENT_STOP}}, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	evs := res.Events
	host, _ := os.Hostname()
	for _, ev := range evs {
		if ev.GetHeader().GetHost() != host {
			t.Fatalf("agent_stop of host %q, want %q", ev.GetHeader().GetHost(), host)
		}
	}
	return len(evs)
}

// TestMakeRunStopsCleanly runs the README's `make run` on a pseudo-terminal
// as a user would, types Ctrl-C once the agent's events are stored, and
// checks that make exits 0 with no error line after stopping the agent and
// then the collector, and that the agent's agent_stop event is in the
// collector's store. A second run, in the same directory, is stopped with
// SIGTERM to make: the same clean stop and no error line (make itself then
// ends by the signal, as any process sent SIGTERM).
func TestMakeRunStopsCleanly(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	dir := t.TempDir()

	r := startMakeRun(t, dir)
	r.waitStored(t, "agent_start", 1)
	if _, err := r.pty.Write([]byte{0x03}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	err := r.wait(t)
	out := r.term.String()
	if err != nil {
		t.Fatalf("make run after Ctrl-C: %v, want exit status 0\n%s", err, out)
	}
	checkStopped(t, out)
	t.Logf("the terminal's last lines after Ctrl-C:\n%s", tail(out, 8))
	if n := storedStops(t, dir); n != 1 {
		t.Fatalf("%d agent_stop events stored after Ctrl-C, want 1\n%s", n, out)
	}

	r = startMakeRun(t, dir)
	r.waitStored(t, "agent_start", 2)
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = r.wait(t)
	out = r.term.String()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("make after SIGTERM: %v, want it ended by SIGTERM\n%s", err, out)
	}
	checkStopped(t, out)
	t.Logf("the terminal's last lines after SIGTERM to make:\n%s", tail(out, 8))
	if n := storedStops(t, dir); n != 2 {
		t.Fatalf("%d agent_stop events stored after SIGTERM, want 2\n%s", n, out)
	}
}
