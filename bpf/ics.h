/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Industrial protocol inspection: cgroup_skb ingress and egress programs
 * at the root cgroup v2 read the application messages (Modbus/TCP ADUs) of
 * every TCP segment to or from an inspected port, on the host's own
 * sockets, and send one record per segment.
 *
 * A record names the socket's process: the connect and accept exits
 * (net.h) store the process by connection (wp_ics_tuples); the first
 * inspected packet moves it to the socket cookie (wp_ics_owners). Packet
 * hooks run in softirq context for another process, so the current task
 * is never used. A socket whose connect or accept was not seen (the
 * agent started later, or the kernel skipped the tracing program) is sent
 * without an owner and the agent looks it up.
 *
 * The programs never drop or change a packet: they always return 1.
 * Malformed and split messages are counted in wp_ics_stats, never sent.
 */
#ifndef WP_ICS_H
#define WP_ICS_H

#include "lib/common.h"

#define WP_ICS_HEAD 32 /* bytes of a message read at once: MBAP, fc, 24 of the PDU */

/* The inspected ports (host order) and their protocol, written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WP_ICS_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} wp_ics_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct wp_ics_tuple);
	__type(value, struct wp_event_hdr);
} wp_ics_tuples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct wp_event_hdr);
} wp_ics_owners SEC(".maps");

/* The sequence number after the last payload byte inspected, per socket
 * cookie and direction (key: cookie << 1 | ingress): a retransmission (or
 * a tail loss probe) carries bytes already counted. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u64);
	__type(value, __u32);
} wp_ics_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WP_ICS_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} wp_ics_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wp_ics_event);
} wp_ics_heap SEC(".maps");

const struct wp_ics_event *wp_unused_ics __attribute__((unused));
const struct wp_ics_tuple *wp_unused_ics_tuple __attribute__((unused));
const enum wp_ics_stat *wp_unused_ics_stat __attribute__((unused));
const enum wp_ics_flags *wp_unused_ics_flags __attribute__((unused));
const enum wp_ics_limit *wp_unused_ics_limit __attribute__((unused));
const enum wp_ics_proto *wp_unused_ics_proto __attribute__((unused));

static __always_inline void wp_ics_count(__u32 stat, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&wp_ics_stats, &stat);
	if (v)
		*v += n; /* per CPU: no other writer */
}

static __always_inline bool wp_ics_port(__u16 port)
{
	return bpf_map_lookup_elem(&wp_ics_ports, &port) != NULL;
}

/* wp_ics_remember stores the process behind a TCP socket on an inspected
 * port (the caller checked wp_ics_port first, before it filled h), by
 * connection, for the packet hooks. Called at the connect and accept exits
 * with the socket's addresses (family AF_INET: 4 bytes). */
static __always_inline void wp_ics_remember(const struct wp_event_hdr *h, __u16 family, __u16 lport, __u16 rport,
					    const __u8 *laddr, const __u8 *raddr)
{
	struct wp_ics_tuple k = {.lport = lport, .rport = rport};
	if (family == 2) { /* AF_INET: v4-mapped, as the packet hooks key it */
		k.laddr[10] = k.laddr[11] = 0xff;
		k.raddr[10] = k.raddr[11] = 0xff;
		__builtin_memcpy(&k.laddr[12], laddr, 4);
		__builtin_memcpy(&k.raddr[12], raddr, 4);
	} else {
		__builtin_memcpy(k.laddr, laddr, 16);
		__builtin_memcpy(k.raddr, raddr, 16);
	}
	bpf_map_update_elem(&wp_ics_tuples, &k, h, BPF_ANY);
}

static __always_inline __u16 wp_be16(const __u8 *b) { return ((__u16)b[0] << 8) | b[1]; }

/* wp_modbus_fields is modbus.fields: only what the PDU (pdul bytes after
 * the function code, the first 24 of them at pdu) holds in full. */
static __always_inline void wp_modbus_fields(struct wp_ics_adu *a, const __u8 *pdu, __u32 pdul, bool request)
{
	if (a->function & 0x80) {
		if (pdul >= 1)
			a->exception = pdu[0];
		return;
	}
	switch (a->function) {
	case 1:
	case 2:
	case 3:
	case 4:
		if (request && pdul >= 4) {
			a->address = wp_be16(&pdu[0]);
			a->count = wp_be16(&pdu[2]);
			a->flags = 1 | 2;
		}
		break;
	case 5:
	case 6:
		if (pdul >= 4) {
			a->address = wp_be16(&pdu[0]);
			a->values[0] = wp_be16(&pdu[2]);
			a->nvalues = 1;
			a->flags = 1 | 4;
		}
		break;
	case 8:
		if (pdul >= 2) {
			a->sub = wp_be16(&pdu[0]);
			a->flags = 8;
		}
		break;
	case 43:
		if (pdul >= 1) {
			a->sub = pdu[0];
			a->flags = 8;
		}
		break;
	case 15:
	case 16: {
		if (pdul < 4)
			break;
		a->address = wp_be16(&pdu[0]);
		a->count = wp_be16(&pdu[2]);
		a->flags = 1 | 2;
		if (!request || pdul < 6)
			break;
		__u32 avail = pdu[4];
		if (avail > pdul - 5)
			avail = pdul - 5;
		bool regs = a->function == 16;
		__u32 n = regs ? avail / 2 : avail;
		if (n > WP_ICS_VALUES)
			n = WP_ICS_VALUES;
#pragma unroll
		for (int j = 0; j < WP_ICS_VALUES; j++) {
			if (j < n)
				a->values[j] = regs ? wp_be16(&pdu[5 + 2 * j]) : pdu[5 + j];
		}
		if (n > 0) {
			a->nvalues = n;
			a->flags |= 4;
		}
		break;
	}
	case 22:
		if (pdul >= 6) {
			a->address = wp_be16(&pdu[0]);
			a->values[0] = wp_be16(&pdu[2]);
			a->values[1] = wp_be16(&pdu[4]);
			a->nvalues = 2;
			a->flags = 1 | 4;
		}
		break;
	case 23:
		if (request && pdul >= 8) {
			a->address = wp_be16(&pdu[4]);
			a->count = wp_be16(&pdu[6]);
			a->flags = 1 | 2;
		}
		break;
	}
}

