// Package detect is the agent's rule engine. It loads rules in the Sigma
// format (the subset SigmaHQ's Linux rules use, with Watchpost's event
// types, ancestry fields and exceptions as extensions) and Sigma
// correlation rules, from the packs built into the agent and from a rules
// directory, and turns matching events into alert events.
//
// Rules are compiled into one matcher per event kind: every literal of
// every rule on a field goes into one Aho-Corasick automaton, so an event
// costs one pass over each field that some rule names, whatever the number
// of rules; only rules with a hit (or that can match without one) are
// evaluated. Nothing is allocated per event unless a rule matches.
//
// Detect is called by the pipeline's goroutine; reloads compile a new set
// on the engine's goroutine and swap it in atomically.
//
// # Stable interfaces
//
// Other parts of the agent build on these, and they keep their meaning:
//
//   - Rule ids: a pack rule's id (wp-host-..., wp-ot-...) never changes
//     meaning; a user rule's id is its Sigma id (or name). Alerts carry it
//     in event.Alert.RuleID, and response policies select on it.
//   - Alerts: Detect returns events of kind event.KindAlert whose Alert
//     holds the rule id, title, level, ATT&CK techniques, tags, source,
//     the matched fields and values and the events behind it. Any producer
//     of alerts (learned baselines) fills the same event.Alert; the
//     pipeline, shipper (own lane, never shed) and collector treat every
//     alert alike.
//   - Exceptions: Exception and its attributes (exe, ancestor, user, path,
//     peer, host, cgroup, unit) are the selectors of the rules format; the
//     collector's command channel carries them (watchpostv1.DetectionException)
//     and CommandHandler applies add/remove commands. Suppressed matches
//     are counted per rule in Status and per exception in ExceptionHits.
//   - Fields: FieldNames lists what rules may name; RegisterField adds the
//     fields of an event kind produced elsewhere (industrial operations),
//     from an init function, without changing this package.
//   - Lifecycle: New -> Start (watch the rules directory) -> Shutdown;
//     Reload (SIGHUP), ReloadNow, Changed (a reload happened), Status (for
//     health events), Rules (what is loaded).
package detect

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
)

//go:embed packs
var packFS embed.FS

