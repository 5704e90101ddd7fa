package vmtest

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// TestBinary is one compiled `go test -c` binary to run in the guest.
type TestBinary struct {
	Package  string // import path, for the logs
	Binary   string // path on the host
	TestData string // the package's testdata directory on the host, or ""
}

// GuestOptions shape the guest's /init.
type GuestOptions struct {
	// TestTimeout is passed as -test.timeout to every binary ("5m").
	TestTimeout string
	// Run, when not empty, is passed as -test.run.
	Run string
}

// Serial ports as the guest sees them: ttyS0 console, ttyS1 test output (raw),
// ttyS2 the final exit status.
const (
	guestOutPort = "/dev/ttyS1"
	guestRCPort  = "/dev/ttyS2"
	beginMarker  = "=== VMTEST BEGIN "
	endMarker    = "=== VMTEST END "
)

// InitScript renders the guest's /init for the given binaries (guest paths).
func InitScript(tests []guestTest, o GuestOptions) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
# /init of a vmtests guest, written by vmtests/internal/vmtest.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TMPDIR=/tmp GOTRACEBACK=all

say() { echo "vmtest-init: $*"; }
must_mount() { # type target
	mount -t "$1" "$1" "$2" || say "mounting $1 on $2 failed"
}
must_mount proc /proc
must_mount sysfs /sys
must_mount devtmpfs /dev
must_mount tmpfs /tmp
must_mount debugfs /sys/kernel/debug
must_mount tracefs /sys/kernel/tracing
must_mount bpf /sys/fs/bpf
must_mount cgroup2 /sys/fs/cgroup
ulimit -l unlimited || say "ulimit -l unlimited failed"
ip link set lo up || say "bringing up lo failed"
stty -F ` + guestOutPort + ` raw -echo || say "stty ` + guestOutPort + ` failed"
stty -F ` + guestRCPort + ` raw -echo || say "stty ` + guestRCPort + ` failed"

KERNEL= RELEASE=
for w in $(cat /proc/cmdline); do
	case "$w" in
	wp.kernel=*) KERNEL="${w#wp.kernel=}" ;;
	wp.release=*) RELEASE="${w#wp.release=}" ;;
	esac
done
say "kernel $(uname -r) (matrix $KERNEL), running tests"

rc=0
run_test() { # dir binary package
	echo "` + beginMarker + `$3" >` + guestOutPort + `
	cd "$1" || { echo "` + endMarker + `$3 rc=127" >` + guestOutPort + `; rc=1; return; }
	WATCHPOST_VMTEST=1 WATCHPOST_VMTEST_KERNEL="$KERNEL" WATCHPOST_VMTEST_RELEASE="$RELEASE" \
	WATCHPOST_REQUIRE_PRIVILEGED=1 \
		"./$2" -test.v -test.count=1 -test.timeout=` + shellQuote(o.TestTimeout))
	if o.Run != "" {
		b.WriteString(" -test.run=" + shellQuote(o.Run))
	}
	b.WriteString(` >` + guestOutPort + ` 2>&1 </dev/null
	r=$?
	cd /
	echo "` + endMarker + `$3 rc=$r" >` + guestOutPort + `
	[ "$r" -eq 0 ] || rc=1
	say "$3: exit $r"
}
`)
	for _, t := range tests {
		fmt.Fprintf(&b, "run_test %s %s %s\n", shellQuote(t.dir), shellQuote(t.binary), shellQuote(t.pkg))
	}
	b.WriteString(`echo "rc=$rc" >` + guestRCPort + `
