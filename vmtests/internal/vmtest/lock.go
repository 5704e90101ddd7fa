// Package vmtest runs the agent's privileged Go tests inside Debian kernels booted
// under qemu: it resolves and caches pinned kernel packages, extracts a bootable
// vmlinux, builds an initramfs with busybox and the test binaries, boots one VM per
// kernel and turns the guests' output into a per-kernel summary.
package vmtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
)

// Kernel is one line of the lock file: a matrix entry and its pinned package.
type Kernel struct {
	// Name selects the kernel on the command line ("5.10", "newest").
	Name string
	// Suite is the Debian suite the package comes from ("bookworm-security").
	Suite string
	// Series is an extended regular expression over package names: the packages a
	// vanished pin may fall back to, newest first.
	Series string
	// Package and Version pin the exact Debian package; "-" means not resolved yet.
	Package string
	Version string
	// Release is the kernel's `uname -r`, known once the package was unpacked.
	Release string
	// SHA256 of the .deb as first downloaded.
	SHA256 string
}

// Lock is the parsed lock file.
type Lock struct {
	Kernels []Kernel
	// Notes are the comment lines after the table: the history of fallbacks.
	Notes []string
}

const unresolved = "-"

const lockHeader = `# Kernel matrix of vmtests/run.sh, with the exact Debian packages it boots.
# Written by the runner: it resolves "-" fields and replaces a pin whose package has
# vanished from the archive (recording that below the table). Columns:
#   name     what "vmtests/run.sh NAME" selects
#   suite    Debian suite (*-security suites come from the security archive)
#   series   package-name regex (extended): fallbacks for a vanished pin, newest first
#   package  pinned package, version: its exact version, release: its uname -r
#   sha256   of the .deb as first downloaded
# To add a kernel, add a line with package, version, release and sha256 set to "-".
`

// ReadLock parses the lock file at path.
func ReadLock(path string) (*Lock, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the kernel lock file: %w", err)
	}
	return ParseLock(data, path)
}

// ParseLock parses lock file contents; name is used in errors.
func ParseLock(data []byte, name string) (*Lock, error) {
	l := &Lock{}
	seen := map[string]bool{}
	inTable := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			if inTable {
				l.Notes = append(l.Notes, line)
			}
			continue
		}
		inTable = true
		f := strings.Fields(line)
		if len(f) != 7 {
			return nil, fmt.Errorf("%s:%d: want 7 fields (name suite series package version release sha256), got %d", name, n, len(f))
		}
		k := Kernel{Name: f[0], Suite: f[1], Series: f[2], Package: f[3], Version: f[4], Release: f[5], SHA256: f[6]}
		if seen[k.Name] {
			return nil, fmt.Errorf("%s:%d: kernel %q listed twice", name, n, k.Name)
		}
		seen[k.Name] = true
		if _, err := regexp.Compile(k.Series); err != nil {
			return nil, fmt.Errorf("%s:%d: series of %s: %w", name, n, k.Name, err)
		}
		if (k.Package == unresolved) != (k.Version == unresolved) {
			return nil, fmt.Errorf("%s:%d: %s: package and version must both be set or both be %q", name, n, k.Name, unresolved)
		}
		l.Kernels = append(l.Kernels, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(l.Kernels) == 0 {
		return nil, fmt.Errorf("%s: no kernels", name)
	}
	return l, nil
}

// Format renders the lock file.
func (l *Lock) Format() []byte {
	var b bytes.Buffer
	b.WriteString(lockHeader)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, k := range l.Kernels {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, k.Suite, k.Series, k.Package, k.Version, k.Release, k.SHA256)
	}
	tw.Flush()
	if len(l.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range l.Notes {
			b.WriteString(n + "\n")
		}
	}
	return b.Bytes()
}

// Write stores the lock file atomically.
func (l *Lock) Write(path string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, l.Format(), 0o644); err != nil {
		return fmt.Errorf("writing the kernel lock file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing the kernel lock file: %w", err)
	}
	return nil
}

// Select returns the kernels named in names, in lock order; all of them when names
// is empty.
func (l *Lock) Select(names []string) ([]*Kernel, error) {
	var out []*Kernel
	if len(names) == 0 {
		for i := range l.Kernels {
			out = append(out, &l.Kernels[i])
		}
		return out, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for i := range l.Kernels {
		if want[l.Kernels[i].Name] {
			out = append(out, &l.Kernels[i])
			delete(want, l.Kernels[i].Name)
		}
	}
	if len(want) > 0 {
		var missing, known []string
		for n := range want {
			missing = append(missing, n)
		}
		for _, k := range l.Kernels {
			known = append(known, k.Name)
		}
		return nil, fmt.Errorf("unknown kernel %s: the lock file has %s", strings.Join(missing, ", "), strings.Join(known, ", "))
	}
	return out, nil
}
