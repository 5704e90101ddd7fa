package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/collector/store"
	"github.com/watchpost/watchpost/collector/web"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// session is a signed-in dashboard client.
type session struct {
	t      *testing.T
	base   string
	client *http.Client
	csrf   string
}

func signIn(t *testing.T, base, token string) *session {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	s := &session{t: t, base: base, client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	resp, err := s.client.Post(base+"api/login", "application/json", strings.NewReader(`{"token":"`+token+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct{ CSRF string }
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	s.csrf = info.CSRF
	return s
}

func (s *session) do(method, path, body string) (int, []byte) {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(web.CSRFHeader, s.csrf)
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func healthBatch(t *testing.T, seq uint64, at time.Time, n int) *watchpostv1.Batch {
	t.Helper()
	b, err := shipper.NewBatchBuilder(zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range n {
		ev := &watchpostv1.Event{
			Header:  &watchpostv1.Header{Type: watchpostv1.EventType_EVENT_TYPE_HEALTH, TimeUnixNano: at.UnixNano() + int64(i), Seq: seq*100 + uint64(i), Host: "plc-gw-7"},
			Process: &watchpostv1.Process{Pid: 700, Comm: "watchpost-agent"},
			Detail:  &watchpostv1.Event_Health{Health: &watchpostv1.Health{Version: "1.2.3", Dropped: seq}},
		}
		if err := b.Add(ev); err != nil {
			t.Fatal(err)
		}
	}
	return b.Seal(agentID, "boot-a", "run-a", seq)
}

// TestDashboardTriage lists, explains and triages alerts through the
// dashboard's endpoints against a real collector and store: filters, the
// events behind an alert, admin-only updates recorded under the session's
// name, CSRF.
func TestDashboardTriage(t *testing.T) {
	c, pki := startCollector(t)
	base := c.DashboardURL()
	now := time.Now()
	ingestAs(t, c.Addr(), pki, agentID, &watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Batch{Batch: healthBatch(t, 1, now.Add(-2*time.Minute), 1)}})
	as := []*watchpostv1.Alert{
		{AgentId: agentID, Host: "plc-gw-7", Kind: watchpostv1.AlertKind_ALERT_KIND_DROP_JUMP, Severity: watchpostv1.Severity_SEVERITY_MEDIUM,
			TimeUnixNano: now.Add(-time.Minute).UnixNano(), Message: "1500 events dropped since the previous heartbeat", Count: 1500},
		{AgentId: agentID, Host: "plc-gw-7", Kind: watchpostv1.AlertKind_ALERT_KIND_PROGRAMS_DETACHED, Severity: watchpostv1.Severity_SEVERITY_CRITICAL,
			TimeUnixNano: now.UnixNano(), Message: "2 kernel programs detached while the agent runs"},
	}
	if err := c.Store().RecordAlerts(context.Background(), as); err != nil {
		t.Fatal(err)
	}
	jump, detached := strconv.FormatUint(as[0].Id, 10), strconv.FormatUint(as[1].Id, 10)
	type list struct {
		Alerts       []map[string]any `json:"alerts"`
		More         bool             `json:"more"`
		NextBeforeID string           `json:"next_before_id"`
	}
	decode := func(code int, b []byte) list {
		t.Helper()
		var l list
		if code != http.StatusOK || json.Unmarshal(b, &l) != nil {
			t.Fatalf("%d %s", code, b)
		}
		return l
	}
	ids := func(l list) string {
		var out []string
		for _, a := range l.Alerts {
			out = append(out, a["id"].(string)+":"+a["state"].(string))
		}
		return strings.Join(out, " ")
	}
	reader := signIn(t, base, readToken)
	if got := ids(decode(reader.do("GET", "api/alert-list?state=open", ""))); got != detached+":ALERT_STATE_OPEN "+jump+":ALERT_STATE_OPEN" {
		t.Fatalf("open alerts: %s", got)
	}
	if got := ids(decode(reader.do("GET", "api/alert-list?severity=high", ""))); got != detached+":ALERT_STATE_OPEN" {
		t.Fatalf("high and above: %s", got)
	}
	page := decode(reader.do("GET", "api/alert-list?limit=1", ""))
	if len(page.Alerts) != 1 || !page.More || page.NextBeforeID != detached {
		t.Fatalf("first page: %+v", page)
	}
	if got := ids(decode(reader.do("GET", "api/alert-list?before_id="+page.NextBeforeID, ""))); got != jump+":ALERT_STATE_OPEN" {
		t.Fatalf("second page: %s", got)
	}
	if code, b := reader.do("GET", "api/alert-list?severity=urgent", ""); code != http.StatusBadRequest || !strings.Contains(string(b), "severity") {
		t.Fatalf("bad severity: %d %s", code, b)
	}

	// The events behind the drop jump: the agent's health events around it.
	code, b := reader.do("GET", "api/alert-events?id="+jump, "")
	var ev struct {
		Alert  map[string]any    `json:"alert"`
		Search map[string]string `json:"search"`
		Events []map[string]any  `json:"events"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &ev) != nil || ev.Alert["id"] != jump || len(ev.Events) != 1 ||
		ev.Search["type"] != "health,gap" || ev.Search["agent"] != agentID {
		t.Fatalf("events behind the alert: %d %s", code, b)
	}
	if code, _ := reader.do("GET", "api/alert-events?id=999", ""); code != http.StatusNotFound {
		t.Fatalf("events of an unknown alert: %d", code)
	}

	// Triage needs admin, and the CSRF header.
	ack := `{"ids": ["` + jump + `"], "state": "ALERT_STATE_ACKNOWLEDGED", "note": "spool disk full, replaced"}`
	if code, b := reader.do("POST", "api/alert-update", ack); code != http.StatusForbidden {
		t.Fatalf("read session triage: %d %s", code, b)
	}
	admin := signIn(t, base, adminToken)
	csrf := admin.csrf
	admin.csrf = "wrong"
	if code, _ := admin.do("POST", "api/alert-update", ack); code != http.StatusForbidden {
		t.Fatalf("triage without the CSRF token: %d", code)
	}
	admin.csrf = csrf
	if got := ids(decode(admin.do("POST", "api/alert-update", ack))); got != jump+":ALERT_STATE_ACKNOWLEDGED" {
		t.Fatalf("acknowledged: %s", got)
	}
	if code, b := admin.do("POST", "api/alert-update", `{"ids": ["999"], "state": "ALERT_STATE_RESOLVED"}`); code != http.StatusNotFound {
		t.Fatalf("unknown id: %d %s", code, b)
	}
	stored, err := c.Store().Alerts(context.Background(), store.AlertFilter{States: []watchpostv1.AlertState{watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED}}, 10)
	if err != nil || len(stored) != 1 || stored[0].Id != as[0].Id || stored[0].AcknowledgedBy != "admin" || stored[0].Note != "spool disk full, replaced" {
		t.Fatalf("stored after triage: %v %v", stored, err)
	}
}

// TestDashboardStreamBackfill: the live stream starts with the window's
// stored events, then sends new ones without repeating them.
func TestDashboardStreamBackfill(t *testing.T) {
	c, pki := startCollector(t)
	now := time.Now()
	ingestAs(t, c.Addr(), pki, agentID, &watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Batch{Batch: healthBatch(t, 1, now.Add(-10*time.Minute), 1)}},
		&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Batch{Batch: healthBatch(t, 2, now.Add(-time.Minute), 3)}})
	s := signIn(t, c.DashboardURL(), readToken)
	if code, b := s.do("GET", "api/stream?backfill=2h", ""); code != http.StatusBadRequest || !strings.Contains(string(b), "backfill") {
		t.Fatalf("backfill of 2h: %d %s", code, b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", c.DashboardURL()+"api/stream?backfill=5m", nil)
	s.client.Timeout = 0
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msgs := make(chan [2]string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name string
		for sc.Scan() {
			line := sc.Text()
			if n, ok := strings.CutPrefix(line, "event: "); ok {
				name = n
			} else if d, ok := strings.CutPrefix(line, "data: "); ok {
				msgs <- [2]string{name, d}
			}
		}
		close(msgs)
	}()
	next := func() (string, []string) {
		t.Helper()
		select {
		case m := <-msgs:
			var d struct {
				Events []struct {
					Header struct{ Seq string } `json:"header"`
				} `json:"events"`
			}
			_ = json.Unmarshal([]byte(m[1]), &d)
			var seqs []string
			for _, e := range d.Events {
				seqs = append(seqs, e.Header.Seq)
			}
			return m[0], seqs
		case <-time.After(10 * time.Second):
			t.Fatal("no message on the stream")
		}
		return "", nil
	}
	if name, _ := next(); name != "ready" {
		t.Fatalf("first message %q", name)
	}
	// The three events of the last 5 minutes, oldest first; not the old one.
	if name, seqs := next(); name != "backfill" || strings.Join(seqs, ",") != "200,201,202" {
		t.Fatalf("backfill: %s %v", name, seqs)
	}
	ingestAs(t, c.Addr(), pki, agentID, &watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Batch{Batch: healthBatch(t, 3, now, 2)}})
	if name, seqs := next(); name != "events" || strings.Join(seqs, ",") != "300,301" {
		t.Fatalf("live after the backfill: %s %v", name, seqs)
	}
}
