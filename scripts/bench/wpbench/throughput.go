package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/watchpost/watchpost/collector/certs"
)

// rateStep is one generator rate held for a while.
type rateStep struct {
	Target    float64
	Threads   int
	Achieved  float64 // generator opens per second
	Produced  float64 // events the hooks saw (all of the host's)
	Delivered float64 // events that reached the end of the path
	Drops     float64
	Detail    string
	AgentCPU  float64 // percent of one core, the consumer process
	CPUSecs   float64 // the consumer's CPU over the step, seconds
	DrainTime time.Duration
}

type pathResult struct {
	ID, Name, Setup string
	Generator       string
	Steps           []rateStep
	Stop            string // why the ladder stopped
}

// best is the highest achieved rate of a step with zero drops.
func (p pathResult) best() *rateStep {
	var b *rateStep
	for i := range p.Steps {
		s := &p.Steps[i]
		if s.Drops == 0 && (b == nil || s.Achieved > b.Achieved) {
			b = s
		}
	}
	return b
}

type progStat struct {
	Name     string
	Runs     uint64
	Runtime  time.Duration
	PerRunNS float64
}

type profileResult struct {
	Rate      float64
	Achieved  float64
	Seconds   float64
	AgentCPU  float64
	Delivered float64
	Programs  []progStat
	// DefaultPrograms: the same rate with the default configuration.
	DefaultPrograms []progStat
	Top             string // go tool pprof -top
	Err             string
}

type throughputResult struct {
	Paths            []pathResult
	Profile          profileResult
	CollectorRSS     int64 // peak, bytes
	CollectorIdleRSS int64
	StepSeconds      float64
	Ring             string
	// Urgent is one step of cred_change events (forced wakeup each) into
	// the reader, at a target the failed-open ladder also holds.
	Urgent *rateStep
}

// counterSource is one end-to-end path as the ladder sees it.
type counterSource struct {
	snapshot func() (produced, delivered, drops float64, detail string, err error)
	pid      int
	// settle is how long delivered must stay unchanged for the path to be
	// drained (the shipper seals a batch after up to 1 s).
	settle time.Duration
}

// drained waits until the consumer has caught up with the generator: the
// delivered count grew by less than 500 events/s (the rest of the host's
// background) over the last src.settle, at most 30 s. It returns the last
// snapshot.
func drained(src counterSource) (prod, del, drops float64, detail string, err error) {
	settle := src.settle
	if settle == 0 {
		settle = 750 * time.Millisecond
	}
	type point struct {
		at  time.Time
		del float64
	}
	var hist []point
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		if prod, del, drops, detail, err = src.snapshot(); err != nil {
			return
		}
		now := time.Now()
		hist = append(hist, point{now, del})
		for len(hist) > 1 && now.Sub(hist[1].at) >= settle {
			hist = hist[1:]
		}
		if span := now.Sub(hist[0].at); span >= settle && del-hist[0].del <= 500*span.Seconds() {
			return
		}
	}
	return
}

