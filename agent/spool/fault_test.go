package spool_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/agent/spool"
	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/certs"
	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// harness is one agent (helper process) and its collector.
type harness struct {
	t                      *testing.T
	pki, data, spool, addr string
	producedPath           string
	produced               *atomic.Uint64
	c                      *collector.Collector
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{t: t, pki: filepath.Join(dir, "pki"), data: filepath.Join(dir, "data"), spool: filepath.Join(dir, "spool"),
		producedPath: filepath.Join(dir, "produced")}
	if err := certs.Generate(certs.Options{Dir: h.pki, Agents: []string{"agent-a"}, Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ln.Close()
	if h.produced, err = mapCounter(h.producedPath); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) startCollector() {
	h.t.Helper()
	c, err := collector.New(collectorConfig(h.pki, h.data, h.addr), collector.Deps{Logger: zerolog.Nop()})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	h.c = c
}

func (h *harness) stopCollector() {
	h.t.Helper()
	if err := h.c.Shutdown(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// agent starts the agent helper; zero fields of spec take the harness's values.
func (h *harness) agent(spec agentSpec) *proc {
	h.t.Helper()
	spec.Addr, spec.PKI, spec.Spool, spec.Produced = h.addr, h.pki, h.spool, h.producedPath
	if spec.SpoolMax == 0 {
		spec.SpoolMax = 8 << 20
	}
	if spec.DrainRate == 0 {
		spec.DrainRate = 16 << 20
	}
	if spec.Mix == "" {
		spec.Mix = "mixed"
	}
	if spec.FirstSeq == 0 {
		spec.FirstSeq = h.produced.Load() + 1
	}
	b, err := json.Marshal(spec)
	if err != nil {
		h.t.Fatal(err)
	}
	return startHelper(h.t, "agent", "WP_AGENT_SPEC="+string(b))
}

func (h *harness) result(p *proc) result {
	h.t.Helper()
	var r result
	if err := json.Unmarshal([]byte(p.line(h.t, "result ", 45*time.Second)), &r); err != nil {
		h.t.Fatal(err)
	}
	<-p.done
	return r
}

func (h *harness) storedEvents() []*watchpostv1.Event {
	h.t.Helper()
	res, err := h.c.Store().Query(context.Background(), store.Query{Filter: store.Filter{AgentID: "agent-a"}, Limit: 10_000_000})
	if err != nil {
		h.t.Fatal(err)
	}
	return res.Events
}

func (h *harness) storedCount() int {
	n := 0
	for _, ev := range h.storedEvents() {
		if ev.Header.Type != watchpostv1.EventType_EVENT_TYPE_GAP {
			n++
		}
	}
	return n
}

// account checks the promise: every produced event is stored exactly once
// or counted under a drop reason, and every loss is described by a stored
// gap marker. It returns the stored gap markers' counters by "reason/kind".
func (h *harness) account(r result) map[string]uint64 {
	h.t.Helper()
	t := h.t
	produced := h.produced.Load()
	st := r.Stats
	seen := map[uint64]int{}
	markers := map[string]uint64{}
	var gaps uint64
	for _, ev := range h.storedEvents() {
		if ev.Header.Type == watchpostv1.EventType_EVENT_TYPE_GAP {
			gaps++
			for _, c := range ev.GetGap().Counters {
				markers[c.Reason+"/"+c.Kind] += c.Count
			}
			continue
		}
		seen[ev.Header.Seq]++
		if n := seen[ev.Header.Seq]; n > 1 {
			t.Fatalf("event %d stored %d times", ev.Header.Seq, n)
		}
		if ev.Header.Seq < 1 || ev.Header.Seq > produced {
			t.Fatalf("stored event %d was never produced (produced %d)", ev.Header.Seq, produced)
		}
	}
	var dropped, gapDropped uint64
	for _, n := range st.Dropped {
		dropped += n
	}
	for k, n := range st.DroppedByKind {
		if strings.HasSuffix(k, "/gap") {
			gapDropped += n
		}
	}
	t.Logf("produced %d, stored %d, dropped %d (gap markers %d), gap markers stored %d, injected %d; drops %v by kind %v; markers %v",
		produced, len(seen), dropped, gapDropped, gaps, st.Injected, nonZero(st.Dropped), st.DroppedByKind, markers)
	if st.Received != produced+st.Injected {
		t.Fatalf("shipper received %d, want produced %d + injected %d", st.Received, produced, st.Injected)
	}
	if uint64(len(seen))+dropped-gapDropped != produced {
		t.Fatalf("stored %d + dropped %d != produced %d", len(seen), dropped-gapDropped, produced)
	}
	if gaps+gapDropped != st.Injected {
		t.Fatalf("gap markers stored %d + dropped %d != injected %d", gaps, gapDropped, st.Injected)
	}
	// Every counted loss reached the collector in a gap marker.
	want := map[string]uint64{}
	for k, n := range st.DroppedByKind {
		want[k] = n
	}
	if n := st.Dropped[shipper.DropCrash]; n > 0 {
		want[shipper.DropCrash+"/shipper"] = n
	}
	if n := st.Dropped[shipper.DropCorrupt]; n > 0 {
		want[shipper.DropCorrupt+"/spool"] = n
	}
	if len(want) != len(markers) {
		t.Fatalf("gap markers %v, want %v", markers, want)
	}
	for k, n := range want {
		if markers[k] != n {
			t.Fatalf("gap markers %v, want %v", markers, want)
		}
	}
	return markers
}

func nonZero(m map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		if v > 0 {
			out[k] = v
		}
	}
	return out
}

// onlyDrops fails unless the drop counters are zero except the named reasons.
func onlyDrops(t *testing.T, r result, reasons ...string) {
	t.Helper()
	for reason, n := range r.Stats.Dropped {
		allowed := false
		for _, a := range reasons {
			allowed = allowed || a == reason
		}
		if n > 0 && !allowed {
			t.Fatalf("dropped %d events for %s; only %v allowed", n, reason, reasons)
		}
	}
}

// (a) The collector stops for a while under steady load and comes back:
// every event is stored exactly once and nothing is dropped.
func TestFaultCollectorOutage(t *testing.T) {
	h := newHarness(t)
	h.startCollector()
	p := h.agent(agentSpec{Events: 4000, Rate: 2000, Drain: true})
	waitFor(t, "1000 events stored", 20*time.Second, func() bool { return h.storedCount() >= 1000 })
	h.stopCollector()
	stopped := h.produced.Load()
	waitFor(t, "800 events produced during the outage", 20*time.Second, func() bool { return h.produced.Load() >= stopped+800 })
	h.startCollector()
	r := h.result(p)
	if h.produced.Load() != 4000 {
		t.Fatalf("produced %d, want 4000", h.produced.Load())
	}
	h.account(r)
	onlyDrops(t, r)
	if got := h.storedCount(); got != 4000 {
		t.Fatalf("stored %d, want 4000", got)
	}
}

// (b) The agent is killed with SIGKILL while spooling (collector down) and
// restarted: the spooled batches are delivered; what the dead process held
// in memory is counted (crash_in_flight) and reported in a gap marker; the
// collector raises an unclean-restart alert.
func TestFaultAgentKilled(t *testing.T) {
	h := newHarness(t)
	h.startCollector()
	p := h.agent(agentSpec{Events: 100000, Rate: 4000})
	waitFor(t, "500 events stored", 20*time.Second, func() bool { return h.storedCount() >= 500 })
	h.stopCollector()
	before := h.produced.Load()
	waitFor(t, "2000 events spooled while the collector is down", 20*time.Second, func() bool { return h.produced.Load() >= before+2000 })
	p.kill(t)
	killedAt := h.produced.Load()
	h.startCollector()
	r := h.result(h.agent(agentSpec{Events: 500, Rate: 5000, Drain: true}))
	if got := h.produced.Load(); got != killedAt+500 {
		t.Fatalf("produced %d, want %d", got, killedAt+500)
	}
	h.account(r)
	onlyDrops(t, r, shipper.DropCrash)
	// In memory at most: the batcher's channel (16384 events) and its open
	// batch (200 events); usually what 50ms of batch age hold.
	if n := r.Stats.Dropped[shipper.DropCrash]; n > 16384+200 {
		t.Fatalf("crash_in_flight %d: more than the shipper can hold in memory", n)
	}
	// The collector saw a new agent instance without a final heartbeat.
	waitFor(t, "unclean restart alert", 10*time.Second, func() bool {
		return countAlerts(t, h.c.QueryAddr(), watchpostv1.AlertKind_ALERT_KIND_UNCLEAN_RESTART) == 1
	})
	// The second process stopped cleanly (final heartbeat): a third start
	// raises no new alert.
	h.result(h.agent(agentSpec{Events: 0, Rate: 1, Drain: true}))
	if n := countAlerts(t, h.c.QueryAddr(), watchpostv1.AlertKind_ALERT_KIND_UNCLEAN_RESTART); n != 1 {
		t.Fatalf("%d unclean restart alerts after a clean stop and start, want 1", n)
	}
	// The collector's /metrics counts the alert it raised.
	if n := h.c.Stats().Alerts["unclean_restart"]; n != 1 {
		t.Fatalf("collector counted %d unclean_restart alerts, want 1", n)
	}
}

// countAlerts asks the HTTP/JSON API for the agent's alerts of a kind.
func countAlerts(t *testing.T, queryAddr string, kind watchpostv1.AlertKind) int {
	t.Helper()
	resp, err := http.Get("http://" + queryAddr + "/api/v1/alerts?agent=agent-a")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/alerts: %s: %s", resp.Status, b)
	}
	var out watchpostv1.ListAlertsResponse
	if err := protojson.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range out.Alerts {
		if a.Kind == kind {
			n++
		}
	}
	return n
}

// (c) The collector process is killed with SIGKILL mid-stream and
// restarted: no acknowledged batch is lost and nothing is stored twice.
func TestFaultCollectorKilled(t *testing.T) {
	h := newHarness(t)
	col := startHelper(t, "collector", "WP_PKI="+h.pki, "WP_DATA="+h.data, "WP_INGEST="+h.addr)
	col.line(t, "ready", 20*time.Second)
	p := h.agent(agentSpec{Events: 5000, Rate: 2500, Drain: true})
	waitFor(t, "1500 events produced", 20*time.Second, func() bool { return h.produced.Load() >= 1500 })
	col.kill(t)
	killedAt := h.produced.Load()
	waitFor(t, "500 more events produced", 20*time.Second, func() bool { return h.produced.Load() >= killedAt+500 })
	h.startCollector()
	r := h.result(p)
	h.account(r)
	onlyDrops(t, r)
	if got := h.storedCount(); got != 5000 {
		t.Fatalf("stored %d, want 5000", got)
	}
	if r.Stats.BatchesDup == 0 && r.Stats.BatchesResent == 0 {
		t.Logf("no batch was in flight when the collector died")
	}
}

// (d) The spool fills while the collector is away: bulk events are shed
// first, then other low-value events; security-critical and industrial
// events are kept; gap markers say what and how much was shed.
func TestFaultSpoolFull(t *testing.T) {
	h := newHarness(t)
	p := h.agent(agentSpec{Events: 60000, Rate: 30000, SpoolMax: 256 << 10, Mix: "tiers", Drain: true})
	p.line(t, "produced", 30*time.Second)
	h.startCollector()
	r := h.result(p)
	markers := h.account(r)
	onlyDrops(t, r, shipper.DropSpoolFull, shipper.DropBatchQueueFull)
	byKind := r.Stats.DroppedByKind
	bulk := byKind["spool_full/file_open"]
	// Reads and writes are both file_open: count the stored ones by seq.
	reads, writes, execs := 0, 0, 0
	for _, ev := range h.storedEvents() {
		switch {
		case ev.Header.Type == watchpostv1.EventType_EVENT_TYPE_EXEC:
			execs++
		case ev.Header.Type == watchpostv1.EventType_EVENT_TYPE_FILE_OPEN && ev.GetFile().Write:
			writes++
		case ev.Header.Type == watchpostv1.EventType_EVENT_TYPE_FILE_OPEN:
			reads++
		}
	}
	t.Logf("stored exec %d, reads %d, writes %d; shed file_open %d; markers %v", execs, reads, writes, bulk, markers)
	if byKind["spool_full/exec"] != 0 {
		t.Fatalf("%d exec events shed; security-critical events must be kept", byKind["spool_full/exec"])
	}
	if execs+int(byKind["batch_queue_full/exec"]) != 20000 {
		t.Fatalf("exec stored %d + lost when nothing fit %d, want 20000", execs, byKind["batch_queue_full/exec"])
	}
	if bulk == 0 || reads >= writes {
		t.Fatalf("stored %d reads and %d writes with %d file_open shed: reads must be shed before writes", reads, writes, bulk)
	}
	if execs <= writes || execs <= reads {
		t.Fatalf("stored %d exec, %d writes, %d reads: critical events must survive best", execs, writes, reads)
	}
}

// (e) A spooled record is damaged on disk: it is skipped and counted, the
// rest is delivered, and a gap marker reports the loss.
func TestFaultCorruptRecord(t *testing.T) {
	h := newHarness(t)
	r1 := h.result(h.agent(agentSpec{Events: 2000, Rate: 20000}))
	if r1.Spool.Records == 0 {
		t.Fatal("nothing spooled")
	}
	ents, err := filepath.Glob(filepath.Join(h.spool, "*.seg"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("segments %v: %v", ents, err)
	}
	sort.Strings(ents)
	data, err := os.ReadFile(ents[0])
	if err != nil {
		t.Fatal(err)
	}
	res := spool.Scan(data)
	if len(res.Records) < 3 {
		t.Fatalf("%d records in %s, want at least 3", len(res.Records), ents[0])
	}
	victim := res.Records[2]
	data[victim.Offset+int64(len(victim.Payload))/2+40] ^= 0x5a
	if err := os.WriteFile(ents[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	h.startCollector()
	r := h.result(h.agent(agentSpec{Events: 0, Rate: 1, Drain: true}))
	h.account(r)
	onlyDrops(t, r, shipper.DropCorrupt)
	if got := r.Stats.Dropped[shipper.DropCorrupt]; got != uint64(victim.Events) {
		t.Fatalf("spool_corrupt %d, want the damaged record's %d events", got, victim.Events)
	}
	if r.Spool.CorruptRecords != 1 {
		t.Fatalf("corrupt records %d, want 1", r.Spool.CorruptRecords)
	}
}

// (f) The disk under the spool fills up (a small tmpfs): the agent keeps
// running and counts what it cannot write, and recovers when space returns.
func TestFaultDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs (mount -t tmpfs); run as root to exercise ENOSPC")
	}
	h := newHarness(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v", mnt, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", mnt, err)
		}
	})
	h.spool = filepath.Join(mnt, "spool")
	// Fill the file system but for a little room.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	if err := os.Truncate(filler, mustSize(t, filler)-96<<10); err != nil {
		t.Fatal(err)
	}
	p := h.agent(agentSpec{Events: 12000, Rate: 3000, Drain: true})
	waitFor(t, "spool write errors", 20*time.Second, func() bool {
		c, err := spool.ReadCounters(h.spool)
		if err != nil {
			return false
		}
		var n uint64
		for k, v := range c {
			if strings.HasPrefix(k, "drop:"+shipper.DropWriteError) {
				n += v
			}
		}
		return n > 0
	})
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	h.startCollector()
	r := h.result(p)
	h.account(r)
	onlyDrops(t, r, shipper.DropWriteError)
	if r.Stats.Dropped[shipper.DropWriteError] == 0 || r.Spool.WriteErrors == 0 {
		t.Fatalf("no write errors counted: %+v", r)
	}
	if got, want := h.storedCount(), 12000-int(r.Stats.Dropped[shipper.DropWriteError]); got != want {
		t.Fatalf("stored %d, want %d", got, want)
	}
}

func mustSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
