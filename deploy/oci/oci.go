// Package oci assembles Watchpost's container images without a container
// engine: static binaries in one layer on an empty base, with the few files
// a non-root user needs (/etc/passwd, /etc/group, its data directory), as
// OCI images and multi-architecture indexes (go-containerregistry).
package oci

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one file of the image.
type File struct {
	// Src is the file on the build host; empty with Data set.
	Src  string
	Data []byte
	// Dst is the absolute path in the image.
	Dst  string
	Mode int64
}

// Dir is a directory of the image with its owner.
type Dir struct {
	Path     string
	Mode     int64
	UID, GID int
}

// Spec describes one single-architecture image.
type Spec struct {
	Arch       string // GOARCH: amd64, arm64
	Files      []File
	Dirs       []Dir
	Entrypoint []string
	Cmd        []string
	// User is "uid:gid".
	User       string
	WorkingDir string
	Env        []string
	Labels     map[string]string
	// Created is the time recorded in the image; a fixed time makes
	// rebuilds of the same binaries byte-identical.
	Created time.Time
}

// Build makes the image: one layer with the directories and files.
func Build(s Spec) (v1.Image, error) {
	layer, err := layerOf(s)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, MediaType: types.OCILayer, History: v1.History{
		Created: v1.Time{Time: s.Created}, CreatedBy: "watchpost deploy/oci", Comment: "static binaries",
	}})
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", s.Arch
	if s.Arch == "arm64" {
		cf.Variant = "v8"
	}
	cf.Created = v1.Time{Time: s.Created}
	cf.Config = v1.Config{
		Entrypoint: s.Entrypoint, Cmd: s.Cmd, User: s.User, WorkingDir: s.WorkingDir,
		Env: s.Env, Labels: s.Labels,
	}
	return mutate.ConfigFile(img, cf)
}

// layerOf writes the layer's tar: parents before children, sorted, with
// fixed times and numeric owners.
func layerOf(s Spec) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]Dir{}
	for _, d := range s.Dirs {
		dirs[path.Clean(d.Path)] = d
	}
	parents := make([]string, 0, len(s.Files)+len(s.Dirs))
	for _, f := range s.Files {
		parents = append(parents, path.Dir(f.Dst))
	}
	for _, d := range s.Dirs {
		parents = append(parents, path.Dir(path.Clean(d.Path)))
	}
	for _, p := range parents {
		for d := p; d != "/"; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = Dir{Path: d, Mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, name := range names {
		d := dirs[name]
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeDir, Name: name[1:] + "/", Mode: d.Mode, Uid: d.UID, Gid: d.GID, ModTime: s.Created, Format: tar.FormatPAX,
		}); err != nil {
			return nil, err
		}
	}
	files := append([]File(nil), s.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Dst < files[j].Dst })
	for _, f := range files {
		data := f.Data
		if f.Src != "" {
			b, err := os.ReadFile(f.Src)
			if err != nil {
				return nil, fmt.Errorf("image file %s: %w", f.Dst, err)
			}
			data = b
		}
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: f.Dst[1:], Mode: f.Mode, Size: int64(len(data)), ModTime: s.Created, Format: tar.FormatPAX,
		}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// Index groups the images of one product, one per architecture, under an
// OCI image index whose manifests carry their platform.
func Index(images ...v1.Image) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var adds []mutate.IndexAddendum
	for _, img := range images {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
		}})
	}
	return mutate.AppendManifests(idx, adds...), nil
}

// Users returns /etc/passwd and /etc/group for root and one service user.
func Users(name string, uid int) []File {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:/nonexistent:/sbin/nologin\n", name, uid, uid, name)
	group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", name, uid)
	return []File{
		{Data: []byte(passwd), Dst: "/etc/passwd", Mode: 0o644},
		{Data: []byte(group), Dst: "/etc/group", Mode: 0o644},
	}
}
