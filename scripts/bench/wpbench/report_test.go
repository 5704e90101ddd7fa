package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// syntheticReport fills every section with fixed figures.
func syntheticReport(doc string) *report {
	o := &options{short: true, doc: doc, rounds: 2, runSeconds: 0.2, idle: 45 * time.Second, command: "wpbench -short"}
	ov := &overheadResult{Iters: map[string]int64{}, Samples: map[string]map[string][]sample{},
		Notes: map[string]string{"auditd": "auditd note"}, Skipped: map[string]string{}, Rounds: 2, RunSeconds: 0.2,
		Conditions: []string{"none", "watchpost-full", "watchpost-default", "control", "auditd", "bpftrace"}}
	factor := map[string]float64{"none": 1, "watchpost-full": 2, "watchpost-default": 1.5, "control": 1.01, "auditd": 5, "bpftrace": 5}
	for _, c := range ov.Conditions {
		ov.Samples[c] = map[string][]sample{}
		for _, w := range workloads {
			ov.Iters[w.name] = 1000
			for r := 0; r < 2; r++ {
				cpu := time.Duration(float64(2*time.Millisecond) * factor[c] * (1 + 0.01*float64(r)))
				ov.Samples[c][w.name] = append(ov.Samples[c][w.name], sample{Iters: 1000, CPU: cpu, Wall: cpu * 2})
			}
		}
	}
	step := rateStep{Target: 100e3, Threads: 1, Achieved: 99e3, Produced: 3e5, Delivered: 3e5, AgentCPU: 20}
	drop := rateStep{Target: 200e3, Threads: 2, Achieved: 150e3, Produced: 4e5, Delivered: 3e5, Drops: 1e5, Detail: "queue_full 100000", AgentCPU: 70}
	progs := []progStat{{Name: "wp_sys_exit_fil", Runs: 1000, Runtime: 2500 * time.Microsecond, PerRunNS: 2500},
		{Name: "wp_sys_enter", Runs: 1000, Runtime: 400 * time.Microsecond, PerRunNS: 400}}
	tp := &throughputResult{StepSeconds: 3, Ring: "ring", CollectorRSS: 70 << 20, CollectorIdleRSS: 20 << 20,
		Paths: []pathResult{
			{ID: "reader-enoent", Name: "reader", Generator: genMissing, Steps: []rateStep{step, drop}, Stop: "drops"},
			{ID: "collector", Name: "kernel → collector", Generator: genOpen, Steps: []rateStep{step}, Stop: "generator"},
		},
		Urgent: &rateStep{Target: 100e3, Threads: 1, Achieved: 90e3, AgentCPU: 30},
		Profile: profileResult{Rate: 100e3, Achieved: 99e3, Seconds: 6, AgentCPU: 50, Delivered: 6e5, Programs: progs,
			DefaultPrograms: []progStat{{Name: "wp_sys_exit_fil", Runs: 1000, Runtime: time.Millisecond, PerRunNS: 1000}},
			Top:             "      flat  flat%   sum%        cum   cum%\n     0.15s  3.38% 29.95%      2.72s 61.26%  encoding/json.structEncoder.encode"},
	}
	fp := &footprintResult{Rows: []footprintRow{
		{Label: "idle", Config: "default configuration", Seconds: 45, CPUPercent: 0.03, RSSMax: 40 << 20, MapRSS: 16 << 20,
			QuietCPU: 0.02, QuietSeconds: 15},
		{Label: "10k events/s", Config: "full capture", Seconds: 8, Achieved: 1e4, CPUPercent: 8, RSSMax: 39 << 20, MapRSS: 16 << 20},
	}}
	return &report{Opt: o, Started: time.Unix(1e9, 0), Finished: time.Unix(1e9+500, 0), Machine: machine{CPUs: 2},
		PhaseLoads: [][2]string{{"overhead", "1.00 1.00 1.00"}}, Overhead: ov, Throughput: tp, Footprint: fp,
		GoBench: &goBenchResult{Command: "go test", Output: "BenchmarkOpenClose/none-2 1 2 ns/op"}}
}

