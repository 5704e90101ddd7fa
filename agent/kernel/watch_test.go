package kernel

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/internal/privtest"
)

// TestWatchKeysExpandHomes: "~/" is every home directory of passwd, paths
// that do not exist are skipped, and a bad entry is named.
func TestWatchKeysExpandHomes(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"etc", "home/op/.ssh", "srv/hmi/.ssh", "var/opt/codesys"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\nop:x:1000:1000::/home/op:/bin/sh\nhmi:x:1001:1001::/srv/hmi:/bin/sh\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\nbad line\n"
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	keys := watchKeys(root, []string{"~/.ssh", "/var/opt/codesys", "/etc/shadow"})
	var got []string
	for _, p := range keys {
		got = append(got, p)
	}
	slices.Sort(got)
	if want := []string{"/home/op/.ssh", "/srv/hmi/.ssh", "/var/opt/codesys"}; !slices.Equal(got, want) {
		t.Errorf("watched %v, want %v", got, want)
	}
	if err := ValidateWatch("filters.watch_reads", []string{"/etc/shadow", "etc/gshadow"}); err == nil ||
		err.Error() != `filters.watch_reads[1]: "etc/gshadow" is neither an absolute path nor ~/path` {
		t.Errorf("validate: %v", err)
	}
}

// TestSensitiveReadsAreReported: under the default filters a read-only
// open of /etc/shadow is reported, marked watched, and one of /etc/hostname
// is not; a watched directory covers a file three levels below it, a hard
// link to a watched file is caught, and a file replaced by a rename is
// watched again once the list is refreshed.
func TestSensitiveReadsAreReported(t *testing.T) {
	dir := privtest.Dir(t)
	projects := filepath.Join(dir, "plc-projects")
	deep := filepath.Join(projects, "line1", "cell2", "recipe.st")
	secret := filepath.Join(dir, "hmi-secret.key")
	link := filepath.Join(dir, "innocent.txt")
	if err := os.MkdirAll(filepath.Dir(deep), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{deep, secret} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(secret, link); err != nil {
		t.Fatal(err)
	}
	// The kernel matrix's guests boot from an initramfs without them.
	privtest.Existing(t, "/etc/shadow", 0o640)
	privtest.Existing(t, "/etc/hostname", 0o644)
	h := startSensor(t, with(kinds(event.KindFileOpen), func(c *Config) {
		c.Filters.WatchReads = append(c.Filters.WatchReads, projects, secret)
	}))
	read := func(p string) { t.Helper(); readOnly(t, p) }
	read("/etc/hostname")
	read("/etc/shadow")
	shadow := h.waitFor("read of /etc/shadow", fileAt(event.KindFileOpen, "/etc/shadow"))
	if !shadow.File.Watched || shadow.File.Write || shadow.File.Result < 0 {
		t.Errorf("read of /etc/shadow: %+v", shadow.File)
	}
	read(deep)
	if ev := h.waitFor("read three levels below a watched directory", fileAt(event.KindFileOpen, deep)); !ev.File.Watched {
		t.Errorf("read of %s: %+v", deep, ev.File)
	}
	read(link)
	if ev := h.waitFor("read through a hard link", fileAt(event.KindFileOpen, link)); !ev.File.Watched {
		t.Errorf("read of %s: %+v", link, ev.File)
	}
	// Replaced by a rename (as passwd replaces /etc/shadow): a new inode,
	// watched after the next refresh.
	tmp := secret + ".new"
	if err := os.WriteFile(tmp, []byte("y"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, secret); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sensor.syncWatch(); err != nil {
		t.Fatal(err)
	}
	read(secret)
	h.waitFor("read of the replaced file", func(ev *event.Event) bool {
		return fileAt(event.KindFileOpen, secret)(ev) && ev.File.Watched
	})
	h.stop()
	if n := h.count(fileAt(event.KindFileOpen, "/etc/hostname")); n != 0 {
		t.Errorf("read of /etc/hostname reported %d times", n)
	}
	if st, err := h.sensor.Stats(); err != nil || st.WatchedPaths < 4 || st.WatchErrors != 0 {
		t.Errorf("watch stats: %+v %v", st, err)
	}
}

// TestWatchMissCacheExpiresOnRename: with renames captured, a directory
// found clear of watched inodes is cached; moving it under a watched
// directory must expire the cache, so the next read there is reported.
func TestWatchMissCacheExpiresOnRename(t *testing.T) {
	dir := privtest.Dir(t)
	watched := filepath.Join(dir, "hmi-config")
	plain := filepath.Join(dir, "scratch")
	for _, d := range []string{watched, plain} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	first, second := filepath.Join(plain, "a.txt"), filepath.Join(plain, "b.txt")
	for _, p := range []string{first, second} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := startSensor(t, with(kinds(event.KindFileOpen, event.KindFileRename), func(c *Config) {
		c.Filters.WatchReads = []string{watched}
	}))
	if st, err := h.sensor.Stats(); err != nil || st.WatchedPaths != 1 {
		t.Fatalf("watch stats: %+v %v", st, err)
	}
	read := func(p string) { t.Helper(); readOnly(t, p) }
	// The same CPU for the reads, so they share the per-CPU cache.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil {
		t.Fatal(err)
	}
	one := unix.CPUSet{}
	for c := 0; c < 1024; c++ {
		if cpus.IsSet(c) {
			one.Set(c)
			break
		}
	}
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	defer unix.SchedSetaffinity(0, &cpus)

	read(first)  // walks scratch's ancestry: clear, cached
	read(second) // the cached miss
	moved := filepath.Join(watched, "scratch")
	if err := os.Rename(plain, moved); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the rename", func(ev *event.Event) bool { return ev.Kind == event.KindFileRename && ev.File.Result == 0 })
	inside := filepath.Join(moved, "b.txt")
	read(inside)
	if ev := h.waitFor("read in the moved directory", fileAt(event.KindFileOpen, inside)); !ev.File.Watched {
		t.Errorf("read of %s: %+v", inside, ev.File)
	}
	h.stop()
	for _, p := range []string{first, second} {
		if n := h.count(fileAt(event.KindFileOpen, p)); n != 0 {
			t.Errorf("read of %s (not watched then) reported %d times", p, n)
		}
	}
}

// readOnly opens p read-only and closes it.
func readOnly(t *testing.T, p string) {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	unix.Close(fd)
}