func runThroughput(ctx context.Context, o *options, cleanups *cleanupStack) (*throughputResult, error) {
	step := 3 * time.Second
	if !o.short {
		step = 10 * time.Second
	}
	res := &throughputResult{StepSeconds: step.Seconds(),
		Ring: "kernel.ring_bytes 4 MiB, wakeup_bytes 256 KiB, poll_interval 100 ms (backing off to 1 s while nothing arrives), queue_len 65536: the defaults"}
	rates := []float64{50e3, 100e3, 150e3, 200e3, 300e3, 400e3, 500e3, 600e3, 800e3}

	// 1. Kernel -> reader -> decoder, no pipeline (sensor-child).
	sc, err := startChild(ctx, filepath.Join(o.workDir, "sensor-child.log"), "sensor-child")
	if err != nil {
		return nil, err
	}
	src := counterSource{pid: sc.pid(), snapshot: func() (float64, float64, float64, string, error) {
		s, err := sc.stats()
		if err != nil {
			return 0, 0, 0, "", err
		}
		k := s.Kernel
		// Rate-limited events are lost too (full capture lifts the limits,
		// so this is a check that it did).
		drops := float64(k.RingFull + k.QueueFull + k.Missed + s.ProgramMisses + s.DecodeErrors + k.RateLimited)
		return float64(k.Produced), float64(s.Consumed), drops,
			fmt.Sprintf("ring_full %d, queue_full %d, missed %d, rate_limited %d", k.RingFull, k.QueueFull, k.Missed+s.ProgramMisses, k.RateLimited), nil
	}}
	setup := "agent/kernel Sensor loaded alone (full capture), its queue drained and discarded: `wpbench sensor-child`"
	p, err := ladder(ctx, o, "kernel → agent reader, file_open events (ring, ReadInto, decode; no pipeline)", genOpen, src, rates, step)
	if err == nil {
		p.ID, p.Setup = "reader-open", setup
		res.Paths = append(res.Paths, p)
		p, err = ladder(ctx, o, "kernel → agent reader, failed file_open events (ring, ReadInto, decode; no pipeline)", genMissing, src, rates, step)
		p.ID = "reader-enoent"
		p.Setup = setup + "; generator: opens of a missing absolute path, cheap in the kernel (no dentry walk), so that the producer is less of a limit"
		res.Paths = append(res.Paths, p)
	}
	if err == nil {
		// Urgent events: each one forces a reader wakeup.
		var s rateStep
		if s, err = holdRate(ctx, o, src, genCred, 400e3, step); err == nil {
			res.Urgent = &s
			progress("throughput: urgent cred_change events: target 400000/s, achieved %.0f/s, drops %.0f, consumer CPU %.0f%%", s.Achieved, s.Drops, s.AgentCPU)
		}
	}
	if err = errors.Join(err, sc.stop()); err != nil {
		return nil, err
	}

	// 2. The whole agent: pipeline, process table, JSON lines to /dev/null.
	a, err := startAgent(ctx, o, "throughput", fullCaptureYAML)
	if err != nil {
		return nil, err
	}
	src = counterSource{pid: a.pid(), snapshot: agentSnapshot(a)}
	p, err = ladder(ctx, o, "kernel → agent output, file_open events (whole agent, JSON lines to /dev/null)", genOpen, src, rates, step)
	if err == nil {
		p.ID, p.Setup = "agent-stdout", "bin/watchpost-agent, full capture, `--output stdout` to /dev/null; counters from its /metrics"
		res.Paths = append(res.Paths, p)
		// Failed opens cost the producer less, so more of the two cores
		// is left to the agent.
		p, err = ladder(ctx, o, "kernel → agent output, failed file_open events (whole agent, JSON lines to /dev/null)", genMissing, src, rates, step)
		p.ID = "agent-stdout-enoent"
		p.Setup = "bin/watchpost-agent, full capture, `--output stdout` to /dev/null; generator: opens of a missing absolute path"
	}
	if err == nil {
		res.Paths = append(res.Paths, p)
		best := res.Paths[len(res.Paths)-2].best()
		rate := 100e3
		if best != nil {
			rate = best.Target
		}
		res.Profile = profileAgent(ctx, o, a, rate, 2*step)
	}
	err = errors.Join(err, a.stop())
	if err != nil {
		return nil, err
	}
	if res.Profile.Err == "" {
		if res.Profile.DefaultPrograms, err = defaultPrograms(ctx, o, res.Profile.Rate, 2*step); err != nil {
			return nil, err
		}
	}

	// 3. Agent -> collector over loopback mutual TLS, into SQLite.
	p, peak, idle, err := collectorLadder(ctx, o, step)
	if err != nil {
		return nil, err
	}
	res.Paths = append(res.Paths, p)
	res.CollectorRSS, res.CollectorIdleRSS = peak, idle
	return res, nil
}

func agentSnapshot(a *agentProc) func() (float64, float64, float64, string, error) {
	return func() (float64, float64, float64, string, error) {
		c, err := a.scrape()
		if err != nil {
			return 0, 0, 0, "", err
		}
		return c.Produced, c.Delivered, c.drops(), fmt.Sprintf("ring_full %.0f, queue_full %.0f, missed %.0f, rate_limited %.0f",
			c.RingFull, c.QueueFull, c.Missed+c.ProgramMissed, c.RateLimited), nil
	}
}

// ladder raises the generator's rate until events are dropped or the
// generator cannot reach the rate.
func ladder(ctx context.Context, o *options, name, kind string, src counterSource, rates []float64, d time.Duration) (pathResult, error) {
	p := pathResult{Name: name, Generator: kind}
	for _, rate := range rates {
		s, err := holdRate(ctx, o, src, kind, rate, d)
		if err != nil {
			return p, fmt.Errorf("%s at %.0f/s: %w", name, rate, err)
		}
		p.Steps = append(p.Steps, s)
		progress("throughput %s: target %.0f/s, achieved %.0f/s, drops %.0f (%s), consumer CPU %.0f%%", name, rate, s.Achieved, s.Drops, s.Detail, s.AgentCPU)
		if s.Drops > 0 {
			p.Stop = fmt.Sprintf("drops at %.0f k/s target", rate/1e3)
			break
		}
		if s.Achieved < 0.9*rate {
			p.Stop = fmt.Sprintf("the generator reached only %.0f k/s of %.0f k/s on the cores left to it", s.Achieved/1e3, rate/1e3)
			break
		}
	}
	if p.Stop == "" {
		p.Stop = "no drops at the highest rate tried"
	}
	return p, nil
}

