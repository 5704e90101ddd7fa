/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Response: programs that act on the agent's policies.
 *
 * The agent compiles its policies into rules, one array per hook, and into
 * masks: bit N (N < 32) of a mask stands for the policy the agent gave
 * index N. An executable (by inode) or a cgroup carries the bits of the
 * policies whose selector names it ("sel", and bit N + 32 when the
 * policy's ancestor selector names it) and of those whose allowlist names
 * it ("allow").
 * Each process carries the masks of its image and the union of its
 * ancestors' images ("anc"), set at exec, inherited at fork, and seeded by
 * the agent from /proc for processes that were already running.
 *
 * Every table exists twice (generation 0 and 1); the agent writes the idle
 * generation and then flips wp_resp_config.active in one map write, so a
 * reload swaps every rule and mask at once.
 *
 * Hooks: tp_btf/sched_process_exec (SIGKILL before the new image's first
 * instruction), cgroup/connect4/6 and sendmsg4/6 (EPERM), cgroup/sock_create
 * (EPERM), cgroup/dev (EPERM). None of them acts on pid 1, on the agent or
 * on a process whose image the agent marked protected. In monitor mode a
 * rule only reports what it would have done.
 */
#ifndef WP_RESPOND_H
#define WP_RESPOND_H

#include "lib/common.h"

#ifndef WP_AF_INET
#define WP_AF_INET 2
#define WP_AF_INET6 10
#endif

#define WP_RESP_SIGKILL 9

enum wp_resp_limit {
	WP_RESP_RULES = 32,     /* rules per hook and generation */
	WP_RESP_CG_DEPTH = 16,  /* cgroup levels looked at, from the root down */
};

enum wp_resp_hook {
	WP_RESP_HOOK_EXEC = 0,
	WP_RESP_HOOK_CONNECT = 1, /* connect and unconnected UDP sends */
	WP_RESP_HOOK_SOCKET = 2,
	WP_RESP_HOOK_DEVICE = 3,
	WP_RESP_HOOKS = 4,
};

/* What a rule needs of the process, beyond not being allowlisted. */
enum wp_resp_need {
	WP_RESP_NEED_EXE = 1 << 0,    /* its image is named by the selector */
	WP_RESP_NEED_ANC = 1 << 1,    /* an ancestor's (or an earlier) image is */
	WP_RESP_NEED_CGROUP = 1 << 2, /* its cgroup or one above it is */
	WP_RESP_NEED_UID = 1 << 3,    /* its real uid is the rule's */
};

enum wp_resp_mode {
	WP_RESP_MONITOR = 0,
	WP_RESP_ENFORCE = 1,
};

/* Flags of the masks and of the response records. */
enum wp_resp_flags {
	WP_RESP_F_PROTECTED = 1 << 0, /* masks: never act on this image */
	WP_RESP_F_ENFORCED = 1 << 1,  /* record: the action was taken */
	WP_RESP_F_SIGNAL_FAILED = 1 << 2, /* record: bpf_send_signal refused */
	WP_RESP_F_SENDMSG = 1 << 3,   /* record: an unconnected UDP send, not a connect */
	WP_RESP_F_SIGNAL = 1 << 4,    /* record: enforced with SIGKILL at syscall entry */
};

struct wp_resp_rule {
	__u32 policy;     /* the policy's index (< 32): its bit in the masks */
	__u32 uid;        /* WP_RESP_NEED_UID */
	__u8 mode;        /* enum wp_resp_mode */
	__u8 need;        /* enum wp_resp_need */
	__u16 family;     /* connect, socket: AF_*, 0 any */
	__u16 protocol;   /* connect: IPPROTO_TCP/UDP, 0 any; socket: protocol, 0xffff any */
	__u16 sock_type;  /* socket: SOCK_*, 0 any */
	__u16 port_lo;    /* connect: destination port range, host order */
	__u16 port_hi;
	__u16 dev_type;   /* device: BPF_DEVCG_DEV_BLOCK (1) or _CHAR (2), 0 any */
	__u16 dev_access; /* device: BPF_DEVCG_ACC_* denied (mknod 1, read 2, write 4) */
	__u32 dev_major;  /* 0xffffffff any */
	__u32 dev_minor_lo;
	__u32 dev_minor_hi;
	__u32 prefixlen;  /* connect: leading bits of addr to match (v4-mapped for IPv4) */
	__u8 addr[16];
};

/* Per executable (key struct wp_exe_key) and per cgroup (key: cgroup id). */
struct wp_resp_masks {
	__u64 sel[2];
	__u64 allow[2];
	__u32 flags; /* WP_RESP_F_PROTECTED */
	__u32 _pad0;
};

/* Per process (key: tgid). */
struct wp_resp_proc {
	__u64 sel[2];
	__u64 anc[2];
	__u64 allow[2];
	__u32 flags;
	__u32 _pad0;
};

struct wp_resp_config {
	__u32 active;                      /* the generation in force */
	__u32 cgroups;                     /* 1 when the cgroup masks have entries */
	__u32 count[2][WP_RESP_HOOKS];     /* rules per generation and hook */
};

/* WP_EV_RESP_*: a rule matched; in monitor mode nothing was done. */
struct wp_resp_event {
	struct wp_event_hdr hdr;
	__u32 policy;
	__u32 rule;
	__u32 generation;
	__u16 resp_flags; /* enum wp_resp_flags */
	__u16 family;
	__u16 sock_type;
	__u16 protocol;
	__u16 dport;
	__u16 dev_access;
	__u32 dev_type;
	__u32 dev_major;
	__u32 dev_minor;
	__u32 exe_dev;
	__u64 exe_ino;
	__u8 daddr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * WP_RESP_HOOKS * WP_RESP_RULES);
	__type(key, __u32);
	__type(value, struct wp_resp_rule);
} wp_resp_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct wp_exe_key);
	__type(value, struct wp_resp_masks);
} wp_resp_exes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct wp_resp_masks);
} wp_resp_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct wp_resp_proc);
} wp_resp_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wp_resp_config);
} wp_resp_config_map SEC(".maps");

