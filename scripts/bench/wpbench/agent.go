package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// agentProc is a watchpost-agent started by wpbench.
type agentProc struct {
	name        string
	cmd         *exec.Cmd
	metricsAddr string
	pprofAddr   string
	logPath     string
	done        chan struct{}
	waitErr     error
}

// fullCaptureYAML: every event type, read-only opens, thread clones, no
// rate limit.
const fullCaptureYAML = beforeFullCaptureYAML + `    user_per_second: 0
    user_burst: 0
`

// beforeFullCaptureYAML is fullCaptureYAML in the keys an earlier build
// knows: its rate limit is per process only.
const beforeFullCaptureYAML = `kernel:
  threads: true
filters:
  read_opens: true
  rate_limit:
    per_second: 0
    burst: 0
`

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free loopback port: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// startAgent writes the configuration (extra YAML after the bench's own
// keys) and starts the agent, returning once /healthz answers.
func startAgent(ctx context.Context, o *options, name, extraYAML string, args ...string) (*agentProc, error) {
	metrics, err := freeAddr()
	if err != nil {
		return nil, err
	}
	pprofAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(o.workDir, name+".yaml")
	cfg := fmt.Sprintf("log_level: warn\nmetrics_addr: %q\n%s", metrics, extraYAML)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("writing the agent configuration: %w", err)
	}
	a := &agentProc{name: name, metricsAddr: metrics, pprofAddr: pprofAddr,
		logPath: filepath.Join(o.workDir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(a.logPath)
	if err != nil {
		return nil, err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		logf.Close()
		return nil, err
	}
	dir := o.binDir
	if strings.HasPrefix(name, "before-") {
		dir = o.beforeDir
	}
	a.cmd = exec.Command(filepath.Join(dir, "watchpost-agent"),
		append([]string{"--config", cfgPath, "--pprof", pprofAddr}, args...)...)
	a.cmd.Stdout = devnull
	a.cmd.Stderr = logf
	if err := a.cmd.Start(); err != nil {
		logf.Close()
		devnull.Close()
		return nil, fmt.Errorf("starting watchpost-agent: %w", err)
	}
	go func() {
		a.waitErr = a.cmd.Wait()
		logf.Close()
		devnull.Close()
		close(a.done)
	}()
	if err := a.waitReady(ctx, 60*time.Second); err != nil {
		a.stop()
		return nil, err
	}
	return a, nil
}

func (a *agentProc) pid() int { return a.cmd.Process.Pid }

func (a *agentProc) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-a.done:
			return fmt.Errorf("watchpost-agent (%s) exited during start-up: %v\n%s", a.name, a.waitErr, a.logTail())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := client.Get("http://" + a.metricsAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("watchpost-agent (%s) not healthy within %s\n%s", a.name, limit, a.logTail())
}

func (a *agentProc) logTail() string {
	b, _ := os.ReadFile(a.logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}

// stop sends SIGTERM and waits (SIGKILL after 30 s): no agent is left.
func (a *agentProc) stop() error {
	select {
	case <-a.done:
		return nil
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
		return fmt.Errorf("watchpost-agent (%s) did not stop within 30 s of SIGTERM; killed", a.name)
	}
	var ee *exec.ExitError
	if a.waitErr != nil && !errors.As(a.waitErr, &ee) {
		return a.waitErr
	}
	if ee != nil && ee.ExitCode() != 0 {
		return fmt.Errorf("watchpost-agent (%s) exited with %d\n%s", a.name, ee.ExitCode(), a.logTail())
	}
	return nil
}

// counters are the agent's metrics that the bench reads.
type counters struct {
	Produced, Emitted, Filtered, RateLimited, RingFull, QueueFull, Missed, ProgramMissed float64
	Delivered, DecodeErrors                                                              float64
}

func (c counters) drops() float64 {
	return c.RingFull + c.QueueFull + c.Missed + c.ProgramMissed + c.DecodeErrors + c.RateLimited
}

func (c counters) sub(b counters) counters {
	return counters{Produced: c.Produced - b.Produced, Emitted: c.Emitted - b.Emitted, Filtered: c.Filtered - b.Filtered,
		RateLimited: c.RateLimited - b.RateLimited, RingFull: c.RingFull - b.RingFull, QueueFull: c.QueueFull - b.QueueFull,
		Missed: c.Missed - b.Missed, ProgramMissed: c.ProgramMissed - b.ProgramMissed,
		Delivered: c.Delivered - b.Delivered, DecodeErrors: c.DecodeErrors - b.DecodeErrors}
}

// scrape reads the agent's Prometheus metrics.
func (a *agentProc) scrape() (counters, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + a.metricsAddr + "/metrics")
	if err != nil {
		return counters{}, fmt.Errorf("scraping the agent's metrics: %w", err)
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (counters, error) {
	var c counters
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name, labels := line[:i], ""
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name, labels = name[:j], name[j:]
		}
		switch name {
		case "watchpost_events_total":
			switch label(labels, "reason") {
			case "produced":
				c.Produced += v
			case "emitted":
				c.Emitted += v
			case "filtered":
				c.Filtered += v
			case "rate_limited":
				c.RateLimited += v
			case "ring_full":
				c.RingFull += v
			case "queue_full":
				c.QueueFull += v
			case "recursion_miss":
				c.Missed += v
			}
		case "watchpost_program_missed_runs_total":
			c.ProgramMissed += v
		case "watchpost_delivered_total":
			c.Delivered = v
		case "watchpost_decode_errors_total":
			c.DecodeErrors = v
		}
	}
	return c, sc.Err()
}

func label(labels, key string) string {
	i := strings.Index(labels, key+`="`)
	if i < 0 {
		return ""
	}
	rest := labels[i+len(key)+2:]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return rest[:j]
}

// procUsage is a process's CPU time (all threads, ns precision from
// schedstat), resident set and context switches.
type procUsage struct {
	CPU      time.Duration
	RSS, HWM int64 // bytes
	Switches int64 // voluntary + involuntary, all threads
}

func readProcUsage(pid int) (procUsage, error) {
	var u procUsage
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return u, fmt.Errorf("reading the threads of %d: %w", pid, err)
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				u.CPU += time.Duration(n)
			}
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err == nil {
			for _, line := range strings.Split(string(st), "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					u.Switches += n
				}
			}
		}
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			u.RSS = n << 10
		case "VmHWM":
			u.HWM = n << 10
		}
	}
	return u, nil
}
