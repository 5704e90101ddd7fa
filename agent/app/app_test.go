package app_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/watchpost/watchpost/agent/app"
	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/agent/internal/privtest"
	"github.com/watchpost/watchpost/collector/certs"
	"github.com/watchpost/watchpost/collector/collectortest"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

func TestMain(m *testing.M) {
	privtest.HelperMain()
	os.Exit(m.Run())
}

// TestEndToEndOverMutualTLS runs the real agent and a real collector on
// loopback with mutual TLS, makes an exec, a file write and a TCP
// connection, and queries each back from the collector's query API.
func TestEndToEndOverMutualTLS(t *testing.T) {
	privtest.Require(t)
	const agentID = "e2e-gw"
	col, pki := collectortest.Loopback(t, []string{agentID}, nil)

	cert, key := certs.AgentFiles(agentID)
	cfg := config.Default()
	cfg.Baseline.Dir = t.TempDir()
	cfg.Host = agentID
	cfg.Output = config.OutputCollector
	cfg.MetricsAddr = ""
	cfg.Collector.Address = col.Addr()
	cfg.Collector.CA = filepath.Join(pki, certs.CAFile)
	cfg.Collector.Cert = filepath.Join(pki, cert)
	cfg.Collector.Key = filepath.Join(pki, key)
	cfg.Kernel.Events = []string{"exec", "file_open", "net_connect", "net_connect_result", "signal"}

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
			app.Options{Ready: func(*app.Agent) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("agent stopped before it was ready: %v", err)
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()

	// The actions. The agent excludes its own process (this one), so the
	// file write and the connection are made by helper processes.
	dir := privtest.Dir(t)
	self := privtest.Self(t)
	execArgs := []string{"-test.run=^$", "wp-e2e-exec", "--unit", "7"}
	ex := exec.Command(self, execArgs...)
	ex.Dir = dir
	ex.Env = append(os.Environ(), privtest.HelperEnv+"=exit:0")
	if err := ex.Run(); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = c.Write(make([]byte, 10)) }()
		}
	}()
	port := uint32(ln.Addr().(*net.TCPAddr).Port)
	tcp := exec.Command(self, "-test.run=^$")
	tcp.Env = append(os.Environ(), privtest.HelperEnv+"=tcp", "WATCHPOST_TEST_ADDR="+ln.Addr().String(), "WATCHPOST_TEST_N=5", "WATCHPOST_TEST_M=10")
	if out, err := tcp.CombinedOutput(); err != nil {
		t.Fatalf("tcp helper: %v %s", err, out)
	}

	// A signal from one helper to another names its target from the
	// process table: the target's exec is stored before it is signalled.
	targetArgs := []string{self, "-test.run=^$", "wp-e2e-target"}
	target := exec.Command(self, targetArgs[1:]...)
	target.Env = append(os.Environ(), privtest.HelperEnv+"=sleep")
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = target.Process.Kill(); _ = target.Wait() }()

	written := filepath.Join(dir, "setpoints.cfg")
	wr := exec.Command("/bin/sh", "-c", "echo 'tank1.max=80' > "+written)
	if err := wr.Run(); err != nil {
		t.Fatal(err)
	}

	conn, err := grpc.NewClient(col.QueryAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := watchpostv1.NewQueryServiceClient(conn)

	execEv := queryOne(t, q, &watchpostv1.EventFilter{Host: agentID, Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_EXEC}, Pid: uint32(ex.Process.Pid)})
	wantProc := &watchpostv1.Process{
		Pid: uint32(ex.Process.Pid), Tid: uint32(ex.Process.Pid), Ppid: uint32(os.Getpid()), Uid: uint32(os.Getuid()),
		Gid: uint32(os.Getgid()), Euid: uint32(os.Geteuid()), Egid: uint32(os.Getegid()),
		Exe: self, Args: append([]string{self}, execArgs...), Cwd: dir,
	}
	if diff := cmp.Diff(wantProc, execEv.Process, protocmp.Transform(),
		protocmp.IgnoreFields(&watchpostv1.Process{}, "comm", "cgroup_id", "start_boot_ns", "auid", "session_id", "tty")); diff != "" {
		t.Errorf("exec from the collector (-want +got):\n%s", diff)
	}
	if execEv.Header.GetAgentId() != agentID || execEv.Header.GetHost() != agentID || execEv.GetExec() == nil {
		t.Errorf("exec header: %v", execEv.Header)
	}

	fileEv := queryOne(t, q, &watchpostv1.EventFilter{Host: agentID, Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_FILE_OPEN}, PathPrefix: written})
	f := fileEv.GetFile()
	shell, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if f.GetPath() != written || !f.GetWrite() || f.GetResult() < 0 || f.GetSyscall() != "openat" || fileEv.Process.GetExe() != shell {
		t.Errorf("file write from the collector: %v (process %v)", f, fileEv.Process)
	}

	queryOne(t, q, &watchpostv1.EventFilter{Host: agentID, Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_EXEC}, Pid: uint32(target.Process.Pid)})
	killer := exec.Command(self, "-test.run=^$")
	killer.Env = append(os.Environ(), privtest.HelperEnv+"=kill", "WATCHPOST_TEST_N="+strconv.Itoa(target.Process.Pid))
	if out, err := killer.CombinedOutput(); err != nil {
		t.Fatalf("kill helper: %v %s", err, out)
	}
	sigEv := queryOne(t, q, &watchpostv1.EventFilter{Host: agentID, Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_SIGNAL}, Pid: uint32(killer.Process.Pid)})
	wantSig := &watchpostv1.Security{Operation: "kill", TargetPid: uint32(target.Process.Pid), Signal: int32(syscall.SIGTERM),
		TargetComm: sigEv.GetSecurity().GetTargetComm(), TargetExe: self, TargetArgs: targetArgs, TargetUid: proto.Int64(int64(os.Getuid()))}
	if diff := cmp.Diff(wantSig, sigEv.GetSecurity(), protocmp.Transform()); diff != "" || wantSig.TargetComm == "" {
		t.Errorf("signal from the collector (-want +got):\n%s", diff)
	}

	netEv := queryOne(t, q, &watchpostv1.EventFilter{Host: agentID, Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_NET_CONNECT}, Port: port})
	n := netEv.GetNet()
	if n.GetDstAddr() != "127.0.0.1" || n.GetDstPort() != port || n.GetProtocol() != "tcp" || netEv.Process.GetPid() != uint32(tcp.Process.Pid) ||
		!slices.Contains([]int32{0, -115}, n.GetResult()) {
		t.Errorf("connect from the collector: %v (pid %d, want %d)", n, netEv.Process.GetPid(), tcp.Process.Pid)
	}
	if n.GetResult() == 0 {
		return // connected inside the call: there is no outcome to report later
	}
	resEv := queryOne(t, q, &watchpostv1.EventFilter{Host: agentID, Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_NET_CONNECT_RESULT}, Port: port})
	r := resEv.GetNet()
	if r.GetState() != "established" || r.GetResult() != 0 || r.GetSrcPort() != n.GetSrcPort() || r.GetDstPort() != port || resEv.Process.GetPid() != uint32(tcp.Process.Pid) {
		t.Errorf("connect result from the collector: %v (pid %d), want established from port %d", r, resEv.Process.GetPid(), n.GetSrcPort())
	}
}

// queryOne polls the query API until exactly one event matches.
func queryOne(t *testing.T, q watchpostv1.QueryServiceClient, f *watchpostv1.EventFilter) *watchpostv1.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	if _, vm := privtest.InVM(); vm {
		deadline = time.Now().Add(180 * time.Second)
	}
	for {
		resp, err := q.QueryEvents(context.Background(), &watchpostv1.QueryEventsRequest{Filter: f, Limit: 10})
		if err != nil {
			t.Fatalf("query %v: %v", f, err)
		}
		switch n := len(resp.Events); {
		case n == 1:
			return resp.Events[0]
		case n > 1:
			t.Fatalf("query %v: %d events, want exactly 1", f, n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("query %v: nothing stored", f)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
