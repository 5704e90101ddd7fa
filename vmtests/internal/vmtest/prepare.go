package vmtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Preparer turns lock entries into bootable kernels in the cache, downloading what
// is missing.
type Preparer struct {
	Apt   *Apt
	Cache string // root of the cache: debs/ and kernels/ live under it
	Log   io.Writer
	// Update re-pins every kernel to the newest downloadable package of its series.
	Update bool
	// Notes collects what the summary and the lock file must record (fallbacks,
	// re-pins, bzImage boots).
	Notes []string
	// LockChanged is set when a Kernel was modified and the lock file must be written.
	LockChanged bool
}

// Prepare makes sure k's package is cached and unpacked and returns the image to
// boot. It may change k (resolution, fallback, re-pin); LockChanged then says so.
func (p *Preparer) Prepare(ctx context.Context, k *Kernel) (string, error) {
	debDir := filepath.Join(p.Cache, "debs")
	if err := os.MkdirAll(debDir, 0o755); err != nil {
		return "", fmt.Errorf("kernel %s: %w", k.Name, err)
	}
	if k.Package == unresolved || p.Update {
		if err := p.repin(ctx, k, debDir); err != nil {
			return "", err
		}
	}
	deb := filepath.Join(debDir, debFileName(k.Package, k.Version, p.Apt.Arch))
	if _, err := os.Stat(deb); err != nil {
		fmt.Fprintf(p.Log, "kernel %s: downloading %s=%s from %s\n", k.Name, k.Package, k.Version, k.Suite)
		d, err := p.Apt.Download(ctx, k.Package, k.Version, debDir)
		if err != nil {
			d, err = p.fallBack(ctx, k, debDir, err)
			if err != nil {
				return "", err
			}
		}
		deb = d
	}
	sum, err := fileSHA256(deb)
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", k.Name, err)
	}
	switch k.SHA256 {
	case unresolved:
		k.SHA256 = sum
		p.LockChanged = true
	case sum:
	default:
		return "", fmt.Errorf("kernel %s: %s has sha256 %s, the lock file records %s for %s=%s: delete the cached file to download it again, or investigate the archive",
			k.Name, deb, sum, k.SHA256, k.Package, k.Version)
	}
	return p.unpack(ctx, k, deb)
}

// repin points k at the newest downloadable package of its series.
func (p *Preparer) repin(ctx context.Context, k *Kernel, debDir string) error {
	cands, err := p.Apt.SeriesCandidates(ctx, k.Suite, k.Series)
	if err != nil {
		return fmt.Errorf("kernel %s: %w", k.Name, err)
	}
	for _, c := range cands {
		if c.Package == k.Package && c.Version == k.Version {
			fmt.Fprintf(p.Log, "kernel %s: %s=%s is still the newest of its series\n", k.Name, k.Package, k.Version)
			return nil
		}
		if _, err := p.Apt.Download(ctx, c.Package, c.Version, debDir); err != nil {
			fmt.Fprintf(p.Log, "kernel %s: %s=%s is listed but not downloadable: %v\n", k.Name, c.Package, c.Version, firstLine(err))
			continue
		}
		note := fmt.Sprintf("%s kernel %s: pinned %s=%s", time.Now().UTC().Format("2006-01-02"), k.Name, c.Package, c.Version)
		if k.Package != unresolved {
			note += fmt.Sprintf(" (was %s=%s)", k.Package, k.Version)
		}
		p.setPin(k, c, note)
		return nil
	}
	return fmt.Errorf("kernel %s: no downloadable package of the series %q in %s", k.Name, k.Series, k.Suite)
}