// Packs lists the rule packs built into the agent.
func Packs() []string {
	ents, _ := fs.ReadDir(packFS, "packs")
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// Config configures the engine.
type Config struct {
	// RulesDir holds the user's rules (*.yml, *.yaml); empty for none. A
	// missing directory is watched for until it appears.
	RulesDir string
	// Packs are the built-in packs to load (host, ot).
	Packs []string
	// Disabled lists rule ids or names that are not loaded.
	Disabled []string
	// Host is the agent's host name (the Host field, exceptions by host).
	Host string
	// MaxGroups bounds the groups one correlation rule tracks (10000); the
	// least recently used beyond it is evicted and counted.
	MaxGroups int
	// PasswdFile names users (/etc/passwd).
	PasswdFile string
	// CgroupRoot is the cgroup v2 mount; empty: found in /proc/self/mounts.
	CgroupRoot string
	// Debounce groups directory changes into one reload (250ms).
	Debounce time.Duration
	// AlertBurst is how many alerts one rule raises for one actor (its
	// executable and user) within AlertWindow; further matches are folded
	// (counted, and named by the actor's next alert). 0: never fold.
	AlertBurst  int
	AlertWindow time.Duration
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.MaxGroups == 0 {
		c.MaxGroups = 10000
	}
	if c.PasswdFile == "" {
		c.PasswdFile = "/etc/passwd"
	}
	if c.Debounce == 0 {
		c.Debounce = 250 * time.Millisecond
	}
}

// Validate names the bad setting.
func (c Config) Validate() error {
	known := map[string]bool{}
	for _, p := range Packs() {
		known[p] = true
	}
	for i, p := range c.Packs {
		if !known[p] {
			return fmt.Errorf("detection.packs[%d]: %q is not a pack (%s)", i, p, strings.Join(Packs(), ", "))
		}
	}
	if c.MaxGroups < 1 {
		return fmt.Errorf("detection.max_groups: %d must be positive", c.MaxGroups)
	}
	if c.AlertBurst < 0 {
		return fmt.Errorf("detection.alert_burst: %d is negative (0 never folds)", c.AlertBurst)
	}
	if c.AlertBurst > 0 && c.AlertWindow < time.Second {
		return fmt.Errorf("detection.alert_window: %s is below 1s", c.AlertWindow)
	}
	return nil
}

// Deps are the engine's collaborators.
type Deps struct {
	Logger zerolog.Logger
	// Processes resolves ptrace and signal targets (the process table).
	Processes Processes
}

// Engine is the rule engine.
type Engine struct {
	cfg   Config
	log   zerolog.Logger
	cur   atomic.Pointer[ruleSet]
	users *userTable

	// The detecting goroutine's state.
	ctx    *evalCtx
	out    []*event.Event
	keyBuf []byte

	mu      sync.Mutex // reloads and exception changes
	cache   map[string]*parsedFile
	gen     uint64
	remote  atomic.Pointer[[]*cexception]
	remList []Exception

	statsMu      sync.Mutex
	suppressedBy map[string]uint64
	foldedBy     map[string]uint64
	fold         *folder
	exHits       map[string]uint64
	alerts       atomic.Uint64
	dropped      atomic.Uint64

	reload  chan struct{}
	changed chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	stop    sync.Once
}

// New compiles the packs and the rules directory. Errors in the user's
// files are reported (Status, the log), not fatal: the other rules load.
func New(cfg Config, deps Deps) (*Engine, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	engines.Add(1)
	e := &Engine{
		cfg: cfg, log: deps.Logger.With().Str("component", "detect").Logger(),
		users: loadUsers(cfg.PasswdFile), cache: map[string]*parsedFile{},
		suppressedBy: map[string]uint64{}, foldedBy: map[string]uint64{}, exHits: map[string]uint64{},
		fold:   newFolder(cfg.AlertBurst, cfg.AlertWindow, cfg.MaxGroups),
		reload: make(chan struct{}, 1), changed: make(chan struct{}, 1),
	}
	e.ctx = newEvalCtx(cfg.Host, e.users, newCgroupPaths(cfg.CgroupRoot), deps.Processes)
	empty := []*cexception{}
	e.remote.Store(&empty)
	set, err := e.load()
	if err != nil {
		return nil, err
	}
	e.swap(set)
	return e, nil
}

// load parses every file and compiles a new set. A user file that does not
// parse or compile keeps its previous version (if it had one).
func (e *Engine) load() (*ruleSet, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var files []*parsedFile
	var errs []*LoadError
	for _, pack := range e.cfg.Packs {
		ents, err := fs.ReadDir(packFS, "packs/"+pack)
		if err != nil {
			return nil, fmt.Errorf("detection.packs: %s: %w", pack, err)
		}
		for _, ent := range ents {
			if !isRuleFile(ent.Name()) {
				continue
			}
			name := "pack:" + pack + "/" + ent.Name()
			b, err := packFS.ReadFile(path.Join("packs", pack, ent.Name()))
			if err != nil {
				return nil, err
			}
			pf, err := parseFile(name, "pack:"+pack, b)
			if err != nil {
				return nil, fmt.Errorf("built-in rules: %w", err) // a bug: the packs are tested
			}
			files = append(files, pf)
		}
	}
	user, uerrs := e.readDir()
	errs = append(errs, uerrs...)
	files = append(files, user...)
	disabled := map[string]bool{}
	for _, d := range e.cfg.Disabled {
		disabled[d] = true
	}
	set := compile(files, disabled, errs)
	// A user file whose rules did not compile is broken as a whole: use
	// its previous version and compile again.
	broken := map[string]bool{}
	for _, le := range set.errors {
		if strings.HasPrefix(le.File, "pack:") {
			return nil, fmt.Errorf("built-in rules: %w", le)
		}
		broken[le.File] = true
	}
	replaced := false
	for i, f := range files {
		if broken[f.name] && !strings.HasPrefix(f.name, "pack:") {
			if prev, ok := e.cache[f.name]; ok && prev != f {
				files[i] = prev
				replaced = true
			} else if !ok || prev == f {
				delete(e.cache, f.name)
			}
		}
	}
	if replaced {
		errsBefore := set.errors
		set = compile(files, disabled, errs)
		set.errors = errsBefore
	}
	for _, f := range files {
		if !strings.HasPrefix(f.name, "pack:") && !broken[f.name] {
			e.cache[f.name] = f
		}
	}
	e.gen++
	set.generation, set.loadedAt = e.gen, time.Now()
	return set, nil
}

func isRuleFile(name string) bool {
	return !strings.HasPrefix(name, ".") && (strings.HasSuffix(name, ".yml") || strings.HasSuffix(name, ".yaml"))
}

// readDir parses the rules directory. A file that fails to parse is
// replaced by its last good version.
func (e *Engine) readDir() ([]*parsedFile, []*LoadError) {
	dir := e.cfg.RulesDir
	if dir == "" {
		return nil, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			clear(e.cache)
			return nil, nil
		}
		return nil, []*LoadError{{File: dir, Msg: err.Error()}}
	}
	var files []*parsedFile
	var errs []*LoadError
	present := map[string]bool{}
	for _, ent := range ents {
		if ent.IsDir() || !isRuleFile(ent.Name()) {
			continue
		}
		name := filepath.Join(dir, ent.Name())
		present[name] = true
		b, err := os.ReadFile(name)
		var pf *parsedFile
		if err == nil {
			pf, err = parseFile(name, name, b)
		}
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) {
				le = &LoadError{File: name, Msg: err.Error()}
			}
			errs = append(errs, le)
			if prev, ok := e.cache[name]; ok {
				files = append(files, prev)
			}
			continue
		}
		files = append(files, pf)
	}
	for name := range e.cache {
		if !present[name] {
			delete(e.cache, name)
		}
	}
	return files, errs
}

