package collector_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/certs"
	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// hostInfo is the ListHosts entry of agent.
func hostInfo(t *testing.T, c *collector.Collector, agent string) *watchpostv1.HostInfo {
	t.Helper()
	hosts, err := c.Store().Hosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if h.AgentId == agent {
			return h
		}
	}
	t.Fatalf("no host entry for %s", agent)
	return nil
}

// refusals waits until the agent's counted refusals include every wanted
// kind/reason and returns them all.
func refusals(t *testing.T, c *collector.Collector, agent string, want ...string) map[string]uint64 {
	t.Helper()
	var got map[string]uint64
	waitFor(t, fmt.Sprintf("refusals %v of %s", want, agent), func() bool {
		got = map[string]uint64{}
		for _, r := range hostInfo(t, c, agent).Refusals {
			got[r.Kind+"/"+r.Reason] += r.Count
		}
		for _, w := range want {
			if got[w] == 0 {
				return false
			}
		}
		return true
	})
	return got
}

// refusalsReach waits until the agent's counted refusals reach want (each
// kind/reason at least its count) and returns them all.
func refusalsReach(t *testing.T, c *collector.Collector, agent string, want map[string]uint64) map[string]uint64 {
	t.Helper()
	var got map[string]uint64
	waitFor(t, fmt.Sprintf("refusals %v of %s", want, agent), func() bool {
		got = map[string]uint64{}
		for _, r := range hostInfo(t, c, agent).Refusals {
			got[r.Kind+"/"+r.Reason] += r.Count
		}
		for k, n := range want {
			if got[k] < n {
				return false
			}
		}
		return true
	})
	return got
}

// alertOf waits for an alert of kind for agent and returns it.
func alertOf(t *testing.T, c *collector.Collector, agent string, kind watchpostv1.AlertKind) *watchpostv1.Alert {
	t.Helper()
	var found *watchpostv1.Alert
	waitFor(t, kind.String()+" alert of "+agent, func() bool {
		as, err := c.Store().Alerts(context.Background(), store.AlertFilter{AgentID: agent}, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.Kind == kind {
				found = a
				return true
			}
		}
		return false
	})
	return found
}

