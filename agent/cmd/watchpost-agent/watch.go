package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/config"
)

// A Kubernetes ConfigMap or Secret mounted as a volume, a package upgrade
// or an operator's edit changes the files in place. The watcher notices
// (by content, every interval; ConfigMaps are swapped through a symlink,
// which inotify on the file would miss) and
//   - for the detection rules directory, reloads the rules in place (the
//     same as SIGHUP);
//   - for the configuration file and the certificates it names, once they
//     stopped changing for one interval, loads and
//     validates the new configuration and, only if it is valid, restarts
//     the agent with it. An invalid one is reported once, naming the key,
//     and the running agent keeps its configuration.

// fingerprint hashes the contents of files and of the regular files in
// directories (one level), so any change in them changes it. A missing
// path hashes as missing.
func fingerprint(paths ...string) string {
	h := sha256.New()
	add := func(p string) {
		h.Write([]byte(p))
		b, err := os.ReadFile(p)
		if err != nil {
			h.Write([]byte{0})
			return
		}
		h.Write([]byte{1})
		h.Write(b)
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() {
			add(p)
			continue
		}
		entries, _ := os.ReadDir(p)
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			// Skip the ..data and timestamped directories of a mounted ConfigMap.
			if e.Name()[0] == '.' {
				continue
			}
			names = append(names, e.Name())
		}
		sort.Strings(names)
		for _, n := range names {
			if fi, err := os.Stat(filepath.Join(p, n)); err == nil && fi.Mode().IsRegular() {
				add(filepath.Join(p, n))
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// configFiles are the files whose change restarts the agent.
func configFiles(path string, cfg config.Config) []string {
	if path == "" {
		return nil
	}
	files := []string{path}
	if cfg.Output != config.OutputStdout {
		files = append(files, cfg.Collector.CA, cfg.Collector.Cert, cfg.Collector.Key)
	}
	return files
}

func rulesDir(cfg config.Config) string {
	if !cfg.Detection.Enabled {
		return ""
	}
	return cfg.Detection.RulesDir
}

// watcher polls the files of one run of the agent.
type watcher struct {
	interval   time.Duration
	path       string
	cfg        config.Config
	load       func() (config.Config, error)
	log        zerolog.Logger
	confPrint  string
	rulesPrint string
}

// newWatcher fingerprints the files as they are now.
func newWatcher(interval time.Duration, path string, cfg config.Config, load func() (config.Config, error), log zerolog.Logger) *watcher {
	return &watcher{
		interval: interval, path: path, cfg: cfg, load: load, log: log,
		confPrint: fingerprint(configFiles(path, cfg)...), rulesPrint: fingerprint(rulesDir(cfg)),
	}
}

// run polls until ctx ends. A changed rules directory sends on reload
// (without blocking); a changed, valid configuration is sent on restart
// and run returns.
func (w *watcher) run(ctx context.Context, reload chan<- os.Signal, restart chan<- config.Config) {
	refused, pending := "", ""
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if p := fingerprint(rulesDir(w.cfg)); p != w.rulesPrint {
			w.rulesPrint = p
			w.log.Info().Str("dir", rulesDir(w.cfg)).Msg("detection rules changed; reloading them")
			select {
			case reload <- syscall.SIGHUP:
			default:
			}
		}
		p := fingerprint(configFiles(w.path, w.cfg)...)
		if p == w.confPrint || p == refused {
			pending = ""
			continue
		}
		// A file being written in place (truncated, then filled) is read
		// only once it stopped changing for one interval: a half-written
		// configuration, an empty one included, must not restart the agent.
		if p != pending {
			pending = p
			continue
		}
		next, err := w.load()
		if err != nil {
			refused = p
			w.log.Error().Err(err).Str("config", w.path).Msg("the changed configuration is not valid; running on with the previous one")
			continue
		}
		w.log.Info().Str("config", w.path).Msg("configuration or certificates changed; restarting the agent with them")
		restart <- next
		return
	}
}
