package baseline

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/watchpost/watchpost/agent/event"
)

// FileName is the baseline file in the state directory.
const FileName = "baseline.json"

// The file is one header line, "watchpost-baseline <version> sha256:<hex
// of the body>", then the body: JSON of fileBody. A newer agent reads
// every older version; an unknown (newer) version is refused like damage.
const (
	magic          = "watchpost-baseline"
	formatVersion  = 1
	maxFileBytes   = 256 << 20
	setAsideSuffix = ".damaged-"
)

// ErrDamaged is wrapped by every reason a baseline file is not taken.
var ErrDamaged = errors.New("not a baseline this agent can read")

type fileBody struct {
	Host      string                `json:"host"`
	Since     time.Time             `json:"since"`
	Mode      string                `json:"mode"`
	LearnedNS int64                 `json:"learned_ns"`
	Enforced  time.Time             `json:"enforcing_since,omitzero"`
	Families  map[string][]fileItem `json:"families"`
	Dropped   map[string]uint64     `json:"dropped,omitempty"`
	// Clocks: programs allowed by an operator, learning until then.
	Clocks map[string]time.Time `json:"clocks,omitempty"`
}

type fileItem struct {
	Fields []string `json:"k"`
	First  int64    `json:"f"`
	Last   int64    `json:"l"`
	Count  uint64   `json:"n"`
	State  string   `json:"s,omitempty"` // allowed, pending; empty: learned
}

// Path is the baseline file's path.
func (b *Baseline) Path() string { return filepath.Join(b.cfg.Dir, FileName) }

// Decode parses a baseline file's bytes; name is for the errors.
func decode(name string, data []byte) (*fileBody, error) {
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return nil, fmt.Errorf("%s: %w: no header line", name, ErrDamaged)
	}
	var version int
	var sum string
	hdr := string(data[:nl])
	if n, err := fmt.Sscanf(hdr, magic+" %d sha256:%s", &version, &sum); err != nil || n != 2 {
		return nil, fmt.Errorf("%s: %w: header %.60q is not \"%s <version> sha256:<hex>\"", name, ErrDamaged, hdr, magic)
	}
	if version != formatVersion {
		return nil, fmt.Errorf("%s: %w: format version %d (this agent reads %d)", name, ErrDamaged, version, formatVersion)
	}
	body := data[nl+1:]
	got := sha256.Sum256(body)
	if hex.EncodeToString(got[:]) != sum {
		return nil, fmt.Errorf("%s: %w: checksum mismatch (the body was changed or cut)", name, ErrDamaged)
	}
	var fb fileBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fb); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", name, ErrDamaged, err)
	}
	if fb.Mode != ModeLearning && fb.Mode != ModeEnforcing {
		return nil, fmt.Errorf("%s: %w: mode %q", name, ErrDamaged, fb.Mode)
	}
	for fam, items := range fb.Families {
		f, ok := ParseFamily(fam)
		if !ok {
			return nil, fmt.Errorf("%s: %w: unknown family %q", name, ErrDamaged, fam)
		}
		for i, it := range items {
			if len(it.Fields) != len(familyFields[f]) {
				return nil, fmt.Errorf("%s: %w: %s item %d has %d fields, not %d", name, ErrDamaged, fam, i, len(it.Fields), len(familyFields[f]))
			}
			switch it.State {
			case "", "allowed", "pending":
			default:
				return nil, fmt.Errorf("%s: %w: %s item %d has state %q", name, ErrDamaged, fam, i, it.State)
			}
		}
	}
	return &fb, nil
}

