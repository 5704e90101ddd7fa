// Package alerts turns agents' heartbeats into tamper-evidence alerts: a
// heartbeat that does not come, skipped heartbeat sequence numbers, a new
// agent process or boot without a clean stop before it, a jump in the drop
// counters, and kernel programs that disappear while the agent runs. It is
// pure logic: the collector feeds it heartbeats and the clock, and stores
// what it returns.
package alerts

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Config holds the thresholds. Zero values take the defaults.
type Config struct {
	// MissedIntervals: a heartbeat is missing after this many intervals of
	// silence (3).
	MissedIntervals int
	// DefaultInterval is assumed when a heartbeat does not state its own (10s).
	DefaultInterval time.Duration
	// DropJump is the rise of an agent's total drop counter between two
	// heartbeats that raises an alert (1000).
	DropJump uint64
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.MissedIntervals == 0 {
		c.MissedIntervals = 3
	}
	if c.DefaultInterval == 0 {
		c.DefaultInterval = 10 * time.Second
	}
	if c.DropJump == 0 {
		c.DropJump = 1000
	}
}

type agent struct {
	last     *watchpostv1.Heartbeat
	received time.Time
	stopped  bool // the last heartbeat was final, or an agent_stop event came after it
	missed   bool // a missed-heartbeat alert is open
	remote   bool // the last heartbeat went to another collector: it watches the silence
	shedding bool // configured shedding is over the threshold: its alert was raised
}

// Engine keeps the last heartbeat of each agent. It is safe for concurrent use.
type Engine struct {
	cfg     Config
	started time.Time
	mu      sync.Mutex
	agents  map[string]*agent
}

// New returns an engine; start is when the collector started (silence
// before it is not the agent's fault).
func New(cfg Config, start time.Time) *Engine {
	cfg.Defaults()
	return &Engine{cfg: cfg, started: start, agents: map[string]*agent{}}
}

// Seed restores an agent's last heartbeat (from the store, at start-up)
// without raising alerts.
func (e *Engine) Seed(agentID string, hb *watchpostv1.Heartbeat, received time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.agents[agentID] = &agent{last: hb, received: received, stopped: hb.GetFinal()}
}

// SeedRemote records a heartbeat another collector of a fleet received
// (read from the shared store): it is the base for this collector's next
// comparison, and this collector does not report the agent's silence
// until the agent streams to it again.
func (e *Engine) SeedRemote(agentID string, hb *watchpostv1.Heartbeat, received time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.agents[agentID] = &agent{last: hb, received: received, stopped: hb.GetFinal(), remote: true}
}

// LastReceived is when the agent's last known heartbeat was received.
func (e *Engine) LastReceived(agentID string) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if a, ok := e.agents[agentID]; ok {
		return a.received, true
	}
	return time.Time{}, false
}

func (e *Engine) newAlert(agentID string, hb *watchpostv1.Heartbeat, kind watchpostv1.AlertKind, now time.Time, format string, args ...any) *watchpostv1.Alert {
	return &watchpostv1.Alert{
		AgentId: agentID, Host: agentID, Kind: kind, TimeUnixNano: now.UnixNano(),
		Message: fmt.Sprintf(format, args...), BootId: hb.GetBootId(), InstanceId: hb.GetInstanceId(),
		Severity: KindSeverity(kind), State: watchpostv1.AlertState_ALERT_STATE_OPEN,
	}
}

