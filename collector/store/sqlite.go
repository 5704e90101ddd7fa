package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// SQLite stores events in insert-only tables, one per hour of receipt
// (ev_YYYYMMDDHH, UTC). There are no per-event indexes. Queries read block
// summaries: one per blockEvents consecutive rows of a partition, whatever
// the batches they came in (event time range, type mask, the single
// source of its rows if there is one, and a Bloom filter of lookup values),
// and scan the rowid ranges of the blocks that may match; so the cost of a
// query does not grow with the number of batches. Each stored batch keeps
// a row in the batches table: its key (deduplication) and rowid range (a
// quota deletes an agent's oldest batches). Commits are durable (WAL,
// synchronous=FULL) before StoreBatches returns. The database and its
// directory are kept 0600/0700.
type SQLite struct {
	w, r *sql.DB
	file string

	mu      sync.Mutex // writer side: everything below but the sources
	parts   map[string]bool
	stmts   map[string]*sql.Stmt
	open    *openBlock // the block being filled, nil before the first commit
	unseal  []int64    // blocks left without a Bloom filter by a failed commit
	usage   map[string]int64
	total   int64
	maxRows int

	srcMu    sync.RWMutex
	srcByKey map[[2]string]int64
	srcByID  map[int64][2]string
}

// rowsPerInsert is the number of rows in one multi-value INSERT.
const rowsPerInsert = 100

// blockEvents is how many consecutive rows one block summary covers.
const blockEvents = 8192

// rowOverhead approximates SQLite's per-row cost beyond the column
// bytes (record header, rowid, b-tree cell), for quota accounting.
const rowOverhead = 40

const eventColumns = "time_ns, type, pid, sport, dport, host, comm, exe, path, path2, protocol, src, data"

const nEventColumns = 13

// schemaVersion is kept in PRAGMA user_version.
const schemaVersion = 2

const schema = `
CREATE TABLE IF NOT EXISTS sources (
	id       INTEGER PRIMARY KEY,
	agent_id TEXT NOT NULL,
	boot_id  TEXT NOT NULL,
	UNIQUE (agent_id, boot_id)
);
CREATE TABLE IF NOT EXISTS batches (
	id          INTEGER PRIMARY KEY,
	agent_id    TEXT    NOT NULL,
	boot_id     TEXT    NOT NULL,
	run_id      TEXT    NOT NULL,
	batch_seq   INTEGER NOT NULL,
	part        TEXT    NOT NULL,
	first_row   INTEGER NOT NULL, -- last_row < first_row: no rows (all refused, or trimmed by a quota)
	last_row    INTEGER NOT NULL,
	received_ns INTEGER NOT NULL,
	event_count INTEGER NOT NULL,
	bytes       INTEGER NOT NULL DEFAULT 0,
	UNIQUE (agent_id, boot_id, run_id, batch_seq)
);
CREATE INDEX IF NOT EXISTS batches_part ON batches (part);
CREATE INDEX IF NOT EXISTS batches_agent ON batches (agent_id, id);
CREATE TABLE IF NOT EXISTS blocks (
	id          INTEGER PRIMARY KEY,
	part        TEXT    NOT NULL,
	first_row   INTEGER NOT NULL,
	last_row    INTEGER NOT NULL,
	min_time    INTEGER NOT NULL,
	max_time    INTEGER NOT NULL,
	type_mask   INTEGER NOT NULL,
	src         INTEGER NOT NULL, -- the source of every row, 0 when mixed
	event_count INTEGER NOT NULL,
	bloom       BLOB              -- NULL while the block is open: scanned whole
);
CREATE INDEX IF NOT EXISTS blocks_max_time ON blocks (max_time);
CREATE INDEX IF NOT EXISTS blocks_part ON blocks (part);
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
	batches_rejected INTEGER NOT NULL DEFAULT 0,
	stored_bytes     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS refusals (
	agent_id TEXT    NOT NULL,
	kind     TEXT    NOT NULL,
	reason   TEXT    NOT NULL,
	count    INTEGER NOT NULL,
	PRIMARY KEY (agent_id, kind, reason)
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
CREATE INDEX IF NOT EXISTS heartbeats_agent ON heartbeats (agent_id, received_ns);
`

// OpenSQLite opens or creates the database file. The file, its WAL and
// shared-memory files are made 0600 and its directory 0700, whatever they
// were.
func OpenSQLite(file string) (*SQLite, error) {
	if err := securePaths(file); err != nil {
		return nil, err
	}
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
	if err := migrate(w, file); err != nil {
		_ = w.Close()
		return nil, err
	}
	if err := securePaths(file); err != nil { // the WAL and shm files exist now
		_ = w.Close()
		return nil, err
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
	s := &SQLite{w: w, r: r, file: file, parts: map[string]bool{}, stmts: map[string]*sql.Stmt{}, usage: map[string]int64{},
		srcByKey: map[[2]string]int64{}, srcByID: map[int64][2]string{}}
	if err := s.load(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// securePaths makes the database's directory 0700 and its files 0600
// (a directory created 0755 by someone else would let every local user
// read the events).
func securePaths(file string) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("chmod 0700 %s: %w", dir, err)
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening %s: %w", file, err)
	}
	_ = f.Close()
	for _, p := range []string{file, file + "-wal", file + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("chmod 0600 %s: %w", p, err)
		}
	}
	return nil
}

