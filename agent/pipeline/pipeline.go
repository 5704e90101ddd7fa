// Package pipeline moves events from the kernel source through enrichment
// to the sinks, and reports the agent's health.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/kernel"
	"github.com/watchpost/watchpost/agent/output"
	"github.com/watchpost/watchpost/agent/proctable"
	"github.com/watchpost/watchpost/internal/version"
)

// Source is the kernel side as the pipeline sees it; tests substitute it.
type Source interface {
	Run(ctx context.Context) error
	Events() <-chan *event.Event
	Stats() (kernel.Stats, error)
	Features() kernel.Features
	Programs() []string
}

// Tagger adds tags to an event in place (industrial protocols, fieldbus).
type Tagger interface {
	Apply(ev *event.Event)
}

// Enricher adds context to an event in place after the process table
// (container attribution); it must not block.
type Enricher interface {
	Enrich(ev *event.Event)
}

// NetContext is the network context (agent/netctx): it sets the
// interface and zones of network events and makes events of its own (the
// start-up socket inventory, interface and address changes), which take
// the same path as the kernel's.
type NetContext interface {
	Enricher
	Events() <-chan *event.Event
	// Counters are reported in health; Dropped is the events it lost.
	Counters() []event.Counter
	Dropped() uint64
}

// Detector judges enriched events (agent/detect).
type Detector interface {
	// Detect returns the alerts an event raises (nil for most); the slice
	// is valid until the next call.
	Detect(ev *event.Event) []*event.Event
	// Status is the detection state that health events carry.
	Status() *event.Detection
	// Changed is signalled when the rules were reloaded.
	Changed() <-chan struct{}
}

// Baseline learns the host's normal and judges events against it
// (agent/baseline).
type Baseline interface {
	// Observe returns the alerts an event raises (nil for most); the
	// slice is valid until the next call.
	Observe(ev *event.Event) []*event.Event
	// Status is the baseline's state that health events carry.
	Status() *event.Baseline
	// Startup returns events to report once, after agent_start.
	Startup() []*event.Event
}

// Responder carries out response policies (agent/respond).
type Responder interface {
	// Respond sees every event after detection (alerts included) and
	// returns the events its own actions make (kill on detection).
	Respond(ev *event.Event) []*event.Event
	// Changed is signalled when the policy set or the kill switch changed.
	Changed() <-chan struct{}
	// PoliciesEvent reports the policy set.
	PoliciesEvent() *event.Event
	// Status is the policy state that health events carry.
	Status() *event.Policies
}

// Inspection is the industrial protocol inspection
// (agent/industrial/inspect): its ics_op events take the kernel's path.
type Inspection interface {
	Events() <-chan *event.Event
	// Status is the state health events carry; Dropped what it lost.
	Status() *event.Inspection
	Dropped() uint64
}

// Config tunes the pipeline.
type Config struct {
	Host           string
	HealthInterval time.Duration
	SweepInterval  time.Duration
	// SelfPID is the agent's pid as the kernel sees it (default: getpid).
	SelfPID uint32
	// Containers, when set, attributes events to containers.
	Containers Enricher
	// Network, when set, gives network events their interface and zone
	// and adds its own events.
	Network NetContext
	// Tagger, when set, tags every event after enrichment.
	Tagger Tagger
	// Detector, when set, sees every event after tagging; its alerts are
	// emitted right after the event and flushed at once.
	Detector Detector
	// Baseline, when set, sees every event after the detector; its alerts
	// are emitted like the detector's.
	Baseline Baseline
	// Reloaded, when set, is called after a rules reload was reported in a
	// health event, and after the response policies changed (the shipper
	// sends a heartbeat at once). It must not block.
	Reloaded func()
	// Responder, when set, sees every event after the detector.
	Responder Responder
	// Inspection, when set, adds its ics_op events.
	Inspection Inspection
}

// Validate names the bad setting.
func (c Config) Validate() error {
	if c.HealthInterval < time.Second {
		return fmt.Errorf("health_interval: %s is below 1s", c.HealthInterval)
	}
	if c.SweepInterval < time.Second {
		return fmt.Errorf("process_table.sweep_interval: %s is below 1s", c.SweepInterval)
	}
	return nil
}

// Pipeline is the agent's event path.
type Pipeline struct {
	cfg   Config
	log   zerolog.Logger
	src   Source
	table *proctable.Table
	sinks []output.Sink

	seq       uint64
	delivered atomic.Uint64
	alive     chan chan struct{}
}

// New wires a pipeline; nothing runs until Run.
func New(cfg Config, log zerolog.Logger, src Source, table *proctable.Table, sinks ...output.Sink) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Pipeline{cfg: cfg, log: log.With().Str("component", "pipeline").Logger(), src: src, table: table, sinks: sinks,
		alive: make(chan chan struct{})}, nil
}