func storedEvents(t *testing.T, c *collector.Collector, agent string) []*watchpostv1.Event {
	t.Helper()
	res, err := c.Store().Query(context.Background(), store.Query{Filter: store.Filter{AgentID: agent}, Limit: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	return res.Events
}

// TestOversizedEventsCostOnlyThemselves is finding 1 from a modified agent
// that skips the agent's own clamping: one batch of 100 events holds an exec
// with 1,501 arguments, one with a 20 KB argument and one with an invalid
// pid, beside 97 ordinary events. The batch is stored: 99 events, the two
// oversized ones shortened (head and tail kept) and flagged, the invalid one
// refused alone; the ack, `watchpost hosts` and an alert say so by reason.
func TestOversizedEventsCostOnlyThemselves(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	a := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a"))
	many := make([]string, 1501)
	for i := range many {
		many[i] = fmt.Sprintf("a%d", i)
	}
	long := "x" + strings.Repeat("A", 20<<10) + "z"
	ack, err := a.send(buildBatch(t, "agent-a", 1, 0, 100, func(i int, ev *watchpostv1.Event) {
		switch i {
		case 8:
			ev.Process.Args = many
		case 12:
			ev.Process.Args = []string{"sh", long}
		case 16:
			ev.Process.Pid = 5_000_000
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED || ack.EventsRefused != 1 || ack.EventsTruncated != 2 ||
		ack.Message != "batch.events[8].process.args: 1501 entries (6395 bytes) exceed the limits, stored shortened" {
		t.Fatalf("ack: %v", ack)
	}
	evs := storedEvents(t, c, "agent-a")
	if len(evs) != 99 {
		t.Fatalf("stored %d events, want 99", len(evs))
	}
	bySeq := map[uint64]*watchpostv1.Event{}
	for _, ev := range evs {
		bySeq[ev.Header.Seq] = ev
	}
	if _, ok := bySeq[17]; ok {
		t.Fatal("the event with the invalid pid was stored")
	}
	e8, e12 := bySeq[9], bySeq[13]
	args := e8.Process.Args
	if len(args) != 1024 || args[0] != "a0" || args[len(args)-1] != "a1500" || len(e8.Header.Truncated) != 1 ||
		e8.Header.Truncated[0].Field != "process.args" || e8.Header.Truncated[0].Entries != 1501 {
		t.Fatalf("1501 arguments stored as %d (%q .. %q), truncation %v", len(args), args[0], args[len(args)-1], e8.Header.Truncated)
	}
	arg := e12.Process.Args[1]
	if len(arg) > 16<<10 || !strings.HasPrefix(arg, "xAAA") || !strings.HasSuffix(arg, "AAAz") || len(e12.Header.Truncated) != 1 ||
		e12.Header.Truncated[0].Field != "process.args" || e12.Header.Truncated[0].Bytes != uint64(len("sh")+len(long)) {
		t.Fatalf("20 KB argument stored as %d bytes, truncation %v", len(arg), e12.Header.Truncated)
	}
	got := refusals(t, c, "agent-a", "event/truncated", "event/refused_bad_pid")
	if got["event/truncated"] != 2 || got["event/refused_bad_pid"] != 1 || got["batch/invalidargument"] != 0 {
		t.Fatalf("refusals counted: %v", got)
	}
	al := alertOf(t, c, "agent-a", watchpostv1.AlertKind_ALERT_KIND_EVENTS_REFUSED)
	if al.Count != 1 || !strings.Contains(al.Message, "1 events refused (bad_pid); the rest of their batches was stored") {
		t.Fatalf("refusal alert: %v", al)
	}
	if al := alertOf(t, c, "agent-a", watchpostv1.AlertKind_ALERT_KIND_EVENTS_TRUNCATED); al.Count != 2 {
		t.Fatalf("truncation alert: %v", al)
	}
}

// TestOneAgentCannotExhaustTheCollector is finding 2 and 9: one agent
// certificate sends 200 one-event batches that declare 32 MiB and compress
// to a few KiB, a zstd bomb declaring 1 KiB, and 140 heartbeats at once (20 of them of 7 MiB);
// another agent's history and ingest are untouched. The bombs are refused
// by the ratio cap before decompression (the test process, which is the
// collector, allocates under 64 MiB in all), the bomb declaring 1 KiB
// after 1 KiB, and all heartbeats beyond the burst of 10 are dropped and
// counted.
func TestOneAgentCannotExhaustTheCollector(t *testing.T) {
	p := newPKI(t)
	cfg := testConfig(t, p, t.TempDir())
	cfg.Ingest.HeartbeatsPerSecond = 0.001 // no refill during the test: exact counts
	c := startCollector(t, cfg)
	b := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-b"))
	if ack, err := b.send(buildBatch(t, "agent-b", 1, 0, 200, nil)); err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
		t.Fatalf("agent-b: %v %v", ack, err)
	}
	a := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a"))
	bm := bomb(t, 32<<20, 1)
	bm.EventCount, bm.UncompressedSize = 1, 32<<20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for seq := uint64(1); seq <= 200; seq++ {
		bm.BatchSeq = seq
		ack, err := a.send(bm)
		if err != nil {
			t.Fatal(err)
		}
		if ack.Status != watchpostv1.AckStatus_ACK_STATUS_REJECTED || codes.Code(ack.Code) != codes.ResourceExhausted {
			t.Fatalf("bomb %d: %v", seq, ack)
		}
	}
	small := &watchpostv1.Batch{AgentId: "agent-a", BootId: "boot-1", RunId: "run-1", BatchSeq: 201, Compression: bm.Compression,
		Payload: bm.Payload, EventCount: 1, UncompressedSize: 1024}
	if ack, err := a.send(small); err != nil || !strings.Contains(ack.GetMessage(), "decompresses beyond the declared 1024 bytes") {
		t.Fatalf("bomb declaring 1 KiB: %v %v", ack, err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("201 bombs of 32 MiB allocated %d MiB in the collector, want under 64 MiB", alloc>>20)
	}
	big := strings.Repeat("v", 7<<20)
	for i := 0; i < 140; i++ {
		hb := &watchpostv1.Heartbeat{Seq: uint64(i + 1), BootId: "boot-1", RunId: "run-1", InstanceId: "inst-a", Host: "agent-a", Version: "1"}
		if i%7 == 1 {
			hb.Kernel = big // over the heartbeat size limit
		}
		if err := a.stream.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Heartbeat{Heartbeat: hb}}); err != nil {
			t.Fatal(err)
		}
	}
	got := refusalsReach(t, c, "agent-a", map[string]uint64{"heartbeat/invalid": 20, "heartbeat/rate": 110, "batch/resourceexhausted": 201})
	if got["heartbeat/invalid"] != 20 || got["heartbeat/rate"] != 110 || got["batch/resourceexhausted"] != 201 {
		t.Fatalf("refusals: %v, want 20 invalid and 110 over the rate (10 of 120 pass), 201 batches", got)
	}
	if ack, err := b.send(buildBatch(t, "agent-b", 2, 200, 400, nil)); err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
		t.Fatalf("agent-b after the attack: %v %v", ack, err)
	}
	if n := storedCount(t, c.Store(), "agent-b"); n != 400 {
		t.Fatalf("agent-b has %d events, want 400", n)
	}
	if n := storedCount(t, c.Store(), "agent-a"); n != 0 {
		t.Fatalf("agent-a stored %d events, want 0", n)
	}
}

// TestFloodCannotMakeRetentionDeleteAnotherAgent is finding 2's retention
// half: with retention.max_bytes of 4 MiB, agent-a floods ordinary batches
// (about 14 MiB); agent-b's 200 events all survive, agent-a loses its own
// oldest events (counted and alerted), and the store stays within the cap.
func TestFloodCannotMakeRetentionDeleteAnotherAgent(t *testing.T) {
	p := newPKI(t)
	cfg := testConfig(t, p, t.TempDir())
	cfg.Retention.MaxBytes = 4 << 20
	c := startCollector(t, cfg)
	b := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-b"))
	if ack, err := b.send(buildBatch(t, "agent-b", 1, 0, 200, nil)); err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
		t.Fatalf("agent-b: %v %v", ack, err)
	}
	a := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a"))
	pad := strings.Repeat("p", 3000)
	const batches, per = 60, 80
	for seq := uint64(1); seq <= batches; seq++ {
		ack, err := a.send(buildBatch(t, "agent-a", seq, int(seq)*per, int(seq+1)*per, func(i int, ev *watchpostv1.Event) {
			ev.Process.Cwd = fmt.Sprintf("/%d/%s", i, pad)
		}))
		if err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
			t.Fatalf("agent-a batch %d: %v %v", seq, ack, err)
		}
		time.Sleep(20 * time.Millisecond) // the quota is applied at most once a second
	}
	time.Sleep(1100 * time.Millisecond)
	if ack, err := a.send(buildBatch(t, "agent-a", batches+1, 0, 1, nil)); err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
		t.Fatalf("agent-a last batch: %v %v", ack, err)
	}
	if n := storedCount(t, c.Store(), "agent-b"); n != 200 {
		t.Fatalf("agent-b has %d of its 200 events after agent-a's flood", n)
	}
	got := refusals(t, c, "agent-a", "storage/quota")
	storedA := storedCount(t, c.Store(), "agent-a")
	if uint64(storedA)+got["storage/quota"] != batches*per+1 || storedA == batches*per+1 {
		t.Fatalf("agent-a: %d stored + %d deleted for its quota, want %d in all and some deleted", storedA, got["storage/quota"], batches*per+1)
	}
	ha, hb := hostInfo(t, c, "agent-a"), hostInfo(t, c, "agent-b")
	if ha.StoredBytes+hb.StoredBytes > uint64(cfg.Retention.MaxBytes) {
		t.Fatalf("store holds %d + %d bytes, over max_bytes %d", ha.StoredBytes, hb.StoredBytes, cfg.Retention.MaxBytes)
	}
	if got := hostsCount(t, c.Store()); got != 2 {
		t.Fatalf("%d hosts", got)
	}
	alertOf(t, c, "agent-a", watchpostv1.AlertKind_ALERT_KIND_STORAGE_QUOTA)
}