// migrate creates the schema, or brings a database of the first schema
// (per-batch summaries) to this one: its event tables gain the source
// column and its batch summaries become blocks, so old events stay
// queryable.
func migrate(w *sql.DB, file string) error {
	var version int
	if err := w.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("reading schema version of %s: %w", file, err)
	}
	if version > schemaVersion {
		return fmt.Errorf("%s: schema version %d is newer than this collector's %d", file, version, schemaVersion)
	}
	var oldBatches int
	if version < schemaVersion {
		_ = w.QueryRow("SELECT count(*) FROM pragma_table_info('batches') WHERE name = 'bloom'").Scan(&oldBatches)
	}
	tx, err := w.Begin()
	if err != nil {
		return fmt.Errorf("migrating %s: %w", file, err)
	}
	defer func() { _ = tx.Rollback() }()
	if oldBatches > 0 {
		if _, err := tx.Exec("ALTER TABLE batches RENAME TO batches_v1; DROP INDEX IF EXISTS batches_max_time; DROP INDEX IF EXISTS batches_part"); err != nil {
			return fmt.Errorf("migrating %s: %w", file, err)
		}
	}
	if _, err := tx.Exec(schema); err != nil {
		return fmt.Errorf("creating schema in %s: %w", file, err)
	}
	if oldBatches > 0 {
		if err := migrateV1(tx); err != nil {
			return fmt.Errorf("migrating %s from schema 1: %w", file, err)
		}
	}
	if _, err := tx.Exec("PRAGMA user_version = " + strconv.Itoa(schemaVersion)); err != nil {
		return fmt.Errorf("setting schema version of %s: %w", file, err)
	}
	return tx.Commit()
}

func migrateV1(tx *sql.Tx) error {
	for _, q := range []string{
		`ALTER TABLE agents ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0`,
		`INSERT OR IGNORE INTO sources (agent_id, boot_id) SELECT DISTINCT agent_id, boot_id FROM batches_v1`,
		`INSERT INTO batches (agent_id, boot_id, run_id, batch_seq, part, first_row, last_row, received_ns, event_count, bytes)
			SELECT agent_id, boot_id, run_id, batch_seq, part, first_row, last_row, received_ns, event_count, 0 FROM batches_v1`,
		`INSERT INTO blocks (part, first_row, last_row, min_time, max_time, type_mask, src, event_count, bloom)
			SELECT b.part, b.first_row, b.last_row, b.min_time, b.max_time, b.type_mask, s.id, b.event_count, b.bloom
			FROM batches_v1 b JOIN sources s ON s.agent_id = b.agent_id AND s.boot_id = b.boot_id`,
		`DROP TABLE batches_v1`,
	} {
		if _, err := tx.Exec(q); err != nil {
			return err
		}
	}
	rows, err := tx.Query("SELECT name FROM partitions")
	if err != nil {
		return err
	}
	var parts []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		parts = append(parts, n)
	}
	rows.Close()
	for _, p := range parts {
		if _, err := tx.Exec("ALTER TABLE " + p + " ADD COLUMN src INTEGER NOT NULL DEFAULT 0"); err != nil {
			return err
		}
	}
	return nil
}

