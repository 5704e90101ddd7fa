/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Network events: connect, accept, listen, bind, raw/packet socket
 * creation from syscall exits (the caller's context, so the right process);
 * TCP close with byte counts from the sock state tracepoint, attributed to
 * the socket's owner; UDP as flows: the first datagram per process,
 * direction and peer, from a flow table in the kernel. */
#ifndef WP_NET_H
#define WP_NET_H

#include "lib/syscall.h"
#include "ics.h"

#define WP_AF_INET 2
#define WP_AF_INET6 10
#define WP_AF_NETLINK 16
#define WP_AF_PACKET 17
#define WP_NETLINK_ROUTE 0
#define WP_SOCK_RAW 3
#define WP_IPPROTO_TCP 6
#define WP_IPPROTO_UDP 17
#define WP_TCP_ESTABLISHED 1
#define WP_TCP_SYN_SENT 2
#define WP_TCP_FIN_WAIT2 5
#define WP_TCP_CLOSE 7
#define WP_TCP_CLOSE_WAIT 8
#define WP_TCP_CLOSING 11
#define WP_EINPROGRESS 115
#define WP_ECONNABORTED 103

/* The process that owns a tracked TCP socket, and the connection as it
 * was when the process made or accepted it (the local port is released
 * before the close is traced). */
struct wp_sock_owner {
	struct wp_event_hdr hdr;
	__u64 start_ns;
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u8 fin_seen; /* the peer's FIN arrived: it is counted in bytes_received */
	__u8 pending;  /* a non-blocking connect whose outcome is not yet reported */
	__u8 saddr[16];
	__u8 daddr[16];
};

struct wp_flow_key {
	__u32 tgid;
	__u16 lport;
	__u16 rport;
	__u8 raddr[16];
	__u8 dir;
	__u8 proto;
	__u16 _pad0;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct wp_sock_owner);
} wp_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct wp_flow_key);
	__type(value, __u64);
} wp_flows SEC(".maps");

const struct wp_net_event *wp_unused_net __attribute__((unused));