// TestStreamsPerIdentityCapped is finding 3: one certificate opens streams
// until refused; the fifth is refused ResourceExhausted (max 4 per
// identity) while another agent still opens a stream and stores.
func TestStreamsPerIdentityCapped(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	var open []*ingestClient
	for i := 0; i < 4; i++ {
		s := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a"))
		if ack, err := s.send(buildBatch(t, "agent-a", uint64(i+1), i*10, i*10+10, nil)); err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
			t.Fatalf("stream %d: %v %v", i, ack, err)
		}
		open = append(open, s)
	}
	for i := 0; i < 20; i++ {
		s := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a"))
		_, err := s.send(buildBatch(t, "agent-a", uint64(10+i), 0, 1, nil))
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), `agent "agent-a" has 4 ingest streams open (max_streams_per_agent 4)`) {
			t.Fatalf("stream %d beyond the cap: %v", 5+i, err)
		}
	}
	b := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-b"))
	if ack, err := b.send(buildBatch(t, "agent-b", 1, 0, 10, nil)); err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
		t.Fatalf("agent-b while agent-a holds its cap: %v %v", ack, err)
	}
	if got := refusalsReach(t, c, "agent-a", map[string]uint64{"stream/streams_per_agent": 20}); got["stream/streams_per_agent"] != 20 {
		t.Fatalf("refused streams counted: %v", got)
	}
	if len(open) != 4 || c.Stats().StreamsActive != 5 {
		t.Fatalf("streams active: %d", c.Stats().StreamsActive)
	}
}