// KindSeverity is the severity a tamper-evidence alert of a kind is raised
// with: detached programs mean the sensor is being blinded; a silent agent
// may be a dead host or a killed sensor; gaps, restarts and drop jumps are
// evidence to look at.
func KindSeverity(k watchpostv1.AlertKind) watchpostv1.Severity {
	switch k {
	case watchpostv1.AlertKind_ALERT_KIND_PROGRAMS_DETACHED:
		return watchpostv1.Severity_SEVERITY_CRITICAL
	case watchpostv1.AlertKind_ALERT_KIND_MISSED_HEARTBEAT:
		return watchpostv1.Severity_SEVERITY_HIGH
	case watchpostv1.AlertKind_ALERT_KIND_SEQUENCE_GAP, watchpostv1.AlertKind_ALERT_KIND_UNCLEAN_RESTART,
		watchpostv1.AlertKind_ALERT_KIND_DROP_JUMP:
		return watchpostv1.Severity_SEVERITY_MEDIUM
	// Rate limiting and filters that shed what they were configured to are
	// the configuration working, not a loss: information for tuning.
	case watchpostv1.AlertKind_ALERT_KIND_EVENTS_SHED:
		return watchpostv1.Severity_SEVERITY_INFO
	// Hostile-gateway alerts: an identity used by someone else, a revoked
	// certificate and damaged agent state point at an attacker; refused
	// events and exhausted budgets may be one; shortened events and clock
	// skew are usually benign.
	case watchpostv1.AlertKind_ALERT_KIND_DUPLICATE_IDENTITY, watchpostv1.AlertKind_ALERT_KIND_REVOKED_CERTIFICATE,
		watchpostv1.AlertKind_ALERT_KIND_HOST_MISMATCH, watchpostv1.AlertKind_ALERT_KIND_AGENT_TAMPER:
		return watchpostv1.Severity_SEVERITY_HIGH
	case watchpostv1.AlertKind_ALERT_KIND_EVENTS_REFUSED, watchpostv1.AlertKind_ALERT_KIND_AGENT_OVER_BUDGET,
		watchpostv1.AlertKind_ALERT_KIND_STORAGE_QUOTA:
		return watchpostv1.Severity_SEVERITY_MEDIUM
	case watchpostv1.AlertKind_ALERT_KIND_EVENTS_TRUNCATED, watchpostv1.AlertKind_ALERT_KIND_CLOCK_SKEW:
		return watchpostv1.Severity_SEVERITY_LOW
	// Response: an action taken is what an operator must know at once (a
	// false block can stop production); a kill switch leaves the host
	// unprotected; a "would have" is evidence for the review before
	// enforcing.
	case watchpostv1.AlertKind_ALERT_KIND_RESPONSE, watchpostv1.AlertKind_ALERT_KIND_KILL_SWITCH:
		return watchpostv1.Severity_SEVERITY_HIGH
	case watchpostv1.AlertKind_ALERT_KIND_POLICIES_REFUSED:
		return watchpostv1.Severity_SEVERITY_MEDIUM
	case watchpostv1.AlertKind_ALERT_KIND_RESPONSE_WOULD_HAVE:
		return watchpostv1.Severity_SEVERITY_LOW
	}
	return watchpostv1.Severity_SEVERITY_UNSPECIFIED
}

// SeverityName is a severity's short name ("high"), as the CLI and the
// dashboard show it.
func SeverityName(s watchpostv1.Severity) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "SEVERITY_"))
}

