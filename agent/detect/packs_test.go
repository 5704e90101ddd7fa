package detect_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/app"
	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/agent/detect"
	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/industrial/inspect"
	"github.com/watchpost/watchpost/agent/internal/privtest"
)

func TestMain(m *testing.M) {
	detectHelper()
	privtest.HelperMain()
	os.Exit(m.Run())
}

// helperEnv selects what this test binary does when a rule's test runs it
// (under a name the rule looks at) to perform a behaviour.
const helperEnv = "WATCHPOST_DETECT_HELPER"

func detectHelper() {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	verb, arg, _ := strings.Cut(mode, ":")
	if err := runHelper(verb, arg); err != nil {
		fmt.Fprintln(os.Stderr, verb+":", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runHelper(verb, arg string) error {
	switch verb {
	case "attach": // PTRACE_ATTACH to a process that is not our child
		pid, _ := strconv.Atoi(arg)
		return attach(pid)
	case "attach-child": // start a child, then attach to it (what a debugger does)
		child := exec.Command("/bin/sleep", "30")
		if err := child.Start(); err != nil {
			return err
		}
		defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
		time.Sleep(200 * time.Millisecond)
		return attach(child.Process.Pid)
	case "traceme":
		if _, _, e := unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0); e != 0 {
			return e
		}
		return nil
	case "modbus": // send one Modbus/TCP request (ADDR/PDU-HEX) and read the answer
		addr, pdu, _ := strings.Cut(arg, "/")
		return modbusRequest(addr, pdu)
	case "run-child": // run this binary in another mode, as our child
		self, err := os.Executable()
		if err != nil {
			return err
		}
		c := exec.Command(self)
		c.Env = append(os.Environ(), helperEnv+"="+arg)
		return c.Run()
	case "memfd-exec", "memfd-noexec":
		fd, err := unix.MemfdCreate(arg, 0)
		if err != nil {
			return err
		}
		bin, err := os.ReadFile("/bin/true")
		if err != nil {
			return err
		}
		if _, err := unix.Write(fd, bin); err != nil {
			return err
		}
		if verb == "memfd-noexec" {
			return syscall.Exec("/bin/true", []string{"true"}, nil)
		}
		return syscall.Exec(fmt.Sprintf("/proc/self/fd/%d", fd), []string{arg}, nil)
	case "packet":
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Close(fd)
	case "connect": // comma-separated host:port list
		for _, a := range strings.Split(arg, ",") {
			if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
				_ = c.Close()
			}
		}
		return nil
	case "listen": // the first of these ports that is free
		// Plain TCP, as the servers the rule is about (Go would listen with
		// MPTCP by default).
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		for _, p := range strings.Split(arg, ",") {
			ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:"+p)
			if err == nil {
				fmt.Println(p)
				return ln.Close()
			}
		}
		return fmt.Errorf("no free port in %s", arg)
	case "write":
		return os.WriteFile(arg, []byte("x\n"), 0o644)
	case "finit":
		f, err := os.Open(arg)
		if err != nil {
			return err
		}
		defer f.Close()
		_ = unix.FinitModule(int(f.Fd()), "", 0) // refused: the attempt is the event
		return nil
	}
	return fmt.Errorf("unknown helper %q", verb)
}

func attach(pid int) error {
	if err := unix.PtraceAttach(pid); err != nil {
		return err
	}
	var ws unix.WaitStatus
	_, _ = unix.Wait4(pid, &ws, 0, nil)
	return unix.PtraceDetach(pid)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// harness runs the real agent with the packs and collects its alerts.
type harness struct {
	mu     sync.Mutex
	alerts []alert
	notify chan struct{}
}

type alert struct {
	ev  *event.Event
	raw string
}

func (h *harness) Write(p []byte) (int, error) { return len(p), nil }

func startAgent(t *testing.T) *harness {
	t.Helper()
	h := &harness{notify: make(chan struct{}, 1)}
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if !bytes.Contains(line, []byte(`"type":"alert"`)) {
				continue
			}
			ev := &event.Event{}
			if err := json.Unmarshal(line, ev); err != nil || ev.Alert == nil {
				continue
			}
			h.mu.Lock()
			h.alerts = append(h.alerts, alert{ev, string(line)})
			h.mu.Unlock()
			select {
			case h.notify <- struct{}{}:
			default:
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	cfg := config.Default()
	cfg.Baseline.Dir = t.TempDir()
	cfg.Output = config.OutputStdout
	cfg.MetricsAddr = ""
	cfg.Commands.Dir = t.TempDir()
	cfg.Detection.RulesDir = t.TempDir()
	cfg.Filters.ReadOpens = true // the read rules (the watch list reports them by default)
	// A Modbus server (another process) whose port the inspection parses,
	// for the industrial operation rules.
	_, port := privtest.ModbusServer(t, privtest.SelfCopy(t, "wp-plc-sim"), "127.0.0.1")
	modbusAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg.Industrial.Inspect.Enabled = true
	cfg.Industrial.Inspect.Interval = time.Second // summaries (recon) without the 10 s wait
	cfg.Industrial.Inspect.Protocols = []inspect.Protocol{{Name: "modbus", Ports: strconv.Itoa(port)}}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
			app.Options{Stdout: pw, Ready: func(*app.Agent) { close(ready) }})
		_ = pw.Close()
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("agent stopped before it was ready: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	return h
}

// find returns the alerts of rule whose JSON contains marker.
func (h *harness) find(rule, marker string) []alert {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []alert
	for _, a := range h.alerts {
		if a.ev.Alert.RuleID == rule && strings.Contains(a.raw, marker) {
			out = append(out, a)
		}
	}
	return out
}

func (h *harness) wait(t *testing.T, rule, marker string) alert {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if as := h.find(rule, marker); len(as) > 0 {
			return as[0]
		}
		select {
		case <-h.notify:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no %s alert naming %q", rule, marker)
		}
	}
}

// ruleCase performs a rule's behaviour (bad) and a neighbour that must
// not fire (benign); each returns a marker its alert would contain.
type ruleCase struct {
	rule, technique, field string
	needs                  func() string // a reason to skip, or ""
	benign, bad            func(t *testing.T, c *env) string
}

// env is one case's scratch space.
type env struct {
	dir, bad, ok, rnd string
	self              string
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
}

// modbusRequest sends one Modbus/TCP request, unit 1, whose PDU is given
// in hex, to addr over a real connection, and reads the server's answer.
func modbusRequest(addr, pduHex string) error {
	pdu, err := hex.DecodeString(pduHex)
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	adu := append([]byte{0x12, 0x34, 0, 0, byte((len(pdu) + 1) >> 8), byte(len(pdu) + 1), 1}, pdu...)
	if _, err := c.Write(adu); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 260))
	return err
}

