package store

import (
	"container/heap"
	"fmt"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// What every engine shares: the per-batch summary written with the events,
// the pruning of batch summaries by a query, the small columns taken from
// each event, and the selection of the newest matching events.

// Summary is what an engine keeps per batch so that queries can skip it:
// its host ("" when it mixes hosts), event time and sequence ranges, the
// mask of its event types and a Bloom filter of its lookup values.
type Summary struct {
	Host             string
	MinTime, MaxTime int64
	MinSeq, MaxSeq   uint64
	TypeMask         uint64
	Bloom            []byte
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
		eventTokens(keys, ev, "")
	}
	s.bloom = newBloom(keys)
	return s
}

// Summarize builds the summary of a batch's events (at least one).
func Summarize(events []*watchpostv1.Event) Summary {
	s := summarize(events)
	return Summary{Host: s.host, MinTime: s.minTime, MaxTime: s.maxTime, MinSeq: s.minSeq, MaxSeq: s.maxSeq,
		TypeMask: s.typeMask, Bloom: s.bloom}
}

// Prune decides from a batch summary that a batch cannot match a filter.
type Prune struct {
	mask   uint64
	tokens [][]string // each inner list: any may match
}

// NewPrune prepares the checks for f.
func NewPrune(f Filter) Prune {
	var p Prune
	for _, t := range f.Types {
		p.mask |= typeBit(t)
	}
	if f.PID != 0 {
		p.tokens = append(p.tokens, []string{tokPID + strconv.FormatUint(uint64(f.PID), 10)})
	}
	if f.Exe != "" {
		p.tokens = append(p.tokens, []string{tokExe + f.Exe})
	}
	if d := queryDir(f.PathPrefix); d != "" {
		p.tokens = append(p.tokens, []string{tokDir + d})
	}
	if f.Port != 0 {
		p.tokens = append(p.tokens, []string{tokPort + strconv.FormatUint(uint64(f.Port), 10)})
	}
	if f.Protocol != "" {
		p.tokens = append(p.tokens, []string{tokProto + f.Protocol})
	}
	return p
}

// Skip reports that a batch with this type mask and Bloom filter holds no
// matching event.
func (p Prune) Skip(typeMask uint64, bl []byte) bool {
	if p.mask != 0 && typeMask&p.mask == 0 {
		return true
	}
	return !bloomMatches(bloom(bl), p.tokens)
}

// Columns are the small per-event values engines filter rows on.
type Columns struct {
	SrcPort, DstPort uint32
	Path, Path2      string
	Protocol         string
}

// EventColumns extracts an event's filter columns.
func EventColumns(ev *watchpostv1.Event) Columns {
	var c Columns
	switch d := ev.Detail.(type) {
	case *watchpostv1.Event_File:
		c.Path, c.Path2 = d.File.Path, d.File.NewPath
	case *watchpostv1.Event_Security:
		c.Path = d.Security.Path
	case *watchpostv1.Event_Net:
		c.SrcPort, c.DstPort = d.Net.SrcPort, d.Net.DstPort
	}
	if in := ev.Industrial; in != nil {
		c.Protocol = in.Protocol
	}
	return c
}

// Newest keeps the limit newest of the events offered to it.
type Newest struct {
	limit     int
	top       eventHeap
	truncated bool
}

// NewNewest keeps at most limit events.
func NewNewest(limit int) *Newest { return &Newest{limit: limit} }

// Done reports that no event older than maxTime can enter any more: a
// batch whose newest event is older is skipped (and the result truncated).
func (n *Newest) Done(maxTime int64) bool {
	if len(n.top) >= n.limit && maxTime < n.top[0].time {
		n.truncated = true
		return true
	}
	return false
}

// Offer considers one stored event (its serialized bytes).
func (n *Newest) Offer(timeNs int64, data []byte, agentID, bootID string) {
	if len(n.top) >= n.limit {
		n.truncated = true
		if timeNs <= n.top[0].time {
			return
		}
		heap.Pop(&n.top)
	}
	heap.Push(&n.top, heapItem{time: timeNs, data: data, agentID: agentID, bootID: bootID})
}

// Events decodes the kept events, oldest first, and reports whether more matched.
func (n *Newest) Events() ([]*watchpostv1.Event, bool, error) {
	items := []heapItem(n.top)
	sort.Slice(items, func(i, j int) bool { return items[i].time < items[j].time })
	out := make([]*watchpostv1.Event, len(items))
	for i, it := range items {
		ev := &watchpostv1.Event{}
		if err := proto.Unmarshal(it.data, ev); err != nil {
			return nil, false, errDecode(err)
		}
		Bind(ev, it.agentID, it.bootID)
		out[i] = ev
	}
	return out, n.truncated, nil
}

func errDecode(err error) error { return fmt.Errorf("decoding stored event: %w", err) }

