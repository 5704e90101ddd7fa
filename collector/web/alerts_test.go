package web_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/collector/certs"
	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

type alertsAnswer struct {
	Agents []struct {
		AgentID string            `json:"agent_id"`
		Host    string            `json:"host"`
		Alerts  []json.RawMessage `json:"alerts"`
		More    bool              `json:"more"`
	} `json:"agents"`
	SinceNS string `json:"since_ns"`
	Limit   int    `json:"limit"`
}

// ingestAs opens a real mTLS ingest stream as agent, sends reqs and waits
// for one acknowledgement per batch among them.
func ingestAs(t *testing.T, addr, pki, agent string, reqs ...*watchpostv1.IngestRequest) {
	t.Helper()
	cert, key := certs.AgentFiles(agent)
	tlsCfg, err := shipper.ClientTLS(filepath.Join(pki, certs.CAFile), filepath.Join(pki, cert), filepath.Join(pki, key), "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := watchpostv1.NewIngestServiceClient(conn).Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	batches := 0
	for _, r := range reqs {
		if r.GetBatch() != nil {
			batches++
		}
		if err := st.Send(r); err != nil {
			t.Fatalf("sending to ingest: %v", err)
		}
	}
	for batches > 0 {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("waiting for an ack: %v", err)
		}
		a := resp.GetAck()
		if a == nil {
			continue // a command for the agent
		}
		if a.GetStatus() != watchpostv1.AckStatus_ACK_STATUS_STORED {
			t.Fatalf("batch not stored: %v", a)
		}
		batches--
	}
}

// sendHeartbeats sends heartbeats as agentID over a real mTLS ingest stream.
func sendHeartbeats(t *testing.T, addr, pki string, hbs ...*watchpostv1.Heartbeat) {
	t.Helper()
	reqs := make([]*watchpostv1.IngestRequest, len(hbs))
	for i, hb := range hbs {
		reqs[i] = &watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Heartbeat{Heartbeat: hb}}
	}
	ingestAs(t, addr, pki, agentID, reqs...)
}

// TestDashboardAlerts raises alerts the real way (heartbeats over ingest,
// the collector's alert engine, the SQLite store) and reads them through
// the dashboard's alerts endpoint with a read session.
func TestDashboardAlerts(t *testing.T) {
	c, pki := startCollector(t)
	base := c.DashboardURL()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	get := func(path string) (int, []byte) {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	if code, body := get("api/alerts"); code != http.StatusUnauthorized {
		t.Fatalf("alerts without a session: %d %s", code, body)
	}

	hb := func(seq uint64) *watchpostv1.Heartbeat {
		return &watchpostv1.Heartbeat{Seq: seq, BootId: "boot-a", RunId: "run-a", InstanceId: "inst-1", Host: "plc-gw-7",
			Version: "1.2.3", Kernel: "6.1.0", CapturePath: "ebpf", IntervalNanos: int64(time.Hour), TimeUnixNano: time.Now().UnixNano()}
	}
	before := time.Now()
	// 2-4 and 6-8 never arrive: two sequence-gap alerts.
	sendHeartbeats(t, c.Addr(), pki, hb(1), hb(5), hb(9))
	var stored []*watchpostv1.Alert
	deadline := time.Now().Add(10 * time.Second)
	for len(stored) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the collector stored %d alerts, want 2", len(stored))
		}
		time.Sleep(20 * time.Millisecond)
		var err error
		if stored, err = c.Store().Alerts(context.Background(), store.AlertFilter{AgentID: agentID}, 10); err != nil {
			t.Fatal(err)
		}
	}
	after := time.Now()

	resp, err := client.Post(base+"api/login", "application/json", strings.NewReader(`{"token":"`+readToken+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("read login: %d", resp.StatusCode)
	}

	decode := func(path string) alertsAnswer {
		t.Helper()
		code, body := get(path)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		var a alertsAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatalf("%s: %v in %s", path, err, body)
		}
		return a
	}
	alertOf := func(b json.RawMessage) *watchpostv1.Alert {
		t.Helper()
		a := &watchpostv1.Alert{}
		if err := protojson.Unmarshal(b, a); err != nil {
			t.Fatalf("%v in %s", err, b)
		}
		return a
	}

	got := decode("api/alerts")
	if got.Limit != 20 || len(got.Agents) != 1 {
		t.Fatalf("alerts: %+v", got)
	}
	ag := got.Agents[0]
	if ag.AgentID != agentID || ag.Host != agentID || ag.More || len(ag.Alerts) != 2 {
		t.Fatalf("agent alerts: %+v", ag)
	}
	want := []struct {
		msg string
		id  uint64
	}{{"heartbeats 6 to 8 never arrived", stored[0].Id}, {"heartbeats 2 to 4 never arrived", stored[1].Id}}
	for i, w := range want {
		a := alertOf(ag.Alerts[i])
		if a.Id != w.id || a.AgentId != agentID || a.Host != agentID || a.Kind != watchpostv1.AlertKind_ALERT_KIND_SEQUENCE_GAP ||
			a.Message != w.msg || a.Count != 3 || a.BootId != "boot-a" || a.InstanceId != "inst-1" ||
			a.TimeUnixNano < before.UnixNano() || a.TimeUnixNano > after.UnixNano() {
			t.Fatalf("alert %d: %v", i, a)
		}
	}
	if !strings.Contains(string(ag.Alerts[0]), `"kind":"ALERT_KIND_SEQUENCE_GAP"`) {
		t.Fatalf("kind is not named in the JSON: %s", ag.Alerts[0])
	}

	// Bounded per agent, newest first; the rest is flagged.
	got = decode("api/alerts?limit=1")
	if got.Limit != 1 || len(got.Agents) != 1 || !got.Agents[0].More || len(got.Agents[0].Alerts) != 1 ||
		alertOf(got.Agents[0].Alerts[0]).Message != "heartbeats 6 to 8 never arrived" {
		t.Fatalf("limit=1: %+v", got)
	}
	got = decode("api/alerts?agent=" + agentID)
	if len(got.Agents) != 1 || got.Agents[0].Host != agentID || len(got.Agents[0].Alerts) != 2 {
		t.Fatalf("agent=%s: %+v", agentID, got)
	}
	if got = decode("api/alerts?agent=other-gw"); len(got.Agents) != 0 {
		t.Fatalf("another agent: %+v", got)
	}
	if got = decode("api/alerts?since=" + after.Add(time.Second).UTC().Format(time.RFC3339Nano)); len(got.Agents) != 0 {
		t.Fatalf("since after the alerts: %+v", got)
	}
	if code, body := get("api/alerts?limit=many"); code != http.StatusBadRequest || !strings.Contains(string(body), `limit: \"many\" is not a number`) {
		t.Fatalf("bad limit: %d %s", code, body)
	}
}