// modbusAddr is the Modbus server the agent inspects (startAgent).
var modbusAddr string

// modbus sends a request from this binary run as path (the process the
// rule looks at) to the inspected server, and returns path.
func modbus(t *testing.T, c *env, path, pduHex string) string {
	t.Helper()
	runAs(t, c, path, "modbus:"+modbusAddr+"/"+pduHex)
	return path
}

// runAs runs this binary under another name with a helper mode.
func runAs(t *testing.T, c *env, path, mode string) string {
	t.Helper()
	c.link(t, c.self, path)
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s (%s): %v\n%s", path, mode, err, out)
	}
	return strings.TrimSpace(string(out))
}

// link makes path run the binary at src (a hard link, or a copy across
// file systems).
func (c *env) link(t *testing.T, src, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(src, path); err == nil {
		return
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func (c *env) file(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func sh(t *testing.T, script string) { t.Helper(); run(t, "/bin/sh", "-c", script) }

// systemFile is a file the test makes outside its directory (under /etc,
// /var/log ...) and removes afterwards.
func systemFile(t *testing.T, path string) string {
	t.Helper()
	t.Cleanup(func() { _ = os.Remove(path) })
	return path
}

// sleeper starts a process under a given name that waits to be signalled.
func sleeper(t *testing.T, c *env, path string) *exec.Cmd {
	t.Helper()
	c.link(t, c.self, path)
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), privtest.HelperEnv+"=sleep")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	time.Sleep(100 * time.Millisecond) // exec'd, so the process table knows it
	return cmd
}

// icsPorts are industrial ports a listener test may take (the first free one).
const icsPorts = "9600,18245,5006,1911,4000,5094"

func noModules() string {
	if _, err := os.Stat("/sys/kernel/tracing/events/syscalls/sys_enter_finit_module"); err != nil {
		return "this kernel has no module support (no finit_module tracepoint): module loads cannot happen here"
	}
	return ""
}

var cases = []ruleCase{
	{rule: "wp-ot-ics-write-by-interpreter", technique: "T0855", field: "OperationClass",
		benign: func(t *testing.T, c *env) string {
			modbus(t, c, c.ok+"/python3", "0300000002")             // a read from an interpreter
			return modbus(t, c, c.ok+"/scada-poller", "0600030063") // a write from the plant's own client
		},
		bad: func(t *testing.T, c *env) string {
			return modbus(t, c, c.bad+"/python3", "0600030063") // write single register 3 = 99
		}},
	{rule: "wp-ot-ics-program-or-control", technique: "T0858", field: "OperationClass",
		benign: func(t *testing.T, c *env) string {
			return modbus(t, c, c.ok+"/hmi", "0800000000") // diagnostics: return query data
		},
		bad: func(t *testing.T, c *env) string {
			return modbus(t, c, c.bad+"/hmi", "0800040000") // diagnostics: force listen only mode
		}},
	{rule: "wp-ot-ics-device-recon", technique: "T0888", field: "OperationClass",
		benign: func(t *testing.T, c *env) string {
			return modbus(t, c, c.ok+"/scada-poller", "0400000004")
		},
		bad: func(t *testing.T, c *env) string {
			return modbus(t, c, c.bad+"/scanner", "2b0e0100") // read device identification
		}},
	{rule: "wp-host-shell-by-service", technique: "T1059.004", field: "ParentImage",
		benign: func(t *testing.T, c *env) string {
			sh(t, "/bin/bash -c '/bin/sh -c \"exit 0 # "+c.rnd+"-ok\"; exit 0'")
			return c.rnd + "-ok"
		},
		bad: func(t *testing.T, c *env) string {
			c.link(t, "/bin/bash", c.bad+"/nginx")
			run(t, c.bad+"/nginx", "-c", `/bin/sh -c "exit 0"; exit 0`)
			return c.bad
		}},
	{rule: "wp-host-sensitive-read", technique: "T1003.008", field: "TargetFilename",
		benign: func(t *testing.T, c *env) string {
			c.link(t, "/bin/cat", c.ok+"/unix_chkpwd")
			run(t, c.ok+"/unix_chkpwd", "/etc/shadow")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			c.link(t, "/bin/cat", c.bad+"/cat")
			run(t, c.bad+"/cat", "/etc/shadow")
			return c.bad
		}},
	{rule: "wp-host-credential-search", technique: "T1552.001", field: "CommandLine",
		benign: func(t *testing.T, c *env) string {
			c.file(t, c.ok+"/notes", "nothing here\n")
			run(t, "grep", "-r", "-l", "nothing", c.ok)
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			c.file(t, c.bad+"/key", "-----BEGIN OPENSSH PRIVATE KEY-----\n")
			run(t, "grep", "-r", "-l", "BEGIN OPENSSH PRIVATE KEY", c.bad)
			return c.bad
		}},
	{rule: "wp-host-log-truncate", technique: "T1070.002", field: "TargetFilename",
		benign: func(t *testing.T, c *env) string {
			p := systemFile(t, "/var/log/wp-test-"+c.rnd+"-append.log")
			sh(t, "echo entry >> "+p)
			return p
		},
		bad: func(t *testing.T, c *env) string {
			p := systemFile(t, "/var/log/wp-test-"+c.rnd+"-wipe.log")
			c.file(t, p, "old entries\n")
			sh(t, ": > "+p)
			return p
		}},
	{rule: "wp-host-log-delete", technique: "T1070.002", field: "TargetFilename",
		benign: func(t *testing.T, c *env) string {
			p := c.file(t, systemFile(t, "/var/log/wp-test-"+c.rnd+"-rotated.log"), "x\n")
			c.link(t, "/bin/rm", c.ok+"/logrotate")
			run(t, c.ok+"/logrotate", p)
			return p
		},
		bad: func(t *testing.T, c *env) string {
			p := c.file(t, systemFile(t, "/var/log/wp-test-"+c.rnd+"-gone.log"), "x\n")
			run(t, "rm", p)
			return p
		}},
	{rule: "wp-host-bulk-delete", technique: "T1485", field: "ProcessId",
		benign: func(t *testing.T, c *env) string { // 98 files and their directory: 99 deletions
			for i := 0; i < 98; i++ {
				c.file(t, fmt.Sprintf("%s/many/%d", c.ok, i), "x")
			}
			run(t, "rm", "-r", c.ok+"/many")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string { // 99 files and their directory: 100
			for i := 0; i < 99; i++ {
				c.file(t, fmt.Sprintf("%s/many/%d", c.bad, i), "x")
			}
			run(t, "rm", "-r", c.bad+"/many")
			return c.bad
		}},
	{rule: "wp-host-wipe-tool", technique: "T1485", field: "Image",
		benign: func(t *testing.T, c *env) string {
			run(t, "dd", "if=/dev/zero", "of="+c.file(t, c.ok+"/f", ""), "count=1", "status=none")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			run(t, "shred", "-u", c.file(t, c.bad+"/secret", "plant recipe\n"))
			return c.bad
		}},
	{rule: "wp-host-link-sensitive", technique: "T1003.008", field: "SourceFilename",
		benign: func(t *testing.T, c *env) string {
			run(t, "ln", "-s", "/etc/hostname", c.file(t, c.ok+"/.keep", "")+"-h")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			run(t, "ln", "-s", "/etc/shadow", c.file(t, c.bad+"/.keep", "")+"-s")
			return c.bad
		}},
	{rule: "wp-host-module-load", technique: "T1547.006", field: "Operation", needs: noModules,
		benign: func(t *testing.T, c *env) string {
			dir := "/usr/lib/modules/wp-test-" + c.rnd
			t.Cleanup(func() { _ = os.RemoveAll(dir) })
			runAs(t, c, c.ok+"/loader", "finit:"+c.file(t, dir+"/ok.ko", "not a module"))
			return dir
		},
		bad: func(t *testing.T, c *env) string {
			runAs(t, c, c.bad+"/loader", "finit:"+c.file(t, c.bad+"/rootkit.ko", "not a module"))
			return c.bad
		}},
	{rule: "wp-host-ptrace-attach", technique: "T1055.008", field: "Name",
		benign: func(t *testing.T, c *env) string {
			runAs(t, c, c.ok+"/debugger", "attach-child")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			victim := sleeper(t, c, c.dir+"/victim")
			runAs(t, c, c.bad+"/injector", "attach:"+strconv.Itoa(victim.Process.Pid))
			return c.bad
		}},
	{rule: "wp-host-ptrace-antidebug", technique: "T1622", field: "Name",
		benign: func(t *testing.T, c *env) string {
			runAs(t, c, c.ok+"/gdb", "run-child:traceme")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			runAs(t, c, c.bad+"/implant", "traceme")
			return c.bad
		}},
	{rule: "wp-host-exec-shm", technique: "T1059", field: "Image",
		benign: func(t *testing.T, c *env) string {
			c.link(t, "/bin/true", c.ok+"/tool")
			run(t, c.ok+"/tool")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			p := systemFile(t, "/dev/shm/wp-test-"+c.rnd)
			b, _ := os.ReadFile("/bin/true")
			if err := os.WriteFile(p, b, 0o755); err != nil {
				t.Fatal(err)
			}
			run(t, p)
			return p
		}},
	{rule: "wp-host-memfd-exec", technique: "T1620", field: "Operation",
		benign: func(t *testing.T, c *env) string {
			runAs(t, c, c.ok+"/loader", "memfd-noexec:payload-"+c.rnd+"-ok")
			return c.rnd + "-ok"
		},
		bad: func(t *testing.T, c *env) string {
			runAs(t, c, c.bad+"/loader", "memfd-exec:payload-"+c.rnd+"-bad")
			return c.rnd + "-bad"
		}},
	{rule: "wp-host-setuid-file", technique: "T1548.001", field: "Mode",
		benign: func(t *testing.T, c *env) string {
			run(t, "chmod", "0755", c.file(t, c.ok+"/tool", ""))
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			run(t, "chmod", "4755", c.file(t, c.bad+"/tool", ""))
			return c.bad
		}},
	{rule: "wp-host-cron-persistence", technique: "T1053.003", field: "TargetFilename",
		benign: func(t *testing.T, c *env) string {
			p := systemFile(t, "/etc/crontab.wp-test-"+c.rnd+".bak")
			sh(t, "echo '# backup' > "+p)
			return p
		},
		bad: func(t *testing.T, c *env) string {
			p := systemFile(t, "/etc/cron.d/wp-test-"+c.rnd)
			sh(t, "echo '# inert: written by a Watchpost test' > "+p)
			return p
		}},
	{rule: "wp-host-systemd-persistence", technique: "T1543.002", field: "TargetFilename",
		benign: func(t *testing.T, c *env) string {
			p := systemFile(t, "/etc/systemd/wp-test-"+c.rnd+"-notes.service")
			sh(t, "echo '# notes' > "+p)
			return p
		},
		bad: func(t *testing.T, c *env) string {
			p := systemFile(t, "/etc/systemd/system/wp-test-"+c.rnd+".service")
			sh(t, "printf '[Unit]\\nDescription=inert test unit\\n' > "+p)
			return p
		}},
	{rule: "wp-host-ssh-nonstandard-port", technique: "T1571", field: "Image",
		benign: func(t *testing.T, c *env) string {
			ssh(t, 22, "wpok"+c.rnd)
			return "wpok" + c.rnd
		},
		bad: func(t *testing.T, c *env) string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					_ = conn.Close()
				}
			}()
			ssh(t, ln.Addr().(*net.TCPAddr).Port, "wpbad"+c.rnd)
			return "wpbad" + c.rnd
		}},
	{rule: "wp-host-write-then-exec", technique: "T1105", field: "file",
		benign: func(t *testing.T, c *env) string {
			c.link(t, "/bin/true", c.ok+"/old")
			sh(t, "cp /bin/true "+c.ok+"/new && "+c.ok+"/old")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			sh(t, "mkdir -p "+c.bad+" && cp /bin/true "+c.bad+"/payload && chmod +x "+c.bad+"/payload && "+c.bad+"/payload")
			return c.bad
		}},

	{rule: "wp-host-ld-preload", technique: "T1574.006", field: "Environment",
		benign: func(t *testing.T, c *env) string {
			c.link(t, "/bin/true", c.ok+"/tool")
			run(t, "env", "TZ=UTC", c.ok+"/tool")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			c.link(t, "/bin/true", c.bad+"/tool")
			cmd := exec.Command("env", "LD_PRELOAD="+c.bad+"/hook.so", c.bad+"/tool")
			_ = cmd.Run() // the loader warns about the missing library; the start is the behaviour
			return c.bad
		}},
	{rule: "wp-host-namespace-enter", technique: "T1611", field: "Operation",
		benign: func(t *testing.T, c *env) string {
			c.link(t, "/bin/true", c.ok+"/tool")
			run(t, "unshare", "-n", c.ok+"/tool")
			return c.rnd + "-ok"
		},
		bad: func(t *testing.T, c *env) string {
			// A process of the test's own in a new network namespace (the
			// plant network's namespace, a container's): enter it.
			holder := exec.Command("unshare", "-n", "/bin/sleep", "30")
			if err := holder.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
			time.Sleep(200 * time.Millisecond)
			c.link(t, "/usr/bin/nsenter", c.bad+"/nsenter")
			run(t, c.bad+"/nsenter", "-t", strconv.Itoa(holder.Process.Pid), "-n", "/bin/true")
			return c.bad
		}},
	{rule: "wp-ot-fieldbus-shell", technique: "T0855", field: "Fieldbus",
		benign: func(t *testing.T, c *env) string {
			node := mknod(t, c.ok+"/ttyUSB8", 188, 8)
			c.link(t, c.self, c.ok+"/modbus-gw")
			cmd := exec.Command(c.ok + "/modbus-gw")
			cmd.Env = append(os.Environ(), helperEnv+"=write:"+node)
			_ = cmd.Run() // no driver: the open fails, the attempt is the event
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			node := mknod(t, c.bad+"/ttyUSB7", 188, 7)
			_ = exec.Command("/bin/sh", "-c", "echo ':010600010003F5' > "+node).Run()
			return c.bad
		}},
	{rule: "wp-ot-ics-client-interpreter", technique: "T0855", field: "Image",
		benign: func(t *testing.T, c *env) string {
			runAs(t, c, c.ok+"/scada-client", "connect:127.0.0.1:502")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			runAs(t, c, c.bad+"/python3", "connect:127.0.0.1:502")
			return c.bad
		}},
	{rule: "wp-ot-ics-scan", technique: "T0846", field: "DestinationIp",
		benign: func(t *testing.T, c *env) string { // 9 distinct controllers
			runAs(t, c, c.ok+"/sweep", "connect:"+peers(9))
			return c.ok
		},
		bad: func(t *testing.T, c *env) string { // 10
			runAs(t, c, c.bad+"/sweep", "connect:"+peers(10))
			return c.bad
		}},
	{rule: "wp-ot-ics-listener-interpreter", technique: "T0885", field: "Image",
		benign: func(t *testing.T, c *env) string {
			runAs(t, c, c.ok+"/opcua-server", "listen:"+icsPorts)
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			runAs(t, c, c.bad+"/python3", "listen:"+icsPorts)
			return c.bad
		}},
	{rule: "wp-ot-plc-project-write", technique: "T0889", field: "TargetFilename",
		benign: func(t *testing.T, c *env) string {
			sh(t, "mkdir -p "+c.ok+" && echo notes > "+c.ok+"/line1.project.txt")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			sh(t, "mkdir -p "+c.bad+" && echo 'PROGRAM PLC_PRG' > "+c.bad+"/line1.project")
			return c.bad
		}},
	{rule: "wp-ot-plc-project-read", technique: "T0845", field: "TargetFilename",
		benign: func(t *testing.T, c *env) string {
			c.file(t, c.ok+"/notes.txt", "x")
			run(t, "tar", "-cf", c.ok+"/out.tar", "-C", c.ok, "notes.txt")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			c.file(t, c.bad+"/line1.project", "PROGRAM PLC_PRG")
			run(t, "tar", "-cf", c.bad+"/out.tar", "-C", c.bad, "line1.project")
			return c.bad
		}},
	{rule: "wp-ot-hmi-config-change", technique: "T0836", field: "TargetFilename",
		benign: func(t *testing.T, c *env) string {
			c.file(t, c.ok+"/.node-red/.keep", "")
			runAs(t, c, c.ok+"/node", "write:"+c.ok+"/.node-red/flows_gw.json")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			c.file(t, c.bad+"/.node-red/.keep", "")
			sh(t, "echo '[]' > "+c.bad+"/.node-red/flows_gw.json")
			return c.bad
		}},
	{rule: "wp-ot-scada-signal", technique: "T0881", field: "TargetImage",
		benign: func(t *testing.T, c *env) string {
			s := sleeper(t, c, c.ok+"/historian-export")
			sh(t, "kill -TERM "+strconv.Itoa(s.Process.Pid))
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			s := sleeper(t, c, c.bad+"/codesyscontrol")
			sh(t, "kill -TERM "+strconv.Itoa(s.Process.Pid))
			return c.bad
		}},
	{rule: "wp-ot-scada-binary-tamper", technique: "T0881", field: "SourceFilename",
		benign: func(t *testing.T, c *env) string {
			run(t, "mv", c.file(t, c.ok+"/notes", "x"), c.ok+"/notes.old")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			run(t, "mv", c.file(t, c.bad+"/codesyscontrol", "x"), c.bad+"/codesyscontrol.old")
			return c.bad
		}},
	{rule: "wp-ot-packet-socket", technique: "T0842", field: "Sniffing",
		benign: func(t *testing.T, c *env) string {
			runAs(t, c, c.ok+"/dhclient", "packet")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			runAs(t, c, c.bad+"/capture", "packet")
			return c.bad
		}},
	{rule: "wp-ot-history-wipe", technique: "T0872", field: "TargetFilename",
		benign: func(t *testing.T, c *env) string {
			sh(t, "mkdir -p "+c.ok+" && echo ls >> "+c.ok+"/.bash_history")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			c.file(t, c.bad+"/.bash_history", "modbus-write 40001 0\n")
			sh(t, ": > "+c.bad+"/.bash_history")
			return c.bad
		}},
	{rule: "wp-ot-history-delete", technique: "T0872", field: "TargetFilename",
		benign: func(t *testing.T, c *env) string {
			run(t, "rm", c.file(t, c.ok+"/notes.txt", "x"))
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			run(t, "rm", c.file(t, c.bad+"/.bash_history", "modbus-write 40001 0\n"))
			return c.bad
		}},
	{rule: "wp-ot-account-change", technique: "T0859", field: "TargetFilename",
		benign: func(t *testing.T, c *env) string {
			c.file(t, c.ok+"/.ssh/.keep", "")
			sh(t, "echo '127.0.0.1 ssh-ed25519 AAAA' >> "+c.ok+"/.ssh/known_hosts")
			return c.ok
		},
		bad: func(t *testing.T, c *env) string {
			c.file(t, c.bad+"/.ssh/.keep", "")
			sh(t, "echo 'ssh-ed25519 AAAA intruder' >> "+c.bad+"/.ssh/authorized_keys")
			return c.bad
		}},
	{rule: "wp-ot-runtime-shell", technique: "T0807", field: "ParentImage",
		benign: func(t *testing.T, c *env) string {
			sh(t, "/bin/bash -c '/bin/sh -c \"exit 0 # "+c.rnd+"-ok\"; exit 0'")
			return c.rnd + "-ok"
		},
		bad: func(t *testing.T, c *env) string {
			c.link(t, "/bin/bash", c.bad+"/codesyscontrol")
			run(t, c.bad+"/codesyscontrol", "-c", `/bin/sh -c "exit 0"; exit 0`)
			return c.bad
		}},
}