/* wp_ics_owner finds the socket's process: by cookie, or by connection for
 * a socket's first packet (then by cookie from there on). */
static __always_inline bool wp_ics_owner(struct wp_ics_event *e)
{
	struct wp_event_hdr *h = bpf_map_lookup_elem(&wp_ics_owners, &e->cookie);
	if (h) {
		__builtin_memcpy(&e->hdr, h, sizeof(e->hdr));
		return true;
	}
	struct wp_ics_tuple k = {.lport = e->lport, .rport = e->rport};
	__builtin_memcpy(k.laddr, e->laddr, 16);
	__builtin_memcpy(k.raddr, e->raddr, 16);
	h = bpf_map_lookup_elem(&wp_ics_tuples, &k);
	if (!h)
		return false;
	__builtin_memcpy(&e->hdr, h, sizeof(e->hdr));
	bpf_map_update_elem(&wp_ics_owners, &e->cookie, &e->hdr, BPF_ANY);
	bpf_map_delete_elem(&wp_ics_tuples, &k);
	return true;
}

/* wp_ics_urgent: a request of the segment changes the device (the write,
 * program and control classes of modbus.ClassOf). */
static __always_inline bool wp_ics_urgent(const struct wp_ics_event *e, __u8 n)
{
#pragma unroll
	for (int i = 0; i < WP_ICS_ADUS; i++) {
		if (i >= n)
			break;
		const struct wp_ics_adu *a = &e->adus[i];
		switch (a->function) {
		case 5:
		case 6:
		case 15:
		case 16:
		case 21:
		case 22:
		case 23:
		case 90:
		case 125:
			return true;
		case 8:
			if ((a->flags & 8) && (a->sub == 0x0001 || a->sub == 0x0004 || a->sub == 0x000A))
				return true;
		}
	}
	return false;
}

