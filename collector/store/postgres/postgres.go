// Package postgres is the collector's PostgreSQL 15+ event store
// (github.com/jackc/pgx/v5): the same store.Store as the embedded SQLite
// engine, for fleets where several collectors and store writers share one
// database. Events go with COPY into hourly partitions of the events table
// (by time of receipt, created ahead and retired by retention); one row per
// batch in batches holds its key (agent, boot, run, sequence: unique, so a
// redelivered batch is never stored twice), its event time range, type
// mask and Bloom filter. Queries prune by batch summary and read the
// remaining batches' events through the partition's batch_id index.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Advisory lock keys: schema changes and retention run in one session at a time.
const (
	lockSchema    = 0x77700001
	lockRetention = 0x77700002
)

const schema = `
CREATE TABLE IF NOT EXISTS events (
	received_ns BIGINT  NOT NULL,
	batch_id    BIGINT  NOT NULL,
	time_ns     BIGINT  NOT NULL,
	type        INTEGER NOT NULL,
	pid         BIGINT  NOT NULL,
	sport       INTEGER NOT NULL,
	dport       INTEGER NOT NULL,
	host        TEXT    NOT NULL,
	comm        TEXT    NOT NULL,
	exe         TEXT    NOT NULL,
	path        TEXT    NOT NULL,
	path2       TEXT    NOT NULL,
	protocol    TEXT    NOT NULL,
	data        BYTEA   NOT NULL
) PARTITION BY RANGE (received_ns);
CREATE INDEX IF NOT EXISTS events_batch ON events (batch_id);
CREATE TABLE IF NOT EXISTS batches (
	id          BIGSERIAL PRIMARY KEY,
	agent_id    TEXT    NOT NULL,
	boot_id     TEXT    NOT NULL,
	run_id      TEXT    NOT NULL,
	batch_seq   BIGINT  NOT NULL,
	host        TEXT    NOT NULL,
	part        TEXT    NOT NULL,
	received_ns BIGINT  NOT NULL,
	min_time    BIGINT  NOT NULL,
	max_time    BIGINT  NOT NULL,
	type_mask   BIGINT  NOT NULL,
	min_seq     BIGINT  NOT NULL,
	max_seq     BIGINT  NOT NULL,
	event_count INTEGER NOT NULL,
	bloom       BYTEA   NOT NULL,
	UNIQUE (agent_id, boot_id, run_id, batch_seq)
);
CREATE INDEX IF NOT EXISTS batches_newest ON batches (max_time DESC, id DESC);
CREATE INDEX IF NOT EXISTS batches_part ON batches (part);
CREATE TABLE IF NOT EXISTS partitions (
	name     TEXT PRIMARY KEY,
	start_ns BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
	agent_id         TEXT PRIMARY KEY,
	host             TEXT   NOT NULL DEFAULT '',
	last_seen_ns     BIGINT NOT NULL DEFAULT 0,
	heartbeat        BYTEA,
	heartbeat_ns     BIGINT NOT NULL DEFAULT 0,
	events_stored    BIGINT NOT NULL DEFAULT 0,
	batches_stored   BIGINT NOT NULL DEFAULT 0,
	batches_rejected BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS alerts (
	id       BIGSERIAL PRIMARY KEY,
	agent_id TEXT    NOT NULL,
	time_ns  BIGINT  NOT NULL,
	kind     INTEGER NOT NULL,
	data     BYTEA   NOT NULL,
	host     TEXT    NOT NULL DEFAULT '',
	severity INTEGER NOT NULL DEFAULT 0,
	state    INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (time_ns);
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS rule_id TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS techniques TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS alerts_rule ON alerts (rule_id);
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
	seq        BIGSERIAL PRIMARY KEY,
	agent_id   TEXT   NOT NULL, -- '' for every agent
	created_ns BIGINT NOT NULL,
	data       BYTEA  NOT NULL
);
CREATE TABLE IF NOT EXISTS command_acks (
	agent_id TEXT    NOT NULL,
	seq      BIGINT  NOT NULL,
	time_ns  BIGINT  NOT NULL,
	status   INTEGER NOT NULL,
	message  TEXT    NOT NULL,
	PRIMARY KEY (agent_id, seq)
);
CREATE TABLE IF NOT EXISTS heartbeats (
	agent_id    TEXT   NOT NULL,
	received_ns BIGINT NOT NULL,
	seq         BIGINT NOT NULL,
	data        BYTEA  NOT NULL
);
CREATE INDEX IF NOT EXISTS heartbeats_received ON heartbeats (received_ns);
CREATE TABLE IF NOT EXISTS refusals (
	agent_id TEXT   NOT NULL,
	kind     TEXT   NOT NULL,
	reason   TEXT   NOT NULL,
	count    BIGINT NOT NULL,
	PRIMARY KEY (agent_id, kind, reason)
);
ALTER TABLE agents ADD COLUMN IF NOT EXISTS stored_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN IF NOT EXISTS bytes BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS batches_agent ON batches (agent_id, id);
-- A heartbeat delivered twice by the queue (same receipt time) is kept once.
CREATE UNIQUE INDEX IF NOT EXISTS heartbeats_key ON heartbeats (agent_id, received_ns, seq);
`