sync
poweroff -f
`)
	return b.String()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

type guestTest struct {
	dir, binary, pkg string
}

// BuildInitramfs writes an uncompressed newc cpio archive to dst holding busybox,
// /init and the test binaries (each in its own directory with its testdata, the
// working directory `go test` would give it). It returns the archive's size.
func BuildInitramfs(dst, busybox string, tests []TestBinary, o GuestOptions) (int64, error) {
	if err := checkStatic(busybox); err != nil {
		return 0, err
	}
	f, err := os.Create(dst + ".tmp")
	if err != nil {
		return 0, fmt.Errorf("building the initramfs: %w", err)
	}
	defer os.Remove(dst + ".tmp")
	w := newCpioWriter(bufio.NewWriterSize(f, 1<<20))
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root", "run", "wp"} {
		w.dir(d)
	}
	w.node("dev/console", 0o020600, 5, 1)
	w.node("dev/null", 0o020666, 1, 3)
	if err := w.file("bin/busybox", busybox, 0o755); err != nil {
		return 0, err
	}
	var gts []guestTest
	for i, t := range tests {
		dir := fmt.Sprintf("wp/%d", i)
		w.dir(dir)
		bin := filepath.Base(t.Binary)
		if err := w.file(path.Join(dir, bin), t.Binary, 0o755); err != nil {
			return 0, err
		}
		if t.TestData != "" {
			if err := w.tree(path.Join(dir, "testdata"), t.TestData); err != nil {
				return 0, err
			}
		}
		gts = append(gts, guestTest{dir: "/" + dir, binary: bin, pkg: t.Package})
	}
	w.bytes("init", []byte(InitScript(gts, o)), 0o755)
	if err := w.close(); err != nil {
		f.Close()
		return 0, fmt.Errorf("building the initramfs: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("building the initramfs: %w", err)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		return 0, fmt.Errorf("building the initramfs: %w", err)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		return 0, fmt.Errorf("building the initramfs: %w", err)
	}
	return fi.Size(), nil
}

func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("busybox %s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("busybox %s is dynamically linked; install busybox-static", p)
		}
	}
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("busybox %s is %s, the guests are x86-64", p, f.Machine)
	}
	return nil
}

// cpioWriter writes the "newc" format (SVR4 without checksums) that the kernel's
// initramfs unpacker reads: a 110-byte ASCII header, the name, the data, each padded
// to 4 bytes; files are owned by root with mtime 0 so archives are reproducible.
type cpioWriter struct {
	w   *bufio.Writer
	ino uint32
	err error
	off int64
}

func newCpioWriter(w *bufio.Writer) *cpioWriter { return &cpioWriter{w: w, ino: 1} }

func (c *cpioWriter) header(name string, mode uint32, size int64, rmaj, rmin uint32) {
	if c.err != nil {
		return
	}
	nlink := uint32(1)
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rmaj, rmin, len(name)+1, 0)
	c.ino++
	c.write([]byte(hdr))
	c.write([]byte(name + "\x00"))
	c.pad()
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.off += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.off % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) dir(name string) { c.header(name, 0o040755, 0, 0, 0) }

func (c *cpioWriter) node(name string, mode, rmaj, rmin uint32) { c.header(name, mode, 0, rmaj, rmin) }

func (c *cpioWriter) bytes(name string, data []byte, perm uint32) {
	c.header(name, 0o100000|perm, int64(len(data)), 0, 0)
	c.write(data)
	c.pad()
}

func (c *cpioWriter) file(name, src string, perm uint32) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("building the initramfs: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("building the initramfs: %w", err)
	}
	c.header(name, 0o100000|perm, fi.Size(), 0, 0)
	if c.err == nil {
		var n int64
		n, c.err = io.Copy(c.w, f)
		c.off += n
		if c.err == nil && n != fi.Size() {
			c.err = fmt.Errorf("%s changed while archiving it", src)
		}
	}
	c.pad()
	if c.err != nil {
		return fmt.Errorf("building the initramfs: %w", c.err)
	}
	return nil
}

// tree archives the directory src as name, following no symbolic links.
func (c *cpioWriter) tree(name, src string) error {
	var paths []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("building the initramfs: %w", err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(src, p)
		dst := path.Join(name, filepath.ToSlash(rel))
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("building the initramfs: %w", err)
		}
		switch {
		case fi.IsDir():
			c.dir(dst)
		case fi.Mode().IsRegular():
			if err := c.file(dst, p, uint32(fi.Mode().Perm())); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("building the initramfs: %w", err)
			}
			c.header(dst, 0o120777, int64(len(target)), 0, 0)
			c.write([]byte(target))
			c.pad()
		}
	}
	return c.err
}

func (c *cpioWriter) close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}
