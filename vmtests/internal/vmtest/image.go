package vmtest

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"
)

// ExtractVmlinuz copies the kernel image out of a Debian kernel package into dst and
// returns the kernel release (`uname -r`). It understands both layouts:
// /boot/vmlinuz-RELEASE (linux-image-*) and /usr/lib/modules/RELEASE/vmlinuz
// (linux-binary-*, Debian's split packages from 7.x on).
func ExtractVmlinuz(ctx context.Context, deb, dst string) (string, error) {
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", fmt.Errorf("unpacking %s: %w", deb, err)
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("unpacking %s: %w", deb, err)
	}
	release, found, copyErr := "", false, error(nil)
	tr := tar.NewReader(stdout)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			copyErr = err
			break
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if rel, ok := vmlinuzRelease(name); ok && !found {
			found, release = true, rel
			copyErr = writeFileFrom(dst, tr)
			if copyErr != nil {
				break
			}
		}
	}
	// Drain so dpkg-deb does not die of SIGPIPE before we read its status.
	_, _ = io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	switch {
	case copyErr != nil:
		return "", fmt.Errorf("unpacking %s: %w", deb, copyErr)
	case waitErr != nil:
		return "", fmt.Errorf("unpacking %s: dpkg-deb: %w: %s", deb, waitErr, strings.TrimSpace(stderr.String()))
	case !found:
		return "", fmt.Errorf("unpacking %s: no boot/vmlinuz-* or usr/lib/modules/*/vmlinuz in the package", deb)
	}
	return release, nil
}

func vmlinuzRelease(name string) (string, bool) {
	if rel, ok := strings.CutPrefix(name, "boot/vmlinuz-"); ok && rel != "" && !strings.Contains(rel, "/") {
		return rel, true
	}
	if rest, ok := strings.CutPrefix(name, "usr/lib/modules/"); ok {
		if rel, ok := strings.CutSuffix(rest, "/vmlinuz"); ok && rel != "" && !strings.Contains(rel, "/") {
			return rel, true
		}
	}
	return "", false
}

