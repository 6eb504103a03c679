// SPDX-License-Identifier: GPL-2.0 OR MIT
// turnpike's kernel fast path (issue 19): relays UDP ChannelData in XDP.
//
// client -> peer: a ChannelData datagram to a listener whose (client, listener, channel)
//   has a binding loses its 4-byte header (and any padding), and leaves as a plain UDP
//   datagram from the relay address to the peer.
// peer -> client: a datagram to a relay address from a bound peer gains the header and
//   leaves as ChannelData from the listener to the client. No padding: RFC 8656 §12.5
//   makes it optional over UDP, and adding it would cost a tail adjustment per packet.
//
// Userspace (the core) is the only decider: it adds and removes bindings; anything this
// program is not sure about goes up unchanged (XDP_PASS, TC_ACT_OK) to the socket path,
// which handles every case. The rewritten packet leaves by the interface it came in on
// (XDP_TX, or a TC redirect to its egress): a cloud VM's shape, one interface, one
// gateway. One parser, lookup and header writer serve both hooks; only the resizing
// differs (XDP moves the frame's head, TC uses the skb helpers).
//
// Checksums are updated, not recomputed: the payload's sum is recovered from the UDP
// checksum that came in, so the payload is never read and a corrupt datagram stays
// corrupt (its receiver drops it, as it would have dropped the original).
//
// Addresses are 16 bytes everywhere; IPv4 is written IPv4-mapped (::ffff:a.b.c.d), so
// one map covers both families and a binding may join an IPv6 client to an IPv4 relay.
// Ports and the channel number are kept in network byte order. Every struct spells out
// its padding: src/fastpath/maps.rs mirrors them field by field.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_BINDINGS 65536
// The binding carries the MAC of the next hop; otherwise the frame goes back to the
// MAC it came from (source and destination swapped).
#define FLAG_NEXT_HOP_MAC 1

struct c2p_key {
	__u8 client_ip[16];
	__u8 listener_ip[16];
	__u16 client_port;
	__u16 listener_port;
	__u16 channel;
	__u16 pad;
};

struct c2p_value {
	__u8 relay_ip[16];
	__u8 peer_ip[16];
	__u16 relay_port;
	__u16 peer_port;
	__u8 next_hop_mac[6];
	__u16 flags;
	__u32 pad;
	__u64 binding_id;
};

struct p2c_key {
	__u8 peer_ip[16];
	__u8 relay_ip[16];
	__u16 peer_port;
	__u16 relay_port;
};

struct p2c_value {
	__u8 client_ip[16];
	__u8 listener_ip[16];
	__u16 client_port;
	__u16 listener_port;
	__u16 channel;
	__u8 next_hop_mac[6];
	__u16 flags;
	__u16 pad;
	__u64 binding_id;
};

// Per binding; per CPU so the hot path needs no atomics. Bytes are payload bytes (the
// ChannelData data), as the core counts them.
struct counters {
	__u64 c2p_packets;
	__u64 c2p_bytes;
	__u64 p2c_packets;
	__u64 p2c_bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_BINDINGS);
	__type(key, struct c2p_key);
	__type(value, struct c2p_value);
} TP_C2P SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_BINDINGS);
	__type(key, struct p2c_key);
	__type(value, struct p2c_value);
} TP_P2C SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_BINDINGS);
	__type(key, __u64);
	__type(value, struct counters);
} TP_COUNTERS SEC(".maps");

// What the parser found: the addresses (mapped form), the ports, where the UDP payload
// starts and how long it is, and the checksum that came in.
struct flow {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u16 udp_len;
	__u16 udp_csum;
	__u8 v6;
	__u8 tos;
	__u16 ip_id;
	__u32 l4_off;
};

// The new outer headers: addresses (mapped form), ports, and what the UDP payload gains
// (a ChannelData header) or loses (header and padding).
struct rewrite {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u8 next_hop_mac[6];
	__u16 flags;
	__u16 payload_len; // the data bytes, without any ChannelData header
	__u16 channel;     // network order; 0 for client -> peer
	__u32 data_sum;    // one's-complement sum of the data bytes (folded)
};