var copyColumns = []string{"received_ns", "batch_id", "time_ns", "type", "pid", "sport", "dport", "host", "comm", "exe", "path", "path2", "protocol", "data"}

// Options tune the engine. Zero values take the defaults.
type Options struct {
	// MaxConns bounds the connection pool (8).
	MaxConns int32
	// Now is the clock deciding the partition of received batches (time.Now).
	Now func() time.Time
	// ReadOnly opens without connecting first and without creating the
	// schema (EnsureSchema does): a fleet collector, which reads and records
	// alerts but stores no batch, starts while the database is away.
	ReadOnly bool
}

// Store is the PostgreSQL engine. It is safe for concurrent use by any
// number of goroutines and processes.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time

	mu    sync.Mutex // guards parts
	parts map[string]bool
}

// Open connects to url (a libpq URL or key=value string), creates the schema
// when it is missing and the partitions of this hour and the next.
func Open(ctx context.Context, url string, opt Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %w", err)
	}
	cfg.MaxConns = 8
	if opt.MaxConns > 0 {
		cfg.MaxConns = opt.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to postgres: %w", err)
	}
	s := &Store{pool: pool, now: time.Now, parts: map[string]bool{}}
	if opt.Now != nil {
		s.now = opt.Now
	}
	if opt.ReadOnly {
		return s, nil
	}
	if err := s.EnsureSchema(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// schemaVersion names the schema text above: a store whose meta row holds
// it has every table, column and index, and EnsureSchema takes no lock on
// it. Change it with the schema.
var schemaVersion = fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(schema)))

// EnsureSchema creates the tables, indexes and the partitions of this hour
// and the next when they are missing (any number of processes may at once).
// A database already at this schema version is only read: the schema's
// ALTER TABLE statements take exclusive locks, and running them beside
// writers that hold row locks deadlocks. A transaction that PostgreSQL
// chose as a deadlock's victim is run again.
func (s *Store) EnsureSchema(ctx context.Context) error {
	var have string
	err := s.pool.QueryRow(ctx, "SELECT value FROM meta WHERE key = 'schema_version'").Scan(&have)
	if err == nil && have == schemaVersion {
		return s.ensurePartitions(ctx, s.now())
	}
	err = s.schemaTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, schema); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ('schema_version', $1)
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, schemaVersion)
		return err
	})
	if err != nil {
		return fmt.Errorf("creating the schema: %w", err)
	}
	return s.ensurePartitions(ctx, s.now())
}

// schemaTx runs f in a transaction holding the schema lock, run again when
// PostgreSQL aborts it to break a deadlock.
func (s *Store) schemaTx(ctx context.Context, f func(pgx.Tx) error) error {
	return retryDeadlock(ctx, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockSchema); err != nil {
				return err
			}
			return f(tx)
		})
	})
}

// retryDeadlock runs f again, up to five times, while PostgreSQL aborts it
// as the victim of a deadlock (SQLSTATE 40P01) or a serialization failure.
func retryDeadlock(ctx context.Context, f func() error) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = f(); err == nil {
			return nil
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || (pe.Code != "40P01" && pe.Code != "40001") {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
	}
	return err
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

func partitionName(t time.Time) (string, int64) {
	h := t.UTC().Truncate(time.Hour)
	return "ev_" + h.Format("2006010215"), h.UnixNano()
}

// ensurePartitions creates the partitions of t's hour and the next one, so
// that writers never wait for a partition being created at an hour's turn.
func (s *Store) ensurePartitions(ctx context.Context, t time.Time) error {
	for _, at := range []time.Time{t, t.Add(time.Hour)} {
		name, start := partitionName(at)
		s.mu.Lock()
		known := s.parts[name]
		s.mu.Unlock()
		if known {
			continue
		}
		err := s.schemaTx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF events FOR VALUES FROM (%d) TO (%d)",
				name, start, start+int64(time.Hour))); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO partitions (name, start_ns) VALUES ($1, $2) ON CONFLICT DO NOTHING", name, start)
			return err
		})
		if err != nil {
			return fmt.Errorf("creating partition %s: %w", name, err)
		}
		s.mu.Lock()
		s.parts[name] = true
		s.mu.Unlock()
	}
	return nil
}

