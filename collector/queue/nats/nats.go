// Package nats is the queue between stateless ingest and the store writers
// in fleet mode: a NATS JetStream stream (github.com/nats-io/nats.go,
// jetstream package). A collector publishes each validated batch and
// acknowledges the agent only after JetStream acknowledged it (stored on a
// majority of the stream's replicas); store writers take batches from one
// durable consumer, write them to PostgreSQL and acknowledge JetStream only
// after the commit. The store deduplicates on (agent, boot, run, sequence),
// so a redelivery never stores a batch twice.
//
// Subjects are <subject>.<site>.<agent>.<kind> with kind "events",
// "heartbeat" or "rejected", so consumers and mirrors can filter by site
// and agent. A message's headers carry the authenticated agent id and the
// batch key; the data of an events message is the batch's accepted events,
// serialized as an EventList (each event's bytes as the agent sent them).
package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/encoding/protowire"
)

// Message kinds, the last subject token.
const (
	KindEvents    = "events"
	KindHeartbeat = "heartbeat"
	KindRejected  = "rejected"
)

// Headers of a message.
const (
	HdrAgent    = "Wp-Agent"
	HdrBoot     = "Wp-Boot"
	HdrRun      = "Wp-Run"
	HdrSeq      = "Wp-Seq"
	HdrReceived = "Wp-Received" // unix nanoseconds, when the collector received it
	HdrCount    = "Wp-Count"    // events in an events message
)

// Options configure the connection and the stream.
type Options struct {
	URLs      []string
	Name      string // connection name shown by the server
	Stream    string
	Subject   string
	Site      string
	Replicas  int
	MaxBytes  int64
	CredsFile string
	CAFile    string
	CertFile  string
	KeyFile   string
	// Sources are site streams this (central) stream takes batches from.
	Sources []Source
}

// Source is a site's stream in another JetStream domain.
type Source struct {
	Domain string
	Stream string
}

// Conn is a connection to the NATS cluster with the stream ensured.
type Conn struct {
	nc  *natsgo.Conn
	js  jetstream.JetStream
	opt Options
	log zerolog.Logger
}