// clang does not inline memcmp for BPF: compare as words.
static __always_inline int is_mapped(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

static __always_inline __u32 fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s;
}

// Sum of 16 bytes as eight big-endian words (in network order, as the checksum wants).
static __always_inline __u32 sum16(const __u8 *a)
{
	__u32 s = 0;
#pragma unroll
	for (int i = 0; i < 16; i += 2)
		s += ((__u32)a[i] << 8) | a[i + 1];
	return s;
}

// The pseudo-header sum of either family. The mapped prefix sums to 0xffff, which is
// zero in one's-complement arithmetic, so a mapped address sums like its IPv4 form.
static __always_inline __u32 pseudo_sum(const __u8 *src, const __u8 *dst, __u16 udp_len)
{
	return sum16(src) + sum16(dst) + udp_len + IPPROTO_UDP;
}

// a - b in one's-complement arithmetic.
static __always_inline __u32 sub(__u32 a, __u32 b)
{
	return fold(fold(a) + (~fold(b) & 0xffff));
}

// Set by the loader from the interface's MTU: a rewritten packet longer than this (the
// peer -> client direction grows by 4 bytes, 24 from IPv4 to IPv6) goes up instead.
volatile const __u32 max_ip_len = 1500;

// A single-buffer XDP frame fits in a page; larger lengths are not ours to handle.
#define MAX_UDP_LEN 4000
#define OFF_MASK 0xfff

static __always_inline void set_mapped(__u8 *dst, const void *v4)
{
	__u32 *w = (__u32 *)dst;
	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0xffff);
	__builtin_memcpy(dst + 12, v4, 4);
}

static __always_inline __u16 be16(const __u8 *p)
{
	return ((__u16)p[0] << 8) | p[1];
}

