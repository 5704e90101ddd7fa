package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// footprintRow is the agent's usage over one window.
type footprintRow struct {
	Label      string
	Config     string
	Seconds    float64
	Achieved   float64 // generator rate, 0 when idle
	CPUPercent float64 // of one core
	RSSMax     int64   // sampled every 250 ms
	HWM        int64   // peak RSS since the agent started
	MapRSS     int64   // of RSS: BPF map memory mapped into the agent (the ring buffer)
	EventsPS   float64 // events delivered per second (the generator's and the host's)
	// Idle only: the third of the window with the fewest events delivered
	// (the quietest part of a shared host).
	QuietCPU, QuietEventsPS, QuietSeconds float64
	Wakeups                               float64 // context switches per second, all threads
	Drops                                 float64
}

type footprintResult struct {
	Rows []footprintRow
}

func runFootprint(ctx context.Context, o *options) (*footprintResult, error) {
	res := &footprintResult{}
	// Idle: the default configuration, nothing generated.
	a, err := startAgent(ctx, o, "idle", "")
	if err != nil {
		return nil, err
	}
	time.Sleep(5 * time.Second) // start-up (process table seeding) is not idle
	progress("footprint: idle for %s", o.idle)
	row, err := window(ctx, o, a, 0, o.idle)
	err = errors.Join(err, a.stop())
	if err != nil {
		return nil, err
	}
	row.Label, row.Config = "idle", "default configuration"
	res.Rows = append(res.Rows, row)

	// Under load: full capture so that every generated open is an event.
	d := 8 * time.Second
	if !o.short {
		d = 60 * time.Second
	}
	loads := []struct {
		rate        float64
		label, conf string
		yaml        string
	}{
		{1e3, "1k events/s", "full capture", fullCaptureYAML},
		{10e3, "10k events/s", "full capture", fullCaptureYAML},
		{100e3, "100k events/s", "full capture", fullCaptureYAML},
		{10e3, "10k events/s, 8 MiB ring", "full capture, kernel.ring_bytes 8 MiB", strings.Replace(fullCaptureYAML, "kernel:\n", "kernel:\n  ring_bytes: 8388608\n", 1)},
	}
	for i, l := range loads {
		a, err := startAgent(ctx, o, fmt.Sprintf("load-%d", i), l.yaml)
		if err != nil {
			return nil, err
		}
		time.Sleep(2 * time.Second)
		row, err := window(ctx, o, a, l.rate, d)
		err = errors.Join(err, a.stop())
		if err != nil {
			return nil, err
		}
		row.Label, row.Config = l.label, l.conf
		res.Rows = append(res.Rows, row)
		progress("footprint: %s: CPU %.2f%% of a core, RSS max %.1f MiB", row.Label, row.CPUPercent, float64(row.RSSMax)/(1<<20))
	}
	return res, nil
}

// window measures the agent for d, running the generator at rate when
// rate > 0, sampling RSS every 250 ms.
func window(ctx context.Context, o *options, a *agentProc, rate float64, d time.Duration) (footprintRow, error) {
	row := footprintRow{Seconds: d.Seconds()}
	c0, err := a.scrape()
	if err != nil {
		return row, err
	}
	u0, err := readProcUsage(a.pid())
	if err != nil {
		return row, err
	}
	t0 := time.Now()
	genDone := make(chan error, 1)
	var ops int64
	var wall time.Duration
	if rate > 0 {
		go func() {
			var err error
			ops, wall, err = generate(ctx, o, genOpen, rate, d, 1)
			genDone <- err
		}()
	} else {
		go func() {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
			genDone <- ctx.Err()
		}()
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	// Idle windows are cut in thirds, each with its own CPU and events.
	// The scrape between two thirds is excluded from both (and from the
	// window's CPU figure): it is the bench's work, not the agent's.
	third := d / 3
	partStart, partU, partC := t0, u0, c0
	var idleCPU, idleTime time.Duration
	row.QuietEventsPS = -1
	for running := true; running; {
		select {
		case err := <-genDone:
			if err != nil {
				return row, err
			}
			running = false
		case <-tick.C:
			u, err := readProcUsage(a.pid())
			if err != nil {
				continue
			}
			row.RSSMax = max(row.RSSMax, u.RSS)
			if rate > 0 || time.Since(partStart) < third {
				continue
			}
			el := time.Since(partStart)
			idleCPU += u.CPU - partU.CPU
			idleTime += el
			c, err := a.scrape()
			if err != nil {
				return row, err
			}
			if ev := c.sub(partC).Delivered / el.Seconds(); row.QuietEventsPS < 0 || ev < row.QuietEventsPS {
				row.QuietEventsPS, row.QuietSeconds = ev, el.Seconds()
				row.QuietCPU = 100 * float64(u.CPU-partU.CPU) / float64(el)
			}
			if partU, err = readProcUsage(a.pid()); err != nil {
				return row, err
			}
			partStart, partC = time.Now(), c
		}
	}
	u1, err := readProcUsage(a.pid())
	if err != nil {
		return row, err
	}
	el := time.Since(t0)
	c1, err := a.scrape()
	if err != nil {
		return row, err
	}
	row.CPUPercent = 100 * float64(u1.CPU-u0.CPU) / float64(el)
	if rate == 0 {
		idleCPU += u1.CPU - partU.CPU
		idleTime += time.Since(partStart)
		row.CPUPercent = 100 * float64(idleCPU) / float64(idleTime)
	}
	row.Wakeups = float64(u1.Switches-u0.Switches) / el.Seconds()
	row.RSSMax = max(row.RSSMax, u1.RSS)
	row.HWM = u1.HWM
	row.Drops = c1.sub(c0).drops()
	row.EventsPS = c1.sub(c0).Delivered / el.Seconds()
	row.MapRSS = bpfMapRSS(a.pid())
	if rate > 0 && wall > 0 {
		row.Achieved = float64(ops) / wall.Seconds()
	}
	return row, nil
}

// bpfMapRSS sums the resident pages of BPF maps mapped into pid (the ring
// buffer: its data pages are mapped twice, so they count twice).
func bpfMapRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0
	}
	var total int64
	inMap := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			inMap = len(f) >= 6 && f[5] == "anon_inode:bpf-map"
			continue
		}
		if inMap && f[0] == "Rss:" && len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			total += n << 10
		}
	}
	return total
}
