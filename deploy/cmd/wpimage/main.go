// Command wpimage writes Watchpost's container images (`make image`): for
// the agent and for the collector a multi-architecture OCI image index
// (amd64, arm64) in an OCI layout directory, and the same layout as an OCI
// archive (tar) for `ctr images import`, `podman load` or `skopeo copy
// oci-archive:`.
//
//	wpimage -bin bin -out bin/image -version 1.2.0 -revision abc123 -created 1764633600
//
// The amd64 binaries are read from BIN/, the arm64 ones from BIN/arm64/
// (`make build build-arm64`).
package main

import (
	"archive/tar"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/watchpost/watchpost/deploy/oci"
)

// CollectorUID is the collector's non-root user in the image (the
// distroless "nonroot" id).
const CollectorUID = 65532

func main() {
	bin := flag.String("bin", "bin", "directory of the amd64 binaries; arm64 ones in its arm64/")
	out := flag.String("out", "bin/image", "output directory")
	version := flag.String("version", "dev", "version label and tag")
	revision := flag.String("revision", "", "source revision label")
	created := flag.String("created", "", "creation time, seconds since the epoch (default: now)")
	flag.Parse()
	t := time.Now().UTC().Truncate(time.Second)
	if *created != "" {
		s, err := strconv.ParseInt(*created, 10, 64)
		if err != nil {
			fail(fmt.Errorf("-created: %w", err))
		}
		t = time.Unix(s, 0).UTC()
	}
	if err := run(*bin, *out, *version, *revision, t); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "wpimage:", err)
	os.Exit(1)
}

var arches = []struct{ goarch, dir string }{{"amd64", ""}, {"arm64", "arm64"}}

func labels(title, description, version, revision string, t time.Time) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       title,
		"org.opencontainers.image.description": description,
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.created":     t.Format(time.RFC3339),
		"org.opencontainers.image.source":      "https://github.com/watchpost/watchpost",
		"org.opencontainers.image.vendor":      "Watchpost",
	}
	if revision != "" {
		l["org.opencontainers.image.revision"] = revision
	}
	return l
}

// Specs returns the agent's and the collector's image for one architecture.
func specs(bin, goarch, version, revision string, t time.Time) map[string]oci.Spec {
	agent := oci.Spec{
		Arch:  goarch,
		Files: []oci.File{{Src: filepath.Join(bin, "watchpost-agent"), Dst: "/usr/bin/watchpost-agent", Mode: 0o755}},
		Dirs:  []oci.Dir{{Path: "/etc/watchpost", Mode: 0o755}, {Path: "/var/lib/watchpost", Mode: 0o700}},
		// Root with the capabilities the deployment grants: the agent
		// loads BPF programs (docs/deploy.md lists what it needs).
		Entrypoint: []string{"/usr/bin/watchpost-agent"},
		User:       "0:0",
		WorkingDir: "/",
		Labels:     labels("watchpost-agent", "Watchpost eBPF host sensor (agent)", version, revision, t),
		Created:    t,
	}
	collector := oci.Spec{
		Arch: goarch,
		Files: append(oci.Users("watchpost", CollectorUID),
			oci.File{Src: filepath.Join(bin, "watchpost-collector"), Dst: "/usr/bin/watchpost-collector", Mode: 0o755},
			oci.File{Src: filepath.Join(bin, "watchpost"), Dst: "/usr/bin/watchpost", Mode: 0o755}),
		Dirs: []oci.Dir{
			{Path: "/etc/watchpost", Mode: 0o755},
			{Path: "/var/lib/watchpost-collector", Mode: 0o700, UID: CollectorUID, GID: CollectorUID},
			// SQLite's temporary files (large sorts) when no volume is mounted there.
			{Path: "/tmp", Mode: 0o1777},
		},
		Entrypoint: []string{"/usr/bin/watchpost-collector"},
		Cmd:        []string{"serve", "--config", "/etc/watchpost/collector.yaml"},
		User:       fmt.Sprintf("%d:%d", CollectorUID, CollectorUID),
		WorkingDir: "/var/lib/watchpost-collector",
		Labels:     labels("watchpost-collector", "Watchpost collector: ingest over mutual TLS, embedded store, query API, dashboard", version, revision, t),
		Created:    t,
	}
	return map[string]oci.Spec{"watchpost-agent": agent, "watchpost-collector": collector}
}

func run(bin, out, version, revision string, t time.Time) error {
	perName := map[string][]v1.Image{}
	for _, a := range arches {
		for name, s := range specs(filepath.Join(bin, a.dir), a.goarch, version, revision, t) {
			img, err := oci.Build(s)
			if err != nil {
				return fmt.Errorf("%s %s: %w", name, a.goarch, err)
			}
			perName[name] = append(perName[name], img)
		}
	}
	for _, name := range []string{"watchpost-agent", "watchpost-collector"} {
		idx, err := oci.Index(perName[name]...)
		if err != nil {
			return err
		}
		dir := filepath.Join(out, name)
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			return err
		}
		if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": version,
		})); err != nil {
			return fmt.Errorf("writing %s: %w", dir, err)
		}
		if err := archive(dir, dir+".oci.tar", t); err != nil {
			return err
		}
		d, _ := idx.Digest()
		fmt.Printf("%s:%s %s (%s, %s.oci.tar)\n", name, version, d, dir, dir)
	}
	return nil
}

// archive writes an OCI layout directory as a tar file (an OCI archive).
func archive(dir, file string, t time.Time) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: 0o755, ModTime: t})
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: 0o644, Size: info.Size(), ModTime: t}); err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if cerr := tw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