// StoreBatches implements store.Store: one transaction; the batch rows go
// first (in key order, so concurrent writers cannot deadlock), a batch
// whose key exists is a duplicate, the new batches' events follow with one
// COPY into the partition of this hour.
func (s *Store) StoreBatches(ctx context.Context, batches []store.BatchInput) ([]store.Result, error) {
	now := s.now()
	if err := s.ensurePartitions(ctx, now); err != nil {
		return nil, err
	}
	part, _ := partitionName(now)
	order := make([]int, len(batches))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return keyLess(batches[order[a]].Key, batches[order[b]].Key) })
	results := make([]store.Result, len(batches))
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var qb pgx.Batch
		bytes := make([]int64, len(batches))
		for _, i := range order {
			b := &batches[i]
			sum := store.Summary{Bloom: []byte{}}
			if len(b.Events) > 0 {
				sum = store.Summarize(b.Events)
			}
			for j, ev := range b.Events {
				bytes[i] += store.EventBytes(ev, b.Raw[j], b.Key.AgentID)
			}
			qb.Queue(`INSERT INTO batches (agent_id, boot_id, run_id, batch_seq, host, part, received_ns, min_time, max_time,
				type_mask, min_seq, max_seq, event_count, bloom, bytes) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)
				ON CONFLICT DO NOTHING RETURNING id`,
				b.Key.AgentID, b.Key.BootID, b.Key.RunID, int64(b.Key.BatchSeq), b.Key.AgentID, part, now.UnixNano(),
				sum.MinTime, sum.MaxTime, int64(sum.TypeMask), int64(sum.MinSeq), int64(sum.MaxSeq), len(b.Events), sum.Bloom, bytes[i])
		}

		br := tx.SendBatch(ctx, &qb)
		ids := make([]int64, len(batches))
		type agentSum struct {
			events, batches int
			bytes           int64
		}
		agents := map[string]*agentSum{}
		rows := 0
		for _, i := range order {
			err := br.QueryRow().Scan(&ids[i])
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				results[i] = store.Duplicate
				continue
			case err != nil:
				_ = br.Close()
				return fmt.Errorf("inserting summary of batch %d: %w", batches[i].Key.BatchSeq, err)
			}
			results[i] = store.Stored
			b := &batches[i]
			a := agents[b.Key.AgentID]
			if a == nil {
				a = &agentSum{}
				agents[b.Key.AgentID] = a
			}
			a.events += len(b.Events)
			a.bytes += bytes[i]
			a.batches++
			rows += len(b.Events)
		}
		if err := br.Close(); err != nil {
			return fmt.Errorf("inserting batch summaries: %w", err)
		}
		if rows == 0 {
			return nil
		}
		src := &eventSource{batches: batches, order: order, results: results, ids: ids, received: now.UnixNano(), bi: -1}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{part}, copyColumns, src); err != nil {
			return fmt.Errorf("copying events into %s: %w", part, err)
		}
		names := make([]string, 0, len(agents))
		for id := range agents {
			names = append(names, id)
		}
		sort.Strings(names)
		var ab pgx.Batch
		for _, id := range names {
			a := agents[id]
			ab.Queue(`INSERT INTO agents (agent_id, host, last_seen_ns, events_stored, batches_stored, stored_bytes) VALUES ($1, $1, $2, $3, $4, $5)
				ON CONFLICT (agent_id) DO UPDATE SET
				last_seen_ns = GREATEST(agents.last_seen_ns, excluded.last_seen_ns),
				events_stored = agents.events_stored + excluded.events_stored,
				batches_stored = agents.batches_stored + excluded.batches_stored,
				stored_bytes = agents.stored_bytes + excluded.stored_bytes`,
				id, now.UnixNano(), a.events, a.batches, a.bytes)
		}
		if err := tx.SendBatch(ctx, &ab).Close(); err != nil {
			return fmt.Errorf("updating agents: %w", err)
		}
		for _, i := range order {
			if results[i] != store.Stored {
				continue
			}
			for _, a := range batches[i].Alerts {
				if err := insertAlert(ctx, tx, a); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		for _, b := range batches {
			for _, a := range b.Alerts {
				a.Id = 0
			}
		}
		return nil, err
	}
	return results, nil
}

func keyLess(a, b store.BatchKey) bool {
	if a.AgentID != b.AgentID {
		return a.AgentID < b.AgentID
	}
	if a.BootID != b.BootID {
		return a.BootID < b.BootID
	}
	if a.RunID != b.RunID {
		return a.RunID < b.RunID
	}
	return a.BatchSeq < b.BatchSeq
}

// eventSource streams the new batches' events to COPY without building
// them all in memory first.
type eventSource struct {
	batches  []store.BatchInput
	order    []int
	results  []store.Result
	ids      []int64
	received int64
	bi, ei   int // position in order, event index
	row      [14]any
}

func (e *eventSource) Next() bool {
	for {
		if e.bi >= 0 && e.bi < len(e.order) {
			b := &e.batches[e.order[e.bi]]
			if e.results[e.order[e.bi]] == store.Stored && e.ei+1 < len(b.Events) {
				e.ei++
				return true
			}
		}
		e.bi++
		e.ei = -1
		if e.bi >= len(e.order) {
			return false
		}
	}
}