func writeFileFrom(dst string, r io.Reader) error {
	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

// bzImage payload location, from the x86 boot protocol's setup header
// (Documentation/arch/x86/boot.rst).
const (
	offSetupSects    = 0x1f1
	offHeaderMagic   = 0x202
	offBootVersion   = 0x206
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
)

// ErrNoPVH is returned for a kernel built without CONFIG_PVH: qemu can boot only its
// bzImage, which then decompresses itself in the (slow) guest.
var ErrNoPVH = errors.New("vmlinux has no PVH entry note (CONFIG_PVH is off)")

// ErrNotBzImage is returned for a file without the "HdrS" setup header.
var ErrNotBzImage = errors.New("not an x86 bzImage")

// BzImagePayload returns the compressed kernel inside a bzImage (boot protocol 2.08+).
func BzImagePayload(img []byte) ([]byte, error) {
	if len(img) < 0x250 || string(img[offHeaderMagic:offHeaderMagic+4]) != "HdrS" {
		return nil, ErrNotBzImage
	}
	if v := binary.LittleEndian.Uint16(img[offBootVersion:]); v < 0x208 {
		return nil, fmt.Errorf("boot protocol %#x has no payload fields (needs 2.08)", v)
	}
	sects := int(img[offSetupSects])
	if sects == 0 {
		sects = 4
	}
	start := (sects+1)*512 + int(binary.LittleEndian.Uint32(img[offPayloadOffset:]))
	n := int(binary.LittleEndian.Uint32(img[offPayloadLength:]))
	if n <= 4 || start+n > len(img) {
		return nil, fmt.Errorf("payload [%d, %d) lies outside the %d-byte image", start, start+n, len(img))
	}
	return img[start : start+n], nil
}

// decompressor picks the tool for a payload by its magic. sizeAppended says whether
// the kernel build appended the uncompressed size (scripts/Makefile.lib size_append),
// which the tool must not see.
func decompressor(p []byte) (argv []string, sizeAppended bool, err error) {
	switch {
	case bytes.HasPrefix(p, []byte{0x1f, 0x8b}):
		return []string{"gzip", "-dc"}, false, nil
	case bytes.HasPrefix(p, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return []string{"zstd", "-dcq"}, true, nil
	case bytes.HasPrefix(p, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return []string{"xz", "-dc", "--single-stream"}, true, nil
	case bytes.HasPrefix(p, []byte{0x02, 0x21, 0x4c, 0x18}):
		return []string{"lz4", "-dc"}, true, nil
	case bytes.HasPrefix(p, []byte{0x5d, 0x00, 0x00}):
		return []string{"xz", "--format=lzma", "-dc", "--single-stream"}, true, nil
	case bytes.HasPrefix(p, []byte("BZh")):
		return []string{"bzip2", "-dc"}, true, nil
	case bytes.HasPrefix(p, []byte{0x89, 'L', 'Z', 'O'}):
		return []string{"lzop", "-dc"}, true, nil
	}
	n := min(len(p), 8)
	return nil, false, fmt.Errorf("unknown kernel compression (payload starts % x)", p[:n])
}

// ExtractVmlinux turns a bzImage into the uncompressed vmlinux ELF that qemu can
// boot through the PVH entry point, skipping the guest's own (slow, emulated)
// decompression. It checks the result is an x86-64 ELF of the size the image declares.
func ExtractVmlinux(ctx context.Context, bzImage, dst string) error {
	img, err := os.ReadFile(bzImage)
	if err != nil {
		return fmt.Errorf("extracting vmlinux: %w", err)
	}
	payload, err := BzImagePayload(img)
	if err != nil {
		return fmt.Errorf("extracting vmlinux from %s: %w", bzImage, err)
	}
	argv, sizeAppended, err := decompressor(payload)
	if err != nil {
		return fmt.Errorf("extracting vmlinux from %s: %w", bzImage, err)
	}
	want := binary.LittleEndian.Uint32(payload[len(payload)-4:])
	if sizeAppended {
		payload = payload[:len(payload)-4]
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		return fmt.Errorf("extracting vmlinux from %s: the kernel is compressed with %s, which is not installed", bzImage, argv[0])
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(payload)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("extracting vmlinux from %s: %s: %w: %s", bzImage, strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	if uint32(out.Len()) != want {
		return fmt.Errorf("extracting vmlinux from %s: %s gave %d bytes, the image declares %d", bzImage, argv[0], out.Len(), want)
	}
	if err := checkVmlinux(out.Bytes()); err != nil {
		return fmt.Errorf("extracting vmlinux from %s: %w", bzImage, err)
	}
	return writeFileFrom(dst, &out)
}

// xenElfnotePhys32Entry is the ELF note that holds the PVH entry point
// (include/xen/interface/elfnote.h); qemu boots an ELF kernel only through it.
const xenElfnotePhys32Entry = 18

func checkVmlinux(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("decompressed kernel is not ELF: %w", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("decompressed kernel is %s, want EM_X86_64", f.Machine)
	}
	if !hasPVHNote(f) {
		return ErrNoPVH
	}
	return nil
}

func hasPVHNote(f *elf.File) bool {
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(p.Open())
		if err != nil {
			continue
		}
		for len(data) >= 12 {
			namesz := binary.LittleEndian.Uint32(data[0:])
			descsz := binary.LittleEndian.Uint32(data[4:])
			typ := binary.LittleEndian.Uint32(data[8:])
			nameEnd := 12 + align4(namesz)
			end := nameEnd + align4(descsz)
			if end > uint32(len(data)) {
				break
			}
			name := strings.TrimRight(string(data[12:12+namesz]), "\x00")
			if name == "Xen" && typ == xenElfnotePhys32Entry {
				return true
			}
			data = data[end:]
		}
	}
	return false
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }
