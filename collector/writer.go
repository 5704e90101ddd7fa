package collector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	natsq "github.com/watchpost/watchpost/collector/queue/nats"
	"github.com/watchpost/watchpost/collector/store"
	"github.com/watchpost/watchpost/collector/store/postgres"
)

// Writer is a store writer (`watchpost-collector writer`): it takes the
// batches collectors queued in JetStream and writes them to PostgreSQL,
// acknowledging each only after its commit. Any number may run; they share
// the durable consumer.
type Writer struct {
	cfg   Config
	log   zerolog.Logger
	store store.Store
	own   bool
	conn  *natsq.Conn
	w     *natsq.Writer

	httpSrv *http.Server
	ln      net.Listener
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
	err     error
}

// NewWriter checks that the configuration is a fleet one (queue: nats,
// store: postgres) and opens the store (deps.Store replaces it).
func NewWriter(cfg Config, deps Deps) (*Writer, error) {
	if err := cfg.validateStorage(); err != nil {
		return nil, err
	}
	if cfg.Queue != QueueNATS {
		return nil, errors.New("queue: the writer needs queue: nats")
	}
	if cfg.Writer.Concurrency < 1 || cfg.Writer.Concurrency > 64 {
		return nil, errors.New("writer.concurrency: must be 1 to 64")
	}
	if cfg.NATS.Mode == NATSSite {
		return nil, errors.New("nats.mode: writers consume the central stream, not a site's (nats.mode: central)")
	}
	w := &Writer{cfg: cfg, log: deps.Logger.With().Str("component", "writer").Logger(), store: deps.Store}
	if w.store == nil {
		// The writers create the schema and the partitions.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st, err := postgres.Open(ctx, cfg.Postgres.URL, postgres.Options{MaxConns: cfg.Postgres.MaxConns})
		cancel()
		if err != nil {
			return nil, err
		}
		w.store, w.own = st, true
	}
	return w, nil
}

// Start connects to JetStream, creates the consumer, serves /metrics and
// /healthz on writer.listen and starts writing.
func (w *Writer) Start(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := natsq.Connect(cctx, w.cfg.NATSOptions("watchpost-writer"), w.log)
	if err != nil {
		return err
	}
	w.conn = conn
	n := w.cfg.NATS
	w.w, err = natsq.NewWriter(cctx, conn, w.store, natsq.WriterOptions{
		Consumer: n.Consumer, AckWait: n.AckWait, FetchBatches: n.FetchBatches, Concurrency: w.cfg.Writer.Concurrency,
		Retention: store.Retention{MaxAge: w.cfg.Retention.MaxAge,
			Quota: store.Quota{MaxBytes: w.cfg.Retention.MaxBytes, PerAgent: w.cfg.Retention.MaxBytesPerAgent}},
		RetentionInterval: w.cfg.Retention.Interval,
		Derive: func(in *store.BatchInput) {
			in.Alerts = detectionAlerts(in.Key.AgentID, in.Key.BootID, in.Events)
		},
	}, w.log)
	if err != nil {
		return err
	}
	if w.cfg.Writer.Listen != "" {
		if w.ln, err = net.Listen("tcp", w.cfg.Writer.Listen); err != nil {
			return fmt.Errorf("writer.listen: %w", err)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(&writerMetrics{w: w.w}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
		mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte("ok\n")) })
		w.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			if err := w.httpSrv.Serve(w.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				w.log.Error().Err(err).Msg("metrics server stopped")
			}
		}()
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = stop
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		_ = w.w.Run(runCtx)
	}()
	w.log.Info().Str("stream", n.Stream).Str("consumer", n.Consumer).Str("metrics", w.Addr()).Msg("writer started")
	return nil
}

// Addr is the metrics listener's address ("" without one).
func (w *Writer) Addr() string {
	if w.ln == nil {
		return ""
	}
	return w.ln.Addr().String()
}

// Stats returns the writer's counters.
func (w *Writer) Stats() natsq.WriterStats {
	if w.w == nil {
		return natsq.WriterStats{}
	}
	return w.w.Stats()
}

// Shutdown finishes the batch being written, then stops. Idempotent and
// safe without Start.
func (w *Writer) Shutdown(ctx context.Context) error {
	w.once.Do(func() {
		if w.cancel != nil {
			w.cancel()
		}
		if w.httpSrv != nil {
			_ = w.httpSrv.Shutdown(ctx)
		}
		w.wg.Wait()
		if w.conn != nil {
			w.conn.Close()
		}
		if w.own {
			w.err = w.store.Close()
		}
		s := w.Stats()
		w.log.Info().Uint64("batches_stored", s.BatchesStored).Uint64("duplicates", s.BatchesDuplicate).Uint64("events_stored", s.EventsStored).Msg("writer stopped")
	})
	return w.err
}

type writerMetrics struct{ w *natsq.Writer }

var (
	wmBatches = prometheus.NewDesc("watchpost_writer_batches_total",
		"Batches taken from the queue, by result: stored (new) or duplicate (a redelivery already stored).", []string{"result"}, nil)
	wmEvents     = prometheus.NewDesc("watchpost_writer_events_stored_total", "Events committed to the store.", nil, nil)
	wmMessages   = prometheus.NewDesc("watchpost_writer_messages_total", "Messages taken from the queue (batches, heartbeats, refusals).", nil, nil)
	wmHeartbeats = prometheus.NewDesc("watchpost_writer_heartbeats_total", "Heartbeats stored.", nil, nil)
	wmPoison     = prometheus.NewDesc("watchpost_writer_poison_total", "Undecodable messages terminated (never redelivered).", nil, nil)
	wmStoreErr   = prometheus.NewDesc("watchpost_writer_store_errors_total", "Failed commits; their batches are delivered again.", nil, nil)
)

func (m *writerMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{wmBatches, wmEvents, wmMessages, wmHeartbeats, wmPoison, wmStoreErr} {
		ch <- d
	}
}

func (m *writerMetrics) Collect(ch chan<- prometheus.Metric) {
	s := m.w.Stats()
	c := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	c(wmBatches, s.BatchesStored, "stored")
	c(wmBatches, s.BatchesDuplicate, "duplicate")
	c(wmEvents, s.EventsStored)
	c(wmMessages, s.Messages)
	c(wmHeartbeats, s.Heartbeats)
	c(wmPoison, s.Poison)
	c(wmStoreErr, s.StoreErrors)
}