// fallBack handles a pinned package that cannot be downloaded (old versions vanish
// from the archive while the index still lists them): it takes the newest
// downloadable package of the series and says so loudly.
func (p *Preparer) fallBack(ctx context.Context, k *Kernel, debDir string, cause error) (string, error) {
	banner := strings.Repeat("!", 78)
	fmt.Fprintf(p.Log, "%s\n!!! kernel %s: the pinned %s=%s cannot be downloaded from %s:\n!!!   %s\n!!! falling back to the newest downloadable package of the series %s\n%s\n",
		banner, k.Name, k.Package, k.Version, k.Suite, firstLine(cause), k.Series, banner)
	cands, err := p.Apt.SeriesCandidates(ctx, k.Suite, k.Series)
	if err != nil {
		return "", fmt.Errorf("kernel %s: pinned %s=%s is gone (%v) and listing its series failed: %w", k.Name, k.Package, k.Version, firstLine(cause), err)
	}
	var tried []string
	for _, c := range cands {
		if c.Package == k.Package && c.Version == k.Version {
			continue
		}
		d, err := p.Apt.Download(ctx, c.Package, c.Version, debDir)
		if err != nil {
			tried = append(tried, c.Package+"="+c.Version)
			fmt.Fprintf(p.Log, "!!! kernel %s: %s=%s is listed but not downloadable either\n", k.Name, c.Package, c.Version)
			continue
		}
		note := fmt.Sprintf("%s kernel %s: FALLBACK: pinned %s=%s vanished from %s; now %s=%s, the newest downloadable of its series",
			time.Now().UTC().Format("2006-01-02"), k.Name, k.Package, k.Version, k.Suite, c.Package, c.Version)
		fmt.Fprintf(p.Log, "!!! %s\n%s\n", note, banner)
		p.setPin(k, c, note)
		return d, nil
	}
	return "", fmt.Errorf("kernel %s: pinned %s=%s cannot be downloaded (%v) and no other package of the series %q in %s can (tried %d: %s)",
		k.Name, k.Package, k.Version, firstLine(cause), k.Series, k.Suite, len(tried), strings.Join(tried, " "))
}

func (p *Preparer) setPin(k *Kernel, c Candidate, note string) {
	k.Package, k.Version, k.Release, k.SHA256 = c.Package, c.Version, unresolved, unresolved
	p.Notes = append(p.Notes, note)
	p.LockChanged = true
}

// unpack extracts the boot image of deb once and caches it by package and version.
func (p *Preparer) unpack(ctx context.Context, k *Kernel, deb string) (string, error) {
	dir := filepath.Join(p.Cache, "kernels", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	vmlinux := filepath.Join(dir, "vmlinux")
	bz := filepath.Join(dir, "vmlinuz")
	relFile := filepath.Join(dir, "release")
	boot := ""
	if rel, err := os.ReadFile(relFile); err == nil {
		for _, img := range []string{vmlinux, bz} {
			if _, err := os.Stat(img); err == nil {
				boot = img
				break
			}
		}
		if boot != "" {
			return boot, p.checkRelease(k, strings.TrimSpace(string(rel)))
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("kernel %s: %w", k.Name, err)
	}
	fmt.Fprintf(p.Log, "kernel %s: unpacking %s\n", k.Name, filepath.Base(deb))
	rel, err := ExtractVmlinuz(ctx, deb, bz)
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", k.Name, err)
	}
	boot = vmlinux
	if err := ExtractVmlinux(ctx, bz, vmlinux); err != nil {
		if !errors.Is(err, ErrNoPVH) {
			return "", fmt.Errorf("kernel %s: %w", k.Name, err)
		}
		boot = bz
		p.Notes = append(p.Notes, fmt.Sprintf("kernel %s: %s has no PVH entry; booting the bzImage (slower: the guest decompresses itself)", k.Name, k.Package))
	} else {
		os.Remove(bz)
	}
	if err := os.WriteFile(relFile, []byte(rel+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("kernel %s: %w", k.Name, err)
	}
	return boot, p.checkRelease(k, rel)
}

func (p *Preparer) checkRelease(k *Kernel, rel string) error {
	switch k.Release {
	case unresolved:
		k.Release = rel
		p.LockChanged = true
	case rel:
	default:
		return fmt.Errorf("kernel %s: %s=%s unpacks as release %s, the lock file says %s", k.Name, k.Package, k.Version, rel, k.Release)
	}
	return nil
}

func firstLine(err error) string {
	s := err.Error()
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	// apt's useful line ("E: Failed to fetch ... 404 Not Found") comes last.
	for _, l := range lines {
		if strings.HasPrefix(l, "E: ") {
			return l
		}
	}
	if len(lines) > 0 {
		return lines[0]
	}
	return s
}