static __always_inline int wp_ics_skb(struct __sk_buff *skb, bool ingress)
{
	__u8 ip[40];
	__u32 off;
	__u8 saddr[16] = {}, daddr[16] = {};
	__u16 family;
	if (bpf_skb_load_bytes(skb, 0, ip, 1))
		return 1;
	if ((ip[0] >> 4) == 4) {
		if (bpf_skb_load_bytes(skb, 0, ip, 20))
			return 1;
		/* TCP only, and no fragments (offset or more-fragments set) */
		if (ip[9] != 6 || (wp_be16(&ip[6]) & 0x3fff))
			return 1;
		off = (ip[0] & 0xf) * 4;
		saddr[10] = saddr[11] = daddr[10] = daddr[11] = 0xff;
		__builtin_memcpy(&saddr[12], &ip[12], 4);
		__builtin_memcpy(&daddr[12], &ip[16], 4);
		family = 2;
	} else if ((ip[0] >> 4) == 6) {
		if (bpf_skb_load_bytes(skb, 0, ip, 40))
			return 1;
		if (ip[6] != 6) /* TCP right after the fixed header; extension headers are not followed */
			return 1;
		off = 40;
		__builtin_memcpy(saddr, &ip[8], 16);
		__builtin_memcpy(daddr, &ip[24], 16);
		family = 10;
	} else {
		return 1;
	}
	__u8 th[14];
	if (bpf_skb_load_bytes(skb, off, th, sizeof(th)))
		return 1;
	__u16 sport = wp_be16(&th[0]), dport = wp_be16(&th[2]);
	/* Unrelated traffic stops here: one or two hash lookups. */
	__u8 *proto = bpf_map_lookup_elem(&wp_ics_ports, &dport);
	bool request = true;
	if (!proto) {
		proto = bpf_map_lookup_elem(&wp_ics_ports, &sport);
		request = false;
		if (!proto)
			return 1;
	}
	__u8 p = *proto;
	off += (th[12] >> 4) * 4;
	__u32 end = skb->len;
	if (end <= off)
		return 1; /* no payload: handshake, pure ACK, FIN */

	__u32 zero = 0;
	struct wp_ics_event *e = bpf_map_lookup_elem(&wp_ics_heap, &zero);
	if (!e)
		return 1;
	e->cookie = bpf_get_socket_cookie(skb);
	e->seg_len = end - off;
	/* Bytes seen before on this socket and direction are not counted
	 * again; a segment with some new bytes is parsed whole. */
	__u32 seq_end = ((__u32)wp_be16(&th[4]) << 16 | wp_be16(&th[6])) + e->seg_len;
	__u64 sk = e->cookie << 1 | (ingress ? 1 : 0);
	__u32 *next = bpf_map_lookup_elem(&wp_ics_seq, &sk);
	if (next) {
		if ((__s32)(seq_end - *next) <= 0) {
			wp_ics_count(WP_ICS_STAT_RETRANSMITTED, 1);
			return 1;
		}
		*next = seq_end;
	} else {
		bpf_map_update_elem(&wp_ics_seq, &sk, &seq_end, BPF_ANY);
	}
	e->family = family;
	e->proto = p;
	e->flags = (ingress ? WP_ICS_F_INGRESS : 0) | (request ? WP_ICS_F_REQUEST : 0);
	e->_pad0 = 0;
	if (ingress) {
		e->lport = dport;
		e->rport = sport;
		__builtin_memcpy(e->laddr, daddr, 16);
		__builtin_memcpy(e->raddr, saddr, 16);
	} else {
		e->lport = sport;
		e->rport = dport;
		__builtin_memcpy(e->laddr, saddr, 16);
		__builtin_memcpy(e->raddr, daddr, 16);
	}
	wp_ics_count(WP_ICS_STAT_SEGMENTS, 1);

	__u32 pos = off;
	__u8 n = 0, bad = 0;
	int i;
	for (i = 0; i < WP_ICS_ADUS; i++) {
		if (pos >= end)
			break;
		__u32 left = end - pos;
		if (left < 8) {
			bad = WP_ICS_STAT_TRUNCATED;
			break;
		}
		__u8 b[WP_ICS_HEAD] = {};
		__u32 want = left < WP_ICS_HEAD ? left : WP_ICS_HEAD;
		if (bpf_skb_load_bytes(skb, pos, b, want))
			break;
		__u16 length = wp_be16(&b[4]);
		if (wp_be16(&b[2]) != 0) {
			bad = WP_ICS_STAT_PROTOCOL_ID;
			break;
		}
		if (length < 2 || length > WP_ICS_MAX_LENGTH) {
			bad = WP_ICS_STAT_LENGTH;
			break;
		}
		if ((__u32)length + 6 > left) {
			bad = WP_ICS_STAT_OVERRUN;
			break;
		}
		struct wp_ics_adu *a = &e->adus[i];
		__builtin_memset(a, 0, sizeof(*a));
		a->transaction = wp_be16(&b[0]);
		a->length = length;
		a->unit = b[6];
		a->function = b[7];
		wp_modbus_fields(a, &b[8], length - 2, request);
		n++;
		pos += 6 + length;
	}
	if (i == WP_ICS_ADUS && pos < end) {
		e->flags |= WP_ICS_F_MORE;
		wp_ics_count(WP_ICS_STAT_UNPARSED, 1);
	}
	e->nadus = n;
	/* modbus.Malformed numbers its reasons from 1, in the stats' order */
	e->malformed = bad ? bad - WP_ICS_STAT_TRUNCATED + 1 : 0;
	if (bad)
		wp_ics_count(bad, 1);
	if (!n)
		return 1;
	wp_ics_count(WP_ICS_STAT_MESSAGES, n);

	if (wp_ics_owner(e))
		e->flags |= WP_ICS_F_OWNER;
	else {
		__builtin_memset(&e->hdr, 0, sizeof(e->hdr));
		wp_ics_count(WP_ICS_STAT_NO_OWNER, 1);
	}
	e->hdr.type = WP_EV_ICS_OP;
	e->hdr.cpu = bpf_get_smp_processor_id();
	e->hdr.ts_boot_ns = bpf_ktime_get_boot_ns();

	__u32 type = WP_EV_ICS_OP;
	wp_count(type, WP_STAT_PRODUCED);
	struct wp_config *cfg = wp_get_config();
	if (!cfg || !(cfg->event_mask & (1ULL << type))) {
		wp_count(type, WP_STAT_FILTERED);
		return 1;
	}
	__u64 size = sizeof(*e) - (WP_ICS_ADUS - (n & 0xf)) * sizeof(struct wp_ics_adu);
	if (size > sizeof(*e))
		return 1;
	/* Writes and the other operations that change a device wake the agent at once. */
	wp_output(cfg, e, size, type, request && wp_ics_urgent(e, n));
	return 1;
}

SEC("cgroup_skb/ingress")
int wp_ics_ingress(struct __sk_buff *skb)
{
	return wp_ics_skb(skb, true);
}

SEC("cgroup_skb/egress")
int wp_ics_egress(struct __sk_buff *skb)
{
	return wp_ics_skb(skb, false);
}

#endif /* WP_ICS_H */
