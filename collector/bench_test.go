package collector_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/collector/certs"
	"github.com/watchpost/watchpost/collector/ingest"
	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// benchEvent is a realistic ~250-byte event: host h of 20, a mix of kinds.
func benchEvent(i int, host string) *event.Event {
	ev := testEvent(i, host)
	ev.Time = baseTime.Add(time.Duration(i) * 100 * time.Microsecond)
	ev.Process.PID = uint32(1000 + (i/7)%5000)
	if ev.File != nil {
		ev.File.Path = fmt.Sprintf("/var/lib/app%d/data/file-%d.log", i%40, i%1000)
	}
	return ev
}

// encodedBatches builds n batches of size events each for agent.
func encodedBatches(b testing.TB, agent string, n, size, offset int) []*watchpostv1.Batch {
	bb, err := shipper.NewBatchBuilder(zstd.SpeedDefault)
	if err != nil {
		b.Fatal(err)
	}
	defer bb.Close()
	var pev watchpostv1.Event
	out := make([]*watchpostv1.Batch, n)
	for k := 0; k < n; k++ {
		for j := 0; j < size; j++ {
			i := offset + k*size + j
			shipper.ToProto(benchEvent(i, agent), &pev)
			if err := bb.Add(&pev); err != nil {
				b.Fatal(err)
			}
		}
		out[k] = bb.Seal(agent, "boot-1", "run-1", uint64(offset/size+k+1))
	}
	return out
}