// Connect connects (retrying while ctx lasts) and creates or updates the
// stream; log is the caller's (its component field names the caller). The connection reconnects forever to any server of the list.
func Connect(ctx context.Context, opt Options, log zerolog.Logger) (*Conn, error) {
	opts := []natsgo.Option{
		natsgo.Name(opt.Name),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(250 * time.Millisecond),
		natsgo.ReconnectJitter(250*time.Millisecond, time.Second),
		natsgo.RetryOnFailedConnect(true),
		natsgo.ReconnectBufSize(-1), // no buffering while disconnected: publishes fail and agents retry
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil { // nil: closed by us
				log.Warn().Err(err).Msg("disconnected from nats")
			}
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) { log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("reconnected to nats") }),
	}
	if opt.CredsFile != "" {
		opts = append(opts, natsgo.UserCredentials(opt.CredsFile))
	}
	if opt.CAFile != "" {
		opts = append(opts, natsgo.RootCAs(opt.CAFile))
	}
	if opt.CertFile != "" {
		opts = append(opts, natsgo.ClientCert(opt.CertFile, opt.KeyFile))
	}
	nc, err := natsgo.Connect(strings.Join(opt.URLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to nats %s: %w", strings.Join(opt.URLs, ","), err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	c := &Conn{nc: nc, js: js, opt: opt, log: log}
	for {
		err = c.ensureStream(ctx)
		if err == nil {
			return c, nil
		}
		log.Warn().Err(err).Msg("creating the stream; retrying")
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, fmt.Errorf("creating stream %s: %w", opt.Stream, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// StreamConfig is the stream every collector and writer creates or updates:
// a work queue (a batch leaves the stream when a writer acknowledged it),
// on disk, replicated, refusing new batches when full (never dropping old
// ones), with a duplicate window that absorbs a collector's republish.
//
// A site stream (a plant's own node) is the same work queue; the central
// stream sources it through a durable consumer named for the central
// stream, so a batch leaves the site only once the centre has it, and
// sourcing resumes where it stopped after the link returns.
func (o Options) StreamConfig() jetstream.StreamConfig {
	var sources []*jetstream.StreamSource
	for _, s := range o.Sources {
		sources = append(sources, &jetstream.StreamSource{Name: s.Stream, Domain: s.Domain})
	}
	return jetstream.StreamConfig{
		Sources:     sources,
		Name:        o.Stream,
		Description: "Watchpost batches from collectors to store writers",
		Subjects:    []string{o.Subject + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    o.MaxBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  2 * time.Minute,
		Compression: jetstream.S2Compression,
	}
}

func (c *Conn) ensureStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	_, err := c.js.CreateOrUpdateStream(ctx, c.opt.StreamConfig())
	return err
}

// MaxPayload is the largest message the server accepts.
func (c *Conn) MaxPayload() int64 { return c.nc.MaxPayload() }

// Close drains nothing: pending publishes have been waited for by their callers.
func (c *Conn) Close() { c.nc.Close() }

// JetStream exposes the JetStream context (tests, tools).
func (c *Conn) JetStream() jetstream.JetStream { return c.js }

// token makes s usable as one subject token: '.', '*', '>', whitespace and
// control characters become '_'. Tokens filter; the headers identify.
func token(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}

// SubjectFor is the subject of a message of kind from agent at site.
func SubjectFor(prefix, site, agent, kind string) string {
	return prefix + "." + token(site) + "." + token(agent) + "." + kind
}

// AppendEventList serializes events (each one's bytes as received) as an
// EventList: field 1, length-delimited, per event.
func AppendEventList(dst []byte, raw [][]byte) []byte {
	for _, r := range raw {
		dst = protowire.AppendTag(dst, 1, protowire.BytesType)
		dst = protowire.AppendBytes(dst, r)
	}
	return dst
}

// SplitEventList returns each event's bytes of a serialized EventList.
func SplitEventList(data []byte) ([][]byte, error) {
	var out [][]byte
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return nil, fmt.Errorf("event %d: malformed event list record", len(out))
		}
		data = data[n:]
		raw, m := protowire.ConsumeBytes(data)
		if m < 0 {
			return nil, fmt.Errorf("event %d: truncated", len(out))
		}
		data = data[m:]
		out = append(out, raw)
	}
	return out, nil
}

// msgID is the JetStream message id of a batch (its deduplication key).
func msgID(agent, boot, run string, seq uint64) string {
	return agent + "/" + boot + "/" + run + "/" + strconv.FormatUint(seq, 10)
}

// ErrNotAcked marks a publish JetStream did not acknowledge in time.
var ErrNotAcked = errors.New("not acknowledged by jetstream")

// commandsSubject carries "an agent has new commands" between collectors:
// core NATS, outside the stream's subjects. The data is the agent id
// ("" for every agent).
func (c *Conn) commandsSubject() string { return "_WP." + c.opt.Stream + ".commands" }

// NotifyCommands tells every collector that agent has new commands; it is
// a hint (at most once): collectors also look for commands periodically.
func (c *Conn) NotifyCommands(agent string) error {
	return c.nc.Publish(c.commandsSubject(), []byte(agent))
}

// OnCommands calls f with the agent id of every notification, until the
// connection is closed.
func (c *Conn) OnCommands(f func(agent string)) error {
	_, err := c.nc.Subscribe(c.commandsSubject(), func(m *natsgo.Msg) { f(string(m.Data)) })
	return err
}

// apiTimeout bounds one JetStream API request (creating the stream or the
// consumer) before it is tried again: while a new cluster elects its meta
// leader a request may go unanswered, and the next one succeeds.
const apiTimeout = 2 * time.Second