func (e *eventSource) Values() ([]any, error) {
	i := e.order[e.bi]
	b := &e.batches[i]
	ev := b.Events[e.ei]
	c := store.EventColumns(ev)
	h, p := ev.Header, ev.Process
	e.row = [14]any{e.received, e.ids[i], h.TimeUnixNano, int32(h.Type), int64(p.Pid), int32(c.SrcPort), int32(c.DstPort),
		h.Host, p.Comm, p.Exe, c.Path, c.Path2, c.Protocol, b.Raw[e.ei]}
	return e.row[:], nil
}

func (e *eventSource) Err() error { return nil }

// RecordHeartbeat implements store.Store. Heartbeats of one agent may be
// written by several writers: the agent's last heartbeat is the one
// received last.
func (s *Store) RecordHeartbeat(ctx context.Context, agentID string, hb *watchpostv1.Heartbeat, received time.Time) error {
	data, err := proto.Marshal(hb)
	if err != nil {
		return fmt.Errorf("encoding heartbeat: %w", err)
	}
	var qb pgx.Batch
	qb.Queue("INSERT INTO heartbeats (agent_id, received_ns, seq, data) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
		agentID, received.UnixNano(), int64(hb.Seq), data)
	qb.Queue(`INSERT INTO agents (agent_id, host, last_seen_ns, heartbeat, heartbeat_ns) VALUES ($1, $1, $2, $3, $2)
		ON CONFLICT (agent_id) DO UPDATE SET
		last_seen_ns = GREATEST(agents.last_seen_ns, excluded.last_seen_ns),
		heartbeat = CASE WHEN excluded.heartbeat_ns >= agents.heartbeat_ns THEN excluded.heartbeat ELSE agents.heartbeat END,
		heartbeat_ns = GREATEST(agents.heartbeat_ns, excluded.heartbeat_ns)`, agentID, received.UnixNano(), data)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, &qb).Close() })
	if err != nil {
		return fmt.Errorf("storing heartbeat of %s: %w", agentID, err)
	}
	return nil
}