// swap installs a set; the detecting goroutine picks it up at its next
// event (and carries correlation state over).
func (e *Engine) swap(set *ruleSet) {
	e.cur.Store(set)
	for _, le := range set.errors {
		e.log.Warn().Str("file", le.File).Int("line", le.Line).Msg("rule not loaded: " + le.Msg)
	}
	e.log.Info().Int("rules", len(set.rules)+len(set.corrs)).Int("errors", len(set.errors)).
		Uint64("generation", set.generation).Msg("detection rules loaded")
	if set.generation > 1 {
		select {
		case e.changed <- struct{}{}:
		default:
		}
	}
}

// Start watches the rules directory and reloads on changes and on Reload.
func (e *Engine) Start(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.done = make(chan struct{})
	w, err := fsnotify.NewWatcher()
	if err != nil {
		cancel()
		return fmt.Errorf("watching detection.rules_dir: %w", err)
	}
	go func() {
		defer close(e.done)
		defer w.Close()
		e.run(runCtx, w)
	}()
	return nil
}

// watch adds the rules directory, or its parent while it does not exist.
func (e *Engine) watch(w *fsnotify.Watcher, watched string) string {
	dir := e.cfg.RulesDir
	if dir == "" {
		return ""
	}
	// The directory, or while it does not exist the nearest ancestor that
	// does (its creation is then seen, and the watch moves down).
	target := dir
	for {
		if _, err := os.Stat(target); err == nil || filepath.Dir(target) == target {
			break
		}
		target = filepath.Dir(target)
	}
	if target == watched {
		return watched
	}
	if watched != "" {
		_ = w.Remove(watched)
	}
	if err := w.Add(target); err != nil {
		e.log.Warn().Err(err).Str("dir", target).Msg("cannot watch for rule changes; SIGHUP still reloads")
		return ""
	}
	return target
}