// load reads the partitions, sources and per-agent usage, and seals the
// blocks an earlier run left open.
func (s *SQLite) load() error {
	rows, err := s.w.Query("SELECT name FROM partitions")
	if err != nil {
		return fmt.Errorf("listing partitions: %w", err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return fmt.Errorf("listing partitions: %w", err)
		}
		s.parts[n] = true
	}
	rows.Close()
	if rows, err = s.w.Query("SELECT id, agent_id, boot_id FROM sources"); err != nil {
		return fmt.Errorf("listing sources: %w", err)
	}
	for rows.Next() {
		var id int64
		var k [2]string
		if err := rows.Scan(&id, &k[0], &k[1]); err != nil {
			rows.Close()
			return fmt.Errorf("listing sources: %w", err)
		}
		s.srcByKey[k], s.srcByID[id] = id, k
	}
	rows.Close()
	if rows, err = s.w.Query("SELECT agent_id, stored_bytes FROM agents"); err != nil {
		return fmt.Errorf("reading usage: %w", err)
	}
	for rows.Next() {
		var a string
		var n int64
		if err := rows.Scan(&a, &n); err != nil {
			rows.Close()
			return fmt.Errorf("reading usage: %w", err)
		}
		s.usage[a] = n
		s.total += n
	}
	rows.Close()
	if rows, err = s.w.Query("SELECT id FROM blocks WHERE bloom IS NULL"); err != nil {
		return fmt.Errorf("listing open blocks: %w", err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("listing open blocks: %w", err)
		}
		s.unseal = append(s.unseal, id)
	}
	rows.Close()
	return s.sealPending(context.Background())
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
		protocol TEXT NOT NULL, src INTEGER NOT NULL DEFAULT 0, data BLOB NOT NULL)`); err != nil {
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

// source returns the id of (agent, boot), creating it.
func (s *SQLite) source(ctx context.Context, agent, boot string) (int64, error) {
	k := [2]string{agent, boot}
	s.srcMu.RLock()
	id, ok := s.srcByKey[k]
	s.srcMu.RUnlock()
	if ok {
		return id, nil
	}
	if _, err := s.w.ExecContext(ctx, "INSERT OR IGNORE INTO sources (agent_id, boot_id) VALUES (?, ?)", agent, boot); err != nil {
		return 0, fmt.Errorf("registering source %s/%s: %w", agent, boot, err)
	}
	if err := s.w.QueryRowContext(ctx, "SELECT id FROM sources WHERE agent_id = ? AND boot_id = ?", agent, boot).Scan(&id); err != nil {
		return 0, fmt.Errorf("reading source %s/%s: %w", agent, boot, err)
	}
	s.srcMu.Lock()
	s.srcByKey[k], s.srcByID[id] = id, k
	s.srcMu.Unlock()
	return id, nil
}

// sourcesOf lists the source ids of an agent.
func (s *SQLite) sourcesOf(agent string) []int64 {
	s.srcMu.RLock()
	defer s.srcMu.RUnlock()
	var out []int64
	for k, id := range s.srcByKey {
		if k[0] == agent {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (s *SQLite) sourceKey(id int64) ([2]string, bool) {
	s.srcMu.RLock()
	defer s.srcMu.RUnlock()
	k, ok := s.srcByID[id]
	return k, ok
}

// eventRow appends the column values of one event and returns its size
// as the quota counts it.
func eventRow(args []any, ev *watchpostv1.Event, raw []byte, agent string, src int64) ([]any, int64) {
	c := EventColumns(ev)
	h, pr := ev.Header, ev.Process
	return append(args, h.TimeUnixNano, int64(h.Type), int64(pr.Pid), int64(c.SrcPort), int64(c.DstPort),
		agent, pr.Comm, pr.Exe, c.Path, c.Path2, c.Protocol, src, raw), EventBytes(ev, raw, agent)
}

// openBlock is the block being filled.
type openBlock struct {
	id               int64 // 0 until its row is written
	part             string
	first, last      int64
	minTime, maxTime int64
	typeMask         uint64
	src              int64 // -1 before the first row; 0 once mixed
	count            int
	keys             map[string]struct{}
}

func newOpenBlock(part string, first int64) *openBlock {
	return &openBlock{part: part, first: first, src: -1, keys: map[string]struct{}{}}
}

func (b *openBlock) add(ev *watchpostv1.Event, agent string, src, row int64) {
	t := ev.Header.TimeUnixNano
	if b.count == 0 {
		b.minTime, b.maxTime = t, t
	}
	b.minTime, b.maxTime = min(b.minTime, t), max(b.maxTime, t)
	b.typeMask |= typeBit(ev.Header.Type)
	switch b.src {
	case -1:
		b.src = src
	case src:
	default:
		b.src = 0
	}
	b.last = row
	b.count++
	eventTokens(b.keys, ev, agent)
}

// writeBlock stores the open block's summary; sealed, with its Bloom filter.
func writeBlock(ctx context.Context, tx *sql.Tx, b *openBlock, sealed bool) error {
	var bl any
	if sealed {
		bl = []byte(newBloom(b.keys))
	}
	src := max(b.src, 0)
	if b.id == 0 {
		res, err := tx.ExecContext(ctx, `INSERT INTO blocks (part, first_row, last_row, min_time, max_time, type_mask, src, event_count, bloom)
			VALUES (?,?,?,?,?,?,?,?,?)`, b.part, b.first, b.last, b.minTime, b.maxTime, int64(b.typeMask), src, b.count, bl)
		if err != nil {
			return fmt.Errorf("writing block summary: %w", err)
		}
		b.id, err = res.LastInsertId()
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE blocks SET last_row = ?, min_time = ?, max_time = ?, type_mask = ?, src = ?, event_count = ?, bloom = ?
		WHERE id = ?`, b.last, b.minTime, b.maxTime, int64(b.typeMask), src, b.count, bl, b.id); err != nil {
		return fmt.Errorf("updating block summary: %w", err)
	}
	return nil
}

