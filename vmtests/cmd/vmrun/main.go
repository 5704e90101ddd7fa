//go:build linux

// Command vmrun runs the privileged Go tests inside a matrix of Debian kernels under
// qemu. vmtests/run.sh is its entry point (it installs the Debian tools first); see
// docs/vmtests.md.
//
//	vmrun [flags] [KERNEL...]    KERNEL is a name from the lock file ("6.1"); none runs all
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/watchpost/watchpost/vmtests/internal/vmtest"
)

type config struct {
	root        string
	lock        string
	cache       string
	packages    []string
	jobs        int
	memMB       int
	testTimeout time.Duration
	vmTimeout   time.Duration
	run         string
	appendArgs  string
	update      bool
	busybox     string
	mirror      string
	secMirror   string
	keyring     string
	kernels     []string
}

func main() {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmrun:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmrun:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func parseFlags() (*config, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	c := &config{root: wd}
	var pkgs string
	flag.StringVar(&c.lock, "lock", "vmtests/kernels.lock", "kernel lock file")
	flag.StringVar(&c.cache, "cache", envOr("WATCHPOST_VMTEST_CACHE", "vmtests/.cache"), "cache directory (env WATCHPOST_VMTEST_CACHE)")
	flag.StringVar(&pkgs, "packages", "./agent/...", "space-separated Go package patterns whose tests run in the guests (packages without tests are skipped)")
	flag.IntVar(&c.jobs, "j", 2, "VMs run in parallel (each has one CPU)")
	flag.IntVar(&c.memMB, "mem", 0, "guest memory in MiB (0: 256, more for a large initramfs)")
	flag.DurationVar(&c.testTimeout, "test-timeout", 20*time.Minute, "-test.timeout of each test binary in the guest")
	flag.DurationVar(&c.vmTimeout, "vm-timeout", 0, "limit of one VM (0: derived from -test-timeout and the number of binaries)")
	flag.StringVar(&c.run, "run", "", "-test.run regexp passed to every binary")
	flag.StringVar(&c.appendArgs, "append", "", "extra kernel command line (e.g. lsm=lockdown,capability,bpf)")
	flag.BoolVar(&c.update, "update", false, "re-pin every selected kernel to the newest downloadable package of its series")
	flag.StringVar(&c.busybox, "busybox", "/bin/busybox", "static busybox for the guest (Debian busybox-static)")
	flag.StringVar(&c.mirror, "mirror", envOr("DEBIAN_MIRROR", "http://deb.debian.org/debian"), "Debian archive (env DEBIAN_MIRROR)")
	flag.StringVar(&c.secMirror, "security-mirror", envOr("DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security"), "Debian security archive (env DEBIAN_SECURITY_MIRROR)")
	flag.StringVar(&c.keyring, "keyring", "/usr/share/keyrings/debian-archive-keyring.gpg", "Debian archive keyring")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: vmtests/run.sh [flags] [KERNEL...]\n\nRuns the privileged Go tests in Debian kernels under qemu; KERNEL is a name from the lock file.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	c.packages = strings.Fields(pkgs)
	c.kernels = flag.Args()
	if c.jobs < 1 {
		return nil, errors.New("-j must be at least 1")
	}
	if c.testTimeout < 10*time.Second {
		return nil, errors.New("-test-timeout must be at least 10s: Go start-up alone takes seconds under TCG")
	}
	if !filepath.IsAbs(c.cache) {
		c.cache = filepath.Join(wd, c.cache)
	}
	return c, nil
}

func run(ctx context.Context, c *config) (bool, error) {
	start := time.Now()
	lock, err := vmtest.ReadLock(c.lock)
	if err != nil {
		return false, err
	}
	selected, err := lock.Select(c.kernels)
	if err != nil {
		return false, err
	}
	resultsDir := filepath.Join(c.cache, "results")
	for _, d := range []string{resultsDir, filepath.Join(c.cache, "build")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return false, err
		}
	}

	// 1. Kernels: download, verify, unpack (sequentially; downloads are fast).
	var suites []string
	for _, k := range lock.Kernels {
		suites = append(suites, k.Suite)
	}
	prep := &vmtest.Preparer{
		Apt: &vmtest.Apt{
			Dir: filepath.Join(c.cache, "apt"), Arch: "amd64", Mirror: c.mirror, SecurityMirror: c.secMirror,
			Keyring: c.keyring, Suites: suites, Log: os.Stdout,
		},
		Cache:  c.cache,
		Log:    os.Stdout,
		Update: c.update,
	}
	images := map[string]string{}
	var prepErrs []string
	for _, k := range selected {
		img, err := prep.Prepare(ctx, k)
		if err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			fmt.Fprintf(os.Stderr, "vmrun: %v\n", err)
			prepErrs = append(prepErrs, err.Error())
			continue
		}
		images[k.Name] = img
	}
	if prep.LockChanged {
		for _, n := range prep.Notes {
			lock.Notes = append(lock.Notes, "# "+n)
		}
		if err := lock.Write(c.lock); err != nil {
			return false, err
		}
		fmt.Printf("vmrun: updated %s: commit it so every run boots the same kernels\n", c.lock)
	}

	// 2. Test binaries and the initramfs, shared by every kernel.
	binaries, buildErrs := buildTests(ctx, c)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if len(binaries) == 0 {
		return false, fmt.Errorf("no test binary could be built: %s", strings.Join(buildErrs, "; "))
	}
	initramfs := filepath.Join(c.cache, "build", "initramfs.cpio")
	size, err := vmtest.BuildInitramfs(initramfs, c.busybox, binaries, vmtest.GuestOptions{TestTimeout: c.testTimeout.String(), Run: c.run})
	if err != nil {
		return false, err
	}
	mem := c.memMB
	if mem == 0 {
		mem = guestMemory(size)
	}
	vmTimeout := c.vmTimeout
	if vmTimeout == 0 {
		vmTimeout = 2*time.Minute + time.Duration(len(binaries))*(c.testTimeout+30*time.Second)
	}
	var want []string
	for _, b := range binaries {
		want = append(want, b.Package)
	}
	fmt.Printf("vmrun: initramfs %.1f MiB with %d test binaries; guests get %d MiB, at most %s each, %d at a time\n",
		float64(size)/(1<<20), len(binaries), mem, vmTimeout, c.jobs)

	// 3. Boot the kernels, c.jobs at a time.
	results := make([]vmtest.KernelResult, len(selected))
	sem := make(chan struct{}, c.jobs)
	var wg sync.WaitGroup
	for i, k := range selected {
		img, ok := images[k.Name]
		if !ok {
			results[i] = vmtest.KernelResult{Kernel: *k, Status: vmtest.StatusError, Reason: "kernel could not be prepared (see above)"}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = bootOne(ctx, c, *k, img, initramfs, mem, vmTimeout, want, resultsDir)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false, ctx.Err()
	}

	// 4. Report.
	notes := append([]string(nil), prep.Notes...)
	for _, e := range prepErrs {
		notes = append(notes, "PREPARATION FAILED: "+e)
	}
	for _, e := range buildErrs {
		notes = append(notes, "BUILD FAILED: "+e)
	}
	notes = append(notes, fmt.Sprintf("packages: %s; host %s, %s", strings.Join(c.packages, " "), hostKernel(), qemuVersion()))
	summary := vmtest.Summary(results, notes, time.Since(start))
	fmt.Println()
	fmt.Print(summary)
	if err := os.WriteFile(filepath.Join(resultsDir, "summary.md"), []byte("# vmtests summary\n\n"+summary), 0o644); err != nil {
		return false, err
	}
	allOK := len(prepErrs) == 0 && len(buildErrs) == 0
	for _, r := range results {
		if r.Status != vmtest.StatusPass {
			allOK = false
		}
	}
	return allOK, nil
}