func (e *Engine) run(ctx context.Context, w *fsnotify.Watcher) {
	watched := e.watch(w, "")
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if watched != e.cfg.RulesDir {
				// An ancestor: move the watch down as the path appears.
				if strings.HasPrefix(e.cfg.RulesDir, filepath.Clean(ev.Name)) {
					watched = e.watch(w, watched)
					if watched == e.cfg.RulesDir {
						timer.Reset(e.cfg.Debounce)
					}
				}
				continue
			}
			timer.Reset(e.cfg.Debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			e.log.Warn().Err(err).Msg("watching the rules directory")
		case <-timer.C:
			e.doReload("directory changed")
			watched = e.watch(w, watched)
		case <-e.reload:
			e.doReload("reload requested")
			watched = e.watch(w, watched)
		}
	}
}

func (e *Engine) doReload(why string) {
	e.users.replace(loadUsers(e.cfg.PasswdFile))
	set, err := e.load()
	if err != nil {
		e.log.Error().Err(err).Msg("reloading rules failed; the previous rules stay")
		return
	}
	e.log.Info().Str("why", why).Msg("reloading detection rules")
	e.swap(set)
}

// Reload asks for a reload (SIGHUP); it does not wait.
func (e *Engine) Reload() {
	select {
	case e.reload <- struct{}{}:
	default:
	}
}

// ReloadNow reloads synchronously (tests, and callers that must know).
func (e *Engine) ReloadNow() {
	e.doReload("reload requested")
}

// Changed is signalled after every reload, so that a health event can
// report it at once.
func (e *Engine) Changed() <-chan struct{} { return e.changed }

// Shutdown stops the watcher. It is idempotent and safe without Start.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.stop.Do(func() {
		if e.cancel == nil {
			return
		}
		e.cancel()
		select {
		case <-e.done:
		case <-ctx.Done():
		}
	})
	return nil
}

// Detect matches one enriched event and returns the alerts it raises (nil
// for almost every event). The slice is reused by the next call. Only one
// goroutine may call it.
func (e *Engine) Detect(ev *event.Event) []*event.Event {
	if int(ev.Kind) >= 256 || !ruleKind(ev.Kind) {
		return nil
	}
	set := e.cur.Load()
	c := e.ctx
	if set != c.set {
		moveState(c.set, set)
		c.use(set)
	}
	km := set.kinds[ev.Kind]
	if km == nil {
		return nil
	}
	e.out = e.out[:0]
	c.reset(ev)
	c.scanEvent(km)
	for _, ri := range c.cands {
		r := set.rules[ri]
		if !c.ruleTrue(r) {
			continue
		}
		if e.suppressed(r.p, r.exceptions) {
			continue
		}
		var matches []event.Match
		if len(r.feeds) > 0 || r.generate {
			matches = c.explain(r)
		}
		for _, f := range r.feeds {
			e.feedCorr(f, matches)
		}
		if r.generate {
			e.raise(r.p, "", 0, matches, []event.EventRef{e.ref()})
		}
	}
	if len(e.out) == 0 {
		return nil
	}
	return e.out
}

// suppressed checks every exception that applies to the rule, in one
// place, and counts a suppressed match.
func (e *Engine) suppressed(p *parsedRule, local []*cexception) bool {
	check := func(ex *cexception) bool {
		if !ex.appliesTo(p) || !ex.matches(e.ctx) {
			return false
		}
		e.statsMu.Lock()
		e.suppressedBy[p.id]++
		id := ex.src.ID
		if id == "" {
			id = ex.src.Origin
		}
		e.exHits[id]++
		e.statsMu.Unlock()
		return true
	}
	for _, ex := range local {
		if check(ex) {
			return true
		}
	}
	for _, ex := range e.ctx.set.exceptions {
		if check(ex) {
			return true
		}
	}
	for _, ex := range *e.remote.Load() {
		if check(ex) {
			return true
		}
	}
	return false
}