func holdRate(ctx context.Context, o *options, src counterSource, kind string, rate float64, d time.Duration) (rateStep, error) {
	threads := 1
	if rate > 150e3 {
		threads = 2
	}
	s := rateStep{Target: rate, Threads: threads}
	prod0, del0, drop0, _, err := drained(src)
	if err != nil {
		return s, err
	}
	u0, err := readProcUsage(src.pid)
	if err != nil {
		return s, err
	}
	t0 := time.Now()
	ops, wall, err := generate(ctx, o, kind, rate, d, threads)
	if err != nil {
		return s, err
	}
	genEnd := time.Now()
	s.Achieved = float64(ops) / wall.Seconds()
	// Wait until the consumer has caught up.
	prod1, del1, drop1, detail, err := drained(src)
	if err != nil {
		return s, err
	}
	u1, err := readProcUsage(src.pid)
	if err != nil {
		return s, err
	}
	s.DrainTime = time.Since(genEnd)
	// The in-flight part of the collector's loss can shrink over a step:
	// that is not a negative drop.
	s.Produced, s.Delivered, s.Drops, s.Detail = prod1-prod0, del1-del0, max(0, drop1-drop0), detail
	s.AgentCPU = 100 * float64(u1.CPU-u0.CPU) / float64(time.Since(t0))
	s.CPUSecs = (u1.CPU - u0.CPU).Seconds()
	return s, nil
}

// collectorLadder runs a collector child and an agent shipping to it.
func collectorLadder(ctx context.Context, o *options, step time.Duration) (pathResult, int64, int64, error) {
	p := pathResult{Name: "kernel → collector store, file_open events (agent → loopback mTLS gRPC → collector → SQLite)"}
	dir := filepath.Join(o.workDir, "collector")
	const agentID = "wpbench-agent"
	if err := certs.Generate(certs.Options{Dir: dir, Agents: []string{agentID}, Hosts: []string{"127.0.0.1", "localhost"}}); err != nil {
		return p, 0, 0, fmt.Errorf("collector certificates: %w", err)
	}
	ingest, err := freeAddr()
	if err != nil {
		return p, 0, 0, err
	}
	query, err := freeAddr()
	if err != nil {
		return p, 0, 0, err
	}
	cc, err := startChild(ctx, filepath.Join(o.workDir, "collector-child.log"), "collector-child", "--dir", dir, "--listen", ingest, "--query", query)
	if err != nil {
		return p, 0, 0, err
	}
	defer cc.stop()
	cert, key := certs.AgentFiles(agentID)
	extra := fullCaptureYAML + fmt.Sprintf(`output: collector
collector:
  address: %q
  agent_id: %s
  ca: %q
  cert: %q
  key: %q
`, ingest, agentID, filepath.Join(dir, certs.CAFile), filepath.Join(dir, cert), filepath.Join(dir, key))
	a, err := startAgent(ctx, o, "collector-agent", extra)
	if err != nil {
		return p, 0, 0, err
	}
	time.Sleep(2 * time.Second)
	idle, _ := readProcUsage(cc.pid())
	snap := agentSnapshot(a)
	src := counterSource{pid: cc.pid(), settle: 2500 * time.Millisecond, snapshot: func() (float64, float64, float64, string, error) {
		prod, del, drops, detail, err := snap()
		if err != nil {
			return 0, 0, 0, "", err
		}
		cs, err := cc.stats()
		if err != nil {
			return 0, 0, 0, "", err
		}
		// Events the agent delivered to its outputs but the collector did
		// not store (after the drain) were lost in between; the shipper
		// may also store more than it was handed (gap markers), which is
		// not a loss.
		lost := max(0, del-float64(cs.EventsStored))
		return prod, float64(cs.EventsStored), drops + lost, fmt.Sprintf("%s, delivered-but-not-stored %.0f", detail, lost), nil
	}}
	rates := []float64{10e3, 25e3, 50e3, 75e3, 100e3, 150e3}
	p, err = ladder(ctx, o, p.Name, genOpen, src, rates, step)
	peak, _ := readProcUsage(cc.pid())
	err = errors.Join(err, a.stop())
	if err != nil {
		return p, 0, 0, err
	}
	p.ID = "collector"
	p.Setup = "bin/watchpost-agent, full capture, `--output collector` to a collector (collector.New in its own process, `wpbench collector-child`, per-agent rate limit lifted) over loopback mutual TLS; stored = the collector's EventsStored; consumer CPU = the collector's"
	return p, peak.HWM, idle.RSS, nil
}