// RecordRejected implements store.Store.
func (s *Store) RecordRejected(ctx context.Context, agentID string) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO agents (agent_id, host, batches_rejected) VALUES ($1, $1, 1)
		ON CONFLICT (agent_id) DO UPDATE SET batches_rejected = agents.batches_rejected + 1`, agentID); err != nil {
		return fmt.Errorf("counting rejected batch of %s: %w", agentID, err)
	}
	return nil
}

// RecordRefusals implements store.Store.
func (s *Store) RecordRefusals(ctx context.Context, agentID string, counts []*watchpostv1.Counter) error {
	if len(counts) == 0 {
		return nil
	}
	var qb pgx.Batch
	qb.Queue(`INSERT INTO agents (agent_id, host) VALUES ($1, $1) ON CONFLICT DO NOTHING`, agentID)
	for _, c := range counts {
		qb.Queue(`INSERT INTO refusals (agent_id, kind, reason, count) VALUES ($1, $2, $3, $4)
			ON CONFLICT (agent_id, kind, reason) DO UPDATE SET count = refusals.count + excluded.count`,
			agentID, c.Kind, c.Reason, int64(c.Count))
	}
	if err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, &qb).Close() }); err != nil {
		return fmt.Errorf("counting refusals of %s: %w", agentID, err)
	}
	return nil
}

// RecordAlerts implements store.Store.
func (s *Store) RecordAlerts(ctx context.Context, alerts []*watchpostv1.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, a := range alerts {
			if err := insertAlert(ctx, tx, a); err != nil {
				return err
			}
		}
		return nil
	})
}

// insertAlert stores one alert inside tx and sets its id.
func insertAlert(ctx context.Context, tx pgx.Tx, a *watchpostv1.Alert) error {
	a.Id = 0
	if a.State == watchpostv1.AlertState_ALERT_STATE_UNSPECIFIED {
		a.State = watchpostv1.AlertState_ALERT_STATE_OPEN
	}
	data, err := proto.Marshal(a)
	if err != nil {
		return fmt.Errorf("encoding alert: %w", err)
	}
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO alerts (agent_id, time_ns, kind, data, host, severity, state, rule_id, techniques)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
		a.AgentId, a.TimeUnixNano, int32(a.Kind), data, a.Host, int32(a.Severity), int32(a.State),
		a.GetDetection().GetRuleId(), store.AlertTechniques(a)).Scan(&id); err != nil {
		return fmt.Errorf("storing alert of %s: %w", a.AgentId, err)
	}
	a.Id = uint64(id)
	return nil
}

func int32s[E ~int32](vs []E) []int32 {
	out := make([]int32, len(vs))
	for i, v := range vs {
		out[i] = int32(v)
	}
	return out
}

// Alerts implements store.Store.
func (s *Store) Alerts(ctx context.Context, f store.AlertFilter, limit int) ([]*watchpostv1.Alert, error) {
	if limit <= 0 {
		return nil, errors.New("limit must be positive")
	}
	var w where
	if f.AgentID != "" {
		w.add("agent_id = ?", f.AgentID)
	}
	if f.Host != "" {
		w.add("host = ?", f.Host)
	}
	if !f.Since.IsZero() {
		w.add("time_ns >= ?", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		w.add("time_ns <= ?", f.Until.UnixNano())
	}
	if f.MinSeverity > 0 {
		w.add("severity >= ?", int32(f.MinSeverity))
	}
	if f.BeforeID > 0 {
		w.add("id < ?", int64(f.BeforeID))
	}
	if len(f.States) > 0 {
		w.add("state = ANY(?)", int32s(f.States))
	}
	if len(f.Kinds) > 0 {
		w.add("kind = ANY(?)", int32s(f.Kinds))
	}
	if f.RuleID != "" {
		w.add("rule_id = ?", f.RuleID)
	}
	if f.Technique != "" {
		pats := store.TechniquePatterns(f.Technique)
		w.and("(techniques LIKE " + w.p(pats[0]) + " OR techniques LIKE " + w.p(pats[1]) + ")")
	}
	lim := w.p(limit)
	rows, err := s.pool.Query(ctx, "SELECT "+store.AlertColumns+" FROM alerts WHERE true"+w.sql.String()+" ORDER BY id DESC LIMIT "+lim, w.args...)
	if err != nil {
		return nil, fmt.Errorf("listing alerts: %w", err)
	}
	defer rows.Close()
	var out []*watchpostv1.Alert
	for rows.Next() {
		a, err := store.ScanAlert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// UpdateAlerts implements store.Store: one transaction, each alert locked
// (in id order, so concurrent updates from several collectors cannot
// deadlock), changed as AlertUpdate.Apply says and written back.
func (s *Store) UpdateAlerts(ctx context.Context, u store.AlertUpdate) ([]*watchpostv1.Alert, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	ids := append([]uint64(nil), u.IDs...)
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	byID := map[uint64]*watchpostv1.Alert{}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, id := range ids {
			if byID[id] != nil {
				continue
			}
			a, err := store.ScanAlert(tx.QueryRow(ctx, "SELECT "+store.AlertColumns+" FROM alerts WHERE id = $1 FOR UPDATE", int64(id)))
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("alert %d: %w", id, store.ErrUnknownAlert)
			}
			if err != nil {
				return err
			}
			u.Apply(a)
			stored := proto.Clone(a).(*watchpostv1.Alert)
			stored.Id = 0
			data, err := proto.Marshal(stored)
			if err != nil {
				return fmt.Errorf("encoding alert %d: %w", id, err)
			}
			if _, err := tx.Exec(ctx, "UPDATE alerts SET data = $1, state = $2 WHERE id = $3", data, int32(a.State), int64(id)); err != nil {
				return fmt.Errorf("updating alert %d: %w", id, err)
			}
			byID[id] = a
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*watchpostv1.Alert, len(u.IDs))
	for i, id := range u.IDs {
		out[i] = byID[id]
	}
	return out, nil
}

// LastHeartbeats implements store.Store.
func (s *Store) LastHeartbeats(ctx context.Context) (map[string]store.HeartbeatAt, error) {
	rows, err := s.pool.Query(ctx, "SELECT agent_id, heartbeat_ns, heartbeat FROM agents WHERE heartbeat IS NOT NULL")
	if err != nil {
		return nil, fmt.Errorf("listing heartbeats: %w", err)
	}
	defer rows.Close()
	return store.ScanHeartbeats(rows)
}

// LastHeartbeat returns one agent's last heartbeat: a collector of the
// fleet catches up with what other collectors received from the agent.
func (s *Store) LastHeartbeat(ctx context.Context, agentID string) (store.HeartbeatAt, bool, error) {
	rows, err := s.pool.Query(ctx, "SELECT agent_id, heartbeat_ns, heartbeat FROM agents WHERE agent_id = $1 AND heartbeat IS NOT NULL", agentID)
	if err != nil {
		return store.HeartbeatAt{}, false, fmt.Errorf("reading the last heartbeat of %s: %w", agentID, err)
	}
	defer rows.Close()
	m, err := store.ScanHeartbeats(rows)
	if err != nil {
		return store.HeartbeatAt{}, false, err
	}
	h, ok := m[agentID]
	return h, ok, nil
}

// Hosts implements store.Store.
func (s *Store) Hosts(ctx context.Context) ([]*watchpostv1.HostInfo, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+store.HostsColumns+" FROM agents ORDER BY agent_id")
	if err != nil {
		return nil, fmt.Errorf("listing agents: %w", err)
	}
	hosts, err := store.ScanHosts(rows)
	rows.Close()
	if err != nil {
		return nil, err
	}
	if rows, err = s.pool.Query(ctx, store.RefusalsQuery); err != nil {
		return nil, fmt.Errorf("listing refusals: %w", err)
	}
	defer rows.Close()
	return hosts, store.ScanRefusals(rows, hosts)
}

// EnforceRetention implements store.Store. One session at a time retires
// partitions (an advisory lock; another caller returns at once with
// nothing dropped). The partitions of this hour and later are never dropped.
func (s *Store) EnforceRetention(ctx context.Context, r store.Retention, now time.Time) ([]string, []store.Trimmed, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("retention: %w", err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockRetention).Scan(&locked); err != nil {
		return nil, nil, fmt.Errorf("retention lock: %w", err)
	}
	if !locked {
		return nil, nil, nil
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockRetention) }()
	if err := s.ensurePartitions(ctx, now); err != nil {
		return nil, nil, err
	}
	dropped, err := s.dropOld(ctx, conn, r, now)
	if err != nil {
		return dropped, nil, err
	}
	trimmed, err := s.trim(ctx, conn, r.Quota)
	return dropped, trimmed, err
}

// dropOld drops the partitions older than MaxAge.
func (s *Store) dropOld(ctx context.Context, conn *pgxpool.Conn, r store.Retention, now time.Time) ([]string, error) {
	type part struct {
		name  string
		start int64
	}
	_, current := partitionName(now)
	rows, err := conn.Query(ctx, "SELECT name, start_ns FROM partitions WHERE start_ns < $1 ORDER BY start_ns", current)
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
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing partitions: %w", err)
	}
	var dropped []string
	drop := func(p part) error {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockSchema); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE agents SET stored_bytes = agents.stored_bytes - b.sum
				FROM (SELECT agent_id, sum(bytes) AS sum FROM batches WHERE part = $1 GROUP BY agent_id) b
				WHERE agents.agent_id = b.agent_id`, p.name); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{p.name}.Sanitize()); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "DELETE FROM batches WHERE part = $1", p.name); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "DELETE FROM partitions WHERE name = $1", p.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("dropping partition %s: %w", p.name, err)
		}
		s.mu.Lock()
		delete(s.parts, p.name)
		s.mu.Unlock()
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
		if _, err := conn.Exec(ctx, "DELETE FROM heartbeats WHERE received_ns < $1", cutoff); err != nil {
			return dropped, fmt.Errorf("expiring heartbeats: %w", err)
		}
	}
	return dropped, nil
}