// Fills `f` from an Ethernet frame carrying one whole UDP datagram, else returns -1:
// VLAN tags, IPv4 options, fragments, IPv6 extension headers, truncated packets, length
// mismatches and UDP without a checksum all go up.
static __always_inline int parse(void *data, void *end, struct flow *f)
{
	struct ethhdr *eth = data;
	struct udphdr *udp;

	if ((void *)(eth + 1) > end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return -1;
		if (ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
			return -1;
		if (ip->frag_off & bpf_htons(0x3fff)) // MF or a fragment offset
			return -1;
		__u16 tot = bpf_ntohs(ip->tot_len);
		if (tot < 28 || tot - 20 > MAX_UDP_LEN || (void *)ip + tot > end)
			return -1;
		set_mapped(f->src, &ip->saddr);
		set_mapped(f->dst, &ip->daddr);
		f->tos = ip->tos;
		f->ip_id = ip->id;
		f->l4_off = sizeof(*eth) + sizeof(*ip);
		f->udp_len = tot - 20;
		udp = (void *)(ip + 1);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return -1;
		if (ip6->version != 6 || ip6->nexthdr != IPPROTO_UDP)
			return -1;
		__u16 plen = bpf_ntohs(ip6->payload_len);
		if (plen < 8 || plen > MAX_UDP_LEN || (void *)(ip6 + 1) + plen > end)
			return -1;
		__builtin_memcpy(f->src, &ip6->saddr, 16);
		__builtin_memcpy(f->dst, &ip6->daddr, 16);
		f->v6 = 1;
		f->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
		f->l4_off = sizeof(*eth) + sizeof(*ip6);
		f->udp_len = plen;
		udp = (void *)(ip6 + 1);
	} else {
		return -1;
	}
	if ((void *)(udp + 1) > end || bpf_ntohs(udp->len) != f->udp_len || udp->check == 0)
		return -1;
	f->sport = udp->source;
	f->dport = udp->dest;
	f->udp_csum = bpf_ntohs(udp->check);
	return 0;
}

// The one's-complement sum of the UDP payload that came in, recovered from its checksum:
// checksum = ~(pseudo header + UDP header + payload), so the payload is never read.
static __always_inline __u32 payload_sum(const struct flow *f)
{
	__u32 hdr = pseudo_sum(f->src, f->dst, f->udp_len) + bpf_ntohs(f->sport) +
		    bpf_ntohs(f->dport) + f->udp_len;
	return sub(~f->udp_csum & 0xffff, hdr);
}

static __noinline int client_to_peer(void *data, void *end, const struct flow *f,
					  struct rewrite *r, __u64 *id)
{
	__u8 *p = data + (f->l4_off & 0x3f) + sizeof(struct udphdr);
	if ((void *)(p + 4) > end || f->udp_len < 12 || (p[0] & 0xc0) != 0x40)
		return -1;
	__u16 len = be16(p + 2);
	__u16 got = f->udp_len - 12;
	// Exactly the declared length, or padded to 4 bytes: anything else goes up.
	if (got < len || got > ((len + 3) & ~3))
		return -1;
	struct c2p_key k = {};
	__builtin_memcpy(k.client_ip, f->src, 16);
	__builtin_memcpy(k.listener_ip, f->dst, 16);
	k.client_port = f->sport;
	k.listener_port = f->dport;
	__builtin_memcpy(&k.channel, p, 2);
	struct c2p_value *v = bpf_map_lookup_elem(&TP_C2P, &k);
	if (!v)
		return -1;
	__u32 sum = sub(payload_sum(f), (__u32)be16(p) + len);
	// Padding bytes leave the checksum too; a byte at an even UDP offset is a high byte.
#pragma unroll
	for (int i = 0; i < 3; i++) {
		__u32 off = 12 + len + i;
		if (off >= f->udp_len)
			break;
		__u8 *b = data + (f->l4_off & 0x3f) + (off & OFF_MASK);
		if ((void *)(b + 1) > end)
			return -1;
		sum = sub(sum, (off & 1) ? *b : (__u32)*b << 8);
	}
	__builtin_memcpy(r->src, v->relay_ip, 16);
	__builtin_memcpy(r->dst, v->peer_ip, 16);
	r->sport = v->relay_port;
	r->dport = v->peer_port;
	__builtin_memcpy(r->next_hop_mac, v->next_hop_mac, 6);
	r->flags = v->flags;
	r->payload_len = len;
	r->channel = 0;
	r->data_sum = sum;
	*id = v->binding_id;
	return 0;
}

static __noinline int peer_to_client(const struct flow *f, struct rewrite *r, __u64 *id)
{
	struct p2c_key k = {};
	__builtin_memcpy(k.peer_ip, f->src, 16);
	__builtin_memcpy(k.relay_ip, f->dst, 16);
	k.peer_port = f->sport;
	k.relay_port = f->dport;
	struct p2c_value *v = bpf_map_lookup_elem(&TP_P2C, &k);
	if (!v)
		return -1;
	__builtin_memcpy(r->src, v->listener_ip, 16);
	__builtin_memcpy(r->dst, v->client_ip, 16);
	r->sport = v->listener_port;
	r->dport = v->client_port;
	__builtin_memcpy(r->next_hop_mac, v->next_hop_mac, 6);
	r->flags = v->flags;
	r->payload_len = f->udp_len - 8;
	r->channel = v->channel;
	r->data_sum = payload_sum(f);
	*id = v->binding_id;
	return 0;
}

static __always_inline __u16 udp_checksum(const struct rewrite *r, __u16 udp_len)
{
	__u32 s = pseudo_sum(r->src, r->dst, udp_len) + bpf_ntohs(r->sport) +
		  bpf_ntohs(r->dport) + udp_len + r->data_sum;
	if (r->channel)
		s += bpf_ntohs(r->channel) + r->payload_len;
	__u16 c = ~fold(s) & 0xffff;
	return c ? c : 0xffff; // 0 would mean "no checksum"
}

static __always_inline void write_ipv4(struct iphdr *ip, const struct flow *f,
				       const struct rewrite *r, __u16 udp_len)
{
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = f->tos;
	ip->tot_len = bpf_htons(20 + udp_len);
	ip->id = f->v6 ? 0 : f->ip_id;
	ip->frag_off = bpf_htons(0x4000); // DF, as the socket path's UDP sends
	ip->ttl = 64;                      // a new datagram from the relay, not a forward
	ip->protocol = IPPROTO_UDP;
	ip->check = 0;
	__builtin_memcpy(&ip->saddr, r->src + 12, 4);
	__builtin_memcpy(&ip->daddr, r->dst + 12, 4);
	__u32 s = 0;
	__u16 *w = (__u16 *)ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		s += w[i];
	ip->check = ~fold(s) & 0xffff;
}

static __always_inline void write_ipv6(struct ipv6hdr *ip6, const struct flow *f,
				       const struct rewrite *r, __u16 udp_len)
{
	__u32 first = (6u << 28) | ((__u32)f->tos << 20); // flow label 0
	*(__u32 *)ip6 = bpf_htonl(first);
	ip6->payload_len = bpf_htons(udp_len);
	ip6->nexthdr = IPPROTO_UDP;
	ip6->hop_limit = 64;
	__builtin_memcpy(&ip6->saddr, r->src, 16);
	__builtin_memcpy(&ip6->daddr, r->dst, 16);
}

static __always_inline void write_udp(struct udphdr *udp, const struct rewrite *r,
				      __u16 udp_len)
{
	udp->source = r->sport;
	udp->dest = r->dport;
	udp->len = bpf_htons(udp_len);
	udp->check = bpf_htons(udp_checksum(r, udp_len));
}

// The headers' sizes before and after: where the data starts in each frame.
static __always_inline int in_hdr_len(const struct flow *f, const struct rewrite *r)
{
	return f->l4_off + 8 + (r->channel ? 0 : 4);
}

static __always_inline int out_v6(const struct rewrite *r)
{
	return !is_mapped(r->dst);
}

static __always_inline int out_hdr_len(const struct rewrite *r)
{
	return sizeof(struct ethhdr) + (out_v6(r) ? 40 : 20) + 8 + (r->channel ? 4 : 0);
}

static __always_inline __u16 out_udp_len(const struct rewrite *r)
{
	return 8 + (r->channel ? 4 : 0) + r->payload_len;
}

// Whether the rewritten packet can leave: one family on the outer side, within the MTU.
static __always_inline int fits(const struct rewrite *r)
{
	return is_mapped(r->src) != out_v6(r) &&
	       (out_v6(r) ? 40 : 20) + out_udp_len(r) <= max_ip_len;
}

// Out through the interface it came in by: from its MAC to the next hop's, which is the
// sender's own unless userspace said otherwise.
static __always_inline int save_macs(void *data, void *end, const struct rewrite *r,
				     __u8 *mac_src, __u8 *mac_dst)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	__builtin_memcpy(mac_src, eth->h_dest, 6);
	__builtin_memcpy(mac_dst, r->flags & FLAG_NEXT_HOP_MAC ? r->next_hop_mac : eth->h_source, 6);
	return 0;
}

