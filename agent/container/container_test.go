package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/watchpost/watchpost/agent/event"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const id = "3f9c2d6c0b1e4a5f8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e"

func TestLocate(t *testing.T) {
	for _, tc := range []struct {
		path string
		want Location
		ok   bool
	}{
		{"/system.slice/docker-" + id + ".scope", Location{ID: id, Runtime: RuntimeDocker}, true},
		{"/docker/" + id, Location{ID: id, Runtime: RuntimeDocker}, true},
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1a2b.slice/cri-containerd-" + id + ".scope", Location{ID: id, Runtime: RuntimeContainerd}, true},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice/crio-" + id + ".scope", Location{ID: id, Runtime: RuntimeCRIO}, true},
		{"/kubepods.slice/kubepods-pod1a2b.slice/crio-conmon-" + id + ".scope", Location{}, false},
		{"/kubepods/besteffort/pod0b7c1e2a-3f4d-4e5f-8a9b-0c1d2e3f4a5b/" + id, Location{ID: id, Runtime: RuntimeKubernetes}, true},
		{"/default/" + id, Location{ID: id, Runtime: RuntimeContainerd, Namespace: "default"}, true},
		{"/k8s.io/" + id, Location{ID: id, Runtime: RuntimeContainerd, Namespace: "k8s.io"}, true},
		{"/moby/" + id, Location{ID: id, Runtime: RuntimeDocker, Namespace: "moby"}, true},
		{"/machine.slice/libpod-" + id + ".scope/container", Location{ID: id, Runtime: RuntimePodman}, true},
		{"/machine.slice/libpod-conmon-" + id + ".scope", Location{}, false},
		{`/machine.slice/machine-plc\x2dsim.scope/payload`, Location{ID: "plc-sim", Runtime: RuntimeNspawn}, true},
		{`/machine.slice/machine-qemu\x2d1\x2dhmi.scope`, Location{}, false},
		// Seen from another cgroup namespace, and a container's own sub-cgroup.
		{"/../../system.slice/docker-" + id + ".scope/init.scope", Location{ID: id, Runtime: RuntimeDocker}, true},
		{"/system.slice/ssh.service", Location{}, false},
		{"/user.slice/user-1000.slice/session-2.scope", Location{}, false},
		{"/", Location{}, false},
		{"/system.slice/docker-" + id[:63] + ".scope", Location{}, false},
		{"/system.slice/docker-" + id[:63] + "G.scope", Location{}, false},
	} {
		got, ok := Locate(tc.path)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Locate(%q) = %+v, %v; want %+v, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCgroupPaths(t *testing.T) {
	unified, v1 := cgroupPaths([]byte("12:memory:/default/" + id + "\n1:name=systemd:/default/" + id + "\n0::/\n"))
	if unified != "/" || len(v1) != 2 || v1[0] != "/default/"+id {
		t.Errorf("got %q %q", unified, v1)
	}
	unified, v1 = cgroupPaths([]byte("0::/system.slice/docker-" + id + ".scope"))
	if unified != "/system.slice/docker-"+id+".scope" || v1 != nil {
		t.Errorf("got %q %q", unified, v1)
	}
}

// fakeProc writes PROC/PID/cgroup files.
func fakeProc(t *testing.T, files map[uint32]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, body := range files {
		dir := filepath.Join(root, strconv.Itoa(int(pid)))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

type fakeRuntime struct {
	mu      sync.Mutex
	meta    map[string]Meta
	asked   []Location
	fail    error
	release chan struct{} // when set, Lookup waits for it
}

func (f *fakeRuntime) Lookup(ctx context.Context, loc Location) (Meta, bool, error) {
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return Meta{}, false, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, loc)
	if f.fail != nil {
		return Meta{}, false, f.fail
	}
	m, ok := f.meta[loc.ID]
	return m, ok, nil
}

func (f *fakeRuntime) Watch(ctx context.Context, _ func(string, Meta)) error {
	<-ctx.Done()
	return nil
}
func (f *fakeRuntime) Close() error   { return nil }
func (f *fakeRuntime) String() string { return "fake" }

func newTestResolver(t *testing.T, proc string, rt client) *Resolver {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Runtimes = nil
	cfg.ProcRoot = proc
	cfg.CacheSize = 16
	r, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if rt != nil {
		r.runtimes = []client{rt}
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEnrichFromCgroupAndRuntime(t *testing.T) {
	proc := fakeProc(t, map[uint32]string{
		10: "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-" + id + ".scope\n",
		11: "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-" + id + ".scope\n",
		20: "0::/system.slice/ssh.service\n",
	})
	rt := &fakeRuntime{meta: map[string]Meta{id: {Image: "registry.plant/hmi:4.2", Name: "hmi", PodName: "hmi-7d9", PodNamespace: "scada"}}, release: make(chan struct{})}
	r := newTestResolver(t, proc, rt)

	ev := &event.Event{Kind: event.KindExec, Process: event.Process{PID: 10, CgroupID: 500}}
	r.Enrich(ev)
	// The runtime has not answered yet: the id is there, the rest is absent.
	if ev.Process.Container != id || ev.Process.ContainerRuntime != RuntimeContainerd || ev.Process.ContainerImage != "" {
		t.Fatalf("first event: %+v", ev.Process)
	}
	close(rt.release)
	waitFor(t, "the lookup", func() bool { return r.Stats().Lookups == 1 })
	waitFor(t, "the metadata", func() bool {
		ev := &event.Event{Kind: event.KindFileOpen, Process: event.Process{PID: 11, CgroupID: 500}}
		r.Enrich(ev)
		return ev.Process.ContainerImage != ""
	})
	ev = &event.Event{Kind: event.KindFileOpen, Process: event.Process{PID: 11, CgroupID: 500}}
	r.Enrich(ev)
	p := ev.Process
	if p.ContainerImage != "registry.plant/hmi:4.2" || p.ContainerName != "hmi" || p.PodName != "hmi-7d9" || p.PodNamespace != "scada" {
		t.Errorf("enriched: %+v", p)
	}
	host := &event.Event{Kind: event.KindExec, Process: event.Process{PID: 20, CgroupID: 600}}
	r.Enrich(host)
	if host.Process.Container != "" || host.Process.ContainerImage != "" {
		t.Errorf("host process attributed: %+v", host.Process)
	}
	st := r.Stats()
	if st.CgroupReads != 2 || st.Lookups != 1 || st.Containers != 1 {
		t.Errorf("stats %+v: want 2 cgroup reads (one per cgroup id), 1 lookup, 1 container", st)
	}
}

func TestEnrichWithoutRuntime(t *testing.T) {
	proc := fakeProc(t, map[uint32]string{7: "0::/system.slice/docker-" + id + ".scope\n"})
	rt := &fakeRuntime{fail: errors.New("connection refused")}
	r := newTestResolver(t, proc, rt)
	ev := &event.Event{Process: event.Process{PID: 7, CgroupID: 9}}
	r.Enrich(ev)
	waitFor(t, "the failed lookup", func() bool { return r.Stats().LookupErrors == 1 })
	r.Enrich(ev)
	if ev.Process.Container != id || ev.Process.ContainerRuntime != RuntimeDocker || ev.Process.ContainerImage != "" {
		t.Errorf("%+v", ev.Process)
	}
	// A process that is gone before its cgroup is read: no fields, counted.
	gone := &event.Event{Process: event.Process{PID: 999, CgroupID: 10}}
	r.Enrich(gone)
	if gone.Process.Container != "" || r.Stats().CgroupMisses != 1 {
		t.Errorf("gone process: %+v, stats %+v", gone.Process, r.Stats())
	}
}

// On a cgroup v1 host every container shares the unified hierarchy's
// cgroup, so attribution goes per process.
func TestEnrichCgroupV1PerProcess(t *testing.T) {
	other := "4f9c2d6c0b1e4a5f8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e"
	proc := fakeProc(t, map[uint32]string{
		30: "4:memory:/default/" + id + "\n1:name=systemd:/default/" + id + "\n0::/\n",
		31: "4:memory:/default/" + other + "\n0::/\n",
		32: "4:memory:/\n0::/\n",
	})
	r := newTestResolver(t, proc, nil)
	for pid, want := range map[uint32]string{30: id, 31: other, 32: ""} {
		ev := &event.Event{Process: event.Process{PID: pid, CgroupID: 1, StartBootNS: uint64(pid) * 1000}}
		r.Enrich(ev)
		if ev.Process.Container != want {
			t.Errorf("pid %d: container %q, want %q", pid, ev.Process.Container, want)
		}
	}
	ev := &event.Event{Process: event.Process{PID: 30, CgroupID: 1, StartBootNS: 30000}}
	r.Enrich(ev)
	if ev.Process.Container != id || ev.Process.ContainerRuntime != RuntimeContainerd {
		t.Errorf("cached: %+v", ev.Process)
	}
	if st := r.Stats(); st.CgroupReads != 3 {
		t.Errorf("%d cgroup reads, want 3 (one per process)", st.CgroupReads)
	}
}

func TestCacheIsBounded(t *testing.T) {
	files := map[uint32]string{}
	for i := uint32(1); i <= 100; i++ {
		files[i] = "0::/docker/" + id[:60] + strconv.FormatUint(uint64(1000+i), 10) + "\n"
	}
	r := newTestResolver(t, fakeProc(t, files), nil)
	for round := 0; round < 3; round++ {
		for i := uint32(1); i <= 100; i++ {
			r.Enrich(&event.Event{Process: event.Process{PID: i, CgroupID: uint64(i)}})
		}
	}
	if n := len(r.byID); n > 16 {
		t.Errorf("%d containers cached, bound 16", n)
	}
	if r.Stats().Evictions == 0 {
		t.Error("no eviction counted")
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.Runtimes = append(c.Runtimes, Runtime{Kind: "docker", Path: "/run/docker.sock"})
	if err := c.Validate(); err == nil || err.Error() != `container.runtimes[2].kind: "docker" is not containerd or cri` {
		t.Errorf("got %v", err)
	}
	c = DefaultConfig()
	c.LookupTimeout = time.Hour
	if err := c.Validate(); err == nil {
		t.Error("lookup_timeout of an hour accepted")
	}
}