// Alive reports whether the event loop answers within ctx: the service
// watchdog asks it, so a pipeline stuck on a sink gets the agent restarted.
func (p *Pipeline) Alive(ctx context.Context) error {
	answer := make(chan struct{})
	select {
	case p.alive <- answer:
	case <-ctx.Done():
		return fmt.Errorf("pipeline did not answer: %w", ctx.Err())
	}
	select {
	case <-answer:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pipeline did not answer: %w", ctx.Err())
	}
}

// Delivered counts events handed to the sinks (health events included).
func (p *Pipeline) Delivered() uint64 { return p.delivered.Load() }

// Run processes events until ctx ends and the source has drained. It
// writes an agent_start event first and an agent_stop event last.
func (p *Pipeline) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.src.Run(gctx) })
	g.Go(func() error { return p.consume(gctx) })
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

func (p *Pipeline) consume(ctx context.Context) error {
	health := time.NewTicker(p.cfg.HealthInterval)
	defer health.Stop()
	sweep := time.NewTicker(p.cfg.SweepInterval)
	defer sweep.Stop()

	p.emit(p.agentEvent(event.KindAgentStart))
	if p.cfg.Baseline != nil {
		for _, ev := range p.cfg.Baseline.Startup() {
			p.emit(ev)
		}
		p.flush()
	}
	events := p.src.Events()
	var reloaded, policies <-chan struct{}
	if p.cfg.Detector != nil {
		reloaded = p.cfg.Detector.Changed()
	}
	var netEvents <-chan *event.Event
	if p.cfg.Network != nil {
		netEvents = p.cfg.Network.Events()
	}
	if p.cfg.Responder != nil {
		policies = p.cfg.Responder.Changed()
		p.emit(p.cfg.Responder.PoliciesEvent())
	}
	var icsEvents <-chan *event.Event
	if p.cfg.Inspection != nil {
		icsEvents = p.cfg.Inspection.Events()
	}
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				// The source has stopped and drained: take what the
				// network context still holds, report and finish.
				for drained := false; !drained; {
					select {
					case ev := <-netEvents:
						p.process(ev)
					case ev, ok := <-icsEvents:
						if !ok {
							icsEvents = nil
							continue
						}
						p.process(ev)
					default:
						drained = true
					}
				}
				p.emit(p.healthEvent())
				p.emit(p.agentEvent(event.KindAgentStop))
				p.flush()
				return nil
			}
			if p.process(ev) || len(events) == 0 && len(netEvents) == 0 {
				p.flush()
			}
		case ev := <-netEvents:
			if p.process(ev) || len(events) == 0 && len(netEvents) == 0 {
				p.flush()
			}
		case ev, ok := <-icsEvents:
			if !ok {
				icsEvents = nil
				continue
			}
			// Urgent operations are flushed at once, like alerts.
			if p.process(ev) || ev.ICS.Urgent || len(events) == 0 && len(icsEvents) == 0 {
				p.flush()
			}
		case <-policies:
			p.emit(p.cfg.Responder.PoliciesEvent())
			p.flush()
			// And in a heartbeat at once (`watchpost policies`).
			if p.cfg.Reloaded != nil {
				p.cfg.Reloaded()
			}
		case <-reloaded:
			// A reload's outcome (rules, errors) is reported at once.
			p.emit(p.healthEvent())
			p.flush()
			if p.cfg.Reloaded != nil {
				p.cfg.Reloaded()
			}
		case <-health.C:
			p.emit(p.healthEvent())
			p.flush()
		case <-sweep.C:
			p.table.Sweep()
		case answer := <-p.alive:
			close(answer)
		}
	}
}

// process enriches, tags, judges and writes one event; true when it
// raised alerts (which are flushed at once).
func (p *Pipeline) process(ev *event.Event) bool {
	p.table.Apply(ev)
	if p.cfg.Containers != nil {
		p.cfg.Containers.Enrich(ev)
	}
	if p.cfg.Network != nil {
		p.cfg.Network.Enrich(ev)
	}
	if p.cfg.Tagger != nil {
		p.cfg.Tagger.Apply(ev)
	}
	if p.cfg.Detector == nil && p.cfg.Baseline == nil {
		p.emit(ev)
		return p.respond(ev)
	}
	p.number(ev) // alerts name the event by its sequence number
	var alerts, anomalies []*event.Event
	if p.cfg.Detector != nil {
		alerts = p.cfg.Detector.Detect(ev)
	}
	if p.cfg.Baseline != nil {
		anomalies = p.cfg.Baseline.Observe(ev)
	}
	p.write(ev)
	acted := p.respond(ev)
	for _, a := range alerts {
		p.emit(a)
		acted = p.respond(a) || acted
	}
	for _, a := range anomalies {
		p.emit(a)
		acted = p.respond(a) || acted
	}
	return len(alerts)+len(anomalies) > 0 || acted
}

