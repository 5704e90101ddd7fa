package collector

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/watchpost/watchpost/collector/alerts"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Refusal kinds: what a counted refusal is about (HostInfo.refusals).
const (
	refusalEvent     = "event"     // one event refused or stored altered
	refusalBatch     = "batch"     // a whole batch refused
	refusalHeartbeat = "heartbeat" // a heartbeat dropped
	refusalStream    = "stream"    // a stream refused
	refusalBudget    = "budget"    // the agent was slowed down by a budget
	refusalStorage   = "storage"   // stored events deleted for the agent's quota
)

// agentState is the collector's per-identity budget: each agent has its
// own rate limits (events, decompressed bytes, heartbeats), its own share
// of the memory held for batches waiting for a commit, and its own stream
// count, so that one agent certificate cannot take what the others need.
type agentState struct {
	events     *rate.Limiter
	bytes      *rate.Limiter
	heartbeats *rate.Limiter
	inflight   *semaphore.Weighted

	mu      sync.Mutex
	streams int
	certs   map[string]int // serial -> live streams presenting it
	insts   map[string]int // heartbeat instance ids of live streams
}

func (c *Collector) agentState(agent string) *agentState {
	if a, ok := c.agents.Load(agent); ok {
		return a.(*agentState)
	}
	i := &c.cfg.Ingest
	a, _ := c.agents.LoadOrStore(agent, &agentState{
		events:     rate.NewLimiter(rate.Limit(i.RateEventsPerSecond), i.RateBurst),
		bytes:      rate.NewLimiter(rate.Limit(i.RateBytesPerSecond), int(i.RateBytesBurst)),
		heartbeats: rate.NewLimiter(rate.Limit(i.HeartbeatsPerSecond), i.HeartbeatBurst),
		inflight:   semaphore.NewWeighted(i.MaxInflightBytesPerAgent),
		certs:      map[string]int{},
		insts:      map[string]int{},
	})
	return a.(*agentState)
}

// wait takes n tokens from l, in steps of at most its burst; it counts a
// refusal when the agent had to wait.
func (c *Collector) wait(ctx context.Context, agent, reason string, l *rate.Limiter, n int) error {
	for n > 0 {
		step := min(n, l.Burst())
		if !l.AllowN(time.Now(), step) {
			c.notice(agent, refusalBudget, reason, 1)
			if err := l.WaitN(ctx, step); err != nil {
				return err
			}
		}
		n -= step
	}
	return nil
}

// hold reserves n bytes of memory in flight for the agent and in total,
// waiting while either budget is used up; release gives them back.
func (c *Collector) hold(ctx context.Context, agent string, a *agentState, n int64) error {
	if !a.inflight.TryAcquire(n) {
		c.notice(agent, refusalBudget, "agent_memory", 1)
		if err := a.inflight.Acquire(ctx, n); err != nil {
			return err
		}
	}
	if !c.inflight.TryAcquire(n) {
		c.notice(agent, refusalBudget, "collector_memory", 1)
		if err := c.inflight.Acquire(ctx, n); err != nil {
			a.inflight.Release(n)
			return err
		}
	}
	return nil
}

func (c *Collector) release(a *agentState, n int64) {
	if n > 0 {
		c.inflight.Release(n)
		a.inflight.Release(n)
	}
}

// noticeKey is one kind of refusal of one agent.
type noticeKey struct{ agent, kind, reason string }

// pendingNotice accumulates refusals between two alerts.
type pendingNotice struct {
	count    uint64
	lastSent time.Time
	example  string
}

// alertEvery bounds how often one kind of refusal of one agent raises an
// alert; the counts in between are summed into the next one.
const alertEvery = time.Minute

// notice counts a refusal: in the agent's registry (watchpost hosts) and
// towards an alert naming the cause.
func (c *Collector) notice(agent, kind, reason string, n uint64) {
	c.noticeExample(agent, kind, reason, n, "")
}

func (c *Collector) noticeExample(agent, kind, reason string, n uint64, example string) {
	if n == 0 {
		return
	}
	c.noticeMu.Lock()
	defer c.noticeMu.Unlock()
	k := noticeKey{agent, kind, reason}
	p := c.notices[k]
	if p == nil {
		p = &pendingNotice{}
		c.notices[k] = p
	}
	p.count += n
	if p.example == "" {
		p.example = example
	}
	c.refusalCounts[k] += n
}

