package collector_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// TestAlertTriageAPI acknowledges an alert over gRPC and resolves it over
// HTTP/JSON: admin only, the token's name recorded, JSON bodies only, an
// unknown id NotFound, the list filtered by state.
func TestAlertTriageAPI(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	as := []*watchpostv1.Alert{{AgentId: "agent-a", Host: "gw-a", Kind: watchpostv1.AlertKind_ALERT_KIND_DROP_JUMP,
		Severity: watchpostv1.Severity_SEVERITY_MEDIUM, TimeUnixNano: 1, Message: "1500 events dropped"}}
	if err := c.Store().RecordAlerts(context.Background(), as); err != nil {
		t.Fatal(err)
	}
	id := as[0].Id
	q := queryClient(t, c.QueryAddr())
	ack := &watchpostv1.UpdateAlertsRequest{Ids: []uint64{id}, State: watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED}
	if _, err := q.UpdateAlerts(withToken(readToken), ack); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("read token: %v, want PermissionDenied", err)
	}
	resp, err := q.UpdateAlerts(withToken(adminToken), ack)
	if err != nil {
		t.Fatal(err)
	}
	if a := resp.Alerts[0]; a.State != watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED || a.AcknowledgedBy != "admin" || a.AcknowledgedUnixNano == 0 {
		t.Fatalf("acknowledged: %v", a)
	}
	if _, err := q.UpdateAlerts(withToken(adminToken), &watchpostv1.UpdateAlertsRequest{Ids: []uint64{id + 1}, State: watchpostv1.AlertState_ALERT_STATE_RESOLVED}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown id: %v, want NotFound", err)
	}
	if _, err := q.UpdateAlerts(withToken(adminToken), &watchpostv1.UpdateAlertsRequest{Ids: []uint64{id}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no state: %v, want InvalidArgument", err)
	}

	post := func(ct, body string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+c.QueryAddr()+"/api/v1/alerts", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		req.Header.Set("Content-Type", ct)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	defer http.DefaultClient.CloseIdleConnections()
	body := `{"ids": ["` + strconv.FormatUint(id, 10) + `"], "state": "ALERT_STATE_RESOLVED", "note": "spool disk replaced"}`
	if code, b := post("text/plain", body); code != http.StatusBadRequest {
		t.Fatalf("text/plain body: %d %s", code, b)
	}
	code, b := post("application/json", body)
	if code != http.StatusOK {
		t.Fatalf("resolve over HTTP: %d %s", code, b)
	}
	var out struct {
		Alerts []struct {
			State          string `json:"state"`
			ResolvedBy     string `json:"resolved_by"`
			AcknowledgedBy string `json:"acknowledged_by"`
			Note           string `json:"note"`
		} `json:"alerts"`
	}
	if err := json.Unmarshal([]byte(b), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Alerts) != 1 || out.Alerts[0].State != "ALERT_STATE_RESOLVED" || out.Alerts[0].ResolvedBy != "admin" ||
		out.Alerts[0].AcknowledgedBy != "admin" || out.Alerts[0].Note != "spool disk replaced" {
		t.Fatalf("resolved over HTTP: %s", b)
	}
	for state, n := range map[watchpostv1.AlertState]int{watchpostv1.AlertState_ALERT_STATE_OPEN: 0, watchpostv1.AlertState_ALERT_STATE_RESOLVED: 1} {
		l, err := q.ListAlerts(withToken(readToken), &watchpostv1.ListAlertsRequest{States: []watchpostv1.AlertState{state}})
		if err != nil || len(l.Alerts) != n {
			t.Fatalf("alerts in state %s: %v %v, want %d", state, l, err, n)
		}
	}
}
