package container_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/app"
	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/agent/container"
	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/internal/privtest"
	"github.com/watchpost/watchpost/deploy/oci"
)

// containerd is a private containerd daemon started for one test.
type containerd struct {
	ns     string // containerd namespace of the test's containers
	bin    string // directory with containerd, ctr, the shim and runc
	dir    string // root, state, socket
	socket string
	cmd    *exec.Cmd
	log    *bytes.Buffer
}

// binaries finds containerd, ctr, containerd-shim-runc-v2 and runc: on
// PATH when they are installed, else from Debian's containerd and runc
// packages, fetched once (apt-get download) and unpacked (dpkg-deb -x) into
// the user's cache directory; nothing is installed on the system.
func binaries(t *testing.T) string {
	t.Helper()
	names := []string{"containerd", "ctr", "containerd-shim-runc-v2", "runc"}
	onPath := ""
	for i, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			break
		}
		if i == len(names)-1 {
			onPath = filepath.Dir(p)
		}
	}
	if onPath != "" {
		return onPath
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "watchpost", "containerd")
	bin := filepath.Join(dir, "bin")
	if _, err := os.Stat(filepath.Join(bin, "runc")); err == nil {
		return bin
	}
	fmt.Fprintf(os.Stderr, "container attribution test: containerd is not installed; fetching Debian's containerd and runc packages (apt-get download, about 29 MB) into %s\n", dir)
	if err := fetchDebian(dir, bin); err != nil {
		t.Skipf("containerd cannot be installed from Debian's packages: %v", err)
	}
	return bin
}

