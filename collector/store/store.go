// Package store is the collector's event store: one interface, implemented
// by an embedded SQLite database (modernc.org/sqlite, pure Go).
package store

import (
	"context"
	"time"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// BatchKey identifies a batch: the same key is stored once.
type BatchKey struct {
	AgentID  string
	BootID   string
	RunID    string
	BatchSeq uint64
}

// BatchInput is one validated batch: its events and, for each, the
// serialized bytes as received.
type BatchInput struct {
	Key    BatchKey
	Events []*watchpostv1.Event
	Raw    [][]byte
	// Alerts are the detection alerts the batch's alert events raise: they
	// are stored with the batch, in the same transaction, and only when the
	// batch is new (a resent batch adds none). Their ids are set.
	Alerts []*watchpostv1.Alert
}

// Result tells what happened to one batch of a StoreBatches call.
type Result int

const (
	Stored Result = iota + 1
	Duplicate
)

// Filter selects events. Zero fields match everything.
type Filter struct {
	AgentID    string
	Host       string
	Types      []watchpostv1.EventType
	PID        uint32
	Exe        string // exe path, its base name, or comm
	PathPrefix string
	Port       uint32
	Protocol   string
	Since      time.Time
	Until      time.Time
	Text       string
}

// Retention bounds the store: by age whole time partitions are dropped;
// by size each agent's own oldest batches are deleted (Quota).
type Retention struct {
	MaxAge time.Duration
	Quota
}

// Quota bounds the bytes of stored events. Each agent may keep PerAgent
// bytes (0: MaxBytes divided by the number of agents, its fair share);
// beyond its quota its own oldest batches are deleted. While the whole
// store is above MaxBytes, the oldest batches of the agents above their
// share are deleted, the largest first; an agent within its share loses
// nothing, whatever another agent sends. MaxBytes counts everything the
// store keeps for the events (the newest partition included), so it caps
// the disk the events take.
type Quota struct {
	MaxBytes int64
	PerAgent int64
}

// Trimmed is what quota enforcement deleted of one agent's events.
type Trimmed struct {
	AgentID         string
	Batches, Events uint64
	Bytes           int64
}

// Query is one event query: a filter, the most events to return, and its
// cost bound.
type Query struct {
	Filter Filter
	Limit  int
	// MaxRows bounds the stored rows read (0: no bound). A query that
	// reaches it, or whose context deadline passes, returns the newest
	// events found so far with CostLimited set instead of failing.
	MaxRows uint64
}

// QueryResult is what a query found, oldest first.
type QueryResult struct {
	Events []*watchpostv1.Event
	// Truncated: more events matched than Limit.
	Truncated bool
	// CostLimited: the query stopped at MaxRows or its deadline before it
	// looked at every candidate.
	CostLimited bool
	// RowsScanned and SummariesRead are the work done: stored rows read
	// and summaries (of blocks of rows) looked at. Neither grows with the
	// number of batches the events came in.
	RowsScanned, SummariesRead uint64
}

// Store is what the collector needs from storage.
type Store interface {
	// StoreBatches commits the batches durably in one transaction (all or
	// nothing) and reports, per batch, whether it was new or a duplicate.
	StoreBatches(ctx context.Context, batches []BatchInput) ([]Result, error)
	// RecordHeartbeat stores a heartbeat and updates the agent registry.
	RecordHeartbeat(ctx context.Context, agentID string, hb *watchpostv1.Heartbeat, received time.Time) error
	// RecordRejected counts a refused batch in the agent registry.
	RecordRejected(ctx context.Context, agentID string) error
	// RecordRefusals adds to the agent's refusal counters (by kind and
	// reason: what the collector refused, shortened, altered or deleted of
	// its input); Hosts returns them in HostInfo.refusals.
	RecordRefusals(ctx context.Context, agentID string, counts []*watchpostv1.Counter) error
	// Query returns up to q.Limit most recent matching events, oldest
	// first, within its cost bound. Events carry the identity of the batch
	// they came in (Bind).
	Query(ctx context.Context, q Query) (QueryResult, error)
	// Hosts returns the agent registry, host bound to the agent identity
	// (claimed_host keeps what the agent said), with stored_bytes.
	Hosts(ctx context.Context) ([]*watchpostv1.HostInfo, error)
	// EnforceRetention drops partitions older than MaxAge, then applies
	// the Quota; it returns the dropped partitions and what was trimmed.
	EnforceRetention(ctx context.Context, r Retention, now time.Time) ([]string, []Trimmed, error)
	// TrimToQuota applies the quota now (called after each commit, so
	// that no flood outgrows it between two retention runs); it is cheap
	// when every agent is within its quota.
	TrimToQuota(ctx context.Context, q Quota) ([]Trimmed, error)
	// RecordAlerts stores tamper-evidence alerts and sets their ids.
	RecordAlerts(ctx context.Context, alerts []*watchpostv1.Alert) error
	// Alerts returns up to limit matching alerts, newest first.
	Alerts(ctx context.Context, f AlertFilter, limit int) ([]*watchpostv1.Alert, error)
	// UpdateAlerts moves alerts through triage (AlertUpdate says how),
	// all or none, and returns them as stored. An id that is not stored
	// fails the whole call with ErrUnknownAlert.
	UpdateAlerts(ctx context.Context, u AlertUpdate) ([]*watchpostv1.Alert, error)
	// AlertByID returns one alert, or ErrUnknownAlert.
	AlertByID(ctx context.Context, id uint64) (*watchpostv1.Alert, error)
	// LastHeartbeats returns each agent's last heartbeat and its receipt time.
	LastHeartbeats(ctx context.Context) (map[string]HeartbeatAt, error)

	// Commands to agents (docs/collector.md, "Commands"). Sequence numbers
	// increase over every command of the store, from 1.

	// CommandEpoch returns the store's command epoch: random, made once
	// when first asked for, kept for the life of the store.
	CommandEpoch(ctx context.Context) (string, error)
	// AddCommand stores a command for one agent, or for every agent when
	// agentID is empty, and returns it with its seq and creation time set.
	AddCommand(ctx context.Context, agentID string, cmd *watchpostv1.Command) (*watchpostv1.Command, error)
	// PendingCommands returns, in seq order, up to limit commands after
	// seq after that apply to the agent (its own and every agent's).
	PendingCommands(ctx context.Context, agentID string, after uint64, limit int) ([]*watchpostv1.Command, error)
	// RecordCommandAck stores an agent's acknowledgement of a command (the
	// latest per agent and command counts).
	RecordCommandAck(ctx context.Context, agentID string, ack *watchpostv1.CommandAck, at time.Time) error
	// Commands returns every command that applies to the agent (every
	// command when agentID is empty), in seq order, with the deliveries
	// acknowledged so far.
	Commands(ctx context.Context, agentID string) ([]StoredCommand, error)
	Close() error
}

// StoredCommand is a command, whom it is for and how far it got.
type StoredCommand struct {
	Command *watchpostv1.Command
	// AgentID is empty for a command to every agent.
	AgentID    string
	Deliveries []*watchpostv1.CommandDelivery
}

// Bind gives a read event the identity of its batch: agent and boot id,
// and host bound to the agent identity (the certificate's name). A
// different host named by the agent is kept as claimed_host.
func Bind(ev *watchpostv1.Event, agentID, bootID string) {
	h := ev.Header
	if h == nil {
		h = &watchpostv1.Header{}
		ev.Header = h
	}
	h.AgentId, h.BootId = agentID, bootID
	if h.Host != agentID {
		if h.Host != "" && h.ClaimedHost == "" {
			h.ClaimedHost = h.Host
		}
		h.Host = agentID
	}
}

// HeartbeatAt is a heartbeat and when it was received.
type HeartbeatAt struct {
	Heartbeat *watchpostv1.Heartbeat
	Received  time.Time
}