// withBPFStats runs f with kernel.bpf_stats_enabled=1, restoring the
// previous value afterwards.
func withBPFStats(f func() error) error {
	const sysctl = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(sysctl)
	if err != nil {
		return fmt.Errorf("reading %s: %w", sysctl, err)
	}
	if err := os.WriteFile(sysctl, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enabling bpf_stats: %w", err)
	}
	ferr := f()
	if err := os.WriteFile(sysctl, old, 0o644); err != nil {
		return errors.Join(ferr, fmt.Errorf("restoring %s: %w", sysctl, err))
	}
	return ferr
}

// programWindow holds a rate and returns the agent's BPF programs' run
// counts and run time over it (bpf_stats must be on).
func programWindow(ctx context.Context, o *options, a *agentProc, rate float64, d time.Duration) ([]progStat, rateStep, error) {
	before := agentProgramStats(a.pid())
	src := counterSource{pid: a.pid(), snapshot: agentSnapshot(a)}
	s, err := holdRate(ctx, o, src, genOpen, rate, d)
	if err != nil {
		return nil, s, err
	}
	var out []progStat
	for name, b := range agentProgramStats(a.pid()) {
		runs := b.Runs - before[name].Runs
		rt := b.Runtime - before[name].Runtime
		if runs == 0 {
			continue
		}
		out = append(out, progStat{Name: name, Runs: runs, Runtime: rt, PerRunNS: float64(rt) / float64(runs)})
	}
	sortProgs(out)
	return out, s, nil
}

// profileAgent holds one rate with bpf_stats on and takes a CPU profile
// of the agent meanwhile.
func profileAgent(ctx context.Context, o *options, a *agentProc, rate float64, d time.Duration) profileResult {
	pr := profileResult{Rate: rate, Seconds: d.Seconds()}
	profPath := filepath.Join(o.workDir, "agent.cpu.pprof")
	err := withBPFStats(func() error {
		profDone := make(chan error, 1)
		go func() {
			profDone <- fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", a.pprofAddr, int(d.Seconds())), profPath)
		}()
		time.Sleep(200 * time.Millisecond)
		progs, s, err := programWindow(ctx, o, a, rate, d)
		pr.Programs = progs
		pr.Achieved, pr.AgentCPU, pr.Delivered = s.Achieved, s.AgentCPU, s.Delivered
		return errors.Join(err, <-profDone)
	})
	if err != nil {
		pr.Err = err.Error()
		return pr
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", profPath).CombinedOutput()
	if err != nil {
		pr.Err = fmt.Sprintf("go tool pprof: %v: %s", err, out)
		return pr
	}
	pr.Top = strings.TrimSpace(string(out))
	return pr
}

// defaultPrograms measures the programs of an agent in its default
// configuration at the same rate: read-only opens are filtered before
// the path is resolved, so the difference to full capture is the cost of
// resolving, copying and submitting the path.
func defaultPrograms(ctx context.Context, o *options, rate float64, d time.Duration) ([]progStat, error) {
	a, err := startAgent(ctx, o, "profile-default", "")
	if err != nil {
		return nil, err
	}
	var progs []progStat
	err = withBPFStats(func() error {
		var err error
		progs, _, err = programWindow(ctx, o, a, rate, d)
		return err
	})
	return progs, errors.Join(err, a.stop())
}

func fetch(url, path string) error {
	client := http.Client{Timeout: 2 * time.Minute}
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// agentProgramStats reads run counts and run time of the BPF programs
// the process pid holds (by name; the kernel keeps 15 characters of it).
func agentProgramStats(pid int) map[string]progStat {
	out := map[string]progStat{}
	for _, id := range bpfProgIDs(pid) {
		prog, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		info, err := prog.Info()
		if err == nil {
			if st, err := prog.Stats(); err == nil {
				ps := out[info.Name]
				ps.Name = info.Name
				ps.Runs += st.RunCount
				ps.Runtime += st.Runtime
				out[info.Name] = ps
			}
		}
		prog.Close()
	}
	return out
}

// bpfProgIDs lists the ids of the BPF programs whose descriptors pid holds.
func bpfProgIDs(pid int) []ebpf.ProgramID {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	seen := map[ebpf.ProgramID]bool{}
	var ids []ebpf.ProgramID
	for _, e := range ents {
		if t, err := os.Readlink(filepath.Join(dir, e.Name())); err != nil || t != "anon_inode:bpf-prog" {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "prog_id:"); ok {
				var n uint32
				if _, err := fmt.Sscan(strings.TrimSpace(v), &n); err == nil && !seen[ebpf.ProgramID(n)] {
					seen[ebpf.ProgramID(n)] = true
					ids = append(ids, ebpf.ProgramID(n))
				}
			}
		}
	}
	return ids
}

func sortProgs(p []progStat) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && p[j].Runtime > p[j-1].Runtime; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}
