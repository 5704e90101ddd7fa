// Package release_test runs `make image package` into a temporary
// directory and reads back what it wrote: the OCI layouts (index,
// manifests, configs, layers, the binaries inside), and the Debian
// packages installed with dpkg into a scratch root, their files, modes,
// maintainer scripts and systemd units (systemd-analyze verify).
package release_test

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const version = "1.2.3-test"

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// artifacts runs `make image package` once for the package's tests.
func artifacts(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "watchpost-release-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("make", "-C", "../..", "image", "package", "BIN="+buildDir, "VERSION="+version,
			"REVISION=0123456789abcdef", "SOURCE_DATE_EPOCH=1764633600")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = errors.New("make image package: " + err.Error() + "\n" + out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

type wantImage struct {
	name       string
	entrypoint []string
	cmd        []string
	user       string
	binary     string            // run with --version
	files      map[string]string // path -> "mode uid:gid"
}

var images = []wantImage{
	{
		name: "watchpost-agent", entrypoint: []string{"/usr/bin/watchpost-agent"}, user: "0:0",
		binary: "usr/bin/watchpost-agent",
		files: map[string]string{
			"etc/":                    "drwxr-xr-x 0:0",
			"etc/watchpost/":          "drwxr-xr-x 0:0",
			"usr/":                    "drwxr-xr-x 0:0",
			"usr/bin/":                "drwxr-xr-x 0:0",
			"usr/bin/watchpost-agent": "-rwxr-xr-x 0:0",
			"var/":                    "drwxr-xr-x 0:0",
			"var/lib/":                "drwxr-xr-x 0:0",
			"var/lib/watchpost/":      "drwx------ 0:0",
		},
	},
	{
		name: "watchpost-collector", entrypoint: []string{"/usr/bin/watchpost-collector"},
		cmd: []string{"serve", "--config", "/etc/watchpost/collector.yaml"}, user: "65532:65532",
		binary: "usr/bin/watchpost-collector",
		files: map[string]string{
			"etc/":                         "drwxr-xr-x 0:0",
			"etc/group":                    "-rw-r--r-- 0:0",
			"etc/passwd":                   "-rw-r--r-- 0:0",
			"etc/watchpost/":               "drwxr-xr-x 0:0",
			"usr/":                         "drwxr-xr-x 0:0",
			"usr/bin/":                     "drwxr-xr-x 0:0",
			"tmp/":                         "dtrwxrwxrwx 0:0",
			"usr/bin/watchpost":            "-rwxr-xr-x 0:0",
			"usr/bin/watchpost-collector":  "-rwxr-xr-x 0:0",
			"var/":                         "drwxr-xr-x 0:0",
			"var/lib/":                     "drwxr-xr-x 0:0",
			"var/lib/watchpost-collector/": "drwx------ 65532:65532",
		},
	},
}

var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

func TestImageLayouts(t *testing.T) {
	dir := artifacts(t)
	for _, want := range images {
		t.Run(want.name, func(t *testing.T) {
			root := filepath.Join(dir, "image", want.name)
			top, err := layout.ImageIndexFromPath(root)
			if err != nil {
				t.Fatal(err)
			}
			im, err := top.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(im.Manifests) != 1 || im.Manifests[0].MediaType != types.OCIImageIndex ||
				im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != version {
				t.Fatalf("index.json: %+v, want one image index tagged %s", im.Manifests, version)
			}
			idx, err := top.ImageIndex(im.Manifests[0].Digest)
			if err != nil {
				t.Fatal(err)
			}
			multi, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			var platforms []string
			for _, d := range multi.Manifests {
				platforms = append(platforms, d.Platform.String())
				if d.MediaType != types.OCIManifestSchema1 {
					t.Errorf("%s: manifest media type %s", d.Platform, d.MediaType)
				}
				img, err := idx.Image(d.Digest)
				if err != nil {
					t.Fatal(err)
				}
				checkImage(t, want, d.Platform, img)
			}
			sort.Strings(platforms)
			if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64/v8"}, platforms); diff != "" {
				t.Errorf("platforms (-want +got):\n%s", diff)
			}
			if _, err := os.Stat(root + ".oci.tar"); err != nil {
				t.Errorf("OCI archive: %v", err)
			}
		})
	}
}

