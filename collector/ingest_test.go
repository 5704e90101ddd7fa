package collector_test

import (
	"context"
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestIngestStoresBatchAndAcks(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	cl := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a"))
	ack, err := cl.send(buildBatch(t, "agent-a", 1, 0, 250, nil))
	if err != nil {
		t.Fatal(err)
	}
	if ack.BatchSeq != 1 || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
		t.Fatalf("ack = %v, want seq 1 STORED", ack)
	}
	if n := storedCount(t, c.Store(), "agent-a"); n != 250 {
		t.Fatalf("stored %d events, want 250", n)
	}
}

func TestDuplicateBatchStoredOnce(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	cl := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a"))
	b := buildBatch(t, "agent-a", 7, 0, 100, nil)
	want := []watchpostv1.AckStatus{watchpostv1.AckStatus_ACK_STATUS_STORED, watchpostv1.AckStatus_ACK_STATUS_DUPLICATE}
	for i, w := range want {
		ack, err := cl.send(b)
		if err != nil {
			t.Fatal(err)
		}
		if ack.Status != w || ack.BatchSeq != 7 {
			t.Fatalf("send %d: ack %v, want %v", i, ack, w)
		}
	}
	// Again on a new stream (a reconnect).
	ack, err := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a")).send(b)
	if err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_DUPLICATE {
		t.Fatalf("resend on a new stream: ack %v, err %v; want DUPLICATE", ack, err)
	}
	if n := storedCount(t, c.Store(), "agent-a"); n != 100 {
		t.Fatalf("stored %d events, want 100", n)
	}
	if s := c.Stats(); s.BatchesStored != 1 || s.BatchesDuplicate != 2 || s.EventsStored != 100 {
		t.Fatalf("stats %+v, want 1 stored, 2 duplicates, 100 events", s)
	}
}

func TestClientWithoutCertificateRefused(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	noCert := agentTLS(t, p.dir, "agent-a").Clone()
	noCert.Certificates = nil
	assertRefusedTLS(t, c.Addr(), noCert)
	if n := hostsCount(t, c.Store()); n != 0 {
		t.Fatalf("%d agents registered, want 0", n)
	}
	if n := storedCount(t, c.Store(), ""); n != 0 {
		t.Fatalf("stored %d events, want 0", n)
	}
}

func TestCertificateFromAnotherCARefused(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	other := agentTLS(t, p.otherDir, "agent-a")
	other.RootCAs = agentTLS(t, p.dir, "agent-a").RootCAs // trusts the server, but its cert is from the other CA
	assertRefusedTLS(t, c.Addr(), other)
	if n := storedCount(t, c.Store(), ""); n != 0 {
		t.Fatalf("stored %d events, want 0", n)
	}
}

func assertRefusedTLS(t *testing.T, addr string, cfg *tls.Config) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := watchpostv1.NewIngestServiceClient(conn).Ingest(ctx)
	if err == nil {
		if err = st.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Batch{Batch: buildBatch(t, "agent-a", 1, 0, 10, nil)}}); err == nil || err == io.EOF {
			_, err = st.Recv()
		}
	}
	if code := status.Code(err); code != codes.Unavailable {
		t.Fatalf("send without an accepted certificate: %v (code %v), want Unavailable", err, code)
	}
}

func TestBatchUnderAnotherAgentIDRefused(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	cl := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a"))
	_, err := cl.send(buildBatch(t, "agent-b", 1, 0, 10, nil))
	if status.Code(err) != codes.PermissionDenied ||
		status.Convert(err).Message() != `batch.agent_id: "agent-b" is not the authenticated agent "agent-a"` {
		t.Fatalf("err = %v, want PermissionDenied naming both agents", err)
	}
	if n := storedCount(t, c.Store(), ""); n != 0 {
		t.Fatalf("stored %d events, want 0", n)
	}
	if n := hostsCount(t, c.Store()); n != 0 {
		t.Fatalf("%d agents registered, want 0", n)
	}
}