func ssh(t *testing.T, port int, user string) {
	t.Helper()
	cmd := exec.Command("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-p", strconv.Itoa(port), "-l", user, "127.0.0.1", "true")
	_ = cmd.Run() // the connection is the behaviour; the session fails
}

func peers(n int) string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("127.0.%d.%d:502", 77, i))
	}
	return strings.Join(out, ",")
}

func mknod(t *testing.T, path string, major, minor uint32) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(major, minor))); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPackRules runs the real agent with the built-in packs and, for every
// rule that raises alerts, performs the behaviour for real and asserts the
// alert (rule id, technique, the matched field), after performing a benign
// neighbour that must not fire. The benign action comes first: events are
// matched in order, so once the bad action's alert is seen, the benign
// one's would have been seen too.
func TestPackRules(t *testing.T) {
	privtest.Require(t)
	h := startAgent(t)
	e, err := detect.New(detect.Config{Packs: detect.Packs()}, detect.Deps{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	tested := map[string]bool{}
	for _, rc := range cases {
		tested[rc.rule] = true
		t.Run(rc.rule, func(t *testing.T) {
			if rc.needs != nil {
				if why := rc.needs(); why != "" {
					t.Skip(why)
				}
			}
			var rnd [4]byte
			_, _ = rand.Read(rnd[:])
			dir := privtest.Dir(t)
			c := &env{dir: dir, bad: dir + "/bad", ok: dir + "/ok", rnd: hex.EncodeToString(rnd[:]), self: privtest.Self(t)}
			okMark := rc.benign(t, c)
			badMark := rc.bad(t, c)
			a := h.wait(t, rc.rule, badMark)
			if got := h.find(rc.rule, okMark); len(got) > 0 {
				t.Fatalf("the benign neighbour fired: %s", got[0].raw)
			}
			al := a.ev.Alert
			if !slices.Contains(al.Techniques, rc.technique) {
				t.Errorf("techniques %v, want %s", al.Techniques, rc.technique)
			}
			if !slices.ContainsFunc(al.Matches, func(m event.Match) bool { return m.Field == rc.field && m.Value != "" }) {
				t.Errorf("matches %+v lack %s", al.Matches, rc.field)
			}
			if len(al.Events) == 0 || al.Events[len(al.Events)-1].Seq == 0 || a.ev.Process.PID == 0 {
				t.Errorf("alert names no event or process: %s", a.raw)
			}
			t.Logf("%s: %s", rc.rule, a.raw)
		})
	}
	// Every alerting rule of the packs has its case.
	for _, r := range e.Rules() {
		if r.Generates && !tested[r.ID] {
			t.Errorf("rule %s (%s) has no test", r.ID, r.Source)
		}
	}
}
