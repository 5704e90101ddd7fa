package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// SQLite stores events in insert-only tables, one per hour of receipt
// (ev_YYYYMMDDHH, UTC), with one summary row per batch in the batches
// table: its key (for deduplication), host, event time range, type mask,
// sequence range, the partition and rowid range of its events, and a Bloom
// filter of its lookup values. There are no per-event indexes: queries
// prune by batch summary and scan the rowid ranges that remain.
// Commits are durable (WAL, synchronous=FULL) before StoreBatches returns.
type SQLite struct {
	w, r *sql.DB

	mu    sync.Mutex // guards parts and stmts (writer side)
	parts map[string]bool
	stmts map[string]*sql.Stmt
}

// rowsPerInsert is the number of rows in one multi-value INSERT.
const rowsPerInsert = 100

const eventColumns = "time_ns, type, pid, sport, dport, host, comm, exe, path, path2, protocol, data"

const nEventColumns = 12

const schema = `
CREATE TABLE IF NOT EXISTS batches (
	id          INTEGER PRIMARY KEY,
	agent_id    TEXT    NOT NULL,
	boot_id     TEXT    NOT NULL,
	run_id      TEXT    NOT NULL,
	batch_seq   INTEGER NOT NULL,
	host        TEXT    NOT NULL, -- '' when the batch mixes hosts
	part        TEXT    NOT NULL,
	first_row   INTEGER NOT NULL,
	last_row    INTEGER NOT NULL,
	received_ns INTEGER NOT NULL,
	min_time    INTEGER NOT NULL,
	max_time    INTEGER NOT NULL,
	type_mask   INTEGER NOT NULL,
	min_seq     INTEGER NOT NULL,
	max_seq     INTEGER NOT NULL,
	event_count INTEGER NOT NULL,
	bloom       BLOB    NOT NULL,
	UNIQUE (agent_id, boot_id, run_id, batch_seq)
);
CREATE INDEX IF NOT EXISTS batches_max_time ON batches (max_time);
CREATE INDEX IF NOT EXISTS batches_part ON batches (part);
CREATE TABLE IF NOT EXISTS partitions (
	name     TEXT PRIMARY KEY,
	start_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
	agent_id         TEXT PRIMARY KEY,
	host             TEXT    NOT NULL DEFAULT '',
	last_seen_ns     INTEGER NOT NULL DEFAULT 0,
	heartbeat        BLOB,
	events_stored    INTEGER NOT NULL DEFAULT 0,
	batches_stored   INTEGER NOT NULL DEFAULT 0,
	batches_rejected INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS alerts (
	id       INTEGER PRIMARY KEY,
	agent_id TEXT    NOT NULL,
	time_ns  INTEGER NOT NULL,
	kind     INTEGER NOT NULL,
	data     BLOB    NOT NULL,
	host     TEXT    NOT NULL DEFAULT '',
	severity INTEGER NOT NULL DEFAULT 0,
	state    INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (time_ns);
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	agent_id   TEXT    NOT NULL, -- '' for every agent
	created_ns INTEGER NOT NULL,
	data       BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS command_acks (
	agent_id TEXT    NOT NULL,
	seq      INTEGER NOT NULL,
	time_ns  INTEGER NOT NULL,
	status   INTEGER NOT NULL,
	message  TEXT    NOT NULL,
	PRIMARY KEY (agent_id, seq)
);
CREATE TABLE IF NOT EXISTS heartbeats (
	agent_id    TEXT    NOT NULL,
	received_ns INTEGER NOT NULL,
	seq         INTEGER NOT NULL,
	data        BLOB    NOT NULL
);
`

// OpenSQLite opens or creates the database file.
func OpenSQLite(file string) (*SQLite, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "auto_vacuum(incremental)")
	q.Add("_pragma", "journal_mode(wal)")
	q.Add("_pragma", "synchronous(full)")
	q.Add("_txlock", "immediate")
	w, err := sql.Open("sqlite", "file:"+file+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", file, err)
	}
	w.SetMaxOpenConns(1)
	if _, err := w.Exec(schema); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("creating schema in %s: %w", file, err)
	}
	if err := migrateAlerts(w); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("upgrading the alerts table of %s: %w", file, err)
	}
	if err := migrateDetectionAlerts(w); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("upgrading the alerts table of %s: %w", file, err)
	}
	rq := url.Values{}
	rq.Add("_pragma", "busy_timeout(10000)")
	rq.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", "file:"+file+"?"+rq.Encode())
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("opening %s for reading: %w", file, err)
	}
	r.SetMaxOpenConns(4)
	s := &SQLite{w: w, r: r, parts: map[string]bool{}, stmts: map[string]*sql.Stmt{}}
	rows, err := w.Query("SELECT name FROM partitions")
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("listing partitions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("listing partitions: %w", err)
		}
		s.parts[n] = true
	}
	return s, rows.Err()
}