// Heartbeat records a heartbeat and returns the alerts it raises.
func (e *Engine) Heartbeat(agentID string, hb *watchpostv1.Heartbeat, received time.Time) []*watchpostv1.Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	a, known := e.agents[agentID]
	if !known {
		e.agents[agentID] = &agent{last: hb, received: received, stopped: hb.Final}
		return nil
	}
	prev := a.last
	var out []*watchpostv1.Alert
	switch {
	case hb.BootId != prev.BootId || hb.InstanceId != prev.InstanceId:
		if !a.stopped {
			what := "a new agent process"
			if hb.BootId != prev.BootId {
				what = "a new boot"
			}
			al := e.newAlert(agentID, hb, watchpostv1.AlertKind_ALERT_KIND_UNCLEAN_RESTART, received,
				"%s (boot %s, instance %s) without a clean stop of the previous one (boot %s, instance %s, last heartbeat %d at %s)",
				what, hb.BootId, hb.InstanceId, prev.BootId, prev.InstanceId, prev.Seq, a.received.UTC().Format(time.RFC3339))
			out = append(out, al)
		}
	default:
		if hb.Seq > prev.Seq+1 {
			al := e.newAlert(agentID, hb, watchpostv1.AlertKind_ALERT_KIND_SEQUENCE_GAP, received,
				"heartbeats %d to %d never arrived", prev.Seq+1, hb.Seq-1)
			al.Count = hb.Seq - prev.Seq - 1
			out = append(out, al)
		} else if hb.Seq <= prev.Seq {
			al := e.newAlert(agentID, hb, watchpostv1.AlertKind_ALERT_KIND_SEQUENCE_GAP, received,
				"heartbeat sequence went back from %d to %d within one agent process (replayed or forged)", prev.Seq, hb.Seq)
			out = append(out, al)
		}
		// A clean stop detaches every program before its final heartbeat.
		if gone := missing(prev.Programs, hb.Programs); len(gone) > 0 && !hb.Final {
			al := e.newAlert(agentID, hb, watchpostv1.AlertKind_ALERT_KIND_PROGRAMS_DETACHED, received,
				"%d kernel programs detached while the agent runs: %s", len(gone), strings.Join(gone, ", "))
			al.Programs, al.Count = gone, uint64(len(gone))
			out = append(out, al)
		}
		out = append(out, e.dropAlerts(agentID, a, prev, hb, received)...)
	}
	a.last, a.received, a.stopped, a.missed, a.remote = hb, received, hb.Final, false, false
	return out
}

// Shedding reasons: counters of events the configuration chose not to
// deliver (the kernel's rate limits and filters). Every other reason but
// "produced" is a loss.
const (
	reasonProduced    = "produced"
	reasonRateLimited = "rate_limited"
	reasonFiltered    = "filtered"
)

func shedReason(r string) bool { return r == reasonRateLimited || r == reasonFiltered }

// dropAlerts compares the drop counters of two heartbeats of one agent
// process: a loss of DropJump events or more is a drop_jump alert; shedding
// by configuration of as many is one events_shed alert (information) when
// it begins, none while it goes on.
func (e *Engine) dropAlerts(agentID string, a *agent, prev, hb *watchpostv1.Heartbeat, received time.Time) []*watchpostv1.Alert {
	var loss, shed []*watchpostv1.Counter
	var shedN, rateLimitedN uint64
	for _, c := range rises(prev.Drops, hb.Drops) {
		switch {
		case c.Reason == reasonProduced:
		case shedReason(c.Reason):
			shed = append(shed, c)
			shedN += c.Count
			if c.Reason == reasonRateLimited {
				rateLimitedN += c.Count
			}
		default:
			loss = append(loss, c)
		}
	}
	// The total counts rate-limited events too (not filtered ones); an
	// agent that reports no counters has only the total.
	var lost uint64
	if hb.Dropped > prev.Dropped+rateLimitedN {
		lost = hb.Dropped - prev.Dropped - rateLimitedN
	}
	var out []*watchpostv1.Alert
	if lost >= e.cfg.DropJump {
		al := e.newAlert(agentID, hb, watchpostv1.AlertKind_ALERT_KIND_DROP_JUMP, received,
			"%d events lost since the previous heartbeat", lost)
		al.Count, al.Drops = lost, loss
		out = append(out, al)
	}
	switch {
	case shedN >= e.cfg.DropJump && !a.shedding:
		al := e.newAlert(agentID, hb, watchpostv1.AlertKind_ALERT_KIND_EVENTS_SHED, received,
			"%d events shed by configuration (%s) since the previous heartbeat", shedN, counterList(shed))
		al.Count, al.Drops = shedN, shed
		out = append(out, al)
		a.shedding = true
	case shedN < e.cfg.DropJump:
		a.shedding = false
	}
	return out
}

// counterList names counters as "kind reason count, ...", largest first.
func counterList(cs []*watchpostv1.Counter) string {
	sorted := append([]*watchpostv1.Counter(nil), cs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Count > sorted[j].Count })
	parts := make([]string, 0, len(sorted))
	for _, c := range sorted {
		parts = append(parts, fmt.Sprintf("%s %s %d", c.Kind, c.Reason, c.Count))
	}
	return strings.Join(parts, ", ")
}

