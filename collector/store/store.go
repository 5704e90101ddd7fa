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

// Retention bounds the store; whole time partitions are dropped.
type Retention struct {
	MaxAge   time.Duration
	MaxBytes int64
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
	// Query returns up to limit most recent matching events, oldest first,
	// and whether more matched.
	Query(ctx context.Context, f Filter, limit int) ([]*watchpostv1.Event, bool, error)
	// Hosts returns the agent registry.
	Hosts(ctx context.Context) ([]*watchpostv1.HostInfo, error)
	// EnforceRetention drops partitions older than MaxAge, then the oldest
	// ones while the store is larger than MaxBytes; it returns their names.
	EnforceRetention(ctx context.Context, r Retention, now time.Time) ([]string, error)
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

// HeartbeatAt is a heartbeat and when it was received.
type HeartbeatAt struct {
	Heartbeat *watchpostv1.Heartbeat
	Received  time.Time
}
