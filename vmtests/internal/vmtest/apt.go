package vmtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Apt runs apt-get and apt-cache against a private configuration and state
// directory, so the host's /etc/apt, its package lists and dpkg database are never
// read or written.
type Apt struct {
	Dir            string // private state: lists, config, partial downloads
	Arch           string // Debian architecture of the kernels ("amd64")
	Mirror         string // Debian archive ("http://deb.debian.org/debian")
	SecurityMirror string // security archive, for *-security suites
	Keyring        string // archive keyring for signed-by
	Suites         []string
	Log            io.Writer

	mu      sync.Mutex
	updated bool
}

func (a *Apt) configPath() string { return filepath.Join(a.Dir, "apt.conf") }

func (a *Apt) setup() error {
	for _, d := range []string{"lists/partial", "archives/partial", "parts", "sources.list.d", "preferences.d"} {
		if err := os.MkdirAll(filepath.Join(a.Dir, d), 0o755); err != nil {
			return fmt.Errorf("private apt directory: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(a.Dir, "status"), nil, 0o644); err != nil {
		return fmt.Errorf("private apt directory: %w", err)
	}
	var src strings.Builder
	suites := append([]string(nil), a.Suites...)
	sort.Strings(suites)
	for i, s := range suites {
		if i > 0 && suites[i-1] == s {
			continue
		}
		mirror := a.Mirror
		if strings.HasSuffix(s, "-security") {
			mirror = a.SecurityMirror
		}
		fmt.Fprintf(&src, "deb [arch=%s signed-by=%s] %s %s main\n", a.Arch, a.Keyring, mirror, s)
	}
	if err := os.WriteFile(filepath.Join(a.Dir, "sources.list"), []byte(src.String()), 0o644); err != nil {
		return fmt.Errorf("private apt directory: %w", err)
	}
	conf := fmt.Sprintf(`Dir::State "%[1]s";
Dir::State::lists "%[1]s/lists";
Dir::State::status "%[1]s/status";
Dir::Cache "%[1]s";
Dir::Cache::archives "%[1]s/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Dir::Etc::sourcelist "%[1]s/sources.list";
Dir::Etc::sourceparts "%[1]s/sources.list.d";
Dir::Etc::parts "%[1]s/parts";
Dir::Etc::preferencesparts "%[1]s/preferences.d";
APT::Architecture "%[2]s";
APT::Architectures { "%[2]s"; };
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::Retries "3";
`, a.Dir, a.Arch)
	if err := os.WriteFile(a.configPath(), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("private apt directory: %w", err)
	}
	return nil
}

func (a *Apt) run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "APT_CONFIG="+a.configPath(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Update fetches the package indexes of the suites, once per Apt.
func (a *Apt) Update(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.updated {
		return nil
	}
	if err := a.setup(); err != nil {
		return err
	}
	fmt.Fprintf(a.Log, "apt: fetching the package indexes of %s (%s)\n", strings.Join(a.Suites, ", "), a.Arch)
	if _, err := a.run(ctx, a.Dir, "apt-get", "-q", "update"); err != nil {
		return fmt.Errorf("updating the private package index: %w", err)
	}
	a.updated = true
	return nil
}

// Candidate is one downloadable version of a package in a suite.
type Candidate struct {
	Package string
	Version string
}

// SeriesCandidates lists the packages of suite whose names match series, newest
// version first.
func (a *Apt) SeriesCandidates(ctx context.Context, suite, series string) ([]Candidate, error) {
	if err := a.Update(ctx); err != nil {
		return nil, err
	}
	out, err := a.run(ctx, a.Dir, "apt-cache", "search", "--names-only", series)
	if err != nil {
		return nil, fmt.Errorf("listing the series %q: %w", series, err)
	}
	re := regexp.MustCompile(series)
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(line, " - ")
		name = strings.TrimSpace(name)
		if name != "" && re.MatchString(name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	out, err = a.run(ctx, a.Dir, "apt-cache", append([]string{"madison"}, names...)...)
	if err != nil {
		return nil, fmt.Errorf("listing versions of the series %q: %w", series, err)
	}
	cands := parseMadison(out, suite)
	sort.SliceStable(cands, func(i, j int) bool {
		if c := CompareDebVersions(cands[i].Version, cands[j].Version); c != 0 {
			return c > 0
		}
		return cands[i].Package < cands[j].Package
	})
	return cands, nil
}

// parseMadison reads `apt-cache madison` output and keeps the lines of suite:
//
//	linux-image-6.1.0-56-cloud-amd64 | 6.1.192-2 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
func parseMadison(out []byte, suite string) []Candidate {
	var cands []Candidate
	seen := map[Candidate]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 3 {
			continue
		}
		src := strings.Fields(f[2])
		if len(src) < 2 || !strings.HasPrefix(src[1], suite+"/") {
			continue
		}
		c := Candidate{Package: strings.TrimSpace(f[0]), Version: strings.TrimSpace(f[1])}
		if !seen[c] {
			seen[c] = true
			cands = append(cands, c)
		}
	}
	return cands
}

// Download fetches pkg=version into dir and returns the .deb path. A package the
// index still lists but the archive no longer holds fails here (HTTP 404).
func (a *Apt) Download(ctx context.Context, pkg, version, dir string) (string, error) {
	if err := a.Update(ctx); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, ".download-")
	if err != nil {
		return "", fmt.Errorf("downloading %s=%s: %w", pkg, version, err)
	}
	defer os.RemoveAll(tmp)
	if _, err := a.run(ctx, tmp, "apt-get", "-q", "download", pkg+"="+version); err != nil {
		return "", err
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("downloading %s=%s: apt-get left %d .deb files", pkg, version, len(debs))
	}
	dst := filepath.Join(dir, debFileName(pkg, version, a.Arch))
	if err := os.Rename(debs[0], dst); err != nil {
		return "", fmt.Errorf("downloading %s=%s: %w", pkg, version, err)
	}
	return dst, nil
}

func debFileName(pkg, version, arch string) string {
	// dpkg's file names drop the epoch (its ':' is not portable).
	if i := strings.IndexByte(version, ':'); i >= 0 {
		version = version[i+1:]
	}
	return fmt.Sprintf("%s_%s_%s.deb", pkg, version, arch)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