const struct wp_resp_rule *wp_unused_resp_rule __attribute__((unused));
const struct wp_resp_masks *wp_unused_resp_masks __attribute__((unused));
const struct wp_resp_proc *wp_unused_resp_proc __attribute__((unused));
const struct wp_resp_config *wp_unused_resp_config __attribute__((unused));
const struct wp_resp_event *wp_unused_resp_event __attribute__((unused));
const enum wp_resp_limit *wp_unused_resp_limit __attribute__((unused));
const enum wp_resp_hook *wp_unused_resp_hook __attribute__((unused));
const enum wp_resp_need *wp_unused_resp_need __attribute__((unused));
const enum wp_resp_mode *wp_unused_resp_mode __attribute__((unused));
const enum wp_resp_flags *wp_unused_resp_flags __attribute__((unused));

/* The process a hook runs for, as the rules see it. */
struct wp_resp_who {
	__u64 sel;
	__u64 anc;
	__u64 cgsel;
	__u64 allow;
	__u32 uid;
	__u32 gen;
};

static __always_inline struct wp_resp_config *wp_resp_get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&wp_resp_config_map, &zero);
}

/* Set by the agent when tracing and tracepoint programs may call
 * bpf_get_current_ancestor_cgroup_id (kernel >= 5.14; cgroup programs have
 * it on every supported kernel). Without it they read the ids from the
 * task's cgroup, whose layout before 6.0 keeps them in ancestor_ids[]; the
 * verifier drops whichever branch the constant rules out. */
volatile const __u32 wp_tracing_ancestor_cgroup_helper = 0;

struct cgroup___pre60 {
	int level;
	int pad_; /* never read: the offsets come from the kernel's BTF */
	__u64 ancestor_ids[];
} __attribute__((preserve_access_index));

static __always_inline __u64 wp_resp_task_ancestor_cgroup_id(int level)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct cgroup___pre60 *cg = (void *)BPF_CORE_READ(t, cgroups, dfl_cgrp);
	if (!cg || level > BPF_CORE_READ(cg, level))
		return 0;
	__u64 id = 0;
	bpf_probe_read_kernel(&id, sizeof(id),
			      (void *)cg + bpf_core_field_offset(struct cgroup___pre60, ancestor_ids) + level * sizeof(id));
	return id;
}

/* wp_resp_cgroup_masks adds the masks of the current cgroup and of every
 * cgroup above it; tracing says whether a tracing or tracepoint program
 * asks. */