// TrimToQuota implements store.Store.
func (s *Store) TrimToQuota(ctx context.Context, q store.Quota) ([]store.Trimmed, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("quota: %w", err)
	}
	defer conn.Release()
	return s.trim(ctx, conn, q)
}

// trim applies the quota as the SQLite engine does (store.Quota): agents
// over PerAgent are cut down to it, then, while the total is over
// MaxBytes, the largest agent above its fair share loses its oldest
// batches, down to that share at most. Trimmed batches keep their row
// (with no events) so that a resent batch is still a duplicate.
func (s *Store) trim(ctx context.Context, conn *pgxpool.Conn, q store.Quota) ([]store.Trimmed, error) {
	if q.MaxBytes <= 0 && q.PerAgent <= 0 {
		return nil, nil
	}
	usage := map[string]int64{}
	var total int64
	rows, err := conn.Query(ctx, "SELECT agent_id, stored_bytes FROM agents")
	if err != nil {
		return nil, fmt.Errorf("reading usage: %w", err)
	}
	for rows.Next() {
		var a string
		var n int64
		if err := rows.Scan(&a, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading usage: %w", err)
		}
		usage[a] = n
		total += n
	}
	rows.Close()
	trimmed := map[string]*store.Trimmed{}
	take := func(a string, want int64) (int64, error) {
		t := trimmed[a]
		if t == nil {
			t = &store.Trimmed{AgentID: a}
			trimmed[a] = t
		}
		freed, err := s.deleteOldest(ctx, conn, a, want, t)
		usage[a] -= freed
		total -= freed
		return freed, err
	}
	if q.PerAgent > 0 {
		agents := make([]string, 0, len(usage))
		for a, n := range usage {
			if n > q.PerAgent {
				agents = append(agents, a)
			}
		}
		sort.Strings(agents)
		for _, a := range agents {
			if _, err := take(a, usage[a]-q.PerAgent); err != nil {
				return collectTrimmed(trimmed), err
			}
		}
	}
	for q.MaxBytes > 0 && total > q.MaxBytes && len(usage) > 0 {
		fair := q.MaxBytes / int64(len(usage))
		var worst string
		var most int64
		for a, n := range usage {
			if n > most || (n == most && a < worst) {
				worst, most = a, n
			}
		}
		if most <= fair {
			break
		}
		freed, err := take(worst, min(most-fair, total-q.MaxBytes))
		if err != nil {
			return collectTrimmed(trimmed), err
		}
		if freed == 0 {
			break
		}
	}
	return collectTrimmed(trimmed), nil
}

