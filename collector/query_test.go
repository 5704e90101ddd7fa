package collector_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/agent/shipper"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

func queryClient(t *testing.T, addr string) watchpostv1.QueryServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return watchpostv1.NewQueryServiceClient(conn)
}

func withToken(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

// storeTestBatches stores 400 events of agent-a (host agent-a) and 40 of agent-b.
func storeTestBatches(t *testing.T, addr string, p pki) {
	t.Helper()
	a := dialIngest(t, addr, agentTLS(t, p.dir, "agent-a"))
	for seq := uint64(1); seq <= 4; seq++ {
		if ack, err := a.send(buildBatch(t, "agent-a", seq, int(seq-1)*100, int(seq)*100, nil)); err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
			t.Fatalf("batch %d: %v %v", seq, ack, err)
		}
	}
	b := dialIngest(t, addr, agentTLS(t, p.dir, "agent-b"))
	if ack, err := b.send(buildBatch(t, "agent-b", 1, 1000, 1040, nil)); err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
		t.Fatalf("agent-b: %v %v", ack, err)
	}
}

func TestQueryEventsExactFields(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	storeTestBatches(t, c.Addr(), p)
	q := queryClient(t, c.QueryAddr())
	ctx := withToken(readToken)

	// One event, every field: event 2 of agent-a is a Modbus connect.
	resp, err := q.QueryEvents(ctx, &watchpostv1.QueryEventsRequest{Filter: &watchpostv1.EventFilter{
		Host: "agent-a", Port: 40002, Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_NET_CONNECT}}})
	if err != nil {
		t.Fatal(err)
	}
	want := &watchpostv1.Event{}
	shipper.ToProto(testEvent(2, "agent-a"), want)
	want.Header.AgentId, want.Header.BootId = "agent-a", "boot-1"
	if len(resp.Events) != 1 || !proto.Equal(resp.Events[0], want) || resp.Truncated {
		t.Fatalf("got %v (truncated %v), want exactly %v", resp.Events, resp.Truncated, want)
	}

	cases := []struct {
		name   string
		filter *watchpostv1.EventFilter
		limit  uint32
		want   []uint64 // event seqs, oldest first
		trunc  bool
	}{
		{"pid", &watchpostv1.EventFilter{Pid: 1007, AgentId: "agent-a"}, 0, []uint64{8, 58, 108, 158, 208, 258, 308, 358}, false},
		{"path prefix", &watchpostv1.EventFilter{PathPrefix: "/var/lib/plc/project-10", Host: "agent-a"}, 0, []uint64{102, 106, 110}, false},
		{"exe base name and type", &watchpostv1.EventFilter{Exe: "modbusd", Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_EXIT}, AgentId: "agent-b"}, 3, []uint64{1032, 1036, 1040}, true},
		{"protocol and time", &watchpostv1.EventFilter{Protocol: "modbus", SinceUnixNano: baseTime.Add(390 * time.Millisecond).UnixNano(), UntilUnixNano: baseTime.Add(1000 * time.Millisecond).UnixNano()}, 0, []uint64{391, 395, 399}, false},
		{"text", &watchpostv1.EventFilter{Text: "project-333.st"}, 0, []uint64{334}, false},
		{"nothing", &watchpostv1.EventFilter{Port: 9999}, 0, nil, false},
	}
	for _, tc := range cases {
		resp, err := q.QueryEvents(ctx, &watchpostv1.QueryEventsRequest{Filter: tc.filter, Limit: tc.limit})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []uint64
		for _, ev := range resp.Events {
			got = append(got, ev.Header.Seq)
		}
		if len(got) != len(tc.want) || resp.Truncated != tc.trunc {
			t.Errorf("%s: got seqs %v truncated %v, want %v truncated %v", tc.name, got, resp.Truncated, tc.want, tc.trunc)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: got seqs %v, want %v", tc.name, got, tc.want)
				break
			}
		}
	}

	hosts, err := q.ListHosts(ctx, &watchpostv1.ListHostsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts.Hosts) != 2 || hosts.Hosts[0].AgentId != "agent-a" || hosts.Hosts[0].EventsStored != 400 || hosts.Hosts[0].BatchesStored != 4 ||
		hosts.Hosts[1].AgentId != "agent-b" || hosts.Hosts[1].Host != "agent-b" || hosts.Hosts[1].EventsStored != 40 {
		t.Fatalf("hosts = %v", hosts.Hosts)
	}
}