// respond hands an emitted event to the responder and emits what it did;
// true when it reported an action (flushed at once, like alerts).
func (p *Pipeline) respond(ev *event.Event) bool {
	if p.cfg.Responder == nil {
		return false
	}
	out := p.cfg.Responder.Respond(ev)
	for _, r := range out {
		p.emit(r)
	}
	return len(out) > 0 || ev.Response != nil
}

func (p *Pipeline) emit(ev *event.Event) {
	p.number(ev)
	p.write(ev)
}

// number gives ev the next sequence number and the host.
func (p *Pipeline) number(ev *event.Event) {
	p.seq++
	ev.Seq = p.seq
	ev.Host = p.cfg.Host
	ev.Clamp()
}

func (p *Pipeline) write(ev *event.Event) {
	for _, s := range p.sinks {
		s.Write(ev)
	}
	p.delivered.Add(1)
}

func (p *Pipeline) flush() {
	for _, s := range p.sinks {
		_ = s.Flush() // sinks count their own errors
	}
}

func (p *Pipeline) agentEvent(k event.Kind) *event.Event {
	ev := &event.Event{Kind: k, Time: time.Now().UTC(), BootNS: kernel.BootNow()}
	ev.Process = event.Process{PID: p.selfPID(), Comm: "watchpost-agent", LoginUID: event.AUIDUnset}
	ev.Health = p.health()
	return ev
}

func (p *Pipeline) selfPID() uint32 {
	if p.cfg.SelfPID != 0 {
		return p.cfg.SelfPID
	}
	return uint32(selfPID)
}

func (p *Pipeline) healthEvent() *event.Event {
	ev := p.agentEvent(event.KindHealth)
	return ev
}

// Health snapshots the agent's counters (for heartbeats). Safe to call
// from any goroutine.
func (p *Pipeline) Health() *event.Health { return p.health() }

// health snapshots the counters: produced, delivered, filtered and dropped
// by kind and reason.
func (p *Pipeline) health() *event.Health {
	f := p.src.Features()
	h := &event.Health{
		Version:     version.Version,
		Kernel:      f.Kernel,
		CapturePath: f.CapturePath,
		Programs:    p.src.Programs(),
		Delivered:   p.delivered.Load(),
	}
	if p.cfg.Detector != nil {
		h.Detection = p.cfg.Detector.Status()
	}
	if p.cfg.Baseline != nil {
		h.Baseline = p.cfg.Baseline.Status()
	}
	if p.cfg.Network != nil {
		h.Counters = append(h.Counters, p.cfg.Network.Counters()...)
		h.Dropped += p.cfg.Network.Dropped()
	}
	if p.cfg.Responder != nil {
		h.Response = p.cfg.Responder.Status()
	}
	if p.cfg.Inspection != nil {
		h.Inspection = p.cfg.Inspection.Status()
		h.Dropped += p.cfg.Inspection.Dropped()
	}
	st, err := p.src.Stats()
	if err != nil {
		p.log.Warn().Err(err).Msg("reading kernel counters")
		return h
	}
	kinds := make([]event.Kind, 0, len(st.Kinds))
	for k := range st.Kinds {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i] < kinds[j] })
	for _, k := range kinds {
		ks := st.Kinds[k]
		h.Produced += ks.Produced
		h.Filtered += ks.Filtered
		h.Dropped += ks.RingFull + ks.RateLimited + ks.QueueFull + ks.Missed
		for _, c := range []struct {
			reason string
			n      uint64
		}{
			{"produced", ks.Produced}, {kernel.ReasonFiltered, ks.Filtered},
			{kernel.ReasonRingFull, ks.RingFull}, {kernel.ReasonRateLimited, ks.RateLimited},
			{kernel.ReasonQueueFull, ks.QueueFull}, {kernel.ReasonMissed, ks.Missed},
		} {
			if c.n > 0 {
				h.Counters = append(h.Counters, event.Counter{Kind: k.String(), Reason: c.reason, Count: c.n})
			}
		}
	}
	progs := make([]string, 0, len(st.ProgramMisses))
	for name := range st.ProgramMisses {
		progs = append(progs, name)
	}
	sort.Strings(progs)
	for _, name := range progs {
		h.Dropped += st.ProgramMisses[name]
		h.Counters = append(h.Counters, event.Counter{Kind: "program:" + name, Reason: kernel.ReasonMissed, Count: st.ProgramMisses[name]})
	}
	if st.DecodeErrors > 0 {
		h.Dropped += st.DecodeErrors
		h.Counters = append(h.Counters, event.Counter{Kind: "any", Reason: "decode_error", Count: st.DecodeErrors})
	}
	return h
}
