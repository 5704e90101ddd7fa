package inspect

import (
	"context"
	"fmt"
	"slices"

	"github.com/watchpost/watchpost/agent/event"
)

// KernelStats are the kernel's inspection counters (enum wp_ics_stat) and
// the segments the agent's queue had no room for.
type KernelStats struct {
	Segments  uint64            // segments with payload on an inspected port
	Messages  uint64            // application messages parsed
	Malformed map[string]uint64 // by modbus.Malformed reason
	Unparsed  uint64            // segments with more messages than the kernel parses
	NoOwner   uint64            // segments sent without the socket's process
	// Retransmitted: segments whose bytes were all inspected before (TCP
	// retransmissions, tail loss probes): not counted again.
	Retransmitted uint64
	QueueFull     uint64 // segments lost: the agent's queue was full
}

// Source is the kernel side (agent/kernel's Inspector).
type Source interface {
	Segments() <-chan *Segment
	Stats() (KernelStats, error)
	Attached() bool
}

// Service runs the aggregation over a kernel source and reports its state.
// Without a source (the kernel cannot inspect here) it reports why and
// makes no events; the port tags of agent/industrial stay.
type Service struct {
	cfg    Config
	src    Source
	reason string
	cgroup string
	agg    *Aggregator
}

// NewService builds the service; src is nil when the kernel side is
// unavailable, and unavailable then says why.
func NewService(cfg Config, src Source, cgroup, unavailable string, deps Deps) *Service {
	return &Service{cfg: cfg, src: src, reason: unavailable, cgroup: cgroup, agg: New(cfg, deps)}
}

// Start runs the aggregation until ctx ends.
func (s *Service) Start(ctx context.Context) {
	if s.src == nil {
		return
	}
	go func() { _ = s.agg.Run(ctx, s.src.Segments()) }()
}

// Events are the ics_op events (never any without a source).
func (s *Service) Events() <-chan *event.Event { return s.agg.Events() }

// Status is the state health events carry.
func (s *Service) Status() *event.Inspection {
	st := &event.Inspection{Error: s.reason, Cgroup: s.cgroup}
	if ports, err := s.cfg.Ports(); err == nil {
		for port, name := range ports {
			st.Ports = append(st.Ports, fmt.Sprintf("%s:%d", name, port))
		}
		slices.Sort(st.Ports)
	}
	if s.src != nil {
		st.Attached = s.src.Attached()
		if !st.Attached && st.Error == "" {
			st.Error = "detached"
		}
		if ks, err := s.src.Stats(); err == nil {
			st.Segments, st.Messages, st.Unparsed, st.NoOwner = ks.Segments, ks.Messages, ks.Unparsed, ks.NoOwner
			st.Malformed, st.Retransmitted = ks.Malformed, ks.Retransmitted
			st.QueueFull = ks.QueueFull
		}
	}
	c := s.agg.Counters()
	st.Events, st.Urgent, st.OwnerLookups, st.OwnerUnknown = c.Events, c.Urgent, c.OwnerLookups, c.OwnerUnknown
	st.QueueFull += c.QueueFull
	st.GroupsFull = c.GroupsFull
	return st
}

// Dropped is what the inspection lost: segments and events with no room.
func (s *Service) Dropped() uint64 {
	st := s.Status()
	return st.QueueFull + st.GroupsFull
}