// flushNotices stores the refusal counts and raises the alerts that are due.
func (c *Collector) flushNotices(ctx context.Context, now time.Time) {
	c.noticeMu.Lock()
	counts := c.refusalCounts
	c.refusalCounts = map[noticeKey]uint64{}
	var due []*watchpostv1.Alert
	keys := make([]noticeKey, 0, len(c.notices))
	for k := range c.notices {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		return a.agent+"\x00"+a.kind+"\x00"+a.reason < b.agent+"\x00"+b.kind+"\x00"+b.reason
	})
	for _, k := range keys {
		p := c.notices[k]
		if p.count == 0 || now.Sub(p.lastSent) < alertEvery {
			continue
		}
		due = append(due, refusalAlert(k, p, now))
		p.count, p.example, p.lastSent = 0, "", now
	}
	c.noticeMu.Unlock()
	byAgent := map[string][]*watchpostv1.Counter{}
	for k, n := range counts {
		byAgent[k.agent] = append(byAgent[k.agent], &watchpostv1.Counter{Kind: k.kind, Reason: k.reason, Count: n})
	}
	for agent, cs := range byAgent {
		if err := c.store.RecordRefusals(ctx, agent, cs); err != nil {
			c.log.Error().Err(err).Str("agent", agent).Msg("counting refusals failed")
		}
	}
	c.raise(ctx, due)
}

// refusalAlert is the alert for accumulated refusals of one kind.
func refusalAlert(k noticeKey, p *pendingNotice, now time.Time) *watchpostv1.Alert {
	kind := watchpostv1.AlertKind_ALERT_KIND_AGENT_OVER_BUDGET
	var what string
	switch {
	case k.kind == refusalEvent && strings.HasPrefix(k.reason, "refused_"):
		kind, what = watchpostv1.AlertKind_ALERT_KIND_EVENTS_REFUSED, fmt.Sprintf("%d events refused (%s); the rest of their batches was stored", p.count, strings.TrimPrefix(k.reason, "refused_"))
	case k.kind == refusalEvent && k.reason == "truncated":
		kind, what = watchpostv1.AlertKind_ALERT_KIND_EVENTS_TRUNCATED, fmt.Sprintf("%d events over a size limit stored shortened", p.count)
	case k.kind == refusalEvent && k.reason == "time_clamped":
		kind, what = watchpostv1.AlertKind_ALERT_KIND_CLOCK_SKEW, fmt.Sprintf("%d event times in the future (or not positive) clamped to the receipt time", p.count)
	case k.kind == refusalEvent && k.reason == "host_mismatch":
		kind, what = watchpostv1.AlertKind_ALERT_KIND_HOST_MISMATCH, fmt.Sprintf("%d events named another host than the certificate's identity %q (shown as claimed_host)", p.count, k.agent)
	case k.kind == refusalStorage:
		kind, what = watchpostv1.AlertKind_ALERT_KIND_STORAGE_QUOTA, fmt.Sprintf("%d of the agent's oldest events deleted (%s)", p.count, k.reason)
	case k.kind == refusalStream && k.reason == "revoked":
		kind, what = watchpostv1.AlertKind_ALERT_KIND_REVOKED_CERTIFICATE, fmt.Sprintf("%d streams with a revoked certificate refused", p.count)
	case k.kind == refusalStream && k.reason == "duplicate_identity":
		kind, what = watchpostv1.AlertKind_ALERT_KIND_DUPLICATE_IDENTITY, "two certificates or agent processes use this identity at once"
	default:
		what = fmt.Sprintf("%s over budget (%s): %d times", k.kind, k.reason, p.count)
	}
	if p.example != "" {
		what += ": " + p.example
	}
	return &watchpostv1.Alert{
		AgentId: k.agent, Host: k.agent, Kind: kind, TimeUnixNano: now.UnixNano(), Message: what, Count: p.count,
		Drops:    []*watchpostv1.Counter{{Kind: k.kind, Reason: k.reason, Count: p.count}},
		Severity: alerts.KindSeverity(kind), State: watchpostv1.AlertState_ALERT_STATE_OPEN,
	}
}