func collectTrimmed(m map[string]*store.Trimmed) []store.Trimmed {
	var out []store.Trimmed
	for _, t := range m {
		if t.Batches > 0 {
			out = append(out, *t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AgentID < out[j].AgentID })
	return out
}

// deleteOldest deletes the agent's oldest batches' events until at least
// want bytes are freed, 512 batches per transaction.
func (s *Store) deleteOldest(ctx context.Context, conn *pgxpool.Conn, agent string, want int64, t *store.Trimmed) (int64, error) {
	var freed int64
	for freed < want {
		rows, err := conn.Query(ctx, `SELECT id, part, event_count, bytes FROM batches WHERE agent_id = $1 AND event_count > 0
			ORDER BY id LIMIT 512`, agent)
		if err != nil {
			return freed, fmt.Errorf("listing batches of %s: %w", agent, err)
		}
		byPart := map[string][]int64{}
		var ids []int64
		var sum, events int64
		for rows.Next() && sum < want-freed {
			var id, n, b int64
			var part string
			if err := rows.Scan(&id, &part, &n, &b); err != nil {
				rows.Close()
				return freed, fmt.Errorf("listing batches of %s: %w", agent, err)
			}
			byPart[part] = append(byPart[part], id)
			ids = append(ids, id)
			sum, events = sum+b, events+n
		}
		rows.Close()
		if len(ids) == 0 {
			return freed, nil
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for part, pids := range byPart {
				if _, err := tx.Exec(ctx, "DELETE FROM "+pgx.Identifier{part}.Sanitize()+" WHERE batch_id = ANY($1)", pids); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, "UPDATE batches SET event_count = 0, bytes = 0 WHERE id = ANY($1)", ids); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "UPDATE agents SET stored_bytes = stored_bytes - $2 WHERE agent_id = $1", agent, sum)
			return err
		})
		if err != nil {
			return freed, fmt.Errorf("deleting batches of %s: %w", agent, err)
		}
		freed += sum
		t.Batches += uint64(len(ids))
		t.Events += uint64(events)
		t.Bytes += sum
	}
	return freed, nil
}

// Query implements store.Store. Batch summaries are read newest first, a
// page at a time, and their events a few batches of one partition at a
// time, until the newest limit events are certain: a query for the newest
// hundred reads the summaries of the last few seconds, not of its whole
// time range.
//
// The cost bound (q.MaxRows) counts the events of the batches whose rows
// are read; a query that reaches it, or its deadline, returns what it
// found with CostLimited set.
func (s *Store) Query(ctx context.Context, q store.Query) (store.QueryResult, error) {
	var res store.QueryResult
	if q.Limit <= 0 {
		return res, errors.New("limit must be positive")
	}
	f := q.Filter
	if f.Host != "" { // the host is the agent identity
		if f.AgentID != "" && f.AgentID != f.Host {
			return res, nil
		}
		f.AgentID, f.Host = f.Host, ""
	}
	rowWhere := rowFilter(f)
	top := store.NewNewest(q.Limit)
	prune := store.NewPrune(f)
	finish := func(err error) (store.QueryResult, error) {
		if err != nil {
			if !limited(ctx) {
				return res, err
			}
			res.CostLimited = true
		}
		var derr error
		res.Events, res.Truncated, derr = top.Events()
		return res, derr
	}
	var after *candidate // the last summary of the previous page
	for {
		page, last, n, err := s.candidates(ctx, f, prune, after)
		res.SummariesRead += uint64(n)
		if err != nil {
			return finish(err)
		}
		for i := 0; i < len(page); {
			if top.Done(page[i].maxTime) {
				return finish(nil)
			}
			j := i
			var rows uint64
			for ; j < len(page) && j-i < eventChunk && page[j].part == page[i].part; j++ {
				// At least one batch is read, whatever its size.
				if q.MaxRows > 0 && res.RowsScanned+rows+uint64(page[j].events) > q.MaxRows && (res.RowsScanned > 0 || j > i) {
					res.CostLimited = true
					break
				}
				rows += uint64(page[j].events)
			}
			if j > i {
				res.RowsScanned += rows
				if err := s.scan(ctx, page[i:j], rowWhere, top); err != nil {
					return finish(err)
				}
			}
			if res.CostLimited {
				return finish(nil)
			}
			i = j
		}
		if last == nil {
			return finish(nil)
		}
		after = last
	}
}

// limited: the query's deadline passed (its cost bound in time).
func limited(ctx context.Context) bool { return errors.Is(ctx.Err(), context.DeadlineExceeded) }

// summaryPage and eventChunk: batch summaries read per query, batches
// whose events are read per query.
const (
	summaryPage = 512
	eventChunk  = 32
)