// load reads the file into b. A missing file is a new host; a damaged one
// is set aside and reported. Only an unusable state directory is an error.
func (b *Baseline) load() error {
	if err := os.MkdirAll(b.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("baseline.dir: %w", err)
	}
	name := b.Path()
	data, err := readBounded(name)
	if errors.Is(err, fs.ErrNotExist) {
		b.log.Info().Str("file", name).Dur("learning", b.cfg.Learning).Msg("no baseline yet: learning this host")
		return nil
	}
	var fb *fileBody
	if err == nil {
		fb, err = decode(name, data)
	}
	if err != nil {
		aside := name + setAsideSuffix + strconv.FormatInt(b.now().Unix(), 10)
		action := "set aside as " + aside + "; learning again"
		if rerr := os.Rename(name, aside); rerr != nil {
			action = "could not be set aside (" + rerr.Error() + "); learning again over it"
		}
		b.loadErr = err.Error()
		b.log.Error().Err(err).Str("file", name).Str("action", action).Msg("baseline file damaged")
		b.startup = append(b.startup, &event.Event{Kind: event.KindAgentTamper, Time: b.now().UTC(),
			Tamper: &event.Tamper{What: "baseline", File: name, Action: action, Error: err.Error()}})
		return nil
	}
	b.since, b.mode, b.learned, b.enforced = fb.Since, fb.Mode, time.Duration(fb.LearnedNS), fb.Enforced
	for fam, items := range fb.Families {
		f, _ := ParseFamily(fam)
		dst := &b.fams[f]
		for _, it := range items {
			st := stateLearned
			switch it.State {
			case "allowed":
				st = stateAllowed
			case "pending":
				st = statePending
				dst.pending++
			}
			dst.items[joinFields(it.Fields)] = &item{first: it.First, last: it.Last, count: it.Count, state: st}
		}
	}
	for fam, n := range fb.Dropped {
		if f, ok := ParseFamily(fam); ok {
			b.fams[f].dropped = n
		}
	}
	for s, t := range fb.Clocks {
		b.clocks[s] = t
	}
	if fb.Host != "" && b.cfg.Host != "" && fb.Host != b.cfg.Host {
		b.log.Warn().Str("file_host", fb.Host).Str("host", b.cfg.Host).Msg("the baseline file was learned under another host name; keeping it")
	}
	b.dirty, b.savedAt = false, b.now()
	b.log.Info().Str("file", name).Str("mode", b.mode).Dur("learned", b.learned).Int("items", b.itemsLocked()).Msg("baseline loaded")
	return nil
}

func joinFields(f []string) string {
	n := 0
	for _, s := range f {
		n += len(s) + 1
	}
	buf := make([]byte, 0, n)
	for i, s := range f {
		if i > 0 {
			buf = append(buf, sep)
		}
		buf = append(buf, s...)
	}
	return string(buf)
}

func readBounded(name string) ([]byte, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxFileBytes {
		return nil, fmt.Errorf("%s: %w: %d bytes is over the %d bytes a baseline can have", name, ErrDamaged, st.Size(), maxFileBytes)
	}
	return os.ReadFile(name)
}

// encodeLocked renders the file's bytes.
func (b *Baseline) encodeLocked() ([]byte, error) {
	fb := fileBody{Host: b.cfg.Host, Since: b.since, Mode: b.mode, LearnedNS: int64(b.learned), Enforced: b.enforced,
		Families: map[string][]fileItem{}, Dropped: map[string]uint64{}, Clocks: map[string]time.Time{}}
	for i := range b.fams {
		f := &b.fams[i]
		items := make([]fileItem, 0, len(f.items))
		for k, it := range f.items {
			fi := fileItem{Fields: splitKey(k), First: it.first, Last: it.last, Count: it.count}
			if it.state != stateLearned {
				fi.State = stateNames[it.state]
			}
			items = append(items, fi)
		}
		fb.Families[Family(i).String()] = items
		if f.dropped > 0 {
			fb.Dropped[Family(i).String()] = f.dropped
		}
	}
	for s, t := range b.clocks {
		fb.Clocks[s] = t
	}
	body, err := json.Marshal(&fb)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(body)+128)
	out = append(out, sumHeader(body)...)
	return append(out, body...), nil
}

// sumHeader is the header line of a file with this body.
func sumHeader(body []byte) string {
	sum := sha256.Sum256(body)
	return fmt.Sprintf("%s %d sha256:%s\n", magic, formatVersion, hex.EncodeToString(sum[:]))
}

// Save writes the baseline atomically: a temporary file, synced, renamed
// over the old one, and the directory synced.
func (b *Baseline) Save() error {
	b.saveMu.Lock()
	defer b.saveMu.Unlock()
	b.mu.Lock()
	data, err := b.encodeLocked()
	now := b.now()
	b.dirty = false
	b.mu.Unlock()
	if err == nil {
		err = writeAtomic(b.Path(), data)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.saveErr = err
	if err != nil {
		b.dirty = true
		b.log.Error().Err(err).Str("file", b.Path()).Msg("writing the baseline failed; retrying")
		return fmt.Errorf("writing the baseline: %w", err)
	}
	b.savedAt = now
	return nil
}

func writeAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing is there
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(name))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