// raise builds the alert event from the current event.
func (e *Engine) raise(p *parsedRule, corr string, count uint64, matches []event.Match, refs []event.EventRef) {
	ev := e.ctx.ev
	ok, folded := e.fold.admit(p.id, ev)
	if !ok {
		e.statsMu.Lock()
		e.foldedBy[p.id]++
		e.statsMu.Unlock()
		return
	}
	a := &event.Event{
		Kind: event.KindAlert, Time: ev.Time, BootNS: ev.BootNS, CPU: ev.CPU, Process: ev.Process,
		Ancestry: append([]event.Ancestor(nil), ev.Ancestry...),
		Alert: &event.Alert{
			RuleID: p.id, Title: p.title, Level: p.level, Techniques: p.techniques, Tags: p.tags,
			Source: p.source, Correlation: corr, Count: count, Matches: matches, Events: refs, Folded: folded,
			Cgroup: e.ctx.cgroups.path(ev.Process.CgroupID),
		},
	}
	if ev.Industrial != nil {
		in := *ev.Industrial
		a.Industrial = &in
	}
	e.alerts.Add(1)
	e.out = append(e.out, a)
}

// Status reports the engine's state for health events and heartbeats.
func (e *Engine) Status() *event.Detection {
	set := e.cur.Load()
	d := &event.Detection{
		Rules: len(set.rules) + len(set.corrs), Generation: set.generation, LoadedAt: set.loadedAt,
		Alerts: e.alerts.Load(), Dropped: e.dropped.Load(),
		Exceptions: len(set.exceptions) + len(*e.remote.Load()),
	}
	for _, r := range set.rules {
		d.Exceptions += len(r.exceptions)
	}
	for _, le := range set.errors {
		d.Errors = append(d.Errors, le.Error())
	}
	e.statsMu.Lock()
	if len(e.foldedBy) > 0 {
		d.Folded = make(map[string]uint64, len(e.foldedBy))
		for k, v := range e.foldedBy {
			d.Folded[k] = v
		}
	}
	if len(e.suppressedBy) > 0 {
		d.Suppressed = make(map[string]uint64, len(e.suppressedBy))
		for k, v := range e.suppressedBy {
			d.Suppressed[k] = v
		}
	}
	e.statsMu.Unlock()
	return d
}

// RuleInfo describes one loaded rule.
type RuleInfo struct {
	ID, Name, Title, Level, Source, Category, Correlation string
	Techniques                                            []string
	Generates                                             bool
}

// Rules lists the loaded rules, by id.
func (e *Engine) Rules() []RuleInfo {
	set := e.cur.Load()
	var out []RuleInfo
	for _, r := range set.rules {
		out = append(out, RuleInfo{ID: r.p.id, Name: r.p.name, Title: r.p.title, Level: r.p.level, Source: r.p.source,
			Category: r.p.category, Techniques: r.p.techniques, Generates: r.generate})
	}
	for _, cc := range set.corrs {
		out = append(out, RuleInfo{ID: cc.p.id, Name: cc.p.name, Title: cc.p.title, Level: cc.p.level, Source: cc.p.source,
			Correlation: cc.typ, Techniques: cc.p.techniques, Generates: cc.generate})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ExceptionHits returns how many matches each exception suppressed, by
// exception id (its origin when it has none).
func (e *Engine) ExceptionHits() map[string]uint64 {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	out := make(map[string]uint64, len(e.exHits))
	for k, v := range e.exHits {
		out[k] = v
	}
	return out
}

// SetExceptions replaces the exceptions that came from the collector (the
// command channel); they apply from the next event on.
func (e *Engine) SetExceptions(list []Exception) error {
	compiled := make([]*cexception, 0, len(list))
	for i := range list {
		c, err := compileException(&list[i])
		if err != nil {
			return fmt.Errorf("exception %s: %w", list[i].ID, err)
		}
		compiled = append(compiled, c)
	}
	e.mu.Lock()
	e.remList = append([]Exception(nil), list...)
	e.remote.Store(&compiled)
	e.mu.Unlock()
	return nil
}

// RemoteExceptions returns the exceptions set by SetExceptions.
func (e *Engine) RemoteExceptions() []Exception {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Exception(nil), e.remList...)
}

// CheckException reports whether an exception is valid.
func CheckException(ex Exception) error {
	_, err := compileException(&ex)
	return err
}