// BenchmarkIngest measures the collector's ingest path without the
// network: decompress, decode, validate, and commit durably to SQLite, 1000
// events per batch, 4 batches per transaction (as a stream with a window).
func BenchmarkIngest(b *testing.B) {
	dec, err := ingest.NewDecoder(ingest.DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Close()
	st, err := store.OpenSQLite(filepath.Join(b.TempDir(), "events.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const size, group = 1000, 4
	batches := encodedBatches(b, "agent-a", 40, size, 0)
	var payload int
	for _, bt := range batches {
		payload += len(bt.Payload)
	}
	b.ReportMetric(float64(payload)/float64(len(batches)*size), "wire-bytes/event")
	ctx := context.Background()
	b.ResetTimer()
	events := 0
	for n := 0; n < b.N; n++ {
		var inputs []store.BatchInput
		for g := 0; g < group; g++ {
			bt := batches[(n*group+g)%len(batches)]
			bt.BatchSeq = uint64(n*group + g + 1) // every batch new
			d, err := dec.Decode(bt, time.Time{})
			if err != nil {
				b.Fatal(err)
			}
			inputs = append(inputs, store.BatchInput{Key: store.BatchKey{AgentID: bt.AgentId, BootID: bt.BootId, RunID: bt.RunId, BatchSeq: bt.BatchSeq}, Events: d.Events, Raw: d.Raw})
			events += len(d.Events)
		}
		if _, err := st.StoreBatches(ctx, inputs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkQuery measures typical queries over a store of
// WATCHPOST_BENCH_EVENTS events (default 200000; 10000000 for the full
// figure) from 20 hosts. WATCHPOST_BENCH_DB reuses a store built earlier
// with the same size.
func BenchmarkQuery(b *testing.B) {
	total := 200_000
	if s := os.Getenv("WATCHPOST_BENCH_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("WATCHPOST_BENCH_EVENTS: %v", err)
		}
		total = n
	}
	file := os.Getenv("WATCHPOST_BENCH_DB")
	if file == "" {
		file = filepath.Join(b.TempDir(), "events.db")
	}
	_, statErr := os.Stat(file)
	st, err := store.OpenSQLite(file)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const size, hosts = 1000, 20
	if statErr != nil { // build
		dec, err := ingest.NewDecoder(ingest.DefaultLimits())
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for off := 0; off < total; off += size * hosts {
			var inputs []store.BatchInput
			for h := 0; h < hosts; h++ {
				bt := encodedBatches(b, "agent-"+strconv.Itoa(h), 1, size, off+h*size)[0]
				d, err := dec.Decode(bt, time.Time{})
				if err != nil {
					b.Fatal(err)
				}
				inputs = append(inputs, store.BatchInput{Key: store.BatchKey{AgentID: bt.AgentId, BootID: bt.BootId, RunID: bt.RunId, BatchSeq: bt.BatchSeq}, Events: d.Events, Raw: d.Raw})
			}
			if _, err := st.StoreBatches(context.Background(), inputs); err != nil {
				b.Fatal(err)
			}
		}
		dec.Close()
		b.Logf("built a store of %d events in %v", total, time.Since(start))
	}
	// Event times span total*100us; "last hour" of the data is its end.
	end := baseTime.Add(time.Duration(total) * 100 * time.Microsecond)
	queries := []struct {
		name string
		f    store.Filter
	}{
		{"host_last_hour", store.Filter{Host: "agent-7", Since: end.Add(-time.Hour), Until: end}},
		{"process_pid", store.Filter{PID: 4321}},
		{"process_exe_last_hour", store.Filter{Exe: "modbusd", Since: end.Add(-time.Hour)}},
		{"path_prefix", store.Filter{PathPrefix: "/var/lib/app17/"}},
		{"port", store.Filter{Port: 40122}},
		{"type_exec_host", store.Filter{Host: "agent-3", Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_EXEC}}},
		{"port_no_match", store.Filter{Port: 9999}},
	}
	for _, q := range queries {
		b.Run(q.name, func(b *testing.B) {
			var got int
			for n := 0; n < b.N; n++ {
				res, err := st.Query(context.Background(), store.Query{Filter: q.f, Limit: 100})
				evs := res.Events
				if err != nil {
					b.Fatal(err)
				}
				got = len(evs)
			}
			b.ReportMetric(float64(got), "results")
		})
	}
}

// BenchmarkIngestEndToEnd ships events from a real Shipper to a real
// Collector over loopback mutual TLS, and counts events per second until the
// last one is acknowledged (stored durably).
func BenchmarkIngestEndToEnd(b *testing.B) {
	p := newPKI(b)
	cfg := testConfig(b, p, b.TempDir())
	cfg.Ingest.RateEventsPerSecond = 1e9 // measure the path, not the per-agent limit
	c := startCollector(b, cfg)
	cert, key := certs.AgentFiles("agent-a")
	s, err := shipper.New(shipper.Config{
		Address: c.Addr(), AgentID: "agent-a", Host: "gw-1", BootID: "boot-1",
		CAFile: p.file(certs.CAFile), CertFile: filepath.Join(p.dir, cert), KeyFile: filepath.Join(p.dir, key),
	}, shipper.Deps{Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	evs := make([]*event.Event, 4096)
	for i := range evs {
		evs[i] = benchEvent(i, "gw-1")
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for i%1024 == 0 && s.Stats().Accepted-s.Stats().EventsAcked > 12000 { // stay below the shipper's queues
			time.Sleep(200 * time.Microsecond)
		}
		s.Ship(evs[i%len(evs)])
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	for s.Stats().EventsAcked < uint64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if err := s.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	if st := s.Stats(); st.EventsAcked != uint64(b.N) || st.Dropped[shipper.DropQueueFull] != 0 {
		b.Fatalf("acked %d of %d, dropped %v", st.EventsAcked, b.N, st.Dropped)
	}
}

// BenchmarkAckLatencyDuringBombs is the hostile-gateway finding on
// decompression bombs, as a latency: agent-b sends 200-event batches one
// at a time and waits for each ack, while (sub-benchmark "bombs") agent-a
// streams, without waiting for its acks, an endless mix of batches that
// declare 32 MiB and compress to a few KiB and batches of 32 MiB of zeros
// that declare 1 KiB. "quiet" is the same run with agent-a silent. Reported:
// agent-b's ack latency (p50, p99, max) and agent-a's refused batches/s.
func BenchmarkAckLatencyDuringBombs(b *testing.B) {
	for _, attack := range []bool{false, true} {
		name := "quiet"
		if attack {
			name = "bombs"
		}
		b.Run(name, func(b *testing.B) {
			p := newPKI(b)
			c := startCollector(b, testConfig(b, p, b.TempDir()))
			victim := dialIngest(b, c.Addr(), agentTLS(b, p.dir, "agent-b"))
			batches := encodedBatches(b, "agent-b", b.N, 200, 0)
			var refused atomic.Uint64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var a *ingestClient
			if attack {
				a = dialIngest(b, c.Addr(), agentTLS(b, p.dir, "agent-a"))
				big := bomb(b, 32<<20, 0)
				big.EventCount, big.UncompressedSize = 1, 32<<20
				small := bomb(b, 32<<20, 0)
				small.EventCount, small.UncompressedSize = 1, 1024
				wg.Add(2)
				go func() { // agent-a's acks, counted
					defer wg.Done()
					for {
						resp, err := a.stream.Recv()
						if err != nil {
							return
						}
						if resp.GetAck().GetStatus() == watchpostv1.AckStatus_ACK_STATUS_REJECTED {
							refused.Add(1)
						}
					}
				}()
				go func() {
					defer wg.Done()
					defer func() { _ = a.stream.CloseSend() }()
					for seq := uint64(1); ; seq++ {
						select {
						case <-stop:
							return
						default:
						}
						bm := big
						if seq%2 == 0 {
							bm = small
						}
						bm = proto.Clone(bm).(*watchpostv1.Batch)
						bm.BatchSeq = seq
						if err := a.stream.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Batch{Batch: bm}}); err != nil {
							return
						}
					}
				}()
				time.Sleep(200 * time.Millisecond) // the flood is under way
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				ack, err := victim.send(batches[i])
				if err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
					b.Fatalf("agent-b batch %d: %v %v", i+1, ack, err)
				}
				lat = append(lat, time.Since(t0))
			}
			elapsed := time.Since(start)
			b.StopTimer()
			close(stop)
			if a != nil {
				_ = a.conn.Close()
			}
			wg.Wait()
			slices.Sort(lat)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
			b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
			b.ReportMetric(float64(refused.Load())/elapsed.Seconds(), "bombs-refused/s")
		})
	}
}
