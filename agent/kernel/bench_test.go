package kernel

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/internal/privtest"
)

// Overhead benchmarks: the same loop with no sensor and with the sensor in
// full capture (every kind, read-only opens, no rate limit), interleaved
// none, watchpost, none, watchpost ... in one run. Each watchpost
// sub-benchmark reports its ratio to the none run just before it (x-cpu,
// x-wall) and the median ratio of the rounds so far (median-x-cpu,
// median-x-wall): the last line holds the median of all rounds.
//
// cpu-ns/op is the loop thread's own CPU time (RUSAGE_THREAD, the thread
// locked), which includes the BPF programs run in its syscalls and excludes
// the ring reader running on other threads.
//
//	sudo go test -run '^$' -bench 'OpenClose|TCPConnect' ./agent/kernel/
//
// WATCHPOST_BENCH_ROUNDS sets the number of pairs (default 3).

func BenchmarkOpenClose(b *testing.B) {
	privtest.Require(b)
	path := filepath.Join(b.TempDir(), "target.dat")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		b.Fatal(err)
	}
	benchOverhead(b, func(b *testing.B, n int) {
		for i := 0; i < n; i++ {
			fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatalf("open %s: %v", path, err)
			}
			unix.Close(fd)
		}
	})
}

func BenchmarkTCPConnect(b *testing.B) {
	privtest.Require(b)
	lfd, addr := loopbackListener(b)
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			c, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
			if err != nil {
				if err == unix.EINTR || err == unix.ECONNABORTED {
					continue
				}
				return // the listener was shut down
			}
			unix.Close(c)
		}
	}()
	b.Cleanup(func() {
		unix.Shutdown(lfd, unix.SHUT_RDWR)
		<-served
		unix.Close(lfd)
	})
	benchOverhead(b, func(b *testing.B, n int) {
		for i := 0; i < n; i++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				b.Fatalf("socket: %v", err)
			}
			if err := unix.Connect(fd, addr); err != nil {
				b.Fatalf("connect to the loopback listener: %v", err)
			}
			// An abortive close leaves no TIME_WAIT: the loop cannot run
			// out of ephemeral ports.
			_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
			unix.Close(fd)
		}
	})
}

func loopbackListener(b *testing.B) (int, *unix.SockaddrInet4) {
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatalf("socket: %v", err)
	}
	sa := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Bind(lfd, sa); err != nil {
		b.Fatalf("bind loopback: %v", err)
	}
	if err := unix.Listen(lfd, 1024); err != nil {
		b.Fatalf("listen: %v", err)
	}
	got, err := unix.Getsockname(lfd)
	if err != nil {
		b.Fatalf("getsockname: %v", err)
	}
	return lfd, got.(*unix.SockaddrInet4)
}

func benchRounds(b *testing.B) int {
	s := os.Getenv("WATCHPOST_BENCH_ROUNDS")
	if s == "" {
		return 3
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("WATCHPOST_BENCH_ROUNDS: %q is not a positive number", s)
	}
	return n
}

type loopCost struct{ cpu, wall float64 } // ns per operation

func benchOverhead(b *testing.B, loop func(*testing.B, int)) {
	rounds := benchRounds(b)
	cpuRatios := make([]float64, rounds)
	wallRatios := make([]float64, rounds)
	for r := 0; r < rounds; r++ {
		var none loopCost
		b.Run("none", func(b *testing.B) { none = measureLoop(b, loop) })
		stop := startBenchSensor(b)
		b.Run("watchpost", func(b *testing.B) {
			wp := measureLoop(b, loop)
			if none.cpu == 0 || none.wall == 0 {
				return
			}
			cpuRatios[r], wallRatios[r] = wp.cpu/none.cpu, wp.wall/none.wall
			b.ReportMetric(cpuRatios[r], "x-cpu")
			b.ReportMetric(wallRatios[r], "x-wall")
			b.ReportMetric(median(cpuRatios[:r+1]), "median-x-cpu")
			b.ReportMetric(median(wallRatios[:r+1]), "median-x-wall")
		})
		stop()
	}
}

// measureLoop runs b.N operations on a locked thread and reports the
// thread's CPU time per operation.
func measureLoop(b *testing.B, loop func(*testing.B, int)) loopCost {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var r0, r1 unix.Rusage
	b.ResetTimer()
	start := time.Now()
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &r0); err != nil {
		b.Fatal(err)
	}
	loop(b, b.N)
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &r1); err != nil {
		b.Fatal(err)
	}
	wall := time.Since(start)
	b.StopTimer()
	cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
	c := loopCost{cpu: float64(cpu) / float64(b.N), wall: float64(wall) / float64(b.N)}
	b.ReportMetric(c.cpu, "cpu-ns/op")
	return c
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// startBenchSensor loads the sensor in full capture with the benchmark's
// own process observed, drains and discards its queue, and returns the
// function that detaches everything.
func startBenchSensor(b *testing.B) func() {
	cfg := DefaultConfig()
	cfg.AgentPID = 0 // the benchmark's own syscalls are what it measures
	cfg.Threads = true
	cfg.Filters.ReadOpens = true
	cfg.Filters.RatePerSec = 0
	s, err := Load(cfg, zerolog.Nop())
	if err != nil {
		b.Fatalf("loading the sensor: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()
	drained := make(chan struct{})
	go func() {
		for range s.Events() {
		}
		close(drained)
	}()
	return func() {
		cancel()
		if err := <-runErr; err != nil {
			b.Errorf("sensor run: %v", err)
		}
		<-drained
		if err := s.Close(); err != nil {
			b.Errorf("closing the sensor: %v", err)
		}
	}
}
