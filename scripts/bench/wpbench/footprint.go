package main

import (
	"context"
	"errors"
	"fmt"
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
	Wakeups    float64 // context switches per second, all threads
	Drops      float64
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
	d := 10 * time.Second
	if !o.short {
		d = 60 * time.Second
	}
	for _, rate := range []float64{1e3, 10e3, 100e3} {
		a, err := startAgent(ctx, o, fmt.Sprintf("load-%.0f", rate), fullCaptureYAML)
		if err != nil {
			return nil, err
		}
		time.Sleep(2 * time.Second)
		row, err := window(ctx, o, a, rate, d)
		err = errors.Join(err, a.stop())
		if err != nil {
			return nil, err
		}
		row.Label, row.Config = fmt.Sprintf("%.0fk events/s", rate/1e3), "full capture"
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
			ops, wall, err = generate(ctx, o, rate, d, 1)
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
	for running := true; running; {
		select {
		case err := <-genDone:
			if err != nil {
				return row, err
			}
			running = false
		case <-tick.C:
			if u, err := readProcUsage(a.pid()); err == nil && u.RSS > row.RSSMax {
				row.RSSMax = u.RSS
			}
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
	row.Wakeups = float64(u1.Switches-u0.Switches) / el.Seconds()
	row.RSSMax = max(row.RSSMax, u1.RSS)
	row.HWM = u1.HWM
	row.Drops = c1.sub(c0).drops()
	if rate > 0 && wall > 0 {
		row.Achieved = float64(ops) / wall.Seconds()
	}
	return row, nil
}