/* wp_sock_addrs fills family, ports and addresses from a socket. */
static __always_inline void wp_sock_addrs(struct wp_net_event *e, struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->family = family;
	e->sock_type = BPF_CORE_READ(sk, sk_type);
	e->protocol = BPF_CORE_READ(sk, sk_protocol);
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	/* A socket that closed releases its port (skc_num is 0, a connect
	 * refused inside its call): the port it used stays in inet_sport. */
	if (!e->sport)
		e->sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__builtin_memset(e->saddr, 0, sizeof(e->saddr));
	__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	if (family == WP_AF_INET) {
		bpf_core_read(e->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(e->daddr, 4, &sk->__sk_common.skc_daddr);
	} else if (family == WP_AF_INET6) {
		bpf_core_read(e->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

/* wp_user_sockaddr reads a peer address a process passed or received. */
static __always_inline bool wp_user_sockaddr(struct wp_net_event *e, __u64 uaddr)
{
	if (!uaddr)
		return false;
	__u16 family = 0;
	if (bpf_probe_read_user(&family, sizeof(family), (const void *)uaddr))
		return false;
	if (family == WP_AF_INET) {
		struct sockaddr_in sin = {};
		bpf_probe_read_user(&sin, sizeof(sin), (const void *)uaddr);
		e->dport = bpf_ntohs(sin.sin_port);
		__builtin_memset(e->daddr, 0, sizeof(e->daddr));
		__builtin_memcpy(e->daddr, &sin.sin_addr, 4);
		return true;
	}
	if (family == WP_AF_INET6) {
		struct sockaddr_in6 sin6 = {};
		bpf_probe_read_user(&sin6, sizeof(sin6), (const void *)uaddr);
		e->dport = bpf_ntohs(sin6.sin6_port);
		__builtin_memcpy(e->daddr, &sin6.sin6_addr, 16);
		return true;
	}
	return false;
}

/* wp_peer_filtered applies the CIDR and port filters to the peer. */
static __always_inline bool wp_peer_filtered(struct wp_config *cfg, struct wp_net_event *e)
{
	if (!(cfg->flags & WP_CFG_NET_FILTER))
		return false;
	struct wp_cidr_key k = {.prefixlen = 128};
	if (e->family == WP_AF_INET) {
		/* IPv4 as v4-mapped IPv6, so one trie serves both */
		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
		__builtin_memcpy(&k.addr[12], e->daddr, 4);
	} else {
		__builtin_memcpy(k.addr, e->daddr, 16);
	}
	__u8 *cidr = bpf_map_lookup_elem(&wp_cidr_filter, &k);
	__u16 dport = e->dport, sport = e->sport;
	__u8 *p1 = bpf_map_lookup_elem(&wp_port_filter, &dport);
	__u8 *p2 = bpf_map_lookup_elem(&wp_port_filter, &sport);
	if ((cidr && *cidr == WP_FILTER_EXCLUDE) || (p1 && *p1 == WP_FILTER_EXCLUDE) || (p2 && *p2 == WP_FILTER_EXCLUDE))
		return true;
	if (cfg->flags & WP_CFG_NET_INCLUDE) {
		bool inc = (cidr && *cidr == WP_FILTER_INCLUDE) || (p1 && *p1 == WP_FILTER_INCLUDE) ||
			   (p2 && *p2 == WP_FILTER_INCLUDE);
		return !inc;
	}
	return false;
}

/* wp_msg_name returns the user pointer to the peer address of a send or
 * receive call, or 0. */
static __always_inline __u64 wp_msg_name(struct wp_sys_desc *d, struct wp_sys_args *a)
{
	if (d->str_idx != WP_ARG_NONE) /* sendto / recvfrom: the address argument */
		return wp_arg(a, d->str_idx);
	if (d->str2_idx != WP_ARG_NONE) { /* sendmsg / recvmsg / *mmsg: msghdr->msg_name */
		__u64 name = 0;
		bpf_probe_read_user(&name, sizeof(name), (const void *)wp_arg(a, d->str2_idx));
		return name;
	}
	return 0;
}

/* wp_owner_event fills an event of a tracked socket from its owner: the
 * process and the connection as they were at connect or accept. */
static __always_inline void wp_owner_event(struct wp_net_event *e, struct wp_sock_owner *o, struct sock *sk, __u32 type)
{
	__builtin_memcpy(&e->hdr, &o->hdr, sizeof(e->hdr));
	__u64 now = bpf_ktime_get_boot_ns();
	e->hdr.type = type;
	e->hdr.ts_boot_ns = now;
	e->hdr.cpu = bpf_get_smp_processor_id();
	e->duration_ns = now - o->start_ns;
	e->family = o->family;
	e->sock_type = BPF_CORE_READ(sk, sk_type);
	e->protocol = WP_IPPROTO_TCP;
	e->sport = o->sport;
	e->dport = o->dport;
	__builtin_memcpy(e->saddr, o->saddr, 16);
	__builtin_memcpy(e->daddr, o->daddr, 16);
}

/* wp_connect_result reports how a non-blocking connect ended, once: 0 when
 * established, else the socket's error (ECONNREFUSED, ETIMEDOUT,
 * EHOSTUNREACH ...), or ECONNABORTED when the owner closed it first.
 * duration_ns is the time from the connect call. e is the caller's
 * scratch event (the stack has room for one). */
static __always_inline void wp_connect_result(struct wp_net_event *e, struct wp_sock_owner *o, struct sock *sk,
					      int state)
{
	if (!o->pending)
		return;
	o->pending = 0;
	__u32 type = WP_EV_NET_CONNECT_RESULT;
	wp_count(type, WP_STAT_PRODUCED);
	struct wp_config *cfg = wp_get_config();
	if (!cfg || !(cfg->event_mask & (1ULL << type)) || o->hdr.pid == cfg->agent_tgid) {
		wp_count(type, WP_STAT_FILTERED);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	wp_owner_event(e, o, sk, type);
	e->hdr.flags = 0;
	if (state != WP_TCP_ESTABLISHED) {
		int err = BPF_CORE_READ(sk, sk_err);
		e->ret = err ? -err : -WP_ECONNABORTED;
	}
	wp_output(cfg, e, sizeof(*e), type, false);
}

SEC("tracepoint/syscalls/wp_exit_net")
int wp_sys_exit_net(struct trace_event_raw_sys_exit *ctx)
{
	struct wp_sys_args a;
	struct wp_sys_desc *d = wp_exit_desc(ctx, WP_SYS_NET, &a);
	if (!d)
		return 0;
	/* bpf_get_current_task_btf needs 5.11; CO-RE reads work from 5.10 */
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	long ret = ctx->ret;
	__u8 op = d->kind;
	long fd = (op == WP_NET_ACCEPT || op == WP_NET_SOCKET) ? ret : (long)(int)wp_arg(&a, d->fd_idx);
	struct sock *sk = ret >= 0 || op == WP_NET_CONNECT || op == WP_NET_BIND ? wp_fd_sock(task, fd) : NULL;
	if (!sk)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u16 proto = BPF_CORE_READ(sk, sk_protocol);
	__u16 stype = BPF_CORE_READ(sk, sk_type);
	if (op == WP_NET_SOCKET) {
		/* Packet and raw sockets can see others' traffic; netlink
		 * sockets reach the kernel's firewall, audit, uevents ... */
		if (family != WP_AF_NETLINK && family != WP_AF_PACKET && stype != WP_SOCK_RAW)
			return 0;
	} else if (family != WP_AF_INET && family != WP_AF_INET6) {
		return 0;
	}
	if ((op == WP_NET_SEND || op == WP_NET_RECV) && proto != WP_IPPROTO_UDP)
		return 0;

	struct wp_net_event e = {};
	wp_sock_addrs(&e, sk);
	e.ret = ret;
	e.op = d->op;
	/* The owner of a connection on an inspected industrial port, for the
	 * packet hooks (ics.h), whatever the event filters say. The port is
	 * checked first: other connections pay one lookup per end, not a
	 * header. */
	if (proto == WP_IPPROTO_TCP && ((op == WP_NET_CONNECT && (ret == 0 || ret == -WP_EINPROGRESS)) ||
					(op == WP_NET_ACCEPT && ret >= 0)) &&
	    (wp_ics_port(e.sport) || wp_ics_port(e.dport))) {
		struct wp_event_hdr h;
		wp_fill_hdr(&h, WP_EV_ICS_OP, task);
		wp_ics_remember(&h, e.family, e.sport, e.dport, e.saddr, e.daddr);
	}
	if (op == WP_NET_ACCEPT || op == WP_NET_RECV)
		e.hdr.flags = WP_F_INBOUND;
	if (op == WP_NET_SEND || op == WP_NET_RECV) {
		wp_user_sockaddr(&e, wp_msg_name(d, &a));
		/* One event per flow: per process, direction, local port and peer. */
		struct wp_flow_key fk = {};
		fk.tgid = bpf_get_current_pid_tgid() >> 32;
		fk.lport = e.sport;
		fk.rport = e.dport;
		__builtin_memcpy(fk.raddr, e.daddr, 16);
		fk.dir = op;
		fk.proto = proto;
		__u64 now = bpf_ktime_get_boot_ns();
		struct wp_config *c0 = wp_get_config();
		__u64 *last = bpf_map_lookup_elem(&wp_flows, &fk);
		if (last && c0 && now - *last < c0->flow_timeout_ns) {
			*last = now;
			return 0;
		}
		bpf_map_update_elem(&wp_flows, &fk, &now, BPF_ANY);
	}

	__u32 type = d->type;
	struct wp_config *cfg;
	if (!wp_want(type, &cfg))
		return 0;
	/* NETLINK_ROUTE is opened by every name lookup: counted, not reported. */
	bool route = op == WP_NET_SOCKET && family == WP_AF_NETLINK && proto == WP_NETLINK_ROUTE;
	if (route || wp_task_filtered(cfg, task) ||
	    (op != WP_NET_SOCKET && op != WP_NET_LISTEN && op != WP_NET_BIND && wp_peer_filtered(cfg, &e))) {
		wp_count(type, WP_STAT_FILTERED);
		return 0;
	}
	__u16 flags = e.hdr.flags;
	wp_fill_hdr(&e.hdr, type, task);
	e.hdr.flags = flags;

	__u64 key = (__u64)sk;
	/* Remember who owns a TCP connection, for its close event. */
	if (proto == WP_IPPROTO_TCP && ((op == WP_NET_CONNECT && (ret == 0 || ret == -WP_EINPROGRESS)) ||
					(op == WP_NET_ACCEPT && ret >= 0))) {
		struct wp_sock_owner o = {};
		__builtin_memcpy(&o.hdr, &e.hdr, sizeof(o.hdr));
		o.start_ns = e.hdr.ts_boot_ns;
		o.pending = op == WP_NET_CONNECT && ret == -WP_EINPROGRESS;
		o.family = e.family;
		o.sport = e.sport;
		o.dport = e.dport;
		__builtin_memcpy(o.saddr, e.saddr, 16);
		__builtin_memcpy(o.daddr, e.daddr, 16);
		bpf_map_update_elem(&wp_socks, &key, &o, BPF_ANY);
		if (o.pending) {
			/* The handshake may have ended before this exit (on
			 * loopback it ends inside the call): report it now. A
			 * change after this read finds the entry pending and is
			 * reported by wp_sock_state. */
			int state = BPF_CORE_READ(sk, __sk_common.skc_state);
			struct wp_sock_owner *po = NULL;
			if (state != WP_TCP_SYN_SENT)
				po = bpf_map_lookup_elem(&wp_socks, &key);
			wp_output(cfg, &e, sizeof(e), type, false);
			if (po)
				wp_connect_result(&e, po, sk, state);
			return 0;
		}
	}
	wp_output(cfg, &e, sizeof(e), type, false);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(wp_sock_state, struct sock *sk, int oldstate, int newstate)
{
	if (newstate != WP_TCP_CLOSE && newstate != WP_TCP_ESTABLISHED && newstate != WP_TCP_CLOSE_WAIT &&
	    newstate != WP_TCP_CLOSING)
		return 0;
	if (BPF_CORE_READ(sk, sk_protocol) != WP_IPPROTO_TCP)
		return 0;
	__u64 key = (__u64)sk;
	struct wp_sock_owner *o = bpf_map_lookup_elem(&wp_socks, &key);
	if (!o)
		return 0;
	struct wp_net_event e;
	if (oldstate == WP_TCP_SYN_SENT)
		wp_connect_result(&e, o, sk, newstate);
	if (newstate == WP_TCP_ESTABLISHED) {
		o->hdr.flags |= WP_F_ESTABLISHED;
		return 0;
	}
	if (newstate == WP_TCP_CLOSE_WAIT || newstate == WP_TCP_CLOSING) {
		o->fin_seen = 1;
		return 0;
	}
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	/* FIN_WAIT2 -> CLOSE is the time-wait path, entered when the peer's
	 * FIN arrives (or when it never does and the timer fires). Whether
	 * rcv_nxt already counts that FIN depends on the kernel (7.x closes
	 * before advancing it): the process closed after reading everything,
	 * so a FIN is counted exactly when rcv_nxt is one past copied_seq. */
	if (oldstate == WP_TCP_FIN_WAIT2 &&
	    BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq) == 1)
		o->fin_seen = 1;
	/* The state change may run in softirq context, on behalf of no
	 * process: the event is the owner's, so the owner is what counts. */
	__u32 type = WP_EV_NET_CLOSE;
	wp_count(type, WP_STAT_PRODUCED);
	struct wp_config *cfg = wp_get_config();
	if (!cfg || !(cfg->event_mask & (1ULL << type)) || o->hdr.pid == cfg->agent_tgid) {
		wp_count(type, WP_STAT_FILTERED);
		bpf_map_delete_elem(&wp_socks, &key);
		return 0;
	}
	__builtin_memset(&e, 0, sizeof(e));
	wp_owner_event(&e, o, sk, type);
	/* Payload only: bytes_sent counts data segments (retransmissions
	 * included, so they are taken off); bytes_received counts sequence
	 * space, which includes the peer's FIN. */
	e.bytes_sent = BPF_CORE_READ(tp, bytes_sent) - BPF_CORE_READ(tp, bytes_retrans);
	e.bytes_recv = BPF_CORE_READ(tp, bytes_received);
	if (o->fin_seen && e.bytes_recv > 0)
		e.bytes_recv--;
	bpf_map_delete_elem(&wp_socks, &key);
	wp_output(cfg, &e, sizeof(e), type, false);
	return 0;
}

#endif /* WP_NET_H */