// TestBadBatchesRefusedWhileAnotherAgentIsServed sends batches with one
// malformed event each (stored without it), and oversized, inconsistent
// and decompression-bomb batches (refused whole) from agent-a while
// agent-b keeps storing batches on its own stream.
func TestBadBatchesRefusedWhileAnotherAgentIsServed(t *testing.T) {
	p := newPKI(t)
	cfg := testConfig(t, p, t.TempDir())
	cfg.Ingest.MaxMessageBytes = 256 << 10
	cfg.Ingest.MaxUncompressedBytes = 1 << 20
	c := startCollector(t, cfg)
	good := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-b"))
	seqB := uint64(0)
	goodBatch := func() {
		t.Helper()
		seqB++
		ack, err := good.send(buildBatch(t, "agent-b", seqB, int(seqB)*10, int(seqB)*10+10, nil))
		if err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
			t.Fatalf("agent-b batch %d: ack %v, err %v", seqB, ack, err)
		}
	}
	goodBatch()

	bad := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a"))
	cases := []struct {
		name       string
		batch      *watchpostv1.Batch
		wantStatus watchpostv1.AckStatus
		wantCode   codes.Code
		wantMsg    string
		refused    uint32
	}{
		{"bad pid", buildBatch(t, "agent-a", 1, 0, 10, func(i int, ev *watchpostv1.Event) {
			if i == 3 {
				ev.Process.Pid = 5_000_000
			}
		}), watchpostv1.AckStatus_ACK_STATUS_STORED, codes.OK, "batch.events[3].process.pid: 5000000 exceeds PID_MAX_LIMIT 4194304: event refused", 1},
		{"detail mismatch", buildBatch(t, "agent-a", 2, 0, 10, func(i int, ev *watchpostv1.Event) {
			if i == 5 {
				ev.Header.Type = watchpostv1.EventType_EVENT_TYPE_EXEC
			}
		}), watchpostv1.AckStatus_ACK_STATUS_STORED, codes.OK, "batch.events[5].detail: file detail does not match type EVENT_TYPE_EXEC: event refused", 1},
		{"unknown type", buildBatch(t, "agent-a", 3, 0, 10, func(i int, ev *watchpostv1.Event) {
			if i == 0 {
				ev.Header.Type = 77
			}
		}), watchpostv1.AckStatus_ACK_STATUS_STORED, codes.OK, "batch.events[0].header.type: unknown event type 77: event refused", 1},
		{"declared too large", func() *watchpostv1.Batch {
			b := buildBatch(t, "agent-a", 4, 0, 10, nil)
			b.UncompressedSize = 2 << 20
			return b
		}(), watchpostv1.AckStatus_ACK_STATUS_REJECTED, codes.ResourceExhausted, "batch.uncompressed_size: 2097152 exceeds the limit of 1048576 bytes", 0},
		{"zstd bomb", bomb(t, 4<<20, 5), watchpostv1.AckStatus_ACK_STATUS_REJECTED, codes.ResourceExhausted, "batch.payload: decompresses beyond 1048576 bytes", 0},
		{"count mismatch", func() *watchpostv1.Batch {
			b := buildBatch(t, "agent-a", 6, 0, 10, nil)
			b.EventCount = 11
			return b
		}(), watchpostv1.AckStatus_ACK_STATUS_REJECTED, codes.InvalidArgument, "batch.event_count: declared 11 events, payload has 10", 0},
	}
	for _, tc := range cases {
		ack, err := bad.send(tc.batch)
		if err != nil {
			t.Fatalf("%s: stream error %v", tc.name, err)
		}
		if ack.Status != tc.wantStatus || codes.Code(ack.Code) != tc.wantCode || ack.Message != tc.wantMsg || ack.EventsRefused != tc.refused {
			t.Errorf("%s: ack status %v code %v %q refused %d, want %v %v %q refused %d", tc.name, ack.Status, codes.Code(ack.Code), ack.Message,
				ack.EventsRefused, tc.wantStatus, tc.wantCode, tc.wantMsg, tc.refused)
		}
		goodBatch()
	}
	// A message over max_message_bytes ends the stream before any decoding.
	big := buildBatch(t, "agent-a", 7, 0, 10, nil)
	big.Payload = append(big.Payload, make([]byte, 300<<10)...)
	if _, err := bad.send(big); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "larger than max") {
		t.Fatalf("oversized message: %v, want ResourceExhausted larger than max", err)
	}
	goodBatch()
	// The three batches with one bad event each: the 27 others are stored.
	if n := storedCount(t, c.Store(), "agent-a"); n != 27 {
		t.Fatalf("agent-a: stored %d events, want 27", n)
	}
	if n := storedCount(t, c.Store(), "agent-b"); n != int(seqB)*10 {
		t.Fatalf("agent-b: stored %d events, want %d", n, seqB*10)
	}
	s := c.Stats()
	if s.Rejected["InvalidArgument"] != 1 || s.Rejected["ResourceExhausted"] != 2 || s.EventsRefused != 3 {
		t.Fatalf("rejected %v, events refused %d; want 1 InvalidArgument, 2 ResourceExhausted, 3 events", s.Rejected, s.EventsRefused)
	}
}

// bomb is a tiny zstd payload that expands to n zero bytes, declared small.
func bomb(t testing.TB, n int, seq uint64) *watchpostv1.Batch {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	payload := enc.EncodeAll(make([]byte, n), nil)
	return &watchpostv1.Batch{AgentId: "agent-a", BootId: "boot-1", RunId: "run-1", BatchSeq: seq,
		Compression: watchpostv1.Compression_COMPRESSION_ZSTD, Payload: payload, EventCount: 10, UncompressedSize: 1000}
}
