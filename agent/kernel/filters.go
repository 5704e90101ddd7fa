package kernel

import (
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
)

// Filters are applied in the kernel, before an event costs ring space.
// Every event they suppress is counted as filtered (or rate_limited).
type Filters struct {
	// ReadOpens reports read-only opens of regular files (device opens
	// and refused opens are always reported).
	ReadOpens bool
	// NotFoundOpens reports read-only opens failing with ENOENT or
	// ENOTDIR (the loader's and locale's search paths); they are counted
	// as filtered otherwise. Other failures are always reported.
	NotFoundOpens bool
	// WatchReads are files and directories (matched by inode; a directory
	// covers 6 levels below it) whose read-only opens are reported anyway,
	// marked watched; "~/" stands for every home directory.
	WatchReads []string
	// RatePerSec and RateBurst bound file events per process (a token
	// bucket); 0 disables the limit. Process and security events are never
	// rate limited.
	RatePerSec uint64
	RateBurst  uint64
	// UserRatePerSec and UserRateBurst bound file events per user (uid):
	// all processes of a user share one bucket, so a fork loop cannot
	// escape the per-process limit; 0 disables it.
	UserRatePerSec uint64
	UserRateBurst  uint64
	// FlowTimeout: a UDP flow idle this long is reported again.
	FlowTimeout time.Duration

	IncludeCgroups, ExcludeCgroups []uint64 // cgroup v2 ids
	IncludeExes, ExcludeExes       []string // executable paths, matched by inode
	IncludePaths, ExcludePaths     []string // byte prefixes of file paths (at most 256 bytes)
	IncludeCIDRs, ExcludeCIDRs     []netip.Prefix
	IncludePorts, ExcludePorts     []uint16
}

// DefaultFilters returns the documented defaults.
func DefaultFilters() Filters {
	return Filters{RatePerSec: 2000, RateBurst: 4000, UserRatePerSec: 10000, UserRateBurst: 20000, FlowTimeout: 5 * time.Minute,
		WatchReads: append([]string(nil), DefaultWatchReads...)}
}

// Validate names the bad setting.
func (f Filters) Validate() error {
	if f.RatePerSec > 0 && f.RateBurst < 1 {
		return fmt.Errorf("filters.rate_limit.burst: must be at least 1 when per_second is set")
	}
	if f.UserRatePerSec > 0 && f.UserRateBurst < 1 {
		return fmt.Errorf("filters.rate_limit.user_burst: must be at least 1 when user_per_second is set")
	}
	if f.FlowTimeout < time.Second {
		return fmt.Errorf("filters.udp_flow_timeout: %s is below 1s", f.FlowTimeout)
	}
	if err := ValidateWatch("filters.watch_reads", f.WatchReads); err != nil {
		return err
	}
	for i, p := range append(append([]string(nil), f.IncludePaths...), f.ExcludePaths...) {
		if p == "" || p[0] != '/' {
			return fmt.Errorf("filters.paths[%d]: %q is not an absolute path prefix", i, p)
		}
		if len(p) > int(wpPrefixMax) {
			return fmt.Errorf("filters.paths[%d]: %q is longer than %d bytes", i, p, wpPrefixMax)
		}
	}
	return nil
}

const wpPrefixMax = len(wpWpPathKey{}.Path)

// kernelDev converts a user-space dev_t to the kernel's internal encoding
// (major << 20 | minor), as found in super_block.s_dev.
func kernelDev(dev uint64) uint32 {
	return unix.Major(dev)<<20 | unix.Minor(dev)
}