// sealPending builds the Bloom filters of blocks left open (by a restart
// or a failed commit) from their rows.
func (s *SQLite) sealPending(ctx context.Context) error {
	for len(s.unseal) > 0 {
		id := s.unseal[0]
		var part string
		var first, last int64
		err := s.w.QueryRowContext(ctx, "SELECT part, first_row, last_row FROM blocks WHERE id = ?", id).Scan(&part, &first, &last)
		if errors.Is(err, sql.ErrNoRows) {
			s.unseal = s.unseal[1:]
			continue
		}
		if err != nil {
			return fmt.Errorf("reading block %d: %w", id, err)
		}
		keys := map[string]struct{}{}
		rows, err := s.w.QueryContext(ctx, "SELECT src, data FROM "+part+" WHERE rowid BETWEEN ? AND ?", first, last)
		if err != nil {
			return fmt.Errorf("reading block %d: %w", id, err)
		}
		for rows.Next() {
			var src int64
			var data []byte
			if err := rows.Scan(&src, &data); err != nil {
				rows.Close()
				return fmt.Errorf("reading block %d: %w", id, err)
			}
			ev := &watchpostv1.Event{}
			if proto.Unmarshal(data, ev) == nil && ev.Header != nil {
				k, _ := s.sourceKey(src)
				eventTokens(keys, ev, k[0])
			}
		}
		rows.Close()
		if _, err := s.w.ExecContext(ctx, "UPDATE blocks SET bloom = ? WHERE id = ?", []byte(newBloom(keys)), id); err != nil {
			return fmt.Errorf("sealing block %d: %w", id, err)
		}
		s.unseal = s.unseal[1:]
	}
	return nil
}

// StoreBatches implements Store.
func (s *SQLite) StoreBatches(ctx context.Context, batches []BatchInput) ([]Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.sealPending(ctx); err != nil {
		return nil, err
	}
	now := time.Now()
	part, start := partitionName(now)
	if err := s.ensurePartition(ctx, part, start); err != nil {
		return nil, err
	}
	srcs := make([]int64, len(batches))
	for i, b := range batches {
		var err error
		if srcs[i], err = s.source(ctx, b.Key.AgentID, b.Key.BootID); err != nil {
			return nil, err
		}
		// Statements are prepared before the transaction takes the connection.
		for j := 0; j < len(b.Events); j += rowsPerInsert {
			if _, err := s.insertStmt(ctx, part, min(rowsPerInsert, len(b.Events)-j)); err != nil {
				return nil, err
			}
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	// The open block of an earlier hour is sealed first.
	open := s.open
	if open != nil && open.part != part {
		if err := writeBlock(ctx, tx, open, true); err != nil {
			return nil, err
		}
		open = nil
	}
	if open != nil {
		cp := *open // the in-memory block changes only if the commit succeeds
		cp.keys = open.keys
		open = &cp
	}
	results := make([]Result, len(batches))
	added := map[string]int64{}
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
		var first, last, bytes int64
		for i := 0; i < len(b.Events); i += rowsPerInsert {
			n := min(rowsPerInsert, len(b.Events)-i)
			st, err := s.insertStmt(ctx, part, n)
			if err != nil {
				return nil, err
			}
			args = args[:0]
			for j := i; j < i+n; j++ {
				var size int64
				args, size = eventRow(args, b.Events[j], b.Raw[j], b.Key.AgentID, srcs[bi])
				bytes += size
			}
			res, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...)
			if err != nil {
				return nil, fmt.Errorf("inserting events of batch %d: %w", b.Key.BatchSeq, err)
			}
			end, err := res.LastInsertId()
			if err != nil {
				return nil, fmt.Errorf("reading rowid: %w", err)
			}
			if i == 0 {
				first = end - int64(n) + 1
			}
			for j := i; j < i+n; j++ {
				row := end - int64(i+n-1-j)
				if open == nil {
					open = newOpenBlock(part, row)
				}
				open.add(b.Events[j], b.Key.AgentID, srcs[bi], row)
				if open.count >= blockEvents {
					if err := writeBlock(ctx, tx, open, true); err != nil {
						return nil, err
					}
					open = nil
				}
			}
			last = end
		}
		if len(b.Events) == 0 {
			first, last = 0, -1
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO batches (agent_id, boot_id, run_id, batch_seq, part,
			first_row, last_row, received_ns, event_count, bytes) VALUES (?,?,?,?,?,?,?,?,?,?)`,
			b.Key.AgentID, b.Key.BootID, b.Key.RunID, int64(b.Key.BatchSeq), part,
			first, last, now.UnixNano(), len(b.Events), bytes); err != nil {
			return nil, fmt.Errorf("inserting batch %d: %w", b.Key.BatchSeq, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO agents (agent_id, host, last_seen_ns, events_stored, batches_stored, stored_bytes)
			VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (agent_id) DO UPDATE SET
			last_seen_ns = excluded.last_seen_ns,
			events_stored = agents.events_stored + excluded.events_stored,
			batches_stored = agents.batches_stored + 1,
			stored_bytes = agents.stored_bytes + excluded.stored_bytes`,
			b.Key.AgentID, b.Key.AgentID, now.UnixNano(), len(b.Events), bytes); err != nil {
			return nil, fmt.Errorf("updating agent %s: %w", b.Key.AgentID, err)
		}
		for _, a := range b.Alerts {
			if err := insertAlert(ctx, tx, a); err != nil {
				return nil, err
			}
		}
		added[b.Key.AgentID] += bytes
		results[bi] = Stored
	}
	if open != nil && open.count > 0 {
		if err := writeBlock(ctx, tx, open, false); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		for _, b := range batches {
			for _, a := range b.Alerts {
				a.Id = 0
			}
		}
		// The block rows written in this transaction are gone; an open
		// block from before keeps its row, to be sealed from its rows.
		if s.open != nil && s.open.id != 0 {
			s.unseal = append(s.unseal, s.open.id)
		}
		s.open = nil
		return nil, fmt.Errorf("committing: %w", err)
	}
	s.open = open
	for a, n := range added {
		s.usage[a] += n
		s.total += n
	}
	return results, nil
}

