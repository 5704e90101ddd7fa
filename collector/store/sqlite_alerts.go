package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// migrateAlerts adds the host, severity and state columns to an alerts
// table made before them, filled from each alert's stored message.
func migrateAlerts(db *sql.DB) error {
	rows, err := db.Query("SELECT name FROM pragma_table_info('alerts')")
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		have[n] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if have["state"] {
		return nil
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	for _, c := range []string{"host TEXT NOT NULL DEFAULT ''", "severity INTEGER NOT NULL DEFAULT 0", "state INTEGER NOT NULL DEFAULT 1"} {
		if _, err := tx.Exec("ALTER TABLE alerts ADD COLUMN " + c); err != nil {
			return err
		}
	}
	old, err := tx.Query("SELECT id, data FROM alerts")
	if err != nil {
		return err
	}
	type fix struct {
		id int64
		a  *watchpostv1.Alert
	}
	var fixes []fix
	for old.Next() {
		var id int64
		var data []byte
		if err := old.Scan(&id, &data); err != nil {
			old.Close()
			return err
		}
		a := &watchpostv1.Alert{}
		if err := proto.Unmarshal(data, a); err != nil {
			old.Close()
			return fmt.Errorf("alert %d: %w", id, err)
		}
		fixes = append(fixes, fix{id, a})
	}
	old.Close()
	if err := old.Err(); err != nil {
		return err
	}
	for _, f := range fixes {
		state := f.a.State
		if state == watchpostv1.AlertState_ALERT_STATE_UNSPECIFIED {
			state = watchpostv1.AlertState_ALERT_STATE_OPEN
		}
		if _, err := tx.Exec("UPDATE alerts SET host = ?, severity = ?, state = ? WHERE id = ?",
			f.a.Host, int64(f.a.Severity), int64(state), f.id); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Alerts implements Store.
func (s *SQLite) Alerts(ctx context.Context, f AlertFilter, limit int) ([]*watchpostv1.Alert, error) {
	if limit <= 0 {
		return nil, errors.New("limit must be positive")
	}
	var where []string
	var args []any
	cond := func(c string, v ...any) { where = append(where, c); args = append(args, v...) }
	if f.AgentID != "" {
		cond("agent_id = ?", f.AgentID)
	}
	if f.Host != "" {
		cond("host = ?", f.Host)
	}
	if !f.Since.IsZero() {
		cond("time_ns >= ?", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		cond("time_ns <= ?", f.Until.UnixNano())
	}
	if f.MinSeverity > 0 {
		cond("severity >= ?", int64(f.MinSeverity))
	}
	if f.BeforeID > 0 {
		cond("id < ?", int64(f.BeforeID))
	}
	if len(f.States) > 0 {
		c, v := inList("state", f.States)
		cond(c, v...)
	}
	if len(f.Kinds) > 0 {
		c, v := inList("kind", f.Kinds)
		cond(c, v...)
	}
	if f.RuleID != "" {
		cond("rule_id = ?", f.RuleID)
	}
	if f.Technique != "" {
		pats := TechniquePatterns(f.Technique)
		cond(`(techniques LIKE ? ESCAPE '\' OR techniques LIKE ? ESCAPE '\')`, pats[0], pats[1])
	}
	q := "SELECT id, data, state FROM alerts"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing alerts: %w", err)
	}
	defer rows.Close()
	var out []*watchpostv1.Alert
	for rows.Next() {
		a, err := ScanAlert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// inList is "col IN (?, ...)" with the enum values as arguments.
func inList[E ~int32](col string, vs []E) (string, []any) {
	args := make([]any, len(vs))
	for i, v := range vs {
		args[i] = int64(v)
	}
	return col + " IN (" + strings.TrimSuffix(strings.Repeat("?,", len(vs)), ",") + ")", args
}

// UpdateAlerts implements Store.
func (s *SQLite) UpdateAlerts(ctx context.Context, u AlertUpdate) ([]*watchpostv1.Alert, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	out := make([]*watchpostv1.Alert, 0, len(u.IDs))
	for _, id := range u.IDs {
		a, err := ScanAlert(tx.QueryRowContext(ctx, "SELECT id, data, state FROM alerts WHERE id = ?", int64(id)))
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("alert %d: %w", id, ErrUnknownAlert)
		}
		if err != nil {
			return nil, err
		}
		u.Apply(a)
		stored := proto.Clone(a).(*watchpostv1.Alert)
		stored.Id = 0
		data, err := proto.Marshal(stored)
		if err != nil {
			return nil, fmt.Errorf("encoding alert %d: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE alerts SET data = ?, state = ? WHERE id = ?", data, int64(a.State), int64(id)); err != nil {
			return nil, fmt.Errorf("updating alert %d: %w", id, err)
		}
		out = append(out, a)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("committing alert update: %w", err)
	}
	return out, nil
}

// migrateDetectionAlerts adds the rule and technique columns that detection
// alerts are filtered by (alerts stored before them have none).
func migrateDetectionAlerts(db *sql.DB) error {
	var n int
	if err := db.QueryRow("SELECT count(*) FROM pragma_table_info('alerts') WHERE name = 'rule_id'").Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	for _, c := range []string{"rule_id TEXT NOT NULL DEFAULT ''", "techniques TEXT NOT NULL DEFAULT ''"} {
		if _, err := tx.Exec("ALTER TABLE alerts ADD COLUMN " + c); err != nil {
			return err
		}
	}
	if _, err := tx.Exec("CREATE INDEX IF NOT EXISTS alerts_rule ON alerts (rule_id)"); err != nil {
		return err
	}
	return tx.Commit()
}

// insertAlert stores one alert inside tx and sets its id.
func insertAlert(ctx context.Context, tx *sql.Tx, a *watchpostv1.Alert) error {
	a.Id = 0
	if a.State == watchpostv1.AlertState_ALERT_STATE_UNSPECIFIED {
		a.State = watchpostv1.AlertState_ALERT_STATE_OPEN
	}
	data, err := proto.Marshal(a)
	if err != nil {
		return fmt.Errorf("encoding alert: %w", err)
	}
	techniques := AlertTechniques(a)
	res, err := tx.ExecContext(ctx, `INSERT INTO alerts (agent_id, time_ns, kind, data, host, severity, state, rule_id, techniques)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.AgentId, a.TimeUnixNano, int64(a.Kind), data, a.Host, int64(a.Severity), int64(a.State), a.GetDetection().GetRuleId(), techniques)
	if err != nil {
		return fmt.Errorf("storing alert of %s: %w", a.AgentId, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("reading alert id: %w", err)
	}
	a.Id = uint64(id)
	return nil
}

// AlertByID implements Store.
func (s *SQLite) AlertByID(ctx context.Context, id uint64) (*watchpostv1.Alert, error) {
	a, err := ScanAlert(s.r.QueryRowContext(ctx, "SELECT id, data, state FROM alerts WHERE id = ?", int64(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("alert %d: %w", id, ErrUnknownAlert)
	}
	return a, err
}
