/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Maps and helpers shared by every Watchpost program. */
#ifndef WP_COMMON_H
#define WP_COMMON_H

/* -Wpadded is for our own wire structs, not for the kernel's. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"
#pragma clang diagnostic ignored "-Wpadded-bitfield"
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#pragma clang diagnostic pop
#include "../watchpost.h"

#ifndef BPF_RB_NO_WAKEUP
#define BPF_RB_NO_WAKEUP (1ULL << 0)
#define BPF_RB_FORCE_WAKEUP (1ULL << 1)
#define BPF_RB_AVAIL_DATA 0
#endif

/* The one ring buffer every event goes through. Its size is set by the
 * agent at load time (spec MaxEntries); this is only the default. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} wp_events SEC(".maps");

/* Per-CPU counters, index type * WP_STAT_MAX + stat (enum wp_stat). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WP_MAX_TYPES * WP_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} wp_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wp_config);
} wp_config_map SEC(".maps");

/* Keep the record types in the object's BTF so bpf2go can generate them. */
const struct wp_event_hdr *wp_unused_hdr __attribute__((unused));
const struct wp_exec_event *wp_unused_exec __attribute__((unused));
const struct wp_clone_event *wp_unused_clone __attribute__((unused));
const struct wp_exit_event *wp_unused_exit __attribute__((unused));
const struct wp_config *wp_unused_config __attribute__((unused));
const enum wp_event_type *wp_unused_type __attribute__((unused));
const enum wp_stat *wp_unused_stat __attribute__((unused));
const enum wp_flags *wp_unused_flags __attribute__((unused));
const enum wp_config_flags *wp_unused_cfg_flags __attribute__((unused));
const enum wp_args_split *wp_unused_args_split __attribute__((unused));

static __always_inline void wp_count(__u32 type, __u32 stat)
{
	__u32 key = type * WP_STAT_MAX + stat;
	__u64 *v = bpf_map_lookup_elem(&wp_stats, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline struct wp_config *wp_get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&wp_config_map, &zero);
}

/* wp_want counts the event as produced and decides whether the
 * configuration wants it. A suppressed event is counted as filtered. */
static __always_inline bool wp_want(__u32 type, struct wp_config **cfgp)
{
	wp_count(type, WP_STAT_PRODUCED);
	struct wp_config *cfg = wp_get_config();
	if (!cfg)
		return false;
	*cfgp = cfg;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!(cfg->event_mask & (1ULL << (type & 63))) || tgid == cfg->agent_tgid) {
		wp_count(type, WP_STAT_FILTERED);
		return false;
	}
	return true;
}

/* Submission flags: no wakeup per event (the wakeup is the dominant cost),
 * but force one when enough data is pending or the event is urgent. The
 * reader also polls on a slow timer as a backstop. */
static __always_inline __u64 wp_wakeup_flags(struct wp_config *cfg, bool urgent)
{
	if (urgent)
		return BPF_RB_FORCE_WAKEUP;
	if (bpf_ringbuf_query(&wp_events, BPF_RB_AVAIL_DATA) >= cfg->wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void wp_output(struct wp_config *cfg, void *data, __u64 size, __u32 type, bool urgent)
{
	if (bpf_ringbuf_output(&wp_events, data, size, wp_wakeup_flags(cfg, urgent)))
		wp_count(type, WP_STAT_RING_FULL);
	else
		wp_count(type, WP_STAT_EMITTED);
}

static __always_inline void wp_fill_hdr(struct wp_event_hdr *h, __u16 type, struct task_struct *task)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	h->type = type;
	h->flags = 0;
	h->cpu = bpf_get_smp_processor_id();
	h->ts_boot_ns = bpf_ktime_get_boot_ns();
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = (__u32)uid_gid;
	h->gid = uid_gid >> 32;
	h->_pad0 = 0;
	h->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

#endif /* WP_COMMON_H */
