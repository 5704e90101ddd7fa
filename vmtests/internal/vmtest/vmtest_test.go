package vmtest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCompareDebVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"6.1.192-2", "6.1.192-2", 0},
		{"6.1.192-2", "6.1.192-10", -1},
		{"6.1.192-2", "6.1.20-2", 1},
		{"7.3.4-1~bpo13+1", "7.3.4-1", -1},
		{"7.3.4-1~bpo13+1", "7.2.12-1~bpo13+1", 1},
		{"6.12.115+deb13.1", "6.12.115+deb13", 1},
		{"1:5.0-1", "6.0-1", 1},
		{"1.0~rc1-1", "1.0-1", -1},
		{"1.0a-1", "1.0-1", 1},
		{"1.0-1", "1.0+b1-1", -1},
	} {
		if got := CompareDebVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareDebVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := CompareDebVersions(c.b, c.a); got != -c.want {
			t.Errorf("CompareDebVersions(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}

const sampleLock = `# comment that the header replaces
6.1     bookworm-security  ^linux-image-6\.1\.0-[0-9]+-cloud-amd64$  linux-image-6.1.0-56-cloud-amd64  6.1.192-2  6.1.0-56-cloud-amd64  abc123
newest  trixie-backports   ^linux-binary-[0-9.]+\+deb13-cloud-amd64$   -  -  -  -

# 2026-01-01 kernel 6.1: FALLBACK: something
`

func TestLockRoundTrip(t *testing.T) {
	l, err := ParseLock([]byte(sampleLock), "kernels.lock")
	if err != nil {
		t.Fatal(err)
	}
	want := []Kernel{
		{"6.1", "bookworm-security", `^linux-image-6\.1\.0-[0-9]+-cloud-amd64$`, "linux-image-6.1.0-56-cloud-amd64", "6.1.192-2", "6.1.0-56-cloud-amd64", "abc123"},
		{"newest", "trixie-backports", `^linux-binary-[0-9.]+\+deb13-cloud-amd64$`, "-", "-", "-", "-"},
	}
	if !reflect.DeepEqual(l.Kernels, want) {
		t.Fatalf("kernels = %+v\nwant %+v", l.Kernels, want)
	}
	if !reflect.DeepEqual(l.Notes, []string{"# 2026-01-01 kernel 6.1: FALLBACK: something"}) {
		t.Fatalf("notes = %q", l.Notes)
	}
	again, err := ParseLock(l.Format(), "formatted")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, l) {
		t.Fatalf("format/parse changed the lock:\n%+v\n%+v", again, l)
	}
	sel, err := l.Select([]string{"newest"})
	if err != nil || len(sel) != 1 || sel[0].Name != "newest" {
		t.Fatalf("Select(newest) = %v, %v", sel, err)
	}
	if _, err := l.Select([]string{"4.19"}); err == nil || !strings.Contains(err.Error(), "unknown kernel 4.19") {
		t.Fatalf("Select(4.19) error = %v", err)
	}
}

func TestParseLockErrors(t *testing.T) {
	for name, in := range map[string]string{
		"fields":    "6.1 bookworm-security ^x$ pkg 1.0\n",
		"duplicate": "a s ^x$ - - - -\na s ^x$ - - - -\n",
		"regex":     "a s ^(x$ - - - -\n",
		"half-pin":  "a s ^x$ pkg - - -\n",
		"empty":     "# nothing\n",
	} {
		if _, err := ParseLock([]byte(in), "kernels.lock"); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.HasPrefix(err.Error(), "kernels.lock") {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
	}
}

func TestParseMadison(t *testing.T) {
	out := []byte(` linux-image-5.10.0-46-cloud-amd64 | 5.10.262-1 | http://deb.debian.org/debian-security bullseye-security/main amd64 Packages
 linux-image-6.1.0-56-cloud-amd64 | 6.1.192-2 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
 linux-image-5.10.0-45-cloud-amd64 | 5.10.259-1 | http://deb.debian.org/debian-security bullseye-security/main amd64 Packages
`)
	got := parseMadison(out, "bullseye-security")
	want := []Candidate{{"linux-image-5.10.0-46-cloud-amd64", "5.10.262-1"}, {"linux-image-5.10.0-45-cloud-amd64", "5.10.259-1"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseMadison = %+v, want %+v", got, want)
	}
}

func TestVmlinuzRelease(t *testing.T) {
	for in, want := range map[string]string{
		"boot/vmlinuz-6.1.0-56-cloud-amd64":                 "6.1.0-56-cloud-amd64",
		"usr/lib/modules/7.3.4+deb13-cloud-amd64/vmlinuz":   "7.3.4+deb13-cloud-amd64",
		"boot/config-6.1.0-56-cloud-amd64":                  "",
		"usr/lib/modules/7.3.4+deb13-cloud-amd64/kernel/x":  "",
		"usr/lib/modules/7.3.4/kernel/vmlinuz":              "",
		"usr/share/doc/linux-image-6.1.0-56-cloud-amd64/NE": "",
	} {
		got, ok := vmlinuzRelease(in)
		if got != want || ok != (want != "") {
			t.Errorf("vmlinuzRelease(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// fakeBzImage builds the parts of a bzImage the extractor reads: the setup header
// with setup_sects, the boot protocol version, and the payload fields.
func fakeBzImage(payload []byte) []byte {
	const sects = 3
	img := make([]byte, (sects+1)*512+100+len(payload)+50)
	img[offSetupSects] = sects
	copy(img[offHeaderMagic:], "HdrS")
	binary.LittleEndian.PutUint16(img[offBootVersion:], 0x20f)
	binary.LittleEndian.PutUint32(img[offPayloadOffset:], 100)
	binary.LittleEndian.PutUint32(img[offPayloadLength:], uint32(len(payload)))
	copy(img[(sects+1)*512+100:], payload)
	return img
}

func TestBzImagePayload(t *testing.T) {
	payload := append([]byte{0x28, 0xb5, 0x2f, 0xfd}, bytes.Repeat([]byte{7}, 40)...)
	got, err := BzImagePayload(fakeBzImage(payload))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("payload = % x, want % x", got, payload)
	}
	argv, appended, err := decompressor(got)
	if err != nil || argv[0] != "zstd" || !appended {
		t.Fatalf("decompressor = %v, %v, %v; want zstd with the size appended", argv, appended, err)
	}
	if _, err := BzImagePayload([]byte("MZ not a kernel")); !errors.Is(err, ErrNotBzImage) {
		t.Fatalf("short image: %v, want ErrNotBzImage", err)
	}
	bad := fakeBzImage(payload)
	binary.LittleEndian.PutUint32(bad[offPayloadLength:], 1<<30)
	if _, err := BzImagePayload(bad); err == nil {
		t.Fatal("payload past the end of the image: no error")
	}
	if _, _, err := decompressor([]byte{1, 2, 3, 4}); err == nil {
		t.Fatal("unknown compression: no error")
	}
}

// readCpio is a minimal newc reader for checking the writer.
func readCpio(t *testing.T, data []byte) map[string]struct {
	mode uint32
	body string
} {
	t.Helper()
	out := map[string]struct {
		mode uint32
		body string
	}{}
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		if off+110 > len(data) || string(data[off:off+6]) != "070701" {
			t.Fatalf("bad header at %d", off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(data[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return uint32(v)
		}
		mode, size, namesize := field(1), field(6), field(11)
		off += 110
		name := string(data[off : off+int(namesize)-1])
		off += int(namesize)
		align()
		body := string(data[off : off+int(size)])
		off += int(size)
		align()
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = struct {
			mode uint32
			body string
		}{mode, body}
	}
}

func TestCpioWriter(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "bin.test")
	if err := os.WriteFile(src, []byte("binary!"), 0o755); err != nil {
		t.Fatal(err)
	}
	td := filepath.Join(dir, "testdata")
	if err := os.MkdirAll(filepath.Join(td, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(td, "sub", "x.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	w := newCpioWriter(bw)
	w.dir("wp")
	w.node("dev/console", 0o020600, 5, 1)
	if err := w.file("wp/bin.test", src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := w.tree("wp/testdata", td); err != nil {
		t.Fatal(err)
	}
	w.bytes("init", []byte("#!/bin/sh\n"), 0o755)
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	got := readCpio(t, buf.Bytes())
	for name, want := range map[string]struct {
		mode uint32
		body string
	}{
		"wp":                     {0o040755, ""},
		"dev/console":            {0o020600, ""},
		"wp/bin.test":            {0o100755, "binary!"},
		"wp/testdata":            {0o040755, ""},
		"wp/testdata/sub":        {0o040755, ""},
		"wp/testdata/sub/x.json": {0o100644, "{}"},
		"init":                   {0o100755, "#!/bin/sh\n"},
	} {
		if got[name] != want {
			t.Errorf("%s = %o %q, want %o %q", name, got[name].mode, got[name].body, want.mode, want.body)
		}
	}
	if len(got) != 7 {
		t.Errorf("archive has %d entries, want 7: %v", len(got), got)
	}
}

func TestInitScript(t *testing.T) {
	s := InitScript([]guestTest{{dir: "/wp/0", binary: "agent_kernel.test", pkg: "github.com/watchpost/watchpost/agent/kernel"}},
		GuestOptions{TestTimeout: "5m0s", Run: "TestX|TestY"})
	for _, want := range []string{
		"must_mount tracefs /sys/kernel/tracing",
		"must_mount bpf /sys/fs/bpf",
		"must_mount cgroup2 /sys/fs/cgroup",
		"ulimit -l unlimited",
		"stty -F /dev/ttyS1 raw -echo",
		"-test.timeout='5m0s' -test.run='TestX|TestY'",
		"run_test '/wp/0' 'agent_kernel.test' 'github.com/watchpost/watchpost/agent/kernel'",
		`echo "rc=$rc" >/dev/ttyS2`,
		"poweroff -f",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("init script lacks %q", want)
		}
	}
}

const guestOutput = `=== VMTEST BEGIN example.com/a
=== RUN   TestOne
--- PASS: TestOne (0.01s)
=== RUN   TestTwo
=== RUN   TestTwo/sub
    two_test.go:9: verifier said no
    --- FAIL: TestTwo/sub (0.00s)
--- FAIL: TestTwo (0.02s)
=== RUN   TestThree
    three_test.go:3: no tracefs
--- SKIP: TestThree (0.00s)
FAIL
=== VMTEST END example.com/a rc=1
=== VMTEST BEGIN example.com/b
=== RUN   TestHang
panic: test timed out after 5m0s
=== VMTEST END example.com/b rc=2
=== VMTEST BEGIN example.com/c
=== RUN   TestCrash
`

func TestParseOutputAndJudge(t *testing.T) {
	pkgs := ParseOutput([]byte(guestOutput))
	if len(pkgs) != 3 {
		t.Fatalf("%d packages, want 3", len(pkgs))
	}
	a := pkgs[0]
	if a.ExitCode != 1 || !reflect.DeepEqual(a.Passed, []string{"TestOne"}) ||
		!reflect.DeepEqual(a.Failed, []string{"TestTwo/sub", "TestTwo"}) || !reflect.DeepEqual(a.Skipped, []string{"TestThree"}) {
		t.Fatalf("package a = %+v", a)
	}
	if b := pkgs[1]; b.ExitCode != 2 || !b.Panicked {
		t.Fatalf("package b = %+v", b)
	}
	if c := pkgs[2]; c.ExitCode != -1 {
		t.Fatalf("package c = %+v", c)
	}

	k := Kernel{Name: "6.1"}
	r := Judge(k, Outcome{Output: []byte(guestOutput), ExitCode: 1}, []string{"example.com/a", "example.com/b", "example.com/c", "example.com/d"})
	if r.Status != StatusFail {
		t.Fatalf("status %s, want FAIL", r.Status)
	}
	for _, want := range []string{"example.com/a: TestTwo/sub, TestTwo failed", "example.com/b panicked", "example.com/c did not finish", "example.com/d never ran"} {
		if !strings.Contains(r.Reason, want) {
			t.Errorf("reason %q lacks %q", r.Reason, want)
		}
	}
	if p, f, s := r.Counts(); p != 1 || f != 2 || s != 1 {
		t.Errorf("counts %d/%d/%d, want 1/2/1", p, f, s)
	}

	noRC := Judge(k, Outcome{Output: []byte(guestOutput), ExitCode: -1, Console: []byte("Kernel panic - not syncing")}, nil)
	if noRC.Status != StatusError || !strings.Contains(noRC.Reason, "kernel panic") {
		t.Fatalf("no exit status: %s %q", noRC.Status, noRC.Reason)
	}
	ok := Judge(k, Outcome{Output: []byte("=== VMTEST BEGIN x\n--- PASS: T (0s)\n=== VMTEST END x rc=0\n"), ExitCode: 0}, []string{"x"})
	if ok.Status != StatusPass {
		t.Fatalf("clean run: %s %q", ok.Status, ok.Reason)
	}

	sum := Summary([]KernelResult{r, ok}, []string{"a note"}, 90*time.Second)
	for _, want := range []string{"| 6.1 |", "| FAIL | 1 | 2 | 1 |", "| PASS | 1 | 0 | 0 |", "Wall time of the run: 1m30s.", "- a note"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
}

func TestFailureExcerpts(t *testing.T) {
	ex := FailureExcerpts([]byte(guestOutput), 60)
	for _, want := range []string{
		"example.com/a TestTwo:\n=== RUN   TestTwo\n",
		"two_test.go:9: verifier said no",
		"example.com/b (rc=2):\n=== RUN   TestHang\npanic: test timed out after 5m0s",
		"example.com/c (did not finish):\n=== RUN   TestCrash",
	} {
		if !strings.Contains(ex, want) {
			t.Errorf("excerpts lack %q:\n%s", want, ex)
		}
	}
	if strings.Contains(ex, "TestOne") {
		t.Errorf("excerpts show a passing test:\n%s", ex)
	}
}

func TestParseRC(t *testing.T) {
	for in, want := range map[string]int{"rc=0\n": 0, "rc=1": 1, "": -1, "garbage": -1, "\x00rc=3\n": -1, "x\nrc=3\n": 3} {
		if got := parseRC([]byte(in)); got != want {
			t.Errorf("parseRC(%q) = %d, want %d", in, got, want)
		}
	}
}