// Close closes the database.
func (s *SQLite) Close() error {
	s.mu.Lock()
	for _, st := range s.stmts {
		_ = st.Close()
	}
	s.stmts = map[string]*sql.Stmt{}
	s.mu.Unlock()
	return errors.Join(s.r.Close(), s.w.Close())
}

func partitionName(t time.Time) (string, int64) {
	h := t.UTC().Truncate(time.Hour)
	return "ev_" + h.Format("2006010215"), h.UnixNano()
}

// insertStmt returns the prepared INSERT of n rows into part.
func (s *SQLite) insertStmt(ctx context.Context, part string, n int) (*sql.Stmt, error) {
	key := part + "/" + strconv.Itoa(n)
	if st, ok := s.stmts[key]; ok {
		return st, nil
	}
	var b strings.Builder
	b.WriteString("INSERT INTO " + part + " (" + eventColumns + ") VALUES ")
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", nEventColumns), ",") + ")"
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	st, err := s.w.PrepareContext(ctx, b.String())
	if err != nil {
		return nil, fmt.Errorf("preparing insert into %s: %w", part, err)
	}
	s.stmts[key] = st
	return st, nil
}

// ensurePartition creates an hourly table the first time it is needed.
func (s *SQLite) ensurePartition(ctx context.Context, part string, start int64) error {
	if s.parts[part] {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+part+` (
		time_ns INTEGER NOT NULL, type INTEGER NOT NULL, pid INTEGER NOT NULL,
		sport INTEGER NOT NULL, dport INTEGER NOT NULL, host TEXT NOT NULL,
		comm TEXT NOT NULL, exe TEXT NOT NULL, path TEXT NOT NULL, path2 TEXT NOT NULL,
		protocol TEXT NOT NULL, data BLOB NOT NULL)`); err != nil {
		return fmt.Errorf("creating partition %s: %w", part, err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO partitions (name, start_ns) VALUES (?, ?)", part, start); err != nil {
		return fmt.Errorf("registering partition %s: %w", part, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("creating partition %s: %w", part, err)
	}
	s.parts[part] = true
	return nil
}

// eventRow appends the column values of one event.
func eventRow(args []any, ev *watchpostv1.Event, raw []byte) []any {
	c := EventColumns(ev)
	h, pr := ev.Header, ev.Process
	return append(args, h.TimeUnixNano, int64(h.Type), int64(pr.Pid), int64(c.SrcPort), int64(c.DstPort),
		h.Host, pr.Comm, pr.Exe, c.Path, c.Path2, c.Protocol, raw)
}

// StoreBatches implements Store.
func (s *SQLite) StoreBatches(ctx context.Context, batches []BatchInput) ([]Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	part, start := partitionName(now)
	if err := s.ensurePartition(ctx, part, start); err != nil {
		return nil, err
	}
	// Statements are prepared before the transaction takes the connection.
	for _, b := range batches {
		for i := 0; i < len(b.Events); i += rowsPerInsert {
			if _, err := s.insertStmt(ctx, part, min(rowsPerInsert, len(b.Events)-i)); err != nil {
				return nil, err
			}
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	results := make([]Result, len(batches))
	args := make([]any, 0, rowsPerInsert*nEventColumns)
	for bi := range batches {
		b := &batches[bi]
		var one int
		err := tx.QueryRowContext(ctx, "SELECT 1 FROM batches WHERE agent_id = ? AND boot_id = ? AND run_id = ? AND batch_seq = ?",
			b.Key.AgentID, b.Key.BootID, b.Key.RunID, int64(b.Key.BatchSeq)).Scan(&one)
		switch {
		case err == nil:
			results[bi] = Duplicate
			continue
		case !errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("checking batch %d: %w", b.Key.BatchSeq, err)
		}
		var last int64
		for i := 0; i < len(b.Events); i += rowsPerInsert {
			n := min(rowsPerInsert, len(b.Events)-i)
			st, err := s.insertStmt(ctx, part, n)
			if err != nil {
				return nil, err
			}
			args = args[:0]
			for j := i; j < i+n; j++ {
				args = eventRow(args, b.Events[j], b.Raw[j])
			}
			res, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...)
			if err != nil {
				return nil, fmt.Errorf("inserting events of batch %d: %w", b.Key.BatchSeq, err)
			}
			if last, err = res.LastInsertId(); err != nil {
				return nil, fmt.Errorf("reading rowid: %w", err)
			}
		}
		sum := summarize(b.Events)
		first := last - int64(len(b.Events)) + 1
		if _, err := tx.ExecContext(ctx, `INSERT INTO batches (agent_id, boot_id, run_id, batch_seq, host, part,
			first_row, last_row, received_ns, min_time, max_time, type_mask, min_seq, max_seq, event_count, bloom)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			b.Key.AgentID, b.Key.BootID, b.Key.RunID, int64(b.Key.BatchSeq), sum.host, part,
			first, last, now.UnixNano(), sum.minTime, sum.maxTime, int64(sum.typeMask),
			int64(sum.minSeq), int64(sum.maxSeq), len(b.Events), []byte(sum.bloom)); err != nil {
			return nil, fmt.Errorf("inserting summary of batch %d: %w", b.Key.BatchSeq, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO agents (agent_id, host, last_seen_ns, events_stored, batches_stored)
			VALUES (?, ?, ?, ?, 1) ON CONFLICT (agent_id) DO UPDATE SET
			host = CASE WHEN excluded.host = '' THEN agents.host ELSE excluded.host END,
			last_seen_ns = excluded.last_seen_ns,
			events_stored = agents.events_stored + excluded.events_stored,
			batches_stored = agents.batches_stored + 1`,
			b.Key.AgentID, sum.host, now.UnixNano(), len(b.Events)); err != nil {
			return nil, fmt.Errorf("updating agent %s: %w", b.Key.AgentID, err)
		}
		for _, a := range b.Alerts {
			if err := insertAlert(ctx, tx, a); err != nil {
				return nil, err
			}
		}
		results[bi] = Stored
	}
	if err := tx.Commit(); err != nil {
		for _, b := range batches {
			for _, a := range b.Alerts {
				a.Id = 0
			}
		}
		return nil, fmt.Errorf("committing: %w", err)
	}
	return results, nil
}

type summary struct {
	host             string
	minTime, maxTime int64
	minSeq, maxSeq   uint64
	typeMask         uint64
	bloom            bloom
}

func summarize(events []*watchpostv1.Event) summary {
	s := summary{host: events[0].Header.Host, minTime: events[0].Header.TimeUnixNano, maxTime: events[0].Header.TimeUnixNano,
		minSeq: events[0].Header.Seq, maxSeq: events[0].Header.Seq}
	keys := make(map[string]struct{}, len(events))
	for _, ev := range events {
		h := ev.Header
		if h.Host != s.host {
			s.host = ""
		}
		s.minTime, s.maxTime = min(s.minTime, h.TimeUnixNano), max(s.maxTime, h.TimeUnixNano)
		s.minSeq, s.maxSeq = min(s.minSeq, h.Seq), max(s.maxSeq, h.Seq)
		s.typeMask |= typeBit(h.Type)
		batchTokens(keys, ev)
	}
	s.bloom = newBloom(keys)
	return s
}

// RecordHeartbeat implements Store.
func (s *SQLite) RecordHeartbeat(ctx context.Context, agentID string, hb *watchpostv1.Heartbeat, received time.Time) error {
	data, err := proto.Marshal(hb)
	if err != nil {
		return fmt.Errorf("encoding heartbeat: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "INSERT INTO heartbeats (agent_id, received_ns, seq, data) VALUES (?, ?, ?, ?)",
		agentID, received.UnixNano(), int64(hb.Seq), data); err != nil {
		return fmt.Errorf("storing heartbeat: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO agents (agent_id, host, last_seen_ns, heartbeat) VALUES (?, ?, ?, ?)
		ON CONFLICT (agent_id) DO UPDATE SET
		host = CASE WHEN excluded.host = '' THEN agents.host ELSE excluded.host END,
		last_seen_ns = excluded.last_seen_ns, heartbeat = excluded.heartbeat`,
		agentID, hb.Host, received.UnixNano(), data); err != nil {
		return fmt.Errorf("updating agent %s: %w", agentID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing heartbeat: %w", err)
	}
	return nil
}

// RecordRejected implements Store.
func (s *SQLite) RecordRejected(ctx context.Context, agentID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.ExecContext(ctx, `INSERT INTO agents (agent_id, batches_rejected) VALUES (?, 1)
		ON CONFLICT (agent_id) DO UPDATE SET batches_rejected = agents.batches_rejected + 1`, agentID); err != nil {
		return fmt.Errorf("counting rejected batch of %s: %w", agentID, err)
	}
	return nil
}

// RecordAlerts implements Store.
func (s *SQLite) RecordAlerts(ctx context.Context, alerts []*watchpostv1.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, a := range alerts {
		if err := insertAlert(ctx, tx, a); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing alerts: %w", err)
	}
	return nil
}

// LastHeartbeats implements Store.
func (s *SQLite) LastHeartbeats(ctx context.Context) (map[string]HeartbeatAt, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT agent_id, last_seen_ns, heartbeat FROM agents WHERE heartbeat IS NOT NULL")
	if err != nil {
		return nil, fmt.Errorf("listing heartbeats: %w", err)
	}
	defer rows.Close()
	return ScanHeartbeats(rows)
}

// Hosts implements Store.
func (s *SQLite) Hosts(ctx context.Context) ([]*watchpostv1.HostInfo, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+HostsColumns+" FROM agents ORDER BY agent_id")
	if err != nil {
		return nil, fmt.Errorf("listing agents: %w", err)
	}
	defer rows.Close()
	return ScanHosts(rows)
}

// EnforceRetention implements Store.
func (s *SQLite) EnforceRetention(ctx context.Context, r Retention, now time.Time) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	type part struct {
		name  string
		start int64
	}
	rows, err := s.w.QueryContext(ctx, "SELECT name, start_ns FROM partitions ORDER BY start_ns")
	if err != nil {
		return nil, fmt.Errorf("listing partitions: %w", err)
	}
	var parts []part
	for rows.Next() {
		var p part
		if err := rows.Scan(&p.name, &p.start); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing partitions: %w", err)
		}
		parts = append(parts, p)
	}
	rows.Close()
	var dropped []string
	drop := func(p part) error {
		for key, st := range s.stmts {
			if strings.HasPrefix(key, p.name+"/") {
				_ = st.Close()
				delete(s.stmts, key)
			}
		}
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("beginning transaction: %w", err)
		}
		defer func() { _ = tx.Rollback() }()
		for _, q := range []string{"DROP TABLE IF EXISTS " + p.name, "DELETE FROM batches WHERE part = ?", "DELETE FROM partitions WHERE name = ?"} {
			var args []any
			if strings.Contains(q, "?") {
				args = []any{p.name}
			}
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return fmt.Errorf("dropping partition %s: %w", p.name, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("dropping partition %s: %w", p.name, err)
		}
		delete(s.parts, p.name)
		dropped = append(dropped, p.name)
		return nil
	}
	if r.MaxAge > 0 {
		cutoff := now.Add(-r.MaxAge).UnixNano()
		for len(parts) > 0 && parts[0].start+int64(time.Hour) <= cutoff {
			if err := drop(parts[0]); err != nil {
				return dropped, err
			}
			parts = parts[1:]
		}
		if _, err := s.w.ExecContext(ctx, "DELETE FROM heartbeats WHERE received_ns < ?", cutoff); err != nil {
			return dropped, fmt.Errorf("expiring heartbeats: %w", err)
		}
	}
	if r.MaxBytes > 0 {
		for len(parts) > 1 {
			size, err := s.usedBytes(ctx)
			if err != nil {
				return dropped, err
			}
			if size <= r.MaxBytes {
				break
			}
			if err := drop(parts[0]); err != nil {
				return dropped, err
			}
			parts = parts[1:]
		}
	}
	if len(dropped) > 0 {
		if _, err := s.w.ExecContext(ctx, "PRAGMA incremental_vacuum"); err != nil {
			return dropped, fmt.Errorf("returning free pages: %w", err)
		}
	}
	return dropped, nil
}

// usedBytes is the size of the pages in use.
func (s *SQLite) usedBytes(ctx context.Context) (int64, error) {
	var pages, free, size int64
	for _, p := range []struct {
		q string
		v *int64
	}{{"PRAGMA page_count", &pages}, {"PRAGMA freelist_count", &free}, {"PRAGMA page_size", &size}} {
		if err := s.w.QueryRowContext(ctx, p.q).Scan(p.v); err != nil {
			return 0, fmt.Errorf("%s: %w", p.q, err)
		}
	}
	return (pages - free) * size, nil
}

// candidate is a batch whose summary may match a filter.
type candidate struct {
	agentID, bootID string
	part            string
	first, last     int64
	maxTime         int64
}

// Query implements Store.
func (s *SQLite) Query(ctx context.Context, f Filter, limit int) ([]*watchpostv1.Event, bool, error) {
	if limit <= 0 {
		return nil, false, errors.New("limit must be positive")
	}
	cands, err := s.candidates(ctx, f)
	if err != nil {
		return nil, false, err
	}
	where, args := rowFilter(f)
	top := NewNewest(limit)
	for _, c := range cands {
		if top.Done(c.maxTime) {
			break
		}
		q := "SELECT time_ns, data FROM " + c.part + " WHERE rowid BETWEEN ? AND ?" + where
		rows, err := s.r.QueryContext(ctx, q, append([]any{c.first, c.last}, args...)...)
		if err != nil {
			return nil, false, fmt.Errorf("scanning %s: %w", c.part, err)
		}
		for rows.Next() {
			var tm int64
			var data []byte
			if err := rows.Scan(&tm, &data); err != nil {
				rows.Close()
				return nil, false, fmt.Errorf("reading %s: %w", c.part, err)
			}
			top.Offer(tm, data, c.agentID, c.bootID)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, false, fmt.Errorf("reading %s: %w", c.part, err)
		}
	}
	return top.Events()
}

// candidates returns the batches whose summary may match, newest first.
func (s *SQLite) candidates(ctx context.Context, f Filter) ([]candidate, error) {
	q := "SELECT agent_id, boot_id, host, part, first_row, last_row, max_time, type_mask, bloom FROM batches WHERE 1=1"
	var args []any
	if !f.Since.IsZero() {
		q += " AND max_time >= ?"
		args = append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		q += " AND min_time <= ?"
		args = append(args, f.Until.UnixNano())
	}
	if f.AgentID != "" {
		q += " AND agent_id = ?"
		args = append(args, f.AgentID)
	}
	if f.Host != "" {
		q += " AND (host = ? OR host = '')"
		args = append(args, f.Host)
	}
	q += " ORDER BY max_time DESC"
	prune := NewPrune(f)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("selecting batches: %w", err)
	}
	defer rows.Close()
	var out []candidate
	for rows.Next() {
		var c candidate
		var host string
		var typeMask int64
		var bl []byte
		if err := rows.Scan(&c.agentID, &c.bootID, &host, &c.part, &c.first, &c.last, &c.maxTime, &typeMask, &bl); err != nil {
			return nil, fmt.Errorf("reading batch summary: %w", err)
		}
		if prune.Skip(uint64(typeMask), bl) {
			continue
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func bloomMatches(b bloom, tokens [][]string) bool {
	for _, any := range tokens {
		ok := false
		for _, t := range any {
			if b.mayContain(t) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// rowFilter is the per-row WHERE clause applied inside a batch's rowid range.
func rowFilter(f Filter) (string, []any) {
	var b strings.Builder
	var args []any
	if !f.Since.IsZero() {
		b.WriteString(" AND time_ns >= ?")
		args = append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		b.WriteString(" AND time_ns <= ?")
		args = append(args, f.Until.UnixNano())
	}
	if f.Host != "" {
		b.WriteString(" AND host = ?")
		args = append(args, f.Host)
	}
	if len(f.Types) > 0 {
		b.WriteString(" AND type IN (" + strings.TrimSuffix(strings.Repeat("?,", len(f.Types)), ",") + ")")
		for _, t := range f.Types {
			args = append(args, int64(t))
		}
	}
	if f.PID != 0 {
		b.WriteString(" AND pid = ?")
		args = append(args, int64(f.PID))
	}
	if f.Exe != "" {
		b.WriteString(" AND (exe = ? OR comm = ? OR (length(exe) > ? AND substr(exe, -?) = ?))")
		base := "/" + path.Base(f.Exe)
		args = append(args, f.Exe, f.Exe, len(base), len(base), base)
	}
	if f.PathPrefix != "" {
		b.WriteString(" AND (substr(path, 1, ?) = ? OR substr(path2, 1, ?) = ?)")
		args = append(args, len(f.PathPrefix), f.PathPrefix, len(f.PathPrefix), f.PathPrefix)
	}
	if f.Port != 0 {
		b.WriteString(" AND (sport = ? OR dport = ?)")
		args = append(args, int64(f.Port), int64(f.Port))
	}
	if f.Protocol != "" {
		b.WriteString(" AND protocol = ?")
		args = append(args, f.Protocol)
	}
	if f.Text != "" {
		b.WriteString(" AND instr(data, ?) > 0")
		args = append(args, []byte(f.Text))
	}
	return b.String(), args
}

type heapItem struct {
	time            int64
	data            []byte
	agentID, bootID string
}

// eventHeap is a min-heap by time: the oldest of the kept events on top.
type eventHeap []heapItem

func (h eventHeap) Len() int           { return len(h) }
func (h eventHeap) Less(i, j int) bool { return h[i].time < h[j].time }
func (h eventHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)        { *h = append(*h, x.(heapItem)) }
func (h *eventHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

var _ Store = (*SQLite)(nil)