static __always_inline void wp_resp_cgroup_masks(struct wp_resp_who *w, bool tracing)
{
	for (int level = 0; level < WP_RESP_CG_DEPTH; level++) {
		__u64 id;
		if (tracing && !wp_tracing_ancestor_cgroup_helper)
			id = wp_resp_task_ancestor_cgroup_id(level);
		else
			id = bpf_get_current_ancestor_cgroup_id(level);
		if (!id)
			break;
		struct wp_resp_masks *m = bpf_map_lookup_elem(&wp_resp_cgroups, &id);
		if (!m)
			continue;
		w->cgsel |= m->sel[w->gen & 1];
		w->allow |= m->allow[w->gen & 1];
	}
}

/* wp_resp_who_current fills w for the current process; false when it is
 * never acted on (pid 1, the agent, a protected image). */
static __always_inline bool wp_resp_who_current(struct wp_resp_config *rc, struct wp_resp_who *w, bool tracing)
{
	struct wp_config *cfg = wp_get_config();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!cfg || tgid <= 1 || tgid == cfg->agent_tgid)
		return false;
	w->gen = rc->active & 1;
	w->uid = (__u32)bpf_get_current_uid_gid();
	struct wp_resp_proc *p = bpf_map_lookup_elem(&wp_resp_procs, &tgid);
	if (p) {
		if (p->flags & WP_RESP_F_PROTECTED)
			return false;
		w->sel = p->sel[w->gen];
		w->anc = p->anc[w->gen];
		w->allow = p->allow[w->gen];
	}
	if (rc->cgroups)
		wp_resp_cgroup_masks(w, tracing);
	return true;
}

static __always_inline bool wp_resp_applies(const struct wp_resp_rule *r, const struct wp_resp_who *w)
{
	__u64 bit = 1ULL << (r->policy & 31);
	if ((r->need & WP_RESP_NEED_EXE) && !(w->sel & bit))
		return false;
	if ((r->need & WP_RESP_NEED_ANC) && !(w->anc & (bit << 32)))
		return false;
	if ((r->need & WP_RESP_NEED_CGROUP) && !(w->cgsel & bit))
		return false;
	if ((r->need & WP_RESP_NEED_UID) && w->uid != r->uid)
		return false;
	return !(w->allow & bit);
}

static __always_inline struct wp_resp_rule *wp_resp_rule_at(__u32 gen, __u32 hook, __u32 i)
{
	__u32 idx = ((gen & 1) * WP_RESP_HOOKS + hook) * WP_RESP_RULES + i;
	return bpf_map_lookup_elem(&wp_resp_rules, &idx);
}

/* wp_resp_report sends the record of a matched rule. */
static __always_inline void wp_resp_report(struct wp_resp_event *e, __u16 type, const struct wp_resp_rule *r, __u32 i,
					   const struct wp_resp_who *w)
{
	struct wp_config *cfg = wp_get_config();
	if (!cfg)
		return;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	e->hdr.type = type;
	e->hdr.cpu = bpf_get_smp_processor_id();
	e->hdr.ts_boot_ns = bpf_ktime_get_boot_ns();
	e->hdr.pid = pid_tgid >> 32;
	e->hdr.tid = (__u32)pid_tgid;
	e->hdr.uid = (__u32)uid_gid;
	e->hdr.gid = uid_gid >> 32;
	e->hdr.cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->hdr.comm, sizeof(e->hdr.comm));
	e->policy = r->policy;
	e->rule = i;
	e->generation = w->gen;
	wp_count(type, WP_STAT_PRODUCED);
	wp_output(cfg, e, sizeof(*e), type, true);
}

/* wp_resp_match runs the rules of a hook for the current process; target
 * decides whether a rule's target (destination, socket kind, device) is
 * the one at hand, act runs before the record of an enforcing rule is
 * sent. The first enforcing rule ends the walk. Returns the verdict of
 * cgroup programs: 1 allow, 0 deny. */
#define WP_RESP_MATCH(hook, type, ev, target, act, tracing)                                          \
	({                                                                                     \
		int verdict_ = 1;                                                              \
		struct wp_resp_config *rc_ = wp_resp_get_config();                              \
		struct wp_resp_who w_ = {};                                                    \
		if (rc_ && rc_->count[rc_->active & 1][hook] && wp_resp_who_current(rc_, &w_, tracing)) { \
			__u32 n_ = rc_->count[w_.gen][hook];                                   \
			for (__u32 i = 0; i < WP_RESP_RULES; i++) {                            \
				if (i >= n_)                                                   \
					break;                                                 \
				struct wp_resp_rule *r = wp_resp_rule_at(w_.gen, hook, i);     \
				if (!r || !wp_resp_applies(r, &w_) || !(target))               \
					continue;                                              \
				if (r->mode == WP_RESP_ENFORCE) {                              \
					(ev)->resp_flags |= WP_RESP_F_ENFORCED;                \
					verdict_ = 0;                                          \
					act;                                                   \
				}                                                              \
				wp_resp_report(ev, type, r, i, &w_);                           \
				if (!verdict_)                                                 \
					break;                                                 \
			}                                                                      \
		}                                                                              \
		verdict_;                                                                      \
	})

