package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"
)

// Conditions of the overhead phase. "control" is a second no-sensor slot
// in every round: control / none is the noise floor.
var allConditions = []string{"none", "watchpost-full", "watchpost-default", "control", "auditd", "bpftrace"}

// beforeConditions run an earlier build's agent (-before) the way the
// watchpost-* ones run this one: the same workloads in the same rounds, so
// a change's cost is a ratio within one run.
var beforeConditions = []string{"before-full", "before-default"}

func knownCondition(c string) bool {
	for _, k := range append(allConditions, beforeConditions...) {
		if k == c {
			return true
		}
	}
	return false
}

var conditionText = map[string]string{
	"none":              "no sensor (the baseline)",
	"control":           "no sensor again, a separate slot of each round: the noise floor",
	"watchpost-full":    "Watchpost, full capture: every event type, read_opens true, threads true, no rate limit, JSON to /dev/null",
	"watchpost-default": "Watchpost, default configuration (read-only opens of regular files filtered in the kernel, 2000 file events/s per process), JSON to /dev/null",
	"before-full":       "the earlier build (-before), full capture as watchpost-full",
	"before-default":    "the earlier build (-before), its default configuration",
	"auditd":            "auditd",
	"bpftrace":          "bpftrace",
}

type overheadResult struct {
	Conditions []string
	Iters      map[string]int64               // per workload
	Samples    map[string]map[string][]sample // condition -> workload -> per round
	Notes      map[string]string              // condition -> what exactly ran
	Skipped    map[string]string              // condition -> why it did not run
	Rounds     int
	RunSeconds float64
	Elapsed    time.Duration
}

// sensor is one condition's start and stop.
type sensor struct {
	start func(context.Context) error
	stop  func() error
}

func runOverhead(ctx context.Context, o *options, cleanups *cleanupStack) (*overheadResult, error) {
	began := time.Now()
	res := &overheadResult{Iters: map[string]int64{}, Samples: map[string]map[string][]sample{},
		Notes: map[string]string{}, Skipped: map[string]string{}, Rounds: o.rounds, RunSeconds: o.runSeconds}
	sensors := map[string]sensor{}
	for _, c := range o.conditions {
		var s sensor
		switch c {
		case "none", "control":
			s = sensor{start: func(context.Context) error { return nil }, stop: func() error { return nil }}
		case "watchpost-full", "watchpost-default", "before-full", "before-default":
			extra := ""
			switch c {
			case "watchpost-full":
				extra = fullCaptureYAML
			case "before-full":
				extra = beforeFullCaptureYAML
			}
			var a *agentProc
			name := c
			s = sensor{
				start: func(ctx context.Context) (err error) {
					a, err = startAgent(ctx, o, name, extra)
					return err
				},
				stop: func() error {
					if a == nil {
						return nil
					}
					err := a.stop()
					a = nil
					return err
				},
			}
		case "auditd":
			p, err := prepareAudit(ctx, o, cleanups)
			if err != nil {
				res.Skipped[c] = err.Error()
				progress("auditd skipped: %v", err)
				continue
			}
			s = sensor{start: p.start, stop: p.stop}
			defer func() { res.Notes["auditd"] = p.note() }()
		case "bpftrace":
			p, err := prepareBpftrace(ctx, o, cleanups)
			if err != nil {
				res.Skipped[c] = err.Error()
				progress("bpftrace skipped: %v", err)
				continue
			}
			s = sensor{start: p.start, stop: p.stop}
			defer func() {
				res.Notes["bpftrace"] = p.note()
				if n := p.lostEvents(); n > 0 {
					res.Notes["bpftrace"] += fmt.Sprintf("; bpftrace reported %d lost events over all rounds", n)
				}
			}()
		}
		sensors[c] = s
		res.Conditions = append(res.Conditions, c)
		res.Samples[c] = map[string][]sample{}
	}

	// Calibrate with no sensor: iterations for runSeconds of wall time.
	for _, w := range workloads {
		probe := map[string]int64{"fork_exec": 100, "tcp_connect": 2000, "tcp_poll": 5000}[w.name]
		if probe == 0 {
			probe = 20000
		}
		s, err := runWorkload(ctx, o, w.name, probe)
		if err != nil {
			return nil, err
		}
		n := int64(o.runSeconds * float64(probe) / s.Wall.Seconds())
		res.Iters[w.name] = max(n, 50)
	}
	progress("overhead: %d rounds of %v, workloads calibrated to %.2f s each: %v", o.rounds, res.Conditions, o.runSeconds, res.Iters)

	for r := 0; r < o.rounds; r++ {
		for _, c := range res.Conditions {
			s := sensors[c]
			if err := s.start(ctx); err != nil {
				return nil, fmt.Errorf("starting %s: %w", c, err)
			}
			time.Sleep(300 * time.Millisecond) // let start-up work settle
			for _, w := range workloads {
				smp, err := runWorkload(ctx, o, w.name, res.Iters[w.name])
				if err != nil {
					_ = s.stop()
					return nil, fmt.Errorf("%s under %s: %w", w.name, c, err)
				}
				res.Samples[c][w.name] = append(res.Samples[c][w.name], smp)
			}
			if err := s.stop(); err != nil {
				return nil, fmt.Errorf("stopping %s: %w", c, err)
			}
		}
		progress("overhead: round %d/%d done (load %s)", r+1, o.rounds, loadAverage())
	}
	res.Elapsed = time.Since(began)
	return res, nil
}

// ratioStats are the median, min and max of per-round ratios.
type ratioStats struct {
	Median, Min, Max float64
	N                int
}

func statsOf(v []float64) ratioStats {
	if len(v) == 0 {
		return ratioStats{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return ratioStats{Median: m, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// ratios pairs each round of cond with the same round of the baseline.
func (r *overheadResult) ratios(cond, workload string, wall bool) ratioStats {
	return r.ratiosTo("none", cond, workload, wall)
}

// ratiosTo pairs each round of cond with the same round of baseCond.
func (r *overheadResult) ratiosTo(baseCond, cond, workload string, wall bool) ratioStats {
	base, cur := r.Samples[baseCond][workload], r.Samples[cond][workload]
	var v []float64
	for i := 0; i < len(base) && i < len(cur); i++ {
		if wall {
			v = append(v, cur[i].wallPerOp()/base[i].wallPerOp())
		} else {
			v = append(v, cur[i].cpuPerOp()/base[i].cpuPerOp())
		}
	}
	return statsOf(v)
}

// baseline returns the median CPU and wall per operation with no sensor.
func (r *overheadResult) baseline(workload string) (cpu, wall float64) {
	var c, w []float64
	for _, s := range r.Samples["none"][workload] {
		c = append(c, s.cpuPerOp())
		w = append(w, s.wallPerOp())
	}
	return statsOf(c).Median, statsOf(w).Median
}