// AgentStopped records an agent_stop event: the agent is stopping cleanly.
func (e *Engine) AgentStopped(agentID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if a, ok := e.agents[agentID]; ok {
		a.stopped = true
	}
}

// Check returns a missed-heartbeat alert for each agent that has been
// silent for MissedIntervals intervals (once per silence) and did not stop
// cleanly.
func (e *Engine) Check(now time.Time) []*watchpostv1.Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*watchpostv1.Alert
	ids := make([]string, 0, len(e.agents))
	for id := range e.agents {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		a := e.agents[id]
		if a.stopped || a.missed || a.remote {
			continue
		}
		interval := time.Duration(a.last.IntervalNanos)
		if interval <= 0 {
			interval = e.cfg.DefaultInterval
		}
		since := a.received
		if since.Before(e.started) {
			since = e.started
		}
		if silent := now.Sub(since); silent >= time.Duration(e.cfg.MissedIntervals)*interval {
			al := e.newAlert(id, a.last, watchpostv1.AlertKind_ALERT_KIND_MISSED_HEARTBEAT, now,
				"no heartbeat for %s (%d intervals of %s); last was %d at %s",
				silent.Round(time.Millisecond), int(silent/interval), interval, a.last.Seq, a.received.UTC().Format(time.RFC3339))
			al.Count = uint64(silent / interval)
			out = append(out, al)
			a.missed = true
		}
	}
	return out
}

// missing lists the names in before that are not in after.
func missing(before, after []string) []string {
	have := make(map[string]bool, len(after))
	for _, p := range after {
		have[p] = true
	}
	var out []string
	for _, p := range before {
		if !have[p] {
			out = append(out, p)
		}
	}
	return out
}

// rises returns the counters that grew, with the increase.
func rises(before, after []*watchpostv1.Counter) []*watchpostv1.Counter {
	old := make(map[[2]string]uint64, len(before))
	for _, c := range before {
		old[[2]string{c.Kind, c.Reason}] = c.Count
	}
	var out []*watchpostv1.Counter
	for _, c := range after {
		if prev := old[[2]string{c.Kind, c.Reason}]; c.Count > prev {
			out = append(out, &watchpostv1.Counter{Kind: c.Kind, Reason: c.Reason, Count: c.Count - prev})
		}
	}
	return out
}

// KindName is an alert kind's short name, as the CLI and /metrics show it
// ("missed_heartbeat").
func KindName(k watchpostv1.AlertKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "ALERT_KIND_"))
}

// LevelSeverity maps a Sigma rule level onto a severity.
func LevelSeverity(level string) watchpostv1.Severity {
	switch level {
	case "informational":
		return watchpostv1.Severity_SEVERITY_INFO
	case "low":
		return watchpostv1.Severity_SEVERITY_LOW
	case "high":
		return watchpostv1.Severity_SEVERITY_HIGH
	case "critical":
		return watchpostv1.Severity_SEVERITY_CRITICAL
	}
	return watchpostv1.Severity_SEVERITY_MEDIUM
}

// Clip bounds an alert's message to maxMessage bytes.
func Clip(s string) string {
	if len(s) > maxMessage {
		s = strings.ToValidUTF8(s[:maxMessage], "") + "…"
	}
	return s
}

// maxMessage bounds a detection alert's message.
const maxMessage = 512

// DetectionMessage is a detection alert's one line: the title and why it
// fired ("Shell spawned by a service: Image=/usr/bin/sh ParentImage=...").
func DetectionMessage(d *watchpostv1.DetectionAlert) string {
	var b strings.Builder
	b.WriteString(d.Title)
	if d.Folded > 0 {
		// The actor repeated the behaviour: the matches folded since its
		// previous alert of the rule.
		fmt.Fprintf(&b, " (+%d folded)", d.Folded)
	}
	for i, m := range d.Matches {
		if i == 0 {
			b.WriteString(":")
		}
		fmt.Fprintf(&b, " %s=%s", m.Field, m.Value)
		if b.Len() > maxMessage {
			break
		}
	}
	s := Clip(b.String())
	return s
}