// TestForgedHostAndFutureTimes is finding 4: agent-a's events and
// heartbeat name host plc-gw-9, and one event is dated in 2262. Everything
// is shown under agent-a (the certificate's identity) with the claimed
// name kept and alerted; the 2262 time is clamped to the receipt time,
// flagged, its original kept, and alerted.
func TestForgedHostAndFutureTimes(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	a := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a"))
	future := time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	sent := time.Now()
	ack, err := a.send(buildBatch(t, "agent-a", 1, 0, 10, func(i int, ev *watchpostv1.Event) {
		ev.Header.Host = "plc-gw-9"
		if i == 4 {
			ev.Header.TimeUnixNano = future
		}
	}))
	if err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
		t.Fatalf("%v %v", ack, err)
	}
	hb := &watchpostv1.Heartbeat{Seq: 1, BootId: "boot-1", RunId: "run-1", InstanceId: "inst-a", Host: "plc-gw-9", Version: "1"}
	if err := a.stream.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Heartbeat{Heartbeat: hb}}); err != nil {
		t.Fatal(err)
	}
	evs := storedEvents(t, c, "agent-a")
	if len(evs) != 10 {
		t.Fatalf("%d events", len(evs))
	}
	clamped := 0
	for _, ev := range evs {
		h := ev.Header
		if h.Host != "agent-a" || h.ClaimedHost != "plc-gw-9" {
			t.Fatalf("event %d: host %q claimed %q", h.Seq, h.Host, h.ClaimedHost)
		}
		if h.TimeClamped {
			clamped++
			if h.Seq != 5 || h.AgentTimeUnixNano != future || h.TimeUnixNano < sent.UnixNano() || h.TimeUnixNano > time.Now().UnixNano() {
				t.Fatalf("clamped event %d: time %d agent time %d", h.Seq, h.TimeUnixNano, h.AgentTimeUnixNano)
			}
		}
	}
	if clamped != 1 {
		t.Fatalf("%d events clamped, want 1", clamped)
	}
	if n := storedCount(t, c.Store(), ""); n != 10 {
		t.Fatalf("%d events in all", n)
	}
	res, err := c.Store().Query(context.Background(), store.Query{Filter: store.Filter{Host: "plc-gw-9"}, Limit: 100})
	if err != nil || len(res.Events) != 0 {
		t.Fatalf("events under the forged host: %d %v", len(res.Events), err)
	}
	waitFor(t, "heartbeat", func() bool { return hostInfo(t, c, "agent-a").HeartbeatSeq == 1 })
	if h := hostInfo(t, c, "agent-a"); h.Host != "agent-a" || h.ClaimedHost != "plc-gw-9" {
		t.Fatalf("hosts: host %q claimed %q", h.Host, h.ClaimedHost)
	}
	got := refusals(t, c, "agent-a", "event/host_mismatch", "event/time_clamped")
	if got["event/host_mismatch"] != 10 || got["event/time_clamped"] != 1 {
		t.Fatalf("refusals: %v", got)
	}
	alertOf(t, c, "agent-a", watchpostv1.AlertKind_ALERT_KIND_HOST_MISMATCH)
	alertOf(t, c, "agent-a", watchpostv1.AlertKind_ALERT_KIND_CLOCK_SKEW)
}

