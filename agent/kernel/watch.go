package kernel

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
)

// DefaultWatchReads is the read watch list: files and directories whose
// read-only opens are reported although read-only opens are not. "~/"
// stands for every home directory in /etc/passwd. Paths that do not exist
// cost nothing and are picked up when they appear.
var DefaultWatchReads = []string{
	// accounts and privilege
	"/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/security/opasswd",
	"/etc/sudoers", "/etc/sudoers.d",
	// SSH host and user keys
	"/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_dsa_key",
	"~/.ssh",
	// root's home, shell and tool histories
	"/root", "~/.bash_history", "~/.zsh_history", "~/.python_history", "~/.mysql_history", "~/.psql_history", "~/.lesshst",
	// cloud, container, source and database credentials
	"~/.aws", "~/.azure", "~/.config/gcloud", "~/.kube", "~/.docker/config.json", "~/.netrc", "~/.pgpass", "~/.git-credentials",
	// VPN and remote access
	"/etc/openvpn", "/etc/wireguard", "/etc/ipsec.secrets", "/etc/ppp/chap-secrets", "/etc/NetworkManager/system-connections",
	// engineering and HMI runtimes: PLC projects, tag databases, flow credentials
	"/var/opt/codesys", "/opt/plcnext/projects", "/usr/local/ignition/data", "~/.node-red",
}

// watchRefresh is how often the watch list is resolved again.
const watchRefresh = 10 * time.Second

// ValidateWatch names a bad entry of a watch list configured under key.
func ValidateWatch(key string, list []string) error {
	for i, p := range list {
		if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "~/") {
			return fmt.Errorf("%s[%d]: %q is neither an absolute path nor ~/path", key, i, p)
		}
	}
	return nil
}

// watchKeys resolves the watch list to the inodes of the paths that exist
// now; "~/" expands to each home directory of passwd (root is the file
// system to read it from: "/" on a host).
func watchKeys(root string, list []string) map[wpWpExeKey]string {
	var homes []string
	keys := make(map[wpWpExeKey]string)
	for _, p := range list {
		paths := []string{p}
		if rest, ok := strings.CutPrefix(p, "~/"); ok {
			if homes == nil {
				homes = homeDirs(filepath.Join(root, "etc/passwd"))
			}
			paths = paths[:0]
			for _, h := range homes {
				paths = append(paths, filepath.Join(h, rest))
			}
		}
		for _, path := range paths {
			fi, err := os.Stat(filepath.Join(root, path))
			if err != nil {
				continue
			}
			st := fi.Sys().(*syscall.Stat_t)
			keys[wpWpExeKey{Ino: st.Ino, Dev: kernelDev(st.Dev)}] = path
		}
	}
	return keys
}

// homeDirs lists the distinct home directories of passwd, "/" excepted.
func homeDirs(passwd string) []string {
	f, err := os.Open(passwd)
	if err != nil {
		return []string{}
	}
	defer f.Close()
	seen := map[string]bool{"/": true, "": true}
	out := []string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 7 || seen[fields[5]] || !strings.HasPrefix(fields[5], "/") {
			continue
		}
		seen[fields[5]] = true
		out = append(out, fields[5])
	}
	return out
}

// syncWatch writes the watch list's current inodes to the kernel's map and
// removes those that are gone (a file replaced by a rename has a new
// inode). It returns how many paths are watched.
func (s *Sensor) syncWatch() (int, error) {
	m := s.coll.Maps["wp_watch_reads"]
	want := watchKeys("/", s.cfg.Filters.WatchReads)
	var k wpWpExeKey
	var v uint8
	var stale []wpWpExeKey
	present := map[wpWpExeKey]bool{}
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; ok {
			present[k] = true
		} else {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("filters.watch_reads: reading the kernel's list: %w", err)
	}
	for _, k := range stale {
		_ = m.Delete(k)
	}
	for k, path := range want {
		if present[k] {
			continue
		}
		if err := m.Put(k, uint8(1)); err != nil {
			return 0, fmt.Errorf("filters.watch_reads: writing %s: %w", path, err)
		}
	}
	// When the list changed, directories the programs found clear may now
	// hold a watched inode (a new ~/.ssh): their cached misses expire.
	if len(stale) > 0 || len(present) < len(want) {
		if err := bumpGeneration(s.coll.Maps["wp_watch_gen"]); err != nil {
			return 0, fmt.Errorf("filters.watch_reads: %w", err)
		}
	}
	s.watched.Store(int64(len(want)))
	return len(want), nil
}

// watchLoop keeps the kernel's watch list current: paths that appear (a
// new ~/.ssh) and files replaced by a rename (passwd rewrites /etc/shadow)
// are watched within a refresh interval.
func (s *Sensor) watchLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.syncWatch(); err != nil {
				s.watchErrors.Add(1)
			}
		}
	}
}

// bumpGeneration adds one to the single counter of an array map.
func bumpGeneration(m *ebpf.Map) error {
	var gen uint64
	if err := m.Lookup(uint32(0), &gen); err != nil {
		return fmt.Errorf("reading the watch generation: %w", err)
	}
	if err := m.Put(uint32(0), gen+1); err != nil {
		return fmt.Errorf("writing the watch generation: %w", err)
	}
	return nil
}