// guestMemory sizes the guest: the initramfs sits in memory twice while the kernel
// unpacks it, and Go test binaries want room to run.
func guestMemory(initramfs int64) int {
	mb := int(initramfs>>20) + 1
	mem := 160 + 2*mb
	if mem < 256 {
		return 256
	}
	return (mem + 63) / 64 * 64
}

func bootOne(ctx context.Context, c *config, k vmtest.Kernel, img, initramfs string, mem int, timeout time.Duration, want []string, resultsDir string) vmtest.KernelResult {
	vmDir := filepath.Join(c.cache, "vm", k.Name)
	if err := os.MkdirAll(vmDir, 0o755); err != nil {
		return vmtest.KernelResult{Kernel: k, Status: vmtest.StatusError, Reason: err.Error()}
	}
	fmt.Printf("kernel %s: booting %s (%s)\n", k.Name, k.Release, filepath.Base(img))
	vm := &vmtest.VM{Kernel: img, Initramfs: initramfs, MemoryMB: mem, Timeout: timeout, Append: c.appendArgs, Name: k.Name, Release: k.Release, Dir: vmDir}
	o := vm.Run(ctx)
	r := vmtest.Judge(k, o, want)
	r.Log = filepath.Join(resultsDir, k.Name+".log")
	var log bytes.Buffer
	fmt.Fprintf(&log, "# kernel %s: %s=%s (%s, %s), uname -r %s\n# result %s in %s", k.Name, k.Package, k.Version, k.Suite, filepath.Base(img), k.Release, r.Status, o.Duration.Round(time.Second))
	if r.Reason != "" {
		fmt.Fprintf(&log, ": %s", r.Reason)
	}
	fmt.Fprintf(&log, "\n# kernel console: %s\n\n", k.Name+".console.log")
	log.Write(o.Output)
	if err := os.WriteFile(r.Log, log.Bytes(), 0o644); err != nil {
		r.Reason += "; writing the log: " + err.Error()
	}
	_ = os.WriteFile(filepath.Join(resultsDir, k.Name+".console.log"), o.Console, 0o644)
	p, f, s := r.Counts()
	fmt.Printf("kernel %s: %s in %s (%d passed, %d failed, %d skipped)\n", k.Name, r.Status, o.Duration.Round(time.Second), p, f, s)
	if r.Status != vmtest.StatusPass {
		fmt.Printf("kernel %s: %s\n", k.Name, r.Reason)
		if ex := vmtest.FailureExcerpts(o.Output, 60); ex != "" {
			fmt.Printf("---- kernel %s: failing tests ----\n%s---- end of kernel %s ----\n", k.Name, ex, k.Name)
		}
		if r.Status == vmtest.StatusError {
			fmt.Printf("---- kernel %s: last lines of the console ----\n%s---- end of kernel %s console ----\n", k.Name, tail(o.Console, 30), k.Name)
		}
	}
	return r
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// buildTests compiles one static test binary per package that has tests. The runner's
// own smoke test (vmtests/selftest) always comes first.
func buildTests(ctx context.Context, c *config) ([]vmtest.TestBinary, []string) {
	patterns := append([]string{"./vmtests/selftest"}, c.packages...)
	args := append([]string{"list", "-e", "-f", "{{.ImportPath}}\t{{.Dir}}\t{{len .TestGoFiles}}\t{{len .XTestGoFiles}}\t{{if .Error}}{{.Error}}{{end}}"}, patterns...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = c.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, []string{fmt.Sprintf("go list %s: %v: %s", strings.Join(patterns, " "), err, strings.TrimSpace(stderr.String()))}
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		fmt.Fprintln(os.Stderr, "vmrun: go list:", s)
	}
	binDir := filepath.Join(c.cache, "build", "bin")
	os.RemoveAll(binDir)
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, []string{err.Error()}
	}
	var bins []vmtest.TestBinary
	var errs []string
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 5 || seen[f[0]] {
			continue
		}
		seen[f[0]] = true
		pkg, dir := f[0], f[1]
		if f[2] == "0" && f[3] == "0" {
			if f[4] == "" {
				fmt.Printf("vmrun: %s has no tests, skipped\n", pkg)
				continue
			}
		}
		bin := filepath.Join(binDir, sanitize(pkg)+".test")
		fmt.Printf("vmrun: building %s\n", pkg)
		b := exec.CommandContext(ctx, "go", "test", "-c", "-trimpath", "-ldflags=-s -w", "-o", bin, pkg)
		b.Dir = c.root
		b.Env = cmd.Env
		if out, err := b.CombinedOutput(); err != nil {
			msg := fmt.Sprintf("go test -c %s: %v\n%s", pkg, err, strings.TrimSpace(string(out)))
			fmt.Fprintf(os.Stderr, "vmrun: BUILD FAILED: %s\n", msg)
			errs = append(errs, fmt.Sprintf("%s: %s", pkg, firstLines(string(out), 5)))
			continue
		}
		if _, err := os.Stat(bin); err != nil {
			// go test -c writes nothing for a package whose test files hold no tests.
			fmt.Printf("vmrun: %s produced no test binary, skipped\n", pkg)
			continue
		}
		td := filepath.Join(dir, "testdata")
		if fi, err := os.Stat(td); err != nil || !fi.IsDir() {
			td = ""
		}
		bins = append(bins, vmtest.TestBinary{Package: pkg, Binary: bin, TestData: td})
	}
	return bins, errs
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func sanitize(pkg string) string {
	pkg = strings.TrimPrefix(pkg, "github.com/watchpost/watchpost/")
	return unsafeChars.ReplaceAllString(pkg, "_")
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, " | ")
}

func hostKernel() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "unknown kernel"
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return "Linux " + string(b) + " " + runtime.GOARCH
}

func qemuVersion() string {
	out, err := exec.Command("qemu-system-x86_64", "--version").Output()
	if err != nil {
		return "qemu version unknown"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}