func exeKey(path string) (wpWpExeKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return wpWpExeKey{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return wpWpExeKey{Ino: st.Ino, Dev: kernelDev(st.Dev)}, nil
}

// applyFilters writes the filter maps and returns the configuration flags
// that switch them on.
func (s *Sensor) applyFilters(f Filters) (uint32, error) {
	var flags uint32
	include, exclude := uint8(wpWpFilterActionWP_FILTER_INCLUDE), uint8(wpWpFilterActionWP_FILTER_EXCLUDE)
	if f.NotFoundOpens {
		flags |= uint32(wpWpConfigFlagsWP_CFG_ALL_FAILED_OPENS)
	}
	if f.ReadOpens {
		flags |= uint32(wpWpConfigFlagsWP_CFG_READ_OPENS)
	}
	if f.RatePerSec > 0 {
		flags |= uint32(wpWpConfigFlagsWP_CFG_RATE_LIMIT)
	}
	if f.UserRatePerSec > 0 {
		flags |= uint32(wpWpConfigFlagsWP_CFG_USER_RATE_LIMIT)
	}
	if len(f.WatchReads) > 0 {
		if _, err := s.syncWatch(); err != nil {
			return 0, err
		}
		flags |= uint32(wpWpConfigFlagsWP_CFG_WATCH_READS)
		// A directory found clear of watched inodes is cached until the
		// next rename, which only works while renames reach the programs.
		if s.cfg.eventMask()&(1<<uint(event.KindFileRename)) != 0 {
			flags |= uint32(wpWpConfigFlagsWP_CFG_WATCH_CACHE)
		}
	}

	cg := s.coll.Maps["wp_cgroup_filter"]
	for _, list := range []struct {
		ids []uint64
		act uint8
	}{{f.IncludeCgroups, include}, {f.ExcludeCgroups, exclude}} {
		for _, id := range list.ids {
			if err := cg.Put(id, list.act); err != nil {
				return 0, fmt.Errorf("filters.cgroups: writing %d: %w", id, err)
			}
			flags |= uint32(wpWpConfigFlagsWP_CFG_CGROUP_FILTER)
		}
	}
	if len(f.IncludeCgroups) > 0 {
		flags |= uint32(wpWpConfigFlagsWP_CFG_CGROUP_INCLUDE)
	}

	exes := s.coll.Maps["wp_exe_filter"]
	for _, list := range []struct {
		paths []string
		act   uint8
	}{{f.IncludeExes, include}, {f.ExcludeExes, exclude}} {
		for i, p := range list.paths {
			k, err := exeKey(p)
			if err != nil {
				return 0, fmt.Errorf("filters.executables[%d]: %w", i, err)
			}
			if err := exes.Put(k, list.act); err != nil {
				return 0, fmt.Errorf("filters.executables[%d]: writing %s: %w", i, p, err)
			}
			flags |= uint32(wpWpConfigFlagsWP_CFG_EXE_FILTER)
		}
	}
	if len(f.IncludeExes) > 0 {
		flags |= uint32(wpWpConfigFlagsWP_CFG_EXE_INCLUDE)
	}

	paths := s.coll.Maps["wp_path_filter"]
	for _, list := range []struct {
		prefixes []string
		act      uint8
	}{{f.IncludePaths, include}, {f.ExcludePaths, exclude}} {
		for _, p := range list.prefixes {
			var k wpWpPathKey
			k.Prefixlen = uint32(len(p) * 8)
			for i := 0; i < len(p); i++ {
				k.Path[i] = int8(p[i])
			}
			if err := paths.Put(k, list.act); err != nil {
				return 0, fmt.Errorf("filters.paths: writing %q: %w", p, err)
			}
			flags |= uint32(wpWpConfigFlagsWP_CFG_PATH_FILTER)
		}
	}
	if len(f.IncludePaths) > 0 {
		flags |= uint32(wpWpConfigFlagsWP_CFG_PATH_INCLUDE)
	}

	cidrs := s.coll.Maps["wp_cidr_filter"]
	for _, list := range []struct {
		prefixes []netip.Prefix
		act      uint8
	}{{f.IncludeCIDRs, include}, {f.ExcludeCIDRs, exclude}} {
		for _, p := range list.prefixes {
			var k wpWpCidrKey
			bits := p.Bits()
			if p.Addr().Is4() {
				bits += 96 // stored v4-mapped
			}
			k.Prefixlen = uint32(bits)
			k.Addr = netip.AddrFrom16(p.Addr().As16()).As16()
			if err := cidrs.Put(k, list.act); err != nil {
				return 0, fmt.Errorf("filters.networks: writing %s: %w", p, err)
			}
			flags |= uint32(wpWpConfigFlagsWP_CFG_NET_FILTER)
		}
	}
	ports := s.coll.Maps["wp_port_filter"]
	for _, list := range []struct {
		ports []uint16
		act   uint8
	}{{f.IncludePorts, include}, {f.ExcludePorts, exclude}} {
		for _, p := range list.ports {
			if err := ports.Put(p, list.act); err != nil {
				return 0, fmt.Errorf("filters.ports: writing %d: %w", p, err)
			}
			flags |= uint32(wpWpConfigFlagsWP_CFG_NET_FILTER)
		}
	}
	if len(f.IncludeCIDRs) > 0 || len(f.IncludePorts) > 0 {
		flags |= uint32(wpWpConfigFlagsWP_CFG_NET_INCLUDE)
	}
	return flags, nil
}