// RecordHeartbeat implements Store. The registry's host is the agent
// identity; a different host the heartbeat names is returned as
// claimed_host by Hosts.
func (s *SQLite) RecordHeartbeat(ctx context.Context, agentID string, hb *watchpostv1.Heartbeat, received time.Time) error {
	data, err := proto.Marshal(hb)
	if err != nil {
		return fmt.Errorf("encoding heartbeat: %w", err)
	}
	return s.write(ctx, "heartbeat", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO heartbeats (agent_id, received_ns, seq, data) VALUES (?, ?, ?, ?)",
			agentID, received.UnixNano(), int64(hb.Seq), data); err != nil {
			return fmt.Errorf("storing heartbeat: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO agents (agent_id, host, last_seen_ns, heartbeat) VALUES (?, ?, ?, ?)
			ON CONFLICT (agent_id) DO UPDATE SET last_seen_ns = excluded.last_seen_ns, heartbeat = excluded.heartbeat`,
			agentID, agentID, received.UnixNano(), data); err != nil {
			return fmt.Errorf("updating agent %s: %w", agentID, err)
		}
		return nil
	})
}

// RecordRejected implements Store.
func (s *SQLite) RecordRejected(ctx context.Context, agentID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.ExecContext(ctx, `INSERT INTO agents (agent_id, host, batches_rejected) VALUES (?, ?, 1)
		ON CONFLICT (agent_id) DO UPDATE SET batches_rejected = agents.batches_rejected + 1`, agentID, agentID); err != nil {
		return fmt.Errorf("counting rejected batch of %s: %w", agentID, err)
	}
	return nil
}

// write runs fn in one write transaction and commits it; what names the
// work in errors.
func (s *SQLite) write(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing %s: %w", what, err)
	}
	return nil
}

// RecordRefusals implements Store.
func (s *SQLite) RecordRefusals(ctx context.Context, agentID string, counts []*watchpostv1.Counter) error {
	if len(counts) == 0 {
		return nil
	}
	return s.write(ctx, "refusals of "+agentID, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO agents (agent_id, host) VALUES (?, ?)`, agentID, agentID); err != nil {
			return fmt.Errorf("registering agent %s: %w", agentID, err)
		}
		for _, c := range counts {
			if _, err := tx.ExecContext(ctx, `INSERT INTO refusals (agent_id, kind, reason, count) VALUES (?, ?, ?, ?)
				ON CONFLICT (agent_id, kind, reason) DO UPDATE SET count = refusals.count + excluded.count`,
				agentID, c.Kind, c.Reason, int64(c.Count)); err != nil {
				return fmt.Errorf("counting refusals of %s: %w", agentID, err)
			}
		}
		return nil
	})
}

// RecordAlerts implements Store.
func (s *SQLite) RecordAlerts(ctx context.Context, alerts []*watchpostv1.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	return s.write(ctx, "alerts", func(tx *sql.Tx) error { return recordAlerts(ctx, tx, alerts) })
}