// FillHostHeartbeat copies what a host listing shows from an agent's last heartbeat.
func FillHostHeartbeat(h *watchpostv1.HostInfo, hb *watchpostv1.Heartbeat) {
	h.BootId, h.Version, h.Kernel, h.CapturePath, h.Programs = hb.BootId, hb.Version, hb.Kernel, hb.CapturePath, hb.Programs
	h.Produced, h.Delivered, h.Filtered, h.Dropped = hb.Produced, hb.Delivered, hb.Filtered, hb.Dropped
	h.Drops, h.SpoolBytes, h.HeartbeatSeq = hb.Drops, hb.SpoolBytes, hb.Seq
	h.Detection, h.CommandsApplied, h.Baseline, h.Response = hb.Detection, hb.CommandsApplied, hb.Baseline, hb.Response
	h.Stopped, h.HeartbeatIntervalNanos = hb.Final, hb.IntervalNanos
}

// Rows is what both engines' result sets offer (*sql.Rows, pgx.Rows).
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// HostsColumns is the select list ScanHosts reads, from the agents table.
const HostsColumns = "agent_id, last_seen_ns, heartbeat, events_stored, batches_stored, batches_rejected, stored_bytes"

// ScanHosts reads agent registry rows (HostsColumns). The host is the
// agent identity; a different name the agent's heartbeat gives is
// claimed_host.
func ScanHosts(rows Rows) ([]*watchpostv1.HostInfo, error) {
	var out []*watchpostv1.HostInfo
	for rows.Next() {
		h := &watchpostv1.HostInfo{}
		var hbData []byte
		var lastSeen, events, batches, rejected, bytes int64
		if err := rows.Scan(&h.AgentId, &lastSeen, &hbData, &events, &batches, &rejected, &bytes); err != nil {
			return nil, fmt.Errorf("reading agent: %w", err)
		}
		h.Host = h.AgentId
		h.LastSeenUnixNano, h.EventsStored, h.BatchesStored, h.BatchesRejected = lastSeen, uint64(events), uint64(batches), uint64(rejected)
		h.StoredBytes = uint64(max(bytes, 0))
		if len(hbData) > 0 {
			hb := &watchpostv1.Heartbeat{}
			if err := proto.Unmarshal(hbData, hb); err != nil {
				return nil, fmt.Errorf("decoding heartbeat of %s: %w", h.AgentId, err)
			}
			FillHostHeartbeat(h, hb)
			if hb.Host != "" && hb.Host != h.AgentId {
				h.ClaimedHost = hb.Host
			}
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// ScanRefusals reads (agent_id, kind, reason, count) rows and attaches the
// counters to the hosts.
func ScanRefusals(rows Rows, hosts []*watchpostv1.HostInfo) error {
	by := make(map[string]*watchpostv1.HostInfo, len(hosts))
	for _, h := range hosts {
		by[h.AgentId] = h
	}
	for rows.Next() {
		var a string
		var c watchpostv1.Counter
		var n int64
		if err := rows.Scan(&a, &c.Kind, &c.Reason, &n); err != nil {
			return fmt.Errorf("reading refusals: %w", err)
		}
		c.Count = uint64(n)
		if h := by[a]; h != nil {
			h.Refusals = append(h.Refusals, &c)
		}
	}
	return rows.Err()
}

// RefusalsQuery lists the refusal counters in the order ScanRefusals keeps.
const RefusalsQuery = "SELECT agent_id, kind, reason, count FROM refusals ORDER BY agent_id, kind, reason"

// EventBytes is what one stored event counts against its agent's quota:
// its serialized size, the columns kept beside it and a row's overhead.
func EventBytes(ev *watchpostv1.Event, raw []byte, agent string) int64 {
	c := EventColumns(ev)
	pr := ev.GetProcess()
	return int64(len(raw)+len(agent)+len(pr.GetComm())+len(pr.GetExe())+len(c.Path)+len(c.Path2)+len(c.Protocol)) + rowOverhead
}

// ScanHeartbeats reads (agent_id, received_ns, heartbeat) rows.
func ScanHeartbeats(rows Rows) (map[string]HeartbeatAt, error) {
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

// Scanner is one row (*sql.Row, *sql.Rows, pgx.Row, pgx.Rows).
type Scanner interface{ Scan(...any) error }

// AlertColumns is the select list ScanAlert reads: the columns are what
// the store changes, the message holds the rest.
const AlertColumns = "id, data, state"

// ScanAlert reads one alert row (AlertColumns).
func ScanAlert(r Scanner) (*watchpostv1.Alert, error) {
	var id, state int64
	var data []byte
	if err := r.Scan(&id, &data, &state); err != nil {
		return nil, fmt.Errorf("reading alert: %w", err)
	}
	a := &watchpostv1.Alert{}
	if err := proto.Unmarshal(data, a); err != nil {
		return nil, fmt.Errorf("decoding alert %d: %w", id, err)
	}
	a.Id, a.State = uint64(id), watchpostv1.AlertState(state)
	return a, nil
}
