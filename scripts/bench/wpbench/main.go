// Command wpbench measures Watchpost side by side with auditd and bpftrace:
// the overhead on workloads (interleaved runs, ratios against no sensor
// with a no-sensor control row), the kernel-to-agent and kernel-to-collector
// throughput without drops, the agent's footprint, and the Go benchmarks of
// agent/kernel. It writes docs/benchmarks.md.
//
// It must run as root from the repository root, after `make build`:
//
//	go run ./scripts/bench/wpbench --short --doc docs/benchmarks.md
//
// It leaves the machine as it found it: packages it installed are purged,
// audit rules and daemons it started are removed, kernel.bpf_stats_enabled
// is restored and no agent is left running.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	short        bool
	doc          string
	binDir       string
	via          string // -via: what ran wpbench (make bench)
	beforeDir    string // -before: an earlier build's bin directory, for the before-* conditions
	phases       map[string]bool
	conditions   []string
	rounds       int
	runSeconds   float64
	idle         time.Duration
	keepPackages bool
	workDir      string
	loadPath     string
	command      string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "collector-child" {
		if err := collectorChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "wpbench collector-child:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "sensor-child" {
		if err := sensorChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "wpbench sensor-child:", err)
			os.Exit(1)
		}
		return
	}
	opt, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "wpbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err = run(ctx, opt)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "wpbench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("wpbench", flag.ContinueOnError)
	short := fs.Bool("short", false, "the short version (make bench): fewer rounds, shorter runs, 45 s idle")
	doc := fs.String("doc", "", "write the report to this file (docs/benchmarks.md); stdout when empty")
	bin := fs.String("bin", "bin", "directory holding watchpost-agent (make build)")
	phases := fs.String("phases", "overhead,throughput,detection,footprint,gobench", "phases to run")
	conds := fs.String("conditions", strings.Join(allConditions, ","), "overhead conditions, in run order")
	rounds := fs.Int("rounds", 0, "interleaved rounds of the overhead phase (default 5 short, 9 full)")
	runSec := fs.Float64("run-seconds", 0, "bare duration of one workload run (default 0.2 short, 1 full)")
	idle := fs.Duration("idle", 0, "idle footprint window (default 45s short, 10m full)")
	via := fs.String("via", "make bench", "the command that ran wpbench, named in the report's first line")
	before := fs.String("before", "", "directory holding an earlier build's watchpost-agent, run as the before-full and before-default conditions (scripts/bench-before.sh)")
	keep := fs.Bool("keep-packages", os.Getenv("WPBENCH_KEEP_PACKAGES") == "1", "do not purge the auditd and bpftrace packages this run installed (env WPBENCH_KEEP_PACKAGES=1)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o := &options{short: *short, doc: *doc, binDir: *bin, beforeDir: *before, via: *via, rounds: *rounds, runSeconds: *runSec, idle: *idle, keepPackages: *keep}
	o.phases = map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "overhead", "throughput", "detection", "footprint", "gobench":
			o.phases[p] = true
		case "":
		default:
			return nil, fmt.Errorf("-phases: unknown phase %q", p)
		}
	}
	for _, c := range strings.Split(*conds, ",") {
		c = strings.TrimSpace(c)
		if !knownCondition(c) {
			return nil, fmt.Errorf("-conditions: unknown condition %q (known: %s)", c, strings.Join(allConditions, ", "))
		}
		if strings.HasPrefix(c, "before-") && *before == "" {
			return nil, fmt.Errorf("-conditions: %s needs -before DIR (an earlier build's bin directory)", c)
		}
		o.conditions = append(o.conditions, c)
	}
	if o.rounds == 0 {
		o.rounds = map[bool]int{true: 5, false: 9}[o.short]
	}
	if o.runSeconds == 0 {
		o.runSeconds = map[bool]float64{true: 0.2, false: 1}[o.short]
	}
	if o.idle == 0 {
		o.idle = map[bool]time.Duration{true: 45 * time.Second, false: 10 * time.Minute}[o.short]
	}
	o.command = "wpbench " + strings.Join(args, " ")
	return o, nil
}

func run(ctx context.Context, o *options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root: it loads BPF programs, audit rules and bpftrace (sudo make bench)")
	}
	agent := filepath.Join(o.binDir, "watchpost-agent")
	if _, err := os.Stat(agent); err != nil {
		return fmt.Errorf("agent binary: %w (run make build first)", err)
	}
	if o.beforeDir != "" {
		if _, err := os.Stat(filepath.Join(o.beforeDir, "watchpost-agent")); err != nil {
			return fmt.Errorf("-before: %w", err)
		}
	}
	if o.workDir, err = os.MkdirTemp("", "wpbench-"); err != nil {
		return fmt.Errorf("creating the work directory: %w", err)
	}
	defer os.RemoveAll(o.workDir)
	if o.loadPath, err = compileLoad(o.workDir); err != nil {
		return err
	}
	var cleanups cleanupStack
	defer func() {
		if cerr := cleanups.run(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	rep := &report{Opt: o, Started: time.Now(), Machine: describeMachine()}
	rep.Machine.LoadBefore = loadAverage()
	progress("machine: %s; load average %s", rep.Machine.summary(), rep.Machine.LoadBefore)

	if o.phases["overhead"] {
		if rep.Overhead, err = runOverhead(ctx, o, &cleanups); err != nil {
			return fmt.Errorf("overhead: %w", err)
		}
		// Tools are removed as soon as the phase ends, not at exit.
		if cerr := cleanups.run(); cerr != nil {
			return fmt.Errorf("restoring after the overhead phase: %w", cerr)
		}
		rep.PhaseLoads = append(rep.PhaseLoads, [2]string{"overhead", loadAverage()})
	}
	if o.phases["throughput"] {
		if rep.Throughput, err = runThroughput(ctx, o, &cleanups); err != nil {
			return fmt.Errorf("throughput: %w", err)
		}
		rep.PhaseLoads = append(rep.PhaseLoads, [2]string{"throughput", loadAverage()})
	}
	if o.phases["detection"] {
		if rep.Detection, err = runDetection(ctx, o); err != nil {
			return fmt.Errorf("detection: %w", err)
		}
		rep.PhaseLoads = append(rep.PhaseLoads, [2]string{"detection", loadAverage()})
	}
	if o.phases["footprint"] {
		if rep.Footprint, err = runFootprint(ctx, o); err != nil {
			return fmt.Errorf("footprint: %w", err)
		}
		rep.PhaseLoads = append(rep.PhaseLoads, [2]string{"footprint", loadAverage()})
	}
	if o.phases["gobench"] {
		if rep.GoBench, err = runGoBench(ctx, o); err != nil {
			return fmt.Errorf("go benchmarks: %w", err)
		}
	}
	rep.Finished = time.Now()
	rep.Machine.LoadAfter = loadAverage()
	return rep.write()
}

// cleanupStack runs restore steps in reverse order, once.
type cleanupStack struct{ fns []func() error }

func (c *cleanupStack) push(f func() error) { c.fns = append(c.fns, f) }

func (c *cleanupStack) run() error {
	var errs []error
	for i := len(c.fns) - 1; i >= 0; i-- {
		errs = append(errs, c.fns[i]())
	}
	c.fns = nil
	return errors.Join(errs...)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "wpbench %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// loadAverage returns /proc/loadavg's three averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