func recordAlerts(ctx context.Context, tx *sql.Tx, alerts []*watchpostv1.Alert) error {
	for _, a := range alerts {
		if err := insertAlert(ctx, tx, a); err != nil {
			return err
		}
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
	out := map[string]HeartbeatAt{}
	for rows.Next() {
		var id string
		var seen int64
		var data []byte
		if err := rows.Scan(&id, &seen, &data); err != nil {
			return nil, fmt.Errorf("reading heartbeat: %w", err)
		}
		hb := &watchpostv1.Heartbeat{}
		if err := proto.Unmarshal(data, hb); err != nil {
			return nil, fmt.Errorf("decoding heartbeat of %s: %w", id, err)
		}
		out[id] = HeartbeatAt{Heartbeat: hb, Received: time.Unix(0, seen)}
	}
	return out, rows.Err()
}

// Hosts implements Store.
func (s *SQLite) Hosts(ctx context.Context) ([]*watchpostv1.HostInfo, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+HostsColumns+" FROM agents ORDER BY agent_id")
	if err != nil {
		return nil, fmt.Errorf("listing agents: %w", err)
	}
	hosts, err := ScanHosts(rows)
	rows.Close()
	if err != nil {
		return nil, err
	}
	if rows, err = s.r.QueryContext(ctx, RefusalsQuery); err != nil {
		return nil, fmt.Errorf("listing refusals: %w", err)
	}
	defer rows.Close()
	return hosts, ScanRefusals(rows, hosts)
}

type partition struct {
	name  string
	start int64
}

// EnforceRetention implements Store.
func (s *SQLite) EnforceRetention(ctx context.Context, r Retention, now time.Time) ([]string, []Trimmed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows, err := s.w.QueryContext(ctx, "SELECT name, start_ns FROM partitions ORDER BY start_ns")
	if err != nil {
		return nil, nil, fmt.Errorf("listing partitions: %w", err)
	}
	var parts []partition
	for rows.Next() {
		var p partition
		if err := rows.Scan(&p.name, &p.start); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("listing partitions: %w", err)
		}
		parts = append(parts, p)
	}
	rows.Close()
	var dropped []string
	if r.MaxAge > 0 {
		cutoff := now.Add(-r.MaxAge).UnixNano()
		for len(parts) > 0 && parts[0].start+int64(time.Hour) <= cutoff {
			if err := s.dropPartition(ctx, parts[0]); err != nil {
				return dropped, nil, err
			}
			dropped = append(dropped, parts[0].name)
			parts = parts[1:]
		}
		if _, err := s.w.ExecContext(ctx, "DELETE FROM heartbeats WHERE received_ns < ?", cutoff); err != nil {
			return dropped, nil, fmt.Errorf("expiring heartbeats: %w", err)
		}
	}
	if err := s.trimHeartbeats(ctx); err != nil {
		return dropped, nil, err
	}
	var trimmed []Trimmed
	if r.MaxBytes > 0 {
		// The accounted bytes leave out the store's own overhead (block
		// summaries, batch rows, free pages in use): scale the cap by it,
		// so that MaxBytes bounds the pages the database really uses.
		used, err := s.usedBytes(ctx)
		if err != nil {
			return dropped, nil, err
		}
		q := r.Quota
		if used > r.MaxBytes && s.total > 0 {
			q.MaxBytes = int64(float64(r.MaxBytes) * float64(s.total) / float64(used))
		}
		if trimmed, err = s.trim(ctx, q); err != nil {
			return dropped, trimmed, err
		}
	}
	if len(dropped) > 0 || len(trimmed) > 0 {
		if _, err := s.w.ExecContext(ctx, "PRAGMA incremental_vacuum"); err != nil {
			return dropped, trimmed, fmt.Errorf("returning free pages: %w", err)
		}
	}
	return dropped, trimmed, nil
}

// heartbeatsKept is how many heartbeats per agent the store keeps (a day
// at the agents' default interval of 10s).
const heartbeatsKept = 8640

func (s *SQLite) trimHeartbeats(ctx context.Context) error {
	_, err := s.w.ExecContext(ctx, `DELETE FROM heartbeats WHERE rowid IN (
		SELECT rowid FROM (SELECT rowid, row_number() OVER (PARTITION BY agent_id ORDER BY received_ns DESC) AS n FROM heartbeats)
		WHERE n > ?)`, heartbeatsKept)
	if err != nil {
		return fmt.Errorf("trimming heartbeats: %w", err)
	}
	return nil
}