func TestReportRendersEverySectionWithoutFormatErrors(t *testing.T) {
	doc := filepath.Join(t.TempDir(), "benchmarks.md")
	r := syntheticReport(doc)
	if err := r.write(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	if i := strings.Index(out, "%!"); i >= 0 {
		t.Errorf("format error in the report: %q", out[max(0, i-80):min(len(out), i+80)])
	}
	for _, want := range []string{"## Against the bars", "## What limits the figures", "## Overhead on workloads",
		"## Throughput without drops", "**Urgent events.**", "## Footprint of the agent", "## Go benchmarks",
		"| open/close, full capture: ≤ 1.10× CPU vs no sensor | **2.00** (2.00–2.00) |", headlineMarker} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	// A second run compares with the first.
	r2 := syntheticReport(doc)
	if err := r2.write(); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(doc)
	if !strings.Contains(string(b), "| cpu:watchpost-full:open_close | 2 | 2 | +0.0% | yes") {
		t.Errorf("the second report does not compare with the first:\n%s", b)
	}
}

func TestStatsOfTakesTheMedianOfEvenAndOddCounts(t *testing.T) {
	if got := statsOf([]float64{3, 1, 2}); got.Median != 2 || got.Min != 1 || got.Max != 3 || got.N != 3 {
		t.Errorf("odd: got %+v", got)
	}
	if got := statsOf([]float64{4, 1, 2, 3}); got.Median != 2.5 {
		t.Errorf("even: median %v, want 2.5", got.Median)
	}
}

func TestParseMetricsSumsReasonsOverTypes(t *testing.T) {
	in := `# HELP watchpost_events_total x
watchpost_events_total{reason="produced",type="file_open"} 10
watchpost_events_total{reason="produced",type="exec"} 5
watchpost_events_total{reason="queue_full",type="file_open"} 2
watchpost_program_missed_runs_total{program="wp_sys_enter"} 1
watchpost_delivered_total 12
`
	c, err := parseMetrics(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if c.Produced != 15 || c.QueueFull != 2 || c.Delivered != 12 || c.drops() != 3 {
		t.Errorf("got %+v (drops %v)", c, c.drops())
	}
}

func TestReportComparesWithAnEarlierBuild(t *testing.T) {
	doc := filepath.Join(t.TempDir(), "benchmarks-before.md")
	r := syntheticReport(doc)
	r.Opt.beforeDir, r.Opt.via = "/tmp/x/bin", "scripts/bench-before.sh abc123"
	ov := r.Overhead
	for c, f := range map[string]float64{"before-full": 2.5, "before-default": 1.5} {
		ov.Conditions = append(ov.Conditions, c)
		ov.Samples[c] = map[string][]sample{}
		for _, w := range workloads {
			for _, s := range ov.Samples["none"][w.name] {
				cpu := time.Duration(float64(s.CPU) * f)
				ov.Samples[c][w.name] = append(ov.Samples[c][w.name], sample{Iters: 1000, CPU: cpu, Wall: cpu * 2})
			}
		}
	}
	if err := r.write(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(doc)
	out := string(b)
	for _, want := range []string{"# Benchmarks against an earlier build", "Generated by `scripts/bench-before.sh abc123` (→ `wpbench -short`)",
		"| full capture: watchpost-full / before-full | **0.80** (0.80–0.80) |",
		"| default configuration: watchpost-default / before-default | **1.00** (1.00–1.00) |",
		"| control (noise): control / none | **1.01** (1.01–1.01) |"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
}

func TestBeforeConditionsNeedAnEarlierBuild(t *testing.T) {
	if _, err := parseFlags([]string{"-conditions", "none,before-full"}); err == nil || !strings.Contains(err.Error(), "needs -before DIR") {
		t.Errorf("got %v, want an error naming -before", err)
	}
	o, err := parseFlags([]string{"-conditions", "none,before-default", "-before", "/x"})
	if err != nil || o.beforeDir != "/x" {
		t.Errorf("got %+v, %v", o, err)
	}
}