/* wp_resp_word_match compares 32-bit word w (network order) of two
 * addresses under a prefix of bits leading bits. */
static __always_inline bool wp_resp_word_match(__u32 a, __u32 b, __u32 bits, __u32 w)
{
	__u32 skip = 32 * w;
	if (bits <= skip)
		return true;
	__u32 n = bits - skip;
	__u32 mask = n >= 32 ? 0xffffffff : ~(0xffffffffU >> n);
	return ((bpf_ntohl(a) ^ bpf_ntohl(b)) & mask) == 0;
}

static __always_inline bool wp_resp_addr_match(const struct wp_resp_rule *r, const __u8 *addr)
{
	const __u32 *a = (const __u32 *)addr;
	const __u32 *b = (const __u32 *)r->addr;
	__u32 bits = r->prefixlen;
	return wp_resp_word_match(a[0], b[0], bits, 0) && wp_resp_word_match(a[1], b[1], bits, 1) &&
	       wp_resp_word_match(a[2], b[2], bits, 2) && wp_resp_word_match(a[3], b[3], bits, 3);
}

static __always_inline bool wp_resp_net_match(const struct wp_resp_rule *r, const struct wp_resp_event *e)
{
	if (r->family && r->family != e->family)
		return false;
	if (r->protocol && r->protocol != e->protocol)
		return false;
	if (e->dport < r->port_lo || e->dport > r->port_hi)
		return false;
	return wp_resp_addr_match(r, e->daddr);
}

static __always_inline int wp_resp_connect(struct bpf_sock_addr *ctx, struct wp_resp_event *e, bool v6)
{
	e->family = v6 ? WP_AF_INET6 : WP_AF_INET;
	e->sock_type = ctx->type;
	e->protocol = ctx->protocol;
	e->dport = bpf_ntohs((__u16)ctx->user_port);
	if (v6) {
		__u32 *a = (__u32 *)e->daddr;
		a[0] = ctx->user_ip6[0];
		a[1] = ctx->user_ip6[1];
		a[2] = ctx->user_ip6[2];
		a[3] = ctx->user_ip6[3];
	} else {
		/* IPv4 as v4-mapped IPv6, so one prefix form serves both */
		e->daddr[10] = 0xff;
		e->daddr[11] = 0xff;
		*(__u32 *)&e->daddr[12] = ctx->user_ip4;
	}
	return WP_RESP_MATCH(WP_RESP_HOOK_CONNECT, WP_EV_RESP_CONNECT, e, wp_resp_net_match(r, e), {}, false);
}

SEC("cgroup/connect4")
int wp_respond_connect4(struct bpf_sock_addr *ctx)
{
	struct wp_resp_event e = {};
	return wp_resp_connect(ctx, &e, false);
}

SEC("cgroup/connect6")
int wp_respond_connect6(struct bpf_sock_addr *ctx)
{
	struct wp_resp_event e = {};
	return wp_resp_connect(ctx, &e, true);
}

SEC("cgroup/sendmsg4")
int wp_respond_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct wp_resp_event e = {.resp_flags = WP_RESP_F_SENDMSG};
	return wp_resp_connect(ctx, &e, false);
}

SEC("cgroup/sendmsg6")
int wp_respond_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct wp_resp_event e = {.resp_flags = WP_RESP_F_SENDMSG};
	return wp_resp_connect(ctx, &e, true);
}

static __always_inline bool wp_resp_sock_match(const struct wp_resp_rule *r, const struct wp_resp_event *e)
{
	if (r->family && r->family != e->family)
		return false;
	if (r->sock_type && r->sock_type != e->sock_type)
		return false;
	return r->protocol == 0xffff || r->protocol == e->protocol;
}

SEC("cgroup/sock_create")
int wp_respond_sock_create(struct bpf_sock *sk)
{
	struct wp_resp_event e = {};
	e.family = sk->family;
	e.sock_type = sk->type;
	e.protocol = sk->protocol;
	return WP_RESP_MATCH(WP_RESP_HOOK_SOCKET, WP_EV_RESP_SOCKET, &e, wp_resp_sock_match(r, &e), {}, false);
}

