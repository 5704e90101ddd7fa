// Package commands applies the collector's commands on the agent and keeps
// them: every command is appended to a log in the state directory (length,
// CRC32C, the command as protobuf) and synced before it is acknowledged,
// and the log is replayed to the handlers at start, so that what the
// collector ordered (detection exceptions now; baseline approvals and
// policies later) survives restarts and holds while the collector is
// unreachable. Commands apply in sequence order and only once; a command
// of another collector's epoch clears what the previous one ordered.
package commands

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Handler carries out one kind of command.
type Handler interface {
	// Handles reports whether the command's action is this handler's.
	Handles(cmd *watchpostv1.Command) bool
	// Apply carries the command out. At start-up the log is replayed
	// through it (replay is true).
	Apply(cmd *watchpostv1.Command, replay bool) error
	// Reset forgets every command (a new epoch).
	Reset()
}

// logName is the command log in the state directory.
const logName = "commands.log"

// maxRecord bounds one record (a command is a few hundred bytes).
const maxRecord = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record kinds.
const (
	recApplied byte = 1 // the command was applied
	recFailed  byte = 2 // the agent could not apply it (kept: it is done)
	recEpoch   byte = 3 // a new epoch starts; what came before no longer holds
)

// Log is the agent's command state.
type Log struct {
	log      zerolog.Logger
	dir      string
	handlers []Handler

	mu      sync.Mutex
	f       *os.File
	off     int64 // end of the last good record
	epoch   string
	applied uint64
	corrupt uint64
}

// Open reads (and repairs) the log in dir and replays it to the handlers.
func Open(dir string, log zerolog.Logger, handlers ...Handler) (*Log, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("commands.dir: %w", err)
	}
	l := &Log{log: log.With().Str("component", "commands").Logger(), dir: dir, handlers: handlers}
	name := filepath.Join(dir, logName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("commands.dir: %w", err)
	}
	good, err := l.replay(f)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	// A torn or damaged tail (a crash in the middle of a write) is cut off;
	// the collector sends those commands again.
	if st, err := f.Stat(); err == nil && st.Size() > good {
		l.log.Warn().Int64("bytes", st.Size()-good).Msg("command log: damaged tail cut off; the collector will send its commands again")
		if err := f.Truncate(good); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("repairing %s: %w", name, err)
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, err
	}
	l.f, l.off = f, good
	l.log.Info().Str("epoch", l.epoch).Uint64("applied", l.applied).Msg("commands replayed")
	return l, nil
}

// replay applies every record and returns the offset after the last good one.
func (l *Log) replay(f *os.File) (int64, error) {
	var off int64
	var hdr [9]byte
	for {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return off, nil // end, or a torn header
		}
		n := binary.LittleEndian.Uint32(hdr[0:4])
		sum := binary.LittleEndian.Uint32(hdr[4:8])
		kind := hdr[8]
		if n > maxRecord {
			l.corrupt++
			return off, nil
		}
		body := make([]byte, n)
		if _, err := f.ReadAt(body, off+9); err != nil {
			return off, nil
		}
		if crc32.Checksum(append([]byte{kind}, body...), castagnoli) != sum {
			l.corrupt++
			return off, nil
		}
		cmd := &watchpostv1.Command{}
		if err := proto.Unmarshal(body, cmd); err != nil {
			l.corrupt++
			return off, nil
		}
		switch kind {
		case recEpoch:
			l.resetLocked(cmd.Epoch)
		case recApplied:
			if h := l.handler(cmd); h != nil {
				if err := h.Apply(cmd, true); err != nil {
					l.log.Warn().Err(err).Uint64("seq", cmd.Seq).Msg("replaying a command failed")
				}
			}
			l.applied = cmd.Seq
		case recFailed:
			l.applied = cmd.Seq
		}
		off += 9 + int64(n)
	}
}

func (l *Log) resetLocked(epoch string) {
	for _, h := range l.handlers {
		h.Reset()
	}
	l.epoch, l.applied = epoch, 0
}

func (l *Log) handler(cmd *watchpostv1.Command) Handler {
	for _, h := range l.handlers {
		if h.Handles(cmd) {
			return h
		}
	}
	return nil
}

// State returns the epoch and the highest seq applied (for heartbeats).
func (l *Log) State() (string, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch, l.applied
}

// Apply carries out one command from the collector, persists it and
// returns the acknowledgement to send. A command already applied is
// acknowledged again without being applied twice. The epoch announcement
// (seq 0) returns no acknowledgement.
func (l *Log) Apply(cmd *watchpostv1.Command) *watchpostv1.CommandAck {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cmd.Epoch != "" && cmd.Epoch != l.epoch {
		if l.epoch != "" || l.applied != 0 {
			l.log.Warn().Str("old", l.epoch).Str("new", cmd.Epoch).Msg("commands of another collector epoch: dropping what the previous one ordered")
		}
		if err := l.write(recEpoch, &watchpostv1.Command{Epoch: cmd.Epoch}); err != nil {
			l.log.Error().Err(err).Msg("persisting the command epoch failed")
		}
		l.resetLocked(cmd.Epoch)
	}
	if cmd.Seq == 0 {
		return nil
	}
	if cmd.Seq <= l.applied {
		return &watchpostv1.CommandAck{Seq: cmd.Seq, Status: watchpostv1.CommandStatus_COMMAND_STATUS_APPLIED}
	}
	var err error
	if h := l.handler(cmd); h == nil {
		err = fmt.Errorf("this agent does not carry out %T commands", cmd.Action)
	} else {
		err = h.Apply(cmd, false)
	}
	kind, ack := recApplied, &watchpostv1.CommandAck{Seq: cmd.Seq, Status: watchpostv1.CommandStatus_COMMAND_STATUS_APPLIED}
	if err != nil {
		kind = recFailed
		ack.Status, ack.Message = watchpostv1.CommandStatus_COMMAND_STATUS_FAILED, err.Error()
	}
	if werr := l.write(kind, cmd); werr != nil {
		// Not persisted: applied for this run only; not acknowledged, so
		// the collector sends it again after a restart.
		l.log.Error().Err(werr).Uint64("seq", cmd.Seq).Msg("persisting a command failed")
		return nil
	}
	l.applied = cmd.Seq
	if err != nil {
		l.log.Warn().Err(err).Uint64("seq", cmd.Seq).Msg("command not applied")
	} else {
		l.log.Info().Uint64("seq", cmd.Seq).Str("by", cmd.IssuedBy).Msg("command applied")
	}
	return ack
}

func (l *Log) write(kind byte, cmd *watchpostv1.Command) error {
	body, err := proto.Marshal(cmd)
	if err != nil {
		return err
	}
	rec := make([]byte, 9, 9+len(body))
	binary.LittleEndian.PutUint32(rec[0:4], uint32(len(body)))
	binary.LittleEndian.PutUint32(rec[4:8], crc32.Checksum(append([]byte{kind}, body...), castagnoli))
	rec[8] = kind
	rec = append(rec, body...)
	_, err = l.f.Write(rec)
	if err == nil {
		err = l.f.Sync()
	}
	if err != nil {
		// Cut a partial record off, so that later records follow good ones.
		_ = l.f.Truncate(l.off)
		_, _ = l.f.Seek(l.off, io.SeekStart)
		return err
	}
	l.off += int64(len(rec))
	return nil
}

// Close closes the log.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("command log already closed")
	}
	err := l.f.Close()
	l.f = nil
	return err
}
