// SPDX-License-Identifier: GPL-2.0
// IPIP decapsulation for TUN-mode real servers on a kernel without the ipip module: strips the outer
// IPv4 header of protocol-4 packets at the veth's XDP hook, so the inner packet (to the VIP on lo)
// reaches the stack as if it had arrived plain. What `ip link add type ipip` does on a real server.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("xdp")
int ipip_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ethhdr saved;
	struct iphdr *outer;
	__u32 hlen;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > end || outer->protocol != IPPROTO_IPIP)
		return XDP_PASS;
	/* Fragments of the outer packet would need reassembly first: leave them to the stack. */
	if (outer->frag_off & bpf_htons(0x3fff))
		return XDP_PASS;
	hlen = outer->ihl * 4;
	if (hlen < sizeof(*outer) || (void *)outer + hlen + sizeof(struct iphdr) > end)
		return XDP_PASS;
	__builtin_memcpy(&saved, eth, sizeof(saved));
	if (bpf_xdp_adjust_head(ctx, (int)hlen))
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