/* cgroup/sock_create runs only for inet and inet6 sockets (inet_create,
 * inet6_create); other families (packet, netlink ...) are handled at the
 * entry of socket(2), where the only enforcement is a signal: the caller
 * is killed before socket() returns, and the socket is closed with it. */
SEC("tracepoint/syscalls/sys_enter_socket")
int wp_respond_socket_enter(struct trace_event_raw_sys_enter *ctx)
{
	struct wp_resp_event e = {.resp_flags = WP_RESP_F_SIGNAL};
	e.family = ctx->args[0];
	if (e.family == WP_AF_INET || e.family == WP_AF_INET6)
		return 0;
	e.sock_type = ctx->args[1] & 0xf; /* without SOCK_NONBLOCK, SOCK_CLOEXEC */
	e.protocol = ctx->args[2];
	WP_RESP_MATCH(WP_RESP_HOOK_SOCKET, WP_EV_RESP_SOCKET, &e, wp_resp_sock_match(r, &e), {
		if (bpf_send_signal(WP_RESP_SIGKILL))
			e.resp_flags |= WP_RESP_F_SIGNAL_FAILED;
	}, true);
	return 0;
}

static __always_inline bool wp_resp_dev_match(const struct wp_resp_rule *r, const struct wp_resp_event *e)
{
	if (r->dev_type && r->dev_type != e->dev_type)
		return false;
	if (!(r->dev_access & e->dev_access))
		return false;
	if (r->dev_major != 0xffffffff && r->dev_major != e->dev_major)
		return false;
	return e->dev_minor >= r->dev_minor_lo && e->dev_minor <= r->dev_minor_hi;
}

SEC("cgroup/dev")
int wp_respond_dev(struct bpf_cgroup_dev_ctx *ctx)
{
	struct wp_resp_event e = {};
	e.dev_type = ctx->access_type & 0xffff;
	e.dev_access = ctx->access_type >> 16;
	e.dev_major = ctx->major;
	e.dev_minor = ctx->minor;
	return WP_RESP_MATCH(WP_RESP_HOOK_DEVICE, WP_EV_RESP_DEVICE, &e, wp_resp_dev_match(r, &e), {}, false);
}

/* The new image's masks: its own from the executable table, its
 * ancestors' from the process before exec (its earlier image and, through
 * fork, its parents'). */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(wp_respond_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct wp_resp_proc np = {};
	struct wp_resp_proc *old = bpf_map_lookup_elem(&wp_resp_procs, &tgid);
	if (old) {
		np.anc[0] = old->anc[0] | old->sel[0];
		np.anc[1] = old->anc[1] | old->sel[1];
	}
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	struct wp_exe_key key = {};
	key.ino = BPF_CORE_READ(exe, f_inode, i_ino);
	key.dev = BPF_CORE_READ(exe, f_inode, i_sb, s_dev);
	struct wp_resp_masks *m = bpf_map_lookup_elem(&wp_resp_exes, &key);
	if (m) {
		np.sel[0] = m->sel[0];
		np.sel[1] = m->sel[1];
		np.allow[0] = m->allow[0];
		np.allow[1] = m->allow[1];
		np.flags = m->flags;
	}
	if (old || m)
		bpf_map_update_elem(&wp_resp_procs, &tgid, &np, BPF_ANY);

	struct wp_resp_event e = {};
	e.exe_ino = key.ino;
	e.exe_dev = key.dev;
	/* The signal lands before the return to user space: the new image
	 * never runs its first instruction. */
	WP_RESP_MATCH(WP_RESP_HOOK_EXEC, WP_EV_RESP_EXEC, &e, true, {
		if (bpf_send_signal(WP_RESP_SIGKILL))
			e.resp_flags |= WP_RESP_F_SIGNAL_FAILED;
	}, true);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(wp_respond_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	if (ptgid == ctgid)
		return 0; /* a thread */
	struct wp_resp_proc *p = bpf_map_lookup_elem(&wp_resp_procs, &ptgid);
	if (p) {
		struct wp_resp_proc c = *p;
		bpf_map_update_elem(&wp_resp_procs, &ctgid, &c, BPF_ANY);
	}
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(wp_respond_exit, struct task_struct *task)
{
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	__u32 tgid = BPF_CORE_READ(task, tgid);
	bpf_map_delete_elem(&wp_resp_procs, &tgid);
	return 0;
}

#endif /* WP_RESPOND_H */
