package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// AlertByID implements store.Store.
func (s *Store) AlertByID(ctx context.Context, id uint64) (*watchpostv1.Alert, error) {
	a, err := store.ScanAlert(s.pool.QueryRow(ctx, "SELECT "+store.AlertColumns+" FROM alerts WHERE id = $1", int64(id)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("alert %d: %w", id, store.ErrUnknownAlert)
	}
	return a, err
}

// CommandEpoch implements store.Store.
func (s *Store) CommandEpoch(ctx context.Context) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	if _, err := s.pool.Exec(ctx, "INSERT INTO meta (key, value) VALUES ('command_epoch', $1) ON CONFLICT (key) DO NOTHING", hex.EncodeToString(b[:])); err != nil {
		return "", fmt.Errorf("storing the command epoch: %w", err)
	}
	var epoch string
	if err := s.pool.QueryRow(ctx, "SELECT value FROM meta WHERE key = 'command_epoch'").Scan(&epoch); err != nil {
		return "", fmt.Errorf("reading the command epoch: %w", err)
	}
	return epoch, nil
}

// AddCommand implements store.Store.
func (s *Store) AddCommand(ctx context.Context, agentID string, cmd *watchpostv1.Command) (*watchpostv1.Command, error) {
	if cmd == nil || cmd.Action == nil {
		return nil, errors.New("command without an action")
	}
	c := proto.Clone(cmd).(*watchpostv1.Command)
	c.Seq = 0
	if c.CreatedUnixNano == 0 {
		c.CreatedUnixNano = time.Now().UnixNano()
	}
	data, err := proto.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding command: %w", err)
	}
	var seq int64
	if err := s.pool.QueryRow(ctx, "INSERT INTO commands (agent_id, created_ns, data) VALUES ($1, $2, $3) RETURNING seq",
		agentID, c.CreatedUnixNano, data).Scan(&seq); err != nil {
		return nil, fmt.Errorf("storing command: %w", err)
	}
	c.Seq = uint64(seq)
	return c, nil
}

// PendingCommands implements store.Store.
func (s *Store) PendingCommands(ctx context.Context, agentID string, after uint64, limit int) ([]*watchpostv1.Command, error) {
	if limit <= 0 {
		return nil, errors.New("limit must be positive")
	}
	rows, err := s.pool.Query(ctx, "SELECT seq, data FROM commands WHERE seq > $1 AND agent_id IN ($2, '') ORDER BY seq LIMIT $3",
		int64(after), agentID, limit)
	if err != nil {
		return nil, fmt.Errorf("listing commands: %w", err)
	}
	defer rows.Close()
	var out []*watchpostv1.Command
	for rows.Next() {
		c, _, err := store.ScanCommand(rows, false)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// RecordCommandAck implements store.Store.
func (s *Store) RecordCommandAck(ctx context.Context, agentID string, ack *watchpostv1.CommandAck, at time.Time) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO command_acks (agent_id, seq, time_ns, status, message) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (agent_id, seq) DO UPDATE SET time_ns = excluded.time_ns, status = excluded.status, message = excluded.message`,
		agentID, int64(ack.Seq), at.UnixNano(), int32(ack.Status), ack.Message); err != nil {
		return fmt.Errorf("storing the ack of command %d by %s: %w", ack.Seq, agentID, err)
	}
	return nil
}

// Commands implements store.Store.
func (s *Store) Commands(ctx context.Context, agentID string) ([]store.StoredCommand, error) {
	q, aq := "SELECT seq, data, agent_id FROM commands", "SELECT agent_id, seq, time_ns, status, message FROM command_acks"
	var args []any
	if agentID != "" {
		q += " WHERE agent_id IN ($1, '')"
		aq += " WHERE agent_id = $1"
		args = append(args, agentID)
	}
	rows, err := s.pool.Query(ctx, q+" ORDER BY seq", args...)
	if err != nil {
		return nil, fmt.Errorf("listing commands: %w", err)
	}
	out, err := store.ScanCommands(rows)
	rows.Close()
	if err != nil {
		return nil, err
	}
	acks, err := s.pool.Query(ctx, aq+" ORDER BY seq, agent_id", args...)
	if err != nil {
		return nil, fmt.Errorf("listing command acks: %w", err)
	}
	defer acks.Close()
	return out, store.ScanDeliveries(acks, out)
}
