package kernel

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/internal/privtest"
)

// BenchmarkFileExitProgram reports what the file sys_exit program costs per
// run, from the kernel's own bpf_stats (run_time_ns / run_cnt over the
// benchmark's loop), for the cases that decide a plant's overhead:
//
//   - delivered: an open the configuration reports (full capture), in a
//     directory three levels deep on the file system of the test's temp dir;
//     after the first open its directory's path comes from the per-CPU cache.
//   - delivered-nocache: the same open with the directory cache switched off,
//     i.e. the whole dentry and mount walk on every open.
//   - filtered: a read-only open of a regular file under the default
//     configuration, which drops it in the kernel.
//   - path-excluded(-nocache): the open's path is resolved, then dropped by
//     an excluded path prefix: the path's cost without the record and the
//     ring, with and without the cache.
//
// Each case runs on each way fields are read on this kernel (btf: direct
// loads through BTF pointers, 5.11+; probe_read: one helper call per field,
// the 5.10 path). The figure includes bpf_stats' own few tens of ns.
//
//	sudo go test -run '^$' -bench FileExitProgram ./agent/kernel/
func BenchmarkFileExitProgram(b *testing.B) {
	privtest.Require(b)
	dir := filepath.Join(b.TempDir(), "historian", "archive", "2026")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "tags.dat")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := Probe()
	if err != nil {
		b.Fatalf("probe: %v", err)
	}
	reads := []string{fieldReadsProbe}
	if f.TaskBTF {
		reads = []string{fieldReadsBTF, fieldReadsProbe}
	}
	cases := []struct {
		name string
		cfg  func(*Config)
	}{
		{"delivered", func(c *Config) { c.Filters.ReadOpens = true; c.Filters.RatePerSec = 0; c.Filters.UserRatePerSec = 0 }},
		{"delivered-nocache", func(c *Config) {
			c.Filters.ReadOpens = true
			c.Filters.RatePerSec = 0
			c.Filters.UserRatePerSec = 0
			c.noPathCache = true
		}},
		{"filtered", func(c *Config) {}},
		// The path is resolved, then matches an excluded prefix: what
		// resolving costs without the record and the ring.
		{"path-excluded", func(c *Config) {
			c.Filters.ReadOpens = true
			c.Filters.ExcludePaths = []string{dir}
		}},
		{"path-excluded-nocache", func(c *Config) {
			c.Filters.ReadOpens = true
			c.Filters.ExcludePaths = []string{dir}
			c.noPathCache = true
		}},
	}
	for _, r := range reads {
		for _, tc := range cases {
			b.Run(r+"/"+tc.name, func(b *testing.B) {
				cfg := DefaultConfig()
				cfg.AgentPID = 0
				cfg.fieldReads = r
				tc.cfg(&cfg)
				s, stop := runBenchSensor(b, cfg)
				defer stop()
				prog := s.coll.Programs["wp_sys_exit_file"]
				stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
				if err != nil {
					b.Skipf("bpf_stats cannot be enabled here: %v", err)
				}
				defer stats.Close()
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				before, err := prog.Stats()
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
					if err != nil {
						b.Fatalf("open %s: %v", path, err)
					}
					unix.Close(fd)
				}
				b.StopTimer()
				after, err := prog.Stats()
				if err != nil {
					b.Fatal(err)
				}
				if runs := after.RunCount - before.RunCount; runs > 0 {
					b.ReportMetric(float64(after.Runtime-before.Runtime)/float64(runs), "prog-ns/run")
					b.ReportMetric(float64(runs)/float64(b.N), "runs/op")
				}
			})
		}
	}
}