func fetchDebian(dir, bin string) error {
	debs := filepath.Join(dir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return err
	}
	download := func() error {
		cmd := exec.Command("apt-get", "download", "containerd", "runc")
		cmd.Dir = debs
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get download: %v: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}
	if err := download(); err != nil {
		// The package lists may be missing or stale on a fresh machine.
		if out, uerr := exec.Command("apt-get", "update", "-q").CombinedOutput(); uerr != nil {
			return fmt.Errorf("%v; apt-get update: %v: %s", err, uerr, bytes.TrimSpace(out))
		}
		if err := download(); err != nil {
			return err
		}
	}
	files, _ := filepath.Glob(filepath.Join(debs, "*.deb"))
	unpacked := filepath.Join(dir, "root")
	for _, f := range files {
		if out, err := exec.Command("dpkg-deb", "-x", f, unpacked).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg-deb -x %s: %v: %s", f, err, out)
		}
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	for src, dst := range map[string]string{
		"usr/bin/containerd": "containerd", "usr/bin/ctr": "ctr",
		"usr/bin/containerd-shim-runc-v2": "containerd-shim-runc-v2", "usr/sbin/runc": "runc",
	} {
		if err := os.Symlink(filepath.Join(unpacked, src), filepath.Join(bin, dst)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	return nil
}

// startContainerd runs containerd on a private socket, root and state
// directory; the test's cleanup stops it and removes everything it made.
func startContainerd(t *testing.T) *containerd {
	t.Helper()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	c := &containerd{ns: "watchpost-test-" + hex.EncodeToString(rnd[:]), bin: binaries(t), dir: t.TempDir(), log: &bytes.Buffer{}}
	c.socket = filepath.Join(c.dir, "containerd.sock")
	// Shims put their sockets in /run/containerd/s; remove what this run adds.
	_, statErr := os.Stat("/run/containerd")
	createdRun := os.IsNotExist(statErr)
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(c.dir, "root"), filepath.Join(c.dir, "state"), c.socket, c.socket+".ttrpc")
	if err := os.WriteFile(filepath.Join(c.dir, "config.toml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(filepath.Join(c.bin, "containerd"), "--config", filepath.Join(c.dir, "config.toml"))
	c.cmd.Env = append(os.Environ(), "PATH="+c.bin+":"+os.Getenv("PATH"))
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting containerd: %v", err)
	}
	t.Cleanup(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = c.cmd.Process.Kill()
			<-done
		}
		c.killShims(t)
		unmountUnder(t, c.dir)
		// runc leaves the namespace's parent cgroup (cgroupfs driver:
		// /NAMESPACE/ID) in every hierarchy.
		parents, _ := filepath.Glob("/sys/fs/cgroup/*/" + c.ns)
		parents = append(parents, "/sys/fs/cgroup/"+c.ns)
		for _, p := range parents {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				t.Logf("removing cgroup %s: %v", p, err)
			}
		}
		if createdRun {
			_ = os.RemoveAll("/run/containerd")
		}
		if t.Failed() {
			t.Logf("containerd log:\n%s", c.log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.ctrOut("version"); err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s:\n%s", c.socket, c.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *containerd) ctrOut(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(c.bin, "ctr"), append([]string{"--address", c.socket, "--namespace", c.ns}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+c.bin+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *containerd) ctr(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.ctrOut(args...)
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// killShims ends shims this daemon started that outlived it (found by the
// private socket address on their command line).
func (c *containerd) killShims(t *testing.T) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(c.socket)) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if pid > 0 && pid != os.Getpid() {
			t.Logf("stopping leftover shim %d", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountUnder lazily unmounts anything left mounted below dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil {
			t.Logf("unmounting %s: %v", mounts[i], err)
		}
	}
}

// helperImage builds the test's static helper (testdata/helper) and an
// image holding only it, written as an image tarball for ctr to import.
func helperImage(t *testing.T, ref string) string {
	t.Helper()
	dir := t.TempDir()
	helper := filepath.Join(dir, "wphelper")
	build := exec.Command("go", "build", "-trimpath", "-o", helper, "./testdata/helper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the helper: %v\n%s", err, out)
	}
	img, err := oci.Build(oci.Spec{
		Arch:       runtime.GOARCH,
		Files:      []oci.File{{Src: helper, Dst: "/wphelper", Mode: 0o755}},
		Entrypoint: []string{"/wphelper"},
		User:       "0:0",
		Created:    time.Unix(0, 0).UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "image.tar")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestContainerdAttribution runs the agent and a real containerd, starts a
// container from an image the test built, and checks that the events of
// the process inside (an exec and a file write) carry the container's id
// and, from containerd's API, its image.
func TestContainerdAttribution(t *testing.T) {
	privtest.Require(t)
	ctrd := startContainerd(t)
	var rnd [32]byte
	_, _ = rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	ref := "watchpost.test/attribution:" + id[:12]
	ctrd.ctr(t, "images", "import", "--snapshotter", "native", helperImage(t, ref))

	cfg := config.Default()
	cfg.Baseline.Dir = t.TempDir()
	cfg.Host = "ctr-test"
	cfg.Output = config.OutputStdout
	cfg.MetricsAddr = ""
	cfg.Kernel.Events = []string{"exec", "file_open"}
	cfg.Container.Runtimes = []container.Runtime{{Kind: container.KindContainerd, Path: ctrd.socket}}

	pr, pw := io.Pipe()
	marker := "watchpost-marker-" + id[:12]
	found := make(chan *event.Event, 16)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if !bytes.Contains(sc.Bytes(), []byte(marker)) {
				continue
			}
			var ev event.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err == nil {
				select {
				case found <- &ev:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
			app.Options{Stdout: pw, Ready: func(*app.Agent) { close(ready) }})
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
		_ = pw.Close()
	}()

	ctrd.ctr(t, "run", "--rm", "--snapshotter", "native", ref, id, "/wphelper", "exec-open", "/"+marker)

	var exec, open *event.Event
	timeout := time.After(60 * time.Second)
	for exec == nil || open == nil {
		select {
		case ev := <-found:
			switch {
			case ev.Kind == event.KindExec && len(ev.Process.Args) == 3 && ev.Process.Args[1] == "open":
				exec = ev
			case ev.Kind == event.KindFileOpen && ev.File != nil && strings.HasSuffix(ev.File.Path, marker):
				open = ev
			}
		case <-timeout:
			t.Fatalf("no exec and file event from the container after 60 s (exec %v, open %v)", exec != nil, open != nil)
		}
	}
	t.Logf("exec: %+v", exec.Process)
	for what, ev := range map[string]*event.Event{"exec": exec, "file_open": open} {
		p := ev.Process
		if p.Container != id || p.ContainerRuntime != container.RuntimeContainerd || p.ContainerImage != ref {
			t.Errorf("%s event of pid %d: container %q runtime %q image %q; want %q containerd %q",
				what, p.PID, p.Container, p.ContainerRuntime, p.ContainerImage, id, ref)
		}
	}
	if !strings.HasSuffix(exec.Process.Exe, "/wphelper") || open.Process.PID != exec.Process.PID {
		t.Errorf("exec: exe %q pid %d; file event pid %d", exec.Process.Exe, exec.Process.PID, open.Process.PID)
	}
}
