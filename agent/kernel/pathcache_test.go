package kernel

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/internal/privtest"
)

// The per-CPU directory cache must never change a reported path: every
// case below opens the same files repeatedly (so that later opens are
// served from the cache) around the changes that make a cached directory
// path stale, and asserts the exact path each time.
func TestPathCacheKeepsPathsExact(t *testing.T) { eachArgsPath(t, testPathCacheKeepsPathsExact) }

func testPathCacheKeepsPathsExact(t *testing.T, args func(*Config)) {
	// Only opens and chmods are wanted: the cache's invalidation must not
	// depend on rename or mount events being captured.
	h := startSensor(t, with(kinds(event.KindFileOpen, event.KindFileChmod), args))
	base := privtest.Dir(t)

	// create makes n new files in dir (each create is a reported open of
	// a new inode) and checks every event's path.
	seq := 0
	create := func(desc, dir string, n int) string {
		t.Helper()
		var path string
		for i := 0; i < n; i++ {
			seq++
			path = filepath.Join(dir, "tags-"+strconv.Itoa(seq)+".dat")
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatalf("%s: %v", desc, err)
			}
			ino := inode(t, path)
			ev := h.waitFor(desc, mine(event.KindFileOpen, func(ev *event.Event) bool { return ev.File.Inode == ino }))
			if ev.File.Path != path {
				t.Errorf("%s, file %d: path %q, want %q", desc, i+1, ev.File.Path, path)
			}
		}
		return path
	}

	dir := filepath.Join(base, "historian", "2026")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	create("open in a directory", dir, 3)

	// A renamed ancestor: the cached path of the directory below it is
	// stale and must not be used.
	moved := filepath.Join(base, "archive")
	if err := os.Rename(filepath.Join(base, "historian"), moved); err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(moved, "2026")
	file := create("open after its directory's parent was renamed", dir, 3)

	// The same directory through a bind mount has its own path.
	bind := filepath.Join(base, "bind")
	if err := os.Mkdir(bind, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dir, bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	mounted := true
	defer func() {
		if mounted {
			unix.Unmount(bind, unix.MNT_DETACH)
		}
	}()
	create("open through a bind mount", bind, 2)
	create("open of the same directory outside the bind mount", dir, 2)
	if err := unix.Unmount(bind, 0); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	mounted = false

	// A directory path longer than the cache holds is walked every time.
	long := base
	for i := 0; i < 6; i++ {
		long = filepath.Join(long, strings.Repeat(string(rune('a'+i)), 90))
	}
	if err := os.MkdirAll(long, 0o755); err != nil {
		t.Fatal(err)
	}
	create("open in a long directory", long, 2)

	// A file removed while open is named as the kernel names it, although
	// its directory is cached.
	fd, err := unix.Open(file, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fchmod(fd, 0o600); err != nil {
		t.Fatal(err)
	}
	ev := h.waitFor("fchmod of a deleted file", mine(event.KindFileChmod, func(ev *event.Event) bool {
		return ev.File.Syscall == "fchmod"
	}))
	if want := file + " (deleted)"; ev.File.Path != want {
		t.Errorf("fchmod of a deleted file: path %q, want %q", ev.File.Path, want)
	}

	// The directory itself, as the cwd of a call by name.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	for i := 0; i < 2; i++ {
		name := "b-" + strconv.Itoa(i) + ".dat"
		if err := os.WriteFile(name, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := unix.Chmod(name, 0o640); err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(dir, name)
		ev := h.waitFor("chmod by a name relative to the cwd", mine(event.KindFileChmod, func(ev *event.Event) bool {
			return strings.HasSuffix(ev.File.Path, "/"+name)
		}))
		if ev.File.Path != want {
			t.Errorf("chmod by name, call %d: path %q, want %q", i+1, ev.File.Path, want)
		}
	}
}
