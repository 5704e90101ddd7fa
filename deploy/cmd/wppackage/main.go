// Command wppackage builds Watchpost's Debian packages (`make package`)
// from the nfpm descriptions in deploy/package, for amd64 and arm64:
//
//	wppackage -bin bin -out bin/packages -version 1.2.0 deploy/package/*.nfpm.yaml
//
// The amd64 binaries are read from BIN/, the arm64 ones from BIN/arm64/.
// Run it from the repository root: the descriptions' paths are relative.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
)

func main() {
	bin := flag.String("bin", "bin", "directory of the amd64 binaries; arm64 ones in its arm64/")
	out := flag.String("out", "bin/packages", "output directory")
	version := flag.String("version", "0.0.0", "package version (a leading v and a git describe suffix are accepted)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: wppackage [-bin DIR] [-out DIR] [-version V] DESCRIPTION.nfpm.yaml ...")
		os.Exit(2)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	for _, desc := range flag.Args() {
		for _, arch := range []struct{ goarch, dir string }{{"amd64", *bin}, {"arm64", filepath.Join(*bin, "arm64")}} {
			path, err := build(desc, arch.goarch, arch.dir, debVersion(*version), *out)
			if err != nil {
				fail(fmt.Errorf("%s (%s): %w", desc, arch.goarch, err))
			}
			fmt.Println(path)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "wppackage:", err)
	os.Exit(1)
}

// debVersion turns a git describe output (v1.2.0-3-gabc123-dirty, or a
// bare commit) into a Debian version that sorts after the tag.
func debVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	if !release.MatchString(v) {
		v = "0.0.0~" + v // an untagged build sorts before any release
	}
	return strings.ReplaceAll(v, "-", "+")
}

var release = regexp.MustCompile(`^[0-9]+\.[0-9]+`)

func build(desc, arch, bin, version, out string) (string, error) {
	env := map[string]string{"ARCH": arch, "BIN": bin, "VERSION": version}
	cfg, err := nfpm.ParseFileWithEnvMapping(desc, func(k string) string { return env[k] })
	if err != nil {
		return "", err
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return "", err
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", err
	}
	if err := nfpm.Validate(info); err != nil {
		return "", err
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	path := filepath.Join(out, pkg.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}
