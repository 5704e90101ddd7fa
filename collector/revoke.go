package collector

import (
	"context"
	"crypto/x509"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/collector/certs"
)

// revocations is the revocation list in force. It is re-read when the
// file changes (checked every revocationPoll), and streams whose
// certificate becomes revoked are ended.
type revocations struct {
	path string
	log  zerolog.Logger

	mu      sync.Mutex
	list    *certs.RevocationList
	mod     time.Time
	size    int64
	streams map[*watchedStream]struct{}
}

type watchedStream struct {
	agent  string
	cert   *x509.Certificate
	cancel context.CancelFunc
}

// revocationPoll is how often the revocation file is looked at.
const revocationPoll = time.Second

func newRevocations(path string, log zerolog.Logger) (*revocations, error) {
	r := &revocations{path: path, log: log, list: &certs.RevocationList{}, streams: map[*watchedStream]struct{}{}}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// reload re-reads the file when its modification time or size changed. A
// damaged file keeps the previous list (and is logged): revocation never
// fails open.
func (r *revocations) reload() error {
	fi, err := os.Stat(r.path)
	var mod time.Time
	var size int64
	if err == nil {
		mod, size = fi.ModTime(), fi.Size()
	}
	r.mu.Lock()
	same := mod.Equal(r.mod) && size == r.size
	r.mu.Unlock()
	if same {
		return nil
	}
	l, err := certs.ReadRevocations(r.path)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.list, r.mod, r.size = l, mod, size
	var ended []*watchedStream
	for w := range r.streams {
		if l.Find(w.agent, w.cert) != nil {
			ended = append(ended, w)
		}
	}
	r.mu.Unlock()
	for _, w := range ended {
		w.cancel()
	}
	r.log.Info().Int("entries", len(l.Revoked)).Int("streams_ended", len(ended)).Str("file", r.path).Msg("revocation list loaded")
	return nil
}

// revoked says why a certificate of agent is revoked, or "".
func (r *revocations) revoked(agent string, cert *x509.Certificate) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.list.Find(agent, cert)
	if e == nil {
		return ""
	}
	why := "identity revoked"
	if e.Serial != "" {
		why = "certificate " + e.Serial + " revoked"
	}
	why += " at " + e.At.UTC().Format(time.RFC3339)
	if e.Reason != "" {
		why += ": " + e.Reason
	}
	return why
}

func (r *revocations) isRevoked(agent string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.list.Revoked {
		if e.Name == agent && e.Serial == "" {
			return true
		}
	}
	return false
}

// watch ends the stream (cancel) when its certificate is revoked.
func (r *revocations) watch(ctx context.Context, agent string, cert *x509.Certificate, cancel context.CancelFunc) {
	w := &watchedStream{agent: agent, cert: cert, cancel: cancel}
	r.mu.Lock()
	r.streams[w] = struct{}{}
	r.mu.Unlock()
	context.AfterFunc(ctx, func() {
		r.mu.Lock()
		delete(r.streams, w)
		r.mu.Unlock()
	})
}

func (c *Collector) watchRevocation(ctx context.Context, cancel context.CancelFunc, agent string, cert *x509.Certificate) {
	c.revocations.watch(ctx, agent, cert, cancel)
}

// revocationLoop re-reads the revocation file when it changes.
func (c *Collector) revocationLoop(ctx context.Context) {
	t := time.NewTicker(revocationPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := c.revocations.reload(); err != nil {
				c.log.Error().Err(err).Msg("revocation file unreadable; the previous list stays in force")
			}
		}
	}
}

func certSerial(c *x509.Certificate) string { return certs.SerialHex(c) }
