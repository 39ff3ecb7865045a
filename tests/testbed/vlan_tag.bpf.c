// SPDX-License-Identifier: GPL-2.0
// An 802.1Q access port at a host's tc hooks, for a kernel without the 8021q module (no
// `ip link add link eth0 type vlan`): everything the host sends leaves tagged with VLAN_ID, and
// only frames tagged with VLAN_ID reach it, untagged (the kernel has moved the tag into the skb's
// metadata before tc's ingress hook, so the tag is read there, not from the bytes).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define VLAN_ID 100

SEC("tc")
int vlan_push(struct __sk_buff *skb)
{
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), VLAN_ID) != 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

SEC("tc")
int vlan_pop(struct __sk_buff *skb)
{
	if (!skb->vlan_present || (skb->vlan_tci & 0x0fff) != VLAN_ID || skb->vlan_proto != bpf_htons(ETH_P_8021Q))
		return TC_ACT_SHOT;
	if (bpf_skb_vlan_pop(skb) != 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