func checkImage(t *testing.T, want wantImage, p *v1.Platform, img v1.Image) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != p.Architecture {
		t.Errorf("%s: config says %s/%s", p, cf.OS, cf.Architecture)
	}
	c := cf.Config
	if !equal(c.Entrypoint, want.entrypoint) || !equal(c.Cmd, want.cmd) || c.User != want.user {
		t.Errorf("%s: entrypoint %q cmd %q user %q; want %q %q %q", p, c.Entrypoint, c.Cmd, c.User, want.entrypoint, want.cmd, want.user)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.title": want.name, "org.opencontainers.image.version": version,
		"org.opencontainers.image.revision": "0123456789abcdef", "org.opencontainers.image.created": "2025-12-02T00:00:00Z",
	} {
		if c.Labels[k] != v {
			t.Errorf("%s: label %s = %q, want %q", p, k, c.Labels[k], v)
		}
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%s: %d layers (%v), want 1", p, len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]string{}
	var binary []byte
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h.FileInfo().Mode().String() + " " + strconv.Itoa(h.Uid) + ":" + strconv.Itoa(h.Gid)
		if h.Name == want.binary {
			if binary, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if diff := cmp.Diff(want.files, got); diff != "" {
		t.Errorf("%s: layer files (-want +got):\n%s", p, diff)
	}
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		t.Fatalf("%s: %s: %v", p, want.binary, err)
	}
	if f.Machine != elfMachine[p.Architecture] {
		t.Errorf("%s: %s is built for %s", p, want.binary, f.Machine)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("%s: %s is dynamically linked", p, want.binary)
		}
	}
	if p.Architecture == runtime.GOARCH {
		bin := filepath.Join(t.TempDir(), filepath.Base(want.binary))
		if err := os.WriteFile(bin, binary, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), version) {
			t.Errorf("%s --version: %q %v, want %s", want.binary, out, err, version)
		}
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// packages lists what each package must install: path -> mode (files and
// directories the package itself carries, then what its postinst creates).
var packages = map[string]map[string]string{
	"watchpost-agent": {
		"/etc/watchpost/agent.yaml":                       "-rw-r-----",
		"/etc/watchpost/rules.d":                          "drwxr-xr-x",
		"/etc/watchpost/pki":                              "drwx------",
		"/usr/bin/watchpost-agent":                        "-rwxr-xr-x",
		"/usr/lib/systemd/system/watchpost-agent.service": "-rw-r--r--",
		"/var/lib/watchpost":                              "drwx------",
	},
	"watchpost-collector": {
		"/etc/watchpost/collector.yaml":                       "-rw-r-----",
		"/etc/watchpost/pki":                                  "drwxr-x---",
		"/usr/bin/watchpost":                                  "-rwxr-xr-x",
		"/usr/bin/watchpost-collector":                        "-rwxr-xr-x",
		"/usr/lib/systemd/system/watchpost-collector.service": "-rw-r--r--",
		"/var/lib/watchpost-collector":                        "drwx------",
	},
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// scratchRoot is an empty dpkg database: dpkg --root installs into it and
// runs the maintainer scripts outside a chroot with DPKG_ROOT set (the
// scripts then touch only DPKG_ROOT and never systemd).
func scratchRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/lib/dpkg/alternatives"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func dpkg(t *testing.T, root string, args ...string) string {
	t.Helper()
	return run(t, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends", "--log=/dev/null"}, args...)...)
}

func TestDebianPackages(t *testing.T) {
	for _, tool := range []string{"dpkg", "dpkg-deb", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian's dpkg and systemd packages)", tool)
		}
	}
	dir := artifacts(t)
	debVersion := "1.2.3+test"
	for name, want := range packages {
		t.Run(name, func(t *testing.T) {
			for _, arch := range []string{"amd64", "arm64"} {
				deb := filepath.Join(dir, "packages", name+"_"+debVersion+"_"+arch+".deb")
				fields := run(t, "dpkg-deb", "-f", deb, "Package", "Version", "Architecture")
				if wantFields := "Package: " + name + "\nVersion: " + debVersion + "\nArchitecture: " + arch + "\n"; fields != wantFields {
					t.Errorf("%s control: %q, want %q", arch, fields, wantFields)
				}
			}
			deb := filepath.Join(dir, "packages", name+"_"+debVersion+"_"+runtime.GOARCH+".deb")
			root := scratchRoot(t)
			out := dpkg(t, root, "-i", deb)
			if !strings.Contains(out, "systemctl enable --now "+name) {
				t.Errorf("postinst did not tell how to start the service:\n%s", out)
			}
			got := map[string]string{}
			for path := range want {
				fi, err := os.Lstat(filepath.Join(root, path))
				if err != nil {
					t.Errorf("%s: %v", path, err)
					continue
				}
				got[path] = fi.Mode().String()
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("installed modes (-want +got):\n%s", diff)
			}
			listed := strings.Fields(dpkg(t, root, "-L", name))
			for path := range want {
				if !strings.HasPrefix(path, "/etc/watchpost/pki") && !contains(listed, path) {
					t.Errorf("%s is not among the package's files", path)
				}
			}
			conf := strings.TrimSpace(run(t, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f=${Conffiles}", name))
			if wantConf := "/etc/watchpost/" + strings.TrimPrefix(name, "watchpost-") + ".yaml"; !strings.HasPrefix(conf, wantConf+" ") {
				t.Errorf("conffiles %q, want %s", conf, wantConf)
			}
			verifyUnit(t, root, "/usr/lib/systemd/system/"+name+".service")

			// Purge keeps the state directory when it holds data (the
			// agent's unacknowledged spool, the collector's store).
			state := filepath.Join(root, strings.TrimPrefix(map[string]string{
				"watchpost-agent": "/var/lib/watchpost", "watchpost-collector": "/var/lib/watchpost-collector"}[name], "/"))
			if err := os.WriteFile(filepath.Join(state, "kept"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			dpkg(t, root, "--purge", name)
			if _, err := os.Stat(filepath.Join(state, "kept")); err != nil {
				t.Errorf("purge removed the data in %s: %v", state, err)
			}
			if _, err := os.Stat(filepath.Join(root, "usr/bin", name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("purge left the binary: %v", err)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// verifyUnit runs systemd-analyze verify on the installed unit, with the
// host's targets copied into the scratch root so its dependencies resolve;
// any diagnostic (an unknown key, a bad value, a missing binary) fails.
func verifyUnit(t *testing.T, root, unit string) {
	t.Helper()
	targets, err := filepath.Glob("/usr/lib/systemd/system/*.target")
	if err != nil || len(targets) == 0 {
		targets, _ = filepath.Glob("/lib/systemd/system/*.target")
	}
	if len(targets) == 0 {
		t.Fatal("no systemd targets on this host to verify the unit against")
	}
	for _, tg := range targets {
		b, err := os.ReadFile(tg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "usr/lib/systemd/system", filepath.Base(tg)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", "--root="+root, unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
	}
	b, err := os.ReadFile(filepath.Join(root, unit))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"ProtectSystem=strict", "NoNewPrivileges=yes", "Restart=on-failure", "StateDirectory="} {
		if !bytes.Contains(b, []byte("\n"+line)) {
			t.Errorf("%s lacks %s", unit, line)
		}
	}
	if strings.Contains(unit, "agent") {
		for _, line := range []string{"CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_SYS_RESOURCE CAP_SYS_PTRACE\n", "ReadWritePaths=/var/lib/watchpost\n", "Type=notify\n", "WatchdogSec="} {
			if !bytes.Contains(b, []byte(line)) {
				t.Errorf("%s lacks %q", unit, line)
			}
		}
	}
}

// The chart, image and package tooling is heavy (Helm, the Kubernetes API
// types, go-containerregistry, nfpm); none of it may reach the binaries
// that run on gateways.
func TestBinariesLeaveOutDeployLibraries(t *testing.T) {
	out := run(t, "go", "list", "-deps", "../../agent/cmd/...", "../../collector/cmd/...")
	if !strings.Contains(out, "github.com/cilium/ebpf\n") || !strings.Contains(out, "modernc.org/sqlite\n") {
		t.Fatalf("go list -deps did not list the binaries' dependencies:\n%s", out)
	}
	for _, pkg := range strings.Fields(out) {
		for _, heavy := range []string{"helm.sh/", "k8s.io/api/", "k8s.io/apimachinery/", "sigs.k8s.io/", "github.com/google/go-containerregistry/", "github.com/goreleaser/"} {
			if strings.HasPrefix(pkg, heavy) {
				t.Errorf("a binary imports %s", pkg)
			}
		}
	}
}
