// SPDX-License-Identifier: GPL-2.0
// Tunnel decapsulation for TUN-mode real servers on a kernel without the ipip, gre or fou modules:
// strips the outer headers at the veth's XDP hook, so the inner packet (to the VIP on lo) reaches
// the stack as if it had arrived plain. What `ip link add type ipip`, `type gre` or a fou/GUE port
// does on a real server. Three encapsulations, as IPVS sends them (ipvsadm --tun-type):
//   ipip  outer IPv4, protocol 4
//   gre   outer IPv4, protocol 47, a GRE header of 4 bytes (8 with its checksum), EtherType IPv4
//   gue   outer IPv4, UDP to port 6080 (the test bed's --tun-port), a 4-byte GUE header (variant
//         0, no extra fields) naming protocol 4
//   ip6ip6  outer IPv6 (no extension headers), next header 41 (IPv6 inside) or 4 (IPv4 inside: an
//           IPv4 service's server reached over IPv6)
//   sit     outer IPv4, protocol 41: an IPv6 service's server reached over IPv4
// The outer checksums are not verified here (the director's are checked by scapy and tshark).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define GUE_PORT 6080
#define GRE_CSUM 0x8000

SEC("xdp")
int ipip_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ethhdr saved;
	struct iphdr *outer;
	__u32 hlen, strip;
	__u16 inner_proto = bpf_htons(ETH_P_IP);

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *o6 = (void *)(eth + 1);

		if ((void *)(o6 + 1) + sizeof(struct iphdr) > end)
			return XDP_PASS;
		if (o6->nexthdr == IPPROTO_IPV6)
			inner_proto = bpf_htons(ETH_P_IPV6);
		else if (o6->nexthdr != IPPROTO_IPIP)
			return XDP_PASS;
		strip = sizeof(*o6);
		goto decap;
	}
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > end)
		return XDP_PASS;
	/* Fragments of the outer packet would need reassembly first: leave them to the stack. */
	if (outer->frag_off & bpf_htons(0x3fff))
		return XDP_PASS;
	hlen = outer->ihl * 4;
	if (hlen < sizeof(*outer) || hlen > 60)
		return XDP_PASS;
	if (outer->protocol == IPPROTO_IPIP) {
		strip = hlen;
	} else if (outer->protocol == IPPROTO_IPV6) {
		strip = hlen;
		inner_proto = bpf_htons(ETH_P_IPV6);
	} else if (outer->protocol == IPPROTO_GRE) {
		__u8 *gre = (__u8 *)outer + hlen;
		__u16 flags, proto;

		if ((void *)(gre + 4) > end)
			return XDP_PASS;
		flags = ((__u16)gre[0] << 8) | gre[1];
		proto = ((__u16)gre[2] << 8) | gre[3];
		/* Only the checksum may be present (no key, no sequence number, version 0). */
		if ((flags & ~GRE_CSUM) != 0 || proto != ETH_P_IP)
			return XDP_PASS;
		strip = hlen + ((flags & GRE_CSUM) ? 8 : 4);
	} else if (outer->protocol == IPPROTO_UDP) {
		struct udphdr *udp = (void *)outer + hlen;
		__u8 *gue;

		if ((void *)(udp + 1) > end || udp->dest != bpf_htons(GUE_PORT))
			return XDP_PASS;
		gue = (__u8 *)(udp + 1);
		if ((void *)(gue + 4) > end)
			return XDP_PASS;
		/* Version 0, not a control message, no extra fields; IPv4 inside. */
		if (gue[0] != 0 || gue[1] != IPPROTO_IPIP)
			return XDP_PASS;
		strip = hlen + sizeof(*udp) + 4;
	} else {
		return XDP_PASS;
	}
	if ((void *)outer + strip + sizeof(struct iphdr) > end)
		return XDP_PASS;
decap:
	__builtin_memcpy(&saved, eth, sizeof(saved));
	saved.h_proto = inner_proto;
	if (bpf_xdp_adjust_head(ctx, (int)strip))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	__builtin_memcpy(eth, &saved, sizeof(saved));
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
