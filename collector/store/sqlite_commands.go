package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// CommandEpoch implements Store.
func (s *SQLite) CommandEpoch(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	if _, err := s.w.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES ('command_epoch', ?) ON CONFLICT (key) DO NOTHING", hex.EncodeToString(b[:])); err != nil {
		return "", fmt.Errorf("storing the command epoch: %w", err)
	}
	var epoch string
	if err := s.w.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'command_epoch'").Scan(&epoch); err != nil {
		return "", fmt.Errorf("reading the command epoch: %w", err)
	}
	return epoch, nil
}

// AddCommand implements Store.
func (s *SQLite) AddCommand(ctx context.Context, agentID string, cmd *watchpostv1.Command) (*watchpostv1.Command, error) {
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
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := s.w.ExecContext(ctx, "INSERT INTO commands (agent_id, created_ns, data) VALUES (?, ?, ?)", agentID, c.CreatedUnixNano, data)
	if err != nil {
		return nil, fmt.Errorf("storing command: %w", err)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return nil, fmt.Errorf("reading command seq: %w", err)
	}
	c.Seq = uint64(seq)
	return c, nil
}

// PendingCommands implements Store.
func (s *SQLite) PendingCommands(ctx context.Context, agentID string, after uint64, limit int) ([]*watchpostv1.Command, error) {
	if limit <= 0 {
		return nil, errors.New("limit must be positive")
	}
	rows, err := s.r.QueryContext(ctx, "SELECT seq, data FROM commands WHERE seq > ? AND agent_id IN (?, '') ORDER BY seq LIMIT ?",
		int64(after), agentID, limit)
	if err != nil {
		return nil, fmt.Errorf("listing commands: %w", err)
	}
	defer rows.Close()
	var out []*watchpostv1.Command
	for rows.Next() {
		c, _, err := ScanCommand(rows, false)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func ScanCommand(r Scanner, withAgent bool) (*watchpostv1.Command, string, error) {
	var seq int64
	var data []byte
	var agent string
	var err error
	if withAgent {
		err = r.Scan(&seq, &data, &agent)
	} else {
		err = r.Scan(&seq, &data)
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading command: %w", err)
	}
	c := &watchpostv1.Command{}
	if err := proto.Unmarshal(data, c); err != nil {
		return nil, "", fmt.Errorf("decoding command %d: %w", seq, err)
	}
	c.Seq = uint64(seq)
	return c, agent, nil
}

// RecordCommandAck implements Store.
func (s *SQLite) RecordCommandAck(ctx context.Context, agentID string, ack *watchpostv1.CommandAck, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.ExecContext(ctx, `INSERT INTO command_acks (agent_id, seq, time_ns, status, message) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (agent_id, seq) DO UPDATE SET time_ns = excluded.time_ns, status = excluded.status, message = excluded.message`,
		agentID, int64(ack.Seq), at.UnixNano(), int64(ack.Status), ack.Message); err != nil {
		return fmt.Errorf("storing the ack of command %d by %s: %w", ack.Seq, agentID, err)
	}
	return nil
}

// Commands implements Store.
func (s *SQLite) Commands(ctx context.Context, agentID string) ([]StoredCommand, error) {
	q, aq := "SELECT seq, data, agent_id FROM commands", "SELECT agent_id, seq, time_ns, status, message FROM command_acks"
	var args []any
	if agentID != "" {
		q += " WHERE agent_id IN (?, '')"
		aq += " WHERE agent_id = ?"
		args = append(args, agentID)
	}
	rows, err := s.r.QueryContext(ctx, q+" ORDER BY seq", args...)
	if err != nil {
		return nil, fmt.Errorf("listing commands: %w", err)
	}
	out, err := ScanCommands(rows)
	rows.Close()
	if err != nil {
		return nil, err
	}
	acks, err := s.r.QueryContext(ctx, aq+" ORDER BY seq, agent_id", args...)
	if err != nil {
		return nil, fmt.Errorf("listing command acks: %w", err)
	}
	defer acks.Close()
	return out, ScanDeliveries(acks, out)
}

// ScanCommands reads (seq, data, agent_id) rows.
func ScanCommands(rows Rows) ([]StoredCommand, error) {
	var out []StoredCommand
	for rows.Next() {
		c, agent, err := ScanCommand(rows, true)
		if err != nil {
			return nil, err
		}
		out = append(out, StoredCommand{Command: c, AgentID: agent})
	}
	return out, rows.Err()
}

// ScanDeliveries reads (agent_id, seq, time_ns, status, message) rows into
// the commands' deliveries.
func ScanDeliveries(rows Rows, cmds []StoredCommand) error {
	idx := make(map[uint64]int, len(cmds))
	for i, c := range cmds {
		idx[c.Command.Seq] = i
	}
	for rows.Next() {
		d := &watchpostv1.CommandDelivery{}
		var seq, t, st int64
		if err := rows.Scan(&d.AgentId, &seq, &t, &st, &d.Message); err != nil {
			return fmt.Errorf("reading command ack: %w", err)
		}
		d.TimeUnixNano, d.Status = t, watchpostv1.CommandStatus(st)
		if i, ok := idx[uint64(seq)]; ok {
			cmds[i].Deliveries = append(cmds[i].Deliveries, d)
		}
	}
	return rows.Err()
}