// Writes every header in front of the data, once the frame has its new size.
static __always_inline int write_headers(void *data, void *end, const struct flow *f,
					 const struct rewrite *r, const __u8 *mac_src,
					 const __u8 *mac_dst)
{
	struct ethhdr *eth = data;
	struct udphdr *udp;
	__u16 udp_len = out_udp_len(r);

	if ((void *)(eth + 1) > end)
		return -1;
	__builtin_memcpy(eth->h_source, mac_src, 6);
	__builtin_memcpy(eth->h_dest, mac_dst, 6);
	if (out_v6(r)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > end)
			return -1;
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		write_ipv6(ip6, f, r, udp_len);
	} else {
		struct iphdr *ip = (void *)(eth + 1);
		udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > end)
			return -1;
		eth->h_proto = bpf_htons(ETH_P_IP);
		write_ipv4(ip, f, r, udp_len);
	}
	if (r->channel) {
		__u16 *ch = (void *)(udp + 1);
		if ((void *)(ch + 2) > end)
			return -1;
		ch[0] = r->channel;
		ch[1] = bpf_htons(r->payload_len);
	}
	write_udp(udp, r, udp_len);
	return 0;
}

// Finds the binding of a parsed packet and its counters, or NULL: the packet goes up.
// Counters exist before the binding (userspace inserts them first): without them the
// packet goes up, so the kernel never relays a packet it does not count.
static __always_inline struct counters *route(void *data, void *end, const struct flow *f,
					      struct rewrite *r)
{
	__u64 id = 0;
	if (client_to_peer(data, end, f, r, &id) < 0 && peer_to_client(f, r, &id) < 0)
		return NULL;
	if (!fits(r))
		return NULL;
	return bpf_map_lookup_elem(&TP_COUNTERS, &id);
}