func TestQueryAuthorization(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	q := queryClient(t, c.QueryAddr())
	_, err := q.ListHosts(context.Background(), &watchpostv1.ListHostsRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v, want Unauthenticated", err)
	}
	_, err = q.ListHosts(withToken("wrong-token-0123456789"), &watchpostv1.ListHostsRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong token: %v, want Unauthenticated", err)
	}
	_, err = q.EnforceRetention(withToken(readToken), &watchpostv1.EnforceRetentionRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("read role on retention: %v, want PermissionDenied", err)
	}
	if _, err := q.EnforceRetention(withToken(adminToken), &watchpostv1.EnforceRetentionRequest{}); err != nil {
		t.Fatalf("admin role on retention: %v", err)
	}
	for _, tc := range []struct {
		tok  string
		code int
	}{{"", http.StatusUnauthorized}, {readToken, http.StatusOK}} {
		req, _ := http.NewRequest("GET", "http://"+c.QueryAddr()+"/api/v1/hosts", nil)
		if tc.tok != "" {
			req.Header.Set("Authorization", "Bearer "+tc.tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Fatalf("GET /api/v1/hosts with token %q: %d, want %d", tc.tok, resp.StatusCode, tc.code)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestHTTPQueryJSON(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	storeTestBatches(t, c.Addr(), p)
	get := func(url string) (int, []byte) {
		req, _ := http.NewRequest("GET", "http://"+c.QueryAddr()+url, nil)
		req.Header.Set("Authorization", "Bearer "+readToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	defer http.DefaultClient.CloseIdleConnections()
	code, body := get("/api/v1/events?host=agent-a&type=net_connect&port=40002")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var out struct {
		Events []struct {
			Header struct {
				Type    string `json:"type"`
				Seq     string `json:"seq"`
				AgentID string `json:"agent_id"`
			} `json:"header"`
			Net struct {
				DstPort int `json:"dst_port"`
			} `json:"net"`
			Industrial struct {
				Protocol string `json:"protocol"`
			} `json:"industrial"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Events) != 1 || out.Events[0].Header.Type != "EVENT_TYPE_NET_CONNECT" || out.Events[0].Header.Seq != "3" ||
		out.Events[0].Header.AgentID != "agent-a" || out.Events[0].Net.DstPort != 502 || out.Events[0].Industrial.Protocol != "modbus" {
		t.Fatalf("got %s", body)
	}
	code, body = get("/api/v1/events?pid=abc")
	if code != http.StatusBadRequest || string(body) != `{"code":"InvalidArgument","message":"pid: \"abc\" is not a process id"}`+"\n" {
		t.Fatalf("bad pid: %d %s", code, body)
	}
}

func TestTailStreamsNewEvents(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	q := queryClient(t, c.QueryAddr())
	ctx, cancel := context.WithCancel(withToken(readToken))
	defer cancel()
	tail, err := q.TailEvents(ctx, &watchpostv1.TailEventsRequest{Filter: &watchpostv1.EventFilter{Host: "agent-a", Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_EXEC}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tail.Recv(); err != nil { // subscription is live
		t.Fatal(err)
	}
	storeTestBatches(t, c.Addr(), p)
	var seqs []uint64
	for len(seqs) < 100 {
		resp, err := tail.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range resp.Events {
			if ev.Header.Type != watchpostv1.EventType_EVENT_TYPE_EXEC || ev.Header.Host != "agent-a" {
				t.Fatalf("unexpected event %v", ev.Header)
			}
			seqs = append(seqs, ev.Header.Seq)
		}
	}
	if len(seqs) != 100 || seqs[0] != 1 || seqs[99] != 397 {
		t.Fatalf("tail got %d events %d..%d, want 100 events 1..397", len(seqs), seqs[0], seqs[len(seqs)-1])
	}
}