// TestRevocationAndDuplicateIdentity is finding 13: the same certificate
// streams from two agent processes (a stolen copy): an alert and
// `watchpost hosts` show it. Revoking the identity while both stream ends
// both streams within two seconds, without a restart, refuses new ones
// (PermissionDenied naming the revocation), and leaves agent-b streaming.
func TestRevocationAndDuplicateIdentity(t *testing.T) {
	p := newPKI(t)
	cfg := testConfig(t, p, t.TempDir())
	c := startCollector(t, cfg)
	heartbeat := func(s *ingestClient, inst string) {
		hb := &watchpostv1.Heartbeat{Seq: 1, BootId: "boot-1", RunId: "run-" + inst, InstanceId: inst, Host: "agent-a", Version: "1"}
		if err := s.stream.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Heartbeat{Heartbeat: hb}}); err != nil {
			t.Fatal(err)
		}
	}
	real, stolen := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a")), dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a"))
	heartbeat(real, "inst-real")
	heartbeat(stolen, "inst-stolen")
	al := alertOf(t, c, "agent-a", watchpostv1.AlertKind_ALERT_KIND_DUPLICATE_IDENTITY)
	if !strings.Contains(al.Message, "agent processes inst-real, inst-stolen stream at once") {
		t.Fatalf("duplicate alert: %q", al.Message)
	}
	b := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-b"))
	if ack, err := b.send(buildBatch(t, "agent-b", 1, 0, 10, nil)); err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
		t.Fatalf("agent-b: %v %v", ack, err)
	}
	revokedAt := time.Now()
	if err := certs.Revoke(filepath.Join(cfg.DataDir, "revoked.json"), "agent-a", "", "stolen from gw-7", revokedAt); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*ingestClient{"real": real, "stolen": stolen} {
		var err error
		for err == nil {
			_, err = s.stream.Recv() // commands sent after the first heartbeat, then the end
		}
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `certificate of "agent-a" was revoked`) {
			t.Fatalf("%s stream after the revocation: %v", name, err)
		}
	}
	if d := time.Since(revokedAt); d > 2*time.Second {
		t.Fatalf("streams ended %s after the revocation, want within 2s", d)
	}
	again := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a"))
	if _, err := again.send(buildBatch(t, "agent-a", 1, 0, 1, nil)); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "stolen from gw-7") {
		t.Fatalf("new stream of the revoked identity: %v", err)
	}
	if ack, err := b.send(buildBatch(t, "agent-b", 2, 10, 20, nil)); err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
		t.Fatalf("agent-b after the revocation: %v %v", ack, err)
	}
	conn, err := grpc.NewClient(c.QueryAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+readToken)
	resp, err := watchpostv1.NewQueryServiceClient(conn).ListHosts(ctx, &watchpostv1.ListHostsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range resp.Hosts {
		if h.AgentId == "agent-a" && !h.Revoked {
			t.Fatalf("hosts does not show agent-a revoked: %v", h)
		}
	}
}