// scan offers the matching events of some batches of one partition.
func (s *Store) scan(ctx context.Context, cands []candidate, rowWhere *where, top *store.Newest) error {
	part := cands[0].part
	ids := make([]int64, len(cands))
	byID := make(map[int64]*candidate, len(cands))
	for i := range cands {
		ids[i] = cands[i].id
		byID[cands[i].id] = &cands[i]
	}
	q := "SELECT batch_id, time_ns, data FROM " + pgx.Identifier{part}.Sanitize() + " WHERE batch_id = ANY($1)" + rowWhere.sql.String()
	rows, err := s.pool.Query(ctx, q, append([]any{ids}, rowWhere.args...)...)
	if err != nil {
		return fmt.Errorf("scanning %s: %w", part, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, tm int64
		var data []byte
		if err := rows.Scan(&id, &tm, &data); err != nil {
			return fmt.Errorf("reading %s: %w", part, err)
		}
		c := byID[id]
		top.Offer(tm, data, c.agentID, c.bootID)
	}
	if err := rows.Err(); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P01" {
			return nil // the partition was retired meanwhile
		}
		return fmt.Errorf("reading %s: %w", part, err)
	}
	return nil
}

type candidate struct {
	id              int64
	agentID, bootID string
	part            string
	maxTime         int64
	events          int64
}

// candidates returns the next page of batches whose summary may match,
// newest first (by max_time, then id), after the given one, the last
// summary read when more may follow (nil at the end), and how many
// summaries it read. Batches trimmed by a quota (no events left) are not
// candidates.
func (s *Store) candidates(ctx context.Context, f store.Filter, prune store.Prune, after *candidate) ([]candidate, *candidate, int, error) {
	var w where
	w.and("event_count > 0")
	if !f.Since.IsZero() {
		w.add("max_time >= ?", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		w.add("min_time <= ?", f.Until.UnixNano())
	}
	if f.AgentID != "" {
		w.add("agent_id = ?", f.AgentID)
	}
	if after != nil {
		w.and(fmt.Sprintf("(max_time, id) < (%s, %s)", w.p(after.maxTime), w.p(after.id)))
	}
	rows, err := s.pool.Query(ctx, "SELECT id, agent_id, boot_id, part, max_time, type_mask, bloom, event_count FROM batches WHERE true"+
		w.sql.String()+fmt.Sprintf(" ORDER BY max_time DESC, id DESC LIMIT %d", summaryPage), w.args...)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("selecting batches: %w", err)
	}
	defer rows.Close()
	var out []candidate
	n := 0
	var last candidate
	for rows.Next() {
		var c candidate
		var typeMask int64
		var bl []byte
		if err := rows.Scan(&c.id, &c.agentID, &c.bootID, &c.part, &c.maxTime, &typeMask, &bl, &c.events); err != nil {
			return nil, nil, n, fmt.Errorf("reading batch summary: %w", err)
		}
		n++
		last = c
		if prune.Skip(uint64(typeMask), bl) {
			continue
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, n, fmt.Errorf("reading batch summaries: %w", err)
	}
	if n < summaryPage {
		return out, nil, n, nil
	}
	return out, &last, n, nil
}

// where builds " AND ..." conditions with numbered parameters.
type where struct {
	sql  strings.Builder
	args []any
	base int // parameters before the first of these
}

// p adds a parameter and returns its placeholder.
func (w *where) p(v any) string {
	w.args = append(w.args, v)
	return fmt.Sprintf("$%d", w.base+len(w.args))
}

// and appends a condition.
func (w *where) and(cond string) { w.sql.WriteString(" AND " + cond) }

// add appends a condition of one parameter: each ? in cond is that parameter.
func (w *where) add(cond string, v any) { w.and(strings.ReplaceAll(cond, "?", w.p(v))) }

// rowFilter is the per-row condition inside a batch's events; its
// parameters start at $2 ($1 is the batch ids).
func rowFilter(f store.Filter) *where {
	w := &where{base: 1}
	if !f.Since.IsZero() {
		w.add("time_ns >= ?", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		w.add("time_ns <= ?", f.Until.UnixNano())
	}
	if f.Host != "" {
		w.add("host = ?", f.Host)
	}
	if len(f.Types) > 0 {
		types := make([]int32, len(f.Types))
		for i, t := range f.Types {
			types[i] = int32(t)
		}
		w.add("type = ANY(?)", types)
	}
	if f.PID != 0 {
		w.add("pid = ?", int64(f.PID))
	}
	if f.Exe != "" {
		exe, base := w.p(f.Exe), w.p("/"+path.Base(f.Exe))
		w.and(fmt.Sprintf("(exe = %[1]s::text OR comm = %[1]s::text OR (length(exe) > length(%[2]s::text) AND right(exe, length(%[2]s::text)) = %[2]s::text))", exe, base))
	}
	if f.PathPrefix != "" {
		w.add("(starts_with(path, ?::text) OR starts_with(path2, ?::text))", f.PathPrefix)
	}
	if f.Port != 0 {
		w.add("(sport = ? OR dport = ?)", int32(f.Port))
	}
	if f.Protocol != "" {
		w.add("protocol = ?", f.Protocol)
	}
	if f.Text != "" {
		w.add("position(?::bytea in data) > 0", []byte(f.Text))
	}
	return w
}

var _ store.Store = (*Store)(nil)