// dropPartition drops a whole hour of events and their summaries.
func (s *SQLite) dropPartition(ctx context.Context, p partition) error {
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
	freed := map[string]int64{}
	rows, err := tx.QueryContext(ctx, "SELECT agent_id, sum(bytes) FROM batches WHERE part = ? GROUP BY agent_id", p.name)
	if err != nil {
		return fmt.Errorf("dropping partition %s: %w", p.name, err)
	}
	for rows.Next() {
		var a string
		var n int64
		if err := rows.Scan(&a, &n); err != nil {
			rows.Close()
			return fmt.Errorf("dropping partition %s: %w", p.name, err)
		}
		freed[a] = n
	}
	rows.Close()
	for a, n := range freed {
		if _, err := tx.ExecContext(ctx, "UPDATE agents SET stored_bytes = stored_bytes - ? WHERE agent_id = ?", n, a); err != nil {
			return fmt.Errorf("dropping partition %s: %w", p.name, err)
		}
	}
	for _, q := range []string{"DROP TABLE IF EXISTS " + p.name, "DELETE FROM batches WHERE part = ?", "DELETE FROM blocks WHERE part = ?", "DELETE FROM partitions WHERE name = ?"} {
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
	if s.open != nil && s.open.part == p.name {
		s.open = nil
	}
	for a, n := range freed {
		s.usage[a] -= n
		s.total -= n
	}
	return nil
}

// TrimToQuota implements Store.
func (s *SQLite) TrimToQuota(ctx context.Context, q Quota) ([]Trimmed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.trim(ctx, q)
}

// trim applies the quota: every agent over PerAgent is cut down to it;
// then, while the total is over MaxBytes, the agent with the most bytes,
// if it holds more than its fair share (MaxBytes divided by the number of
// agents), loses its oldest batches, down to that share at most. An agent
// within its share never loses anything to another agent's volume.
func (s *SQLite) trim(ctx context.Context, q Quota) ([]Trimmed, error) {
	trimmed := map[string]*Trimmed{}
	take := func(a string, want int64) (int64, error) {
		t := trimmed[a]
		if t == nil {
			t = &Trimmed{AgentID: a}
			trimmed[a] = t
		}
		return s.deleteOldest(ctx, a, want, t)
	}
	if q.PerAgent > 0 {
		agents := make([]string, 0, len(s.usage))
		for a, n := range s.usage {
			if n > q.PerAgent {
				agents = append(agents, a)
			}
		}
		sort.Strings(agents)
		for _, a := range agents {
			if _, err := take(a, s.usage[a]-q.PerAgent); err != nil {
				return collect(trimmed), err
			}
		}
	}
	for q.MaxBytes > 0 && s.total > q.MaxBytes && len(s.usage) > 0 {
		fair := q.MaxBytes / int64(len(s.usage))
		var worst string
		var most int64
		for a, n := range s.usage {
			if n > most || (n == most && a < worst) {
				worst, most = a, n
			}
		}
		if most <= fair {
			break
		}
		freed, err := take(worst, min(most-fair, s.total-q.MaxBytes))
		if err != nil {
			return collect(trimmed), err
		}
		if freed == 0 {
			break // nothing left to delete
		}
	}
	return collect(trimmed), nil
}

func collect(m map[string]*Trimmed) []Trimmed {
	var out []Trimmed
	for _, t := range m {
		if t.Batches > 0 {
			out = append(out, *t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AgentID < out[j].AgentID })
	return out
}

// deleteOldest deletes the agent's oldest batches until at least want
// bytes are freed (at most 512 batches per transaction). The batch rows
// stay, emptied, so that a resent batch is still recognised as stored.
func (s *SQLite) deleteOldest(ctx context.Context, agent string, want int64, t *Trimmed) (int64, error) {
	var freed int64
	for freed < want {
		rows, err := s.w.QueryContext(ctx, `SELECT id, part, first_row, last_row, event_count, bytes FROM batches
			WHERE agent_id = ? AND last_row >= first_row ORDER BY id LIMIT 512`, agent)
		if err != nil {
			return freed, fmt.Errorf("listing batches of %s: %w", agent, err)
		}
		type victim struct {
			id          int64
			part        string
			first, last int64
			events      int64
			bytes       int64
		}
		var vs []victim
		var sum int64
		for rows.Next() && sum < want-freed {
			var v victim
			if err := rows.Scan(&v.id, &v.part, &v.first, &v.last, &v.events, &v.bytes); err != nil {
				rows.Close()
				return freed, fmt.Errorf("listing batches of %s: %w", agent, err)
			}
			vs = append(vs, v)
			sum += v.bytes
		}
		rows.Close()
		if len(vs) == 0 {
			return freed, nil
		}
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return freed, fmt.Errorf("beginning transaction: %w", err)
		}
		for _, v := range vs {
			if _, err := tx.ExecContext(ctx, "DELETE FROM "+v.part+" WHERE rowid BETWEEN ? AND ?", v.first, v.last); err != nil {
				_ = tx.Rollback()
				return freed, fmt.Errorf("deleting batch of %s: %w", agent, err)
			}
			if _, err := tx.ExecContext(ctx, "UPDATE batches SET first_row = 0, last_row = -1, bytes = 0 WHERE id = ?", v.id); err != nil {
				_ = tx.Rollback()
				return freed, fmt.Errorf("deleting batch of %s: %w", agent, err)
			}
		}
		if _, err := tx.ExecContext(ctx, "UPDATE agents SET stored_bytes = stored_bytes - ? WHERE agent_id = ?", sum, agent); err != nil {
			_ = tx.Rollback()
			return freed, fmt.Errorf("deleting batches of %s: %w", agent, err)
		}
		if err := tx.Commit(); err != nil {
			return freed, fmt.Errorf("deleting batches of %s: %w", agent, err)
		}
		freed += sum
		s.usage[agent] -= sum
		s.total -= sum
		t.Batches += uint64(len(vs))
		t.Bytes += sum
		for _, v := range vs {
			t.Events += uint64(v.events)
		}
	}
	return freed, nil
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

// candidate is a block whose summary may match a filter.
type candidate struct {
	part        string
	first, last int64
	maxTime     int64
}

// Query implements Store.
func (s *SQLite) Query(ctx context.Context, q Query) (QueryResult, error) {
	var res QueryResult
	if q.Limit <= 0 {
		return res, errors.New("limit must be positive")
	}
	f := q.Filter
	agent := f.AgentID
	if agent == "" {
		agent = f.Host // host is the agent identity
	} else if f.Host != "" && f.Host != agent {
		return res, nil
	}
	var srcs []int64
	if agent != "" {
		if srcs = s.sourcesOf(agent); len(srcs) == 0 {
			return res, nil
		}
	}
	cands, err := s.candidates(ctx, f, agent, srcs, &res)
	if err != nil {
		if limited(ctx, err) {
			res.CostLimited = true
			return res, nil
		}
		return res, err
	}
	where, args := rowFilter(f, srcs)
	top := NewNewest(q.Limit)
	for _, c := range cands {
		if top.Done(c.maxTime) {
			break
		}
		n := uint64(c.last - c.first + 1)
		if q.MaxRows > 0 && res.RowsScanned+n > q.MaxRows {
			// Only the newest rows of the block fit: read those, then stop.
			n = q.MaxRows - res.RowsScanned
			c.first = c.last - int64(n) + 1
			res.CostLimited = true
		}
		res.RowsScanned += n
		if n > 0 {
			if err := s.scan(ctx, c, where, args, top); err != nil {
				if limited(ctx, err) {
					res.CostLimited = true
					break
				}
				return res, err
			}
		}
		if res.CostLimited {
			break
		}
	}
	var err2 error
	res.Events, res.Truncated, err2 = top.Events()
	return res, err2
}

// limited reports whether err is the query's deadline passing (the cost
// bound in time), as opposed to a failure or the caller going away.
func limited(ctx context.Context, err error) bool {
	return errors.Is(ctx.Err(), context.DeadlineExceeded) && (errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "interrupted"))
}

func (s *SQLite) scan(ctx context.Context, c candidate, where string, args []any, top *Newest) error {
	q := "SELECT time_ns, src, data FROM " + c.part + " WHERE rowid BETWEEN ? AND ?" + where
	rows, err := s.r.QueryContext(ctx, q, append([]any{c.first, c.last}, args...)...)
	if err != nil {
		return fmt.Errorf("scanning %s: %w", c.part, err)
	}
	defer rows.Close()
	for rows.Next() {
		var tm, src int64
		var data []byte
		if err := rows.Scan(&tm, &src, &data); err != nil {
			return fmt.Errorf("reading %s: %w", c.part, err)
		}
		k, _ := s.sourceKey(src)
		top.Offer(tm, data, k[0], k[1])
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", c.part, err)
	}
	return nil
}

// candidates returns the blocks whose summary may match, newest first.
func (s *SQLite) candidates(ctx context.Context, f Filter, agent string, srcs []int64, res *QueryResult) ([]candidate, error) {
	q := "SELECT part, first_row, last_row, max_time, type_mask, src, bloom FROM blocks WHERE last_row >= first_row"
	var args []any
	if !f.Since.IsZero() {
		q += " AND max_time >= ?"
		args = append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		q += " AND min_time <= ?"
		args = append(args, f.Until.UnixNano())
	}
	q += " ORDER BY max_time DESC"
	prune := NewPrune(f)
	if agent != "" {
		prune.tokens = append(prune.tokens, []string{tokAgent + agent})
	}
	mine := map[int64]bool{}
	for _, id := range srcs {
		mine[id] = true
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("selecting blocks: %w", err)
	}
	defer rows.Close()
	var out []candidate
	for rows.Next() {
		var c candidate
		var typeMask, src int64
		var bl []byte
		if err := rows.Scan(&c.part, &c.first, &c.last, &c.maxTime, &typeMask, &src, &bl); err != nil {
			return nil, fmt.Errorf("reading block summary: %w", err)
		}
		res.SummariesRead++
		if agent != "" && src != 0 && !mine[src] {
			continue
		}
		if bl == nil {
			bl = []byte{} // an open block: no filter, scanned whole (the type mask still applies)
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

// rowFilter is the per-row WHERE clause applied inside a block's rowid range.
func rowFilter(f Filter, srcs []int64) (string, []any) {
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
	if len(srcs) > 0 {
		b.WriteString(" AND src IN (" + strings.TrimSuffix(strings.Repeat("?,", len(srcs)), ",") + ")")
		for _, id := range srcs {
			args = append(args, id)
		}
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