static __always_inline void count(struct counters *c, const struct rewrite *r)
{
	if (r->channel) {
		c->p2c_packets++;
		c->p2c_bytes += r->payload_len;
	} else {
		c->c2p_packets++;
		c->c2p_bytes += r->payload_len;
	}
}

// XDP: trim what follows the data (ChannelData padding, an Ethernet trailer), move the
// front to the new headers' size, write them, and send the frame back out (XDP_TX).
SEC("xdp")
int turnpike_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct flow f = {};
	struct rewrite r = {};
	__u8 mac_src[6], mac_dst[6];

	if (parse(data, end, &f) < 0)
		return XDP_PASS;
	struct counters *c = route(data, end, &f, &r);
	if (!c || save_macs(data, end, &r, mac_src, mac_dst) < 0)
		return XDP_PASS;
	// The length from a helper: the verifier allows no arithmetic on the end pointer.
	int trim = (int)bpf_xdp_get_buff_len(ctx) - (in_hdr_len(&f, &r) + r.payload_len);
	if (trim > 0 && bpf_xdp_adjust_tail(ctx, -trim))
		return XDP_PASS; // nothing changed yet
	if (bpf_xdp_adjust_head(ctx, in_hdr_len(&f, &r) - out_hdr_len(&r)))
		return trim > 0 ? XDP_DROP : XDP_PASS;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (write_headers(data, end, &f, &r, mac_src, mac_dst) < 0)
		return XDP_DROP;
	count(c, &r);
	return XDP_TX;
}

// TC (clsact ingress), where XDP cannot attach: the same parse, lookup and headers, with
// the skb helpers to resize, and a redirect to the same interface's egress.
SEC("classifier") // aya's name for a TC program
int turnpike_tc(struct __sk_buff *skb)
{
	struct flow f = {};
	struct rewrite r = {};
	__u8 mac_src[6], mac_dst[6];

	// GRO-merged datagrams are many packets in one: the socket path splits them.
	if (skb->gso_size)
		return TC_ACT_OK;
	// The direct view may hold only the headers; the padding check needs the tail too.
	if (skb->data_end - skb->data < skb->len && bpf_skb_pull_data(skb, skb->len))
		return TC_ACT_OK;
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	if (parse(data, end, &f) < 0)
		return TC_ACT_OK;
	struct counters *c = route(data, end, &f, &r);
	if (!c || save_macs(data, end, &r, mac_src, mac_dst) < 0)
		return TC_ACT_OK;
	__u32 keep = in_hdr_len(&f, &r) + r.payload_len;
	if (skb->len > keep && bpf_skb_change_tail(skb, keep, 0))
		return TC_ACT_OK; // nothing changed yet
	// A family change moves the front by 20 bytes; the ChannelData header by 4, right
	// after the IP header, where the UDP header is rewritten anyway.
	if (f.v6 != out_v6(&r) &&
	    bpf_skb_change_proto(skb, bpf_htons(out_v6(&r) ? ETH_P_IPV6 : ETH_P_IP), 0))
		return TC_ACT_SHOT;
	if (bpf_skb_adjust_room(skb, r.channel ? 4 : -4, BPF_ADJ_ROOM_NET, 0))
		return TC_ACT_SHOT;
	// The checksums are complete in the packet now; what the NIC computed is stale.
	bpf_csum_level(skb, BPF_CSUM_LEVEL_RESET);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	if (write_headers(data, end, &f, &r, mac_src, mac_dst) < 0)
		return TC_ACT_SHOT;
	count(c, &r);
	return bpf_redirect(skb->ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
