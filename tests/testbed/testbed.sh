#!/bin/bash
# The LVS test bed in network namespaces: a client, a router, the director's two ports and three real
# servers running nginx, wired the way LVS guides wire them.
#
#   client ns (198.51.100.10-29/24) -- router ns (198.51.100.1, 192.0.2.1, bridge 203.0.113.254)
#   router 192.0.2.0/24 -- director "front" port (rvsd answers for 192.0.2.2 and the VIPs)
#   router bridge 203.0.113.0/24 -- director "back" port (203.0.113.1) and real servers .11 .12 .13
#
# Real servers: NAT traffic returns through the director (default route via 203.0.113.1); packets
# from a VIP (DR and TUN replies) go straight to the router (source routing: "from 192.0.2.0/24 table
# 100"), so they bypass the director. VIPs 192.0.2.81, .82 and .90 sit on lo with arp_ignore=1 and
# arp_announce=2; an XDP program on eth0 strips IPIP, GRE and GUE to UDP port 6080 (this kernel has no
# ipip, gre or fou module). Every link has an MTU of 1500: client packets that do not fit in IPIP get ICMP fragmentation-needed from the
# director (path MTU discovery), as on a real network. nginx listens on 80, 443 and 8080 and
# answers with the server's name (and /status with 200, or 500 while www/fail exists); a UDP echo
# service on 5300 answers with the name too.
#
# usage: testbed.sh up PREFIX WORKDIR [pair]  (PREFIX: at most 6 letters/digits)
#        testbed.sh vlan PREFIX WORKDIR
#        testbed.sh ipv6 PREFIX WORKDIR
#        testbed.sh tapports PREFIX
#        testbed.sh down PREFIX [WORKDIR]
# The director's kernel interfaces are ${P}df (front) and ${P}db (back) in namespace ${P}d.
#
# "testbed.sh vlan PREFIX WORKDIR" (after up, single): VLAN 100 on the director's front wire. The
# router's front link joins a bridge (192.0.2.1 moves onto it) with a veth to namespace ${P}v, a
# host on VLAN 100 (198.18.100.10-12/24): tc programs on its eth0 (vlan_tag.bpf.c) tag all it
# sends and take only VLAN 100 frames, untagged, as an access port would (no 8021q module here).
# The bridge carries the tagged frames to and from the director's front port unchanged.
#
# "testbed.sh ipv6 PREFIX WORKDIR" (after up, single): IPv6 beside IPv4 everywhere but in the
# director's namespace (rvsd owns its ports; its kernel keeps out of IPv6 there): the client
# 2001:db8:c::10/64; the router 2001:db8:c::1, 2001:db8:f::1 (front), 2001:db8:b::fe (server LAN),
# forwarding; real servers 2001:db8:b::11-13/64 with the DR/TUN VIPs 2001:db8:f::81, ::82, ::84, ::90
# and 192.0.2.84 (IPv4 inside IPv6) on lo,
# default route via the director's 2001:db8:b::1 (NAT) and replies from 2001:db8:f::/64 via the
# router; nginx listens on IPv6 too. No duplicate address detection nor router advertisements.
#
# "testbed.sh tapports PREFIX" (after rvsd started with net_tap ports named ${P}tf and ${P}tb): the
# director's namespace bridges each TAP with its port's veth (${P}bfr: ${P}df + ${P}tf, ${P}bbk:
# ${P}db + ${P}tb). net_af_packet's fanout asks the kernel to reassemble IP fragments before rvsd
# sees them; through a TAP, fragments reach rvsd as they are on the wire.
#
# "pair": two directors, as LVS pairs are deployed: a second director namespace ${P}e (${P}ef,
# ${P}eb) beside ${P}d, both on a front bridge in the router (192.0.2.1 is the router's on that
# bridge) and on the server bridge; the directors' own addresses are .2 and .3 on each side, and the
# real servers' gateway 203.0.113.1 is a VRRP address the MASTER director holds.
set -euo pipefail

cmd=${1:?usage: testbed.sh up|down PREFIX [WORKDIR]}
P=${2:?prefix}
W=${3:-}
MODE=${4:-single}
HERE=$(cd "$(dirname "$0")" && pwd)
SERVERS="1 2 3"

ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

down() {
    for n in c r d e v s1 s2 s3; do
        if [ -n "$W" ] && [ -f "$W/nginx-$n.pid" ]; then
            kill "$(cat "$W/nginx-$n.pid")" 2>/dev/null || true
        fi
        ip netns pids "$P$n" 2>/dev/null | xargs -r kill 2>/dev/null || true
    done
    sleep 0.2
    for n in c r d e v s1 s2 s3; do
        ip netns pids "$P$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$P$n" 2>/dev/null || true
    done
}

quiet_ns() {
    # No IPv6 chatter (router solicitations, MLD) on the director's ports.
    ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ns "$1" ip link set lo up
}

no_csum_offload() {
    # A kernel sending into a veth leaves TCP/UDP checksums to be finished; the DPDK port would
    # forward them unfinished (ARCHITECTURE.md, test-bed facts).
    ns "$1" ethtool -K "$2" tx off >/dev/null
}

up() {
    [ -n "$W" ] || { echo "testbed.sh up needs a WORKDIR" >&2; exit 2; }
    mkdir -p "$W"
    down
    local dirs="d"
    [ "$MODE" = pair ] && dirs="d e"
    for n in c r $dirs s1 s2 s3; do ip netns add "$P$n"; quiet_ns "$P$n"; done

    # client -- router
    ip link add "${P}c0" netns "${P}c" type veth peer name "${P}rc" netns "${P}r"
    ns "${P}c" ip link set "${P}c0" up
    for i in $(seq 10 29); do ns "${P}c" ip addr add "198.51.100.$i/24" dev "${P}c0"; done
    ns "${P}c" ip route add default via 198.51.100.1
    no_csum_offload "${P}c" "${P}c0"

    # router: front link to the director, bridge for the server LAN
    ns "${P}r" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    ns "${P}r" ip link set "${P}rc" up
    ns "${P}r" ip addr add 198.51.100.1/24 dev "${P}rc"
    ns "${P}r" ip link add "${P}br" type bridge
    ns "${P}r" ip link set "${P}br" up
    ns "${P}r" ip addr add 203.0.113.254/24 dev "${P}br"
    if [ "$MODE" = pair ]; then
        # Both directors' front ports on one segment with the router (a bridge).
        ns "${P}r" ip link add "${P}bf" type bridge
        ns "${P}r" ip link set "${P}bf" up
        ns "${P}r" ip addr add 192.0.2.1/24 dev "${P}bf"
        ns "${P}r" sysctl -qw "net.ipv4.conf.${P}bf.rp_filter=0"
    fi
    for x in $dirs; do
        local rf="${P}rf" rb="${P}bd"
        if [ "$x" = e ]; then rf="${P}rg"; rb="${P}be"; fi
        ip link add "$rf" netns "${P}r" type veth peer name "${P}${x}f" netns "${P}$x"
        if [ "$MODE" = pair ]; then
            ns "${P}r" ip link set "$rf" master "${P}bf" up
        else
            ns "${P}r" ip link set "$rf" up
            ns "${P}r" ip addr add 192.0.2.1/24 dev "$rf"
            ns "${P}r" sysctl -qw "net.ipv4.conf.$rf.rp_filter=0"
        fi
        ip link add "$rb" netns "${P}r" type veth peer name "${P}${x}b" netns "${P}$x"
        ns "${P}r" ip link set "$rb" master "${P}br" up
        no_csum_offload "${P}r" "$rf"
        no_csum_offload "${P}r" "$rb"

        # the director's kernel ends: up, no addresses (rvsd owns them through net_af_packet)
        ns "${P}$x" ip link set "${P}${x}f" up
        ns "${P}$x" ip link set "${P}${x}b" up
        # They are rvsd's (net_af_packet reads them), but the namespace's kernel sees their frames
        # too, as it would not see a DPDK-bound NIC's. Once the kernel twins give it addresses (a VIP
        # that VRRP puts there, a Local server's), it must neither answer ARP on them nor take their
        # packets (its RSTs would race rvsd's forwarding): no ARP replies at all, and a strict
        # reverse-path check that nothing arriving there passes (every route points at the twins).
        ns "${P}$x" sysctl -qw "net.ipv4.conf.${P}${x}f.arp_ignore=8" "net.ipv4.conf.${P}${x}b.arp_ignore=8" \
            "net.ipv4.conf.${P}${x}f.rp_filter=1" "net.ipv4.conf.${P}${x}b.rp_filter=1"
    done
    no_csum_offload "${P}r" "${P}rc"
    ns "${P}r" sysctl -qw "net.ipv4.conf.${P}br.rp_filter=0"

    # real servers
    local obj="$W/ipip_decap.o"
    clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c "$HERE/ipip_decap.bpf.c" -o "$obj"
    for i in $SERVERS; do
        local s="${P}s$i" rs="203.0.113.1$i"
        ip link add "${P}b$i" netns "${P}r" type veth peer name eth0 netns "$s"
        ns "${P}r" ip link set "${P}b$i" master "${P}br" up
        no_csum_offload "${P}r" "${P}b$i"
        ns "$s" ip link set eth0 up
        ns "$s" ip addr add "$rs/24" dev eth0
        no_csum_offload "$s" eth0
        ns "$s" ip route add default via 203.0.113.1
        ns "$s" ip route add default via 203.0.113.254 table 100
        ns "$s" ip rule add from 192.0.2.0/24 lookup 100
        for v in 81 82 90; do ns "$s" ip addr add "192.0.2.$v/32" dev lo; done
        ns "$s" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
            net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2 \
            net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0 net.ipv4.conf.lo.rp_filter=0
        ns "$s" ip link set dev eth0 xdp obj "$obj" sec xdp

        local root="$W/s$i"
        mkdir -p "$root/www" "$root/tmp"
        printf 's%s\n' "$i" >"$root/www/index.html"
        head -c 1048576 /dev/urandom >"$root/www/big.bin"
        cat >"$root/nginx.conf" <<NGINX
worker_processes 1;
# Thousands of kept-alive connections at once (the ECMP test's flow fleet).
worker_rlimit_nofile 20000;
pid $W/nginx-s$i.pid;
error_log $root/error.log;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $root/tmp/body;
    proxy_temp_path $root/tmp/proxy;
    fastcgi_temp_path $root/tmp/fastcgi;
    uwsgi_temp_path $root/tmp/uwsgi;
    scgi_temp_path $root/tmp/scgi;
    keepalive_requests 100000;
    server {
        listen 80;
        listen 443;
        listen 8080;
        root $root/www;
        location / { default_type text/plain; }
        # For HTTP health checks: 200, or 500 while the file "fail" exists.
        location = /status {
            if (-f $root/www/fail) { return 500; }
            default_type text/plain;
            return 200 "ok\n";
        }
    }
}
NGINX
        ns "$s" nginx -c "$root/nginx.conf" -g 'user root;'
        ns "$s" /usr/bin/python3 "$HERE/udp_echo.py" "s$i" 5300 </dev/null >"$root/udp.log" 2>&1 &
    done
    # nginx and the echo servers are up once they answer locally.
    for i in $SERVERS; do
        for _ in $(seq 50); do
            if ns "${P}s$i" curl -sf -o /dev/null "http://203.0.113.1$i/"; then break; fi
            sleep 0.1
        done
    done
}

vlan() {
    [ -n "$W" ] || { echo "testbed.sh vlan needs a WORKDIR" >&2; exit 2; }
    local rf="${P}rf" bv="${P}bv" v="${P}v" obj="$W/vlan_tag.o"
    clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c "$HERE/vlan_tag.bpf.c" -o "$obj"
    ns "${P}r" ip link add "$bv" type bridge
    ns "${P}r" ip addr del 192.0.2.1/24 dev "$rf"
    ns "${P}r" ip link set "$rf" master "$bv"
    ns "${P}r" ip link set "$bv" up
    ns "${P}r" ip addr add 192.0.2.1/24 dev "$bv"
    ns "${P}r" sysctl -qw "net.ipv4.conf.$bv.rp_filter=0"
    ip netns add "$v"
    quiet_ns "$v"
    ip link add "${P}rv" netns "${P}r" type veth peer name eth0 netns "$v"
    ns "${P}r" ip link set "${P}rv" master "$bv" up
    no_csum_offload "${P}r" "${P}rv"
    ns "$v" ip link set eth0 up
    no_csum_offload "$v" eth0
    for i in 10 11 12; do ns "$v" ip addr add "198.18.100.$i/24" dev eth0; done
    ns "$v" tc qdisc add dev eth0 clsact
    ns "$v" tc filter add dev eth0 egress bpf direct-action obj "$obj" sec tc program vlan_push
    ns "$v" tc filter add dev eth0 ingress bpf direct-action obj "$obj" sec tc program vlan_pop
}

ipv6() {
    [ -n "$W" ] || { echo "testbed.sh ipv6 needs a WORKDIR" >&2; exit 2; }
    for n in c r s1 s2 s3; do
        ns "$P$n" sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0 \
            net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.all.accept_ra=0 \
            net.ipv6.conf.default.disable_ipv6=0 net.ipv6.conf.all.disable_ipv6=0
    done
    ns "${P}c" ip -6 addr add 2001:db8:c::10/64 dev "${P}c0" nodad
    ns "${P}c" ip -6 route add default via 2001:db8:c::1
    ns "${P}r" sysctl -qw net.ipv6.conf.all.forwarding=1
    ns "${P}r" ip -6 addr add 2001:db8:c::1/64 dev "${P}rc" nodad
    ns "${P}r" ip -6 addr add 2001:db8:f::1/64 dev "${P}rf" nodad
    ns "${P}r" ip -6 addr add 2001:db8:b::fe/64 dev "${P}br" nodad
    for i in $SERVERS; do
        local s="${P}s$i"
        ns "$s" ip -6 addr add "2001:db8:b::1$i/64" dev eth0 nodad
        for v in 81 82 84 90; do ns "$s" ip -6 addr add "2001:db8:f::$v/128" dev lo nodad; done
        # The VIP of an IPv4 service whose servers are reached over IPv6 (a 4in6 tunnel).
        ns "$s" ip addr add 192.0.2.84/32 dev lo
        ns "$s" ip -6 route add default via 2001:db8:b::1
        ns "$s" ip -6 route add default via 2001:db8:b::fe table 100
        ns "$s" ip -6 rule add from 2001:db8:f::/64 lookup 100
        sed -i 's/^        listen 8080;$/        listen 8080;\n        listen [::]:80;\n        listen [::]:8080;/' "$W/s$i/nginx.conf"
        ns "$s" nginx -c "$W/s$i/nginx.conf" -g 'user root;' -s reload
    done
    for i in $SERVERS; do
        for _ in $(seq 50); do
            if ns "${P}s$i" curl -sf -o /dev/null "http://[2001:db8:b::1$i]/"; then break; fi
            sleep 0.1
        done
    done
}

tapports() {
    local d="${P}d"
    for side in f b; do
        local br="${P}b${side}r"
        ns "$d" ip link add "$br" type bridge
        ns "$d" ip link set "${P}d${side}" master "$br"
        # The TAP's kernel side has the DPDK port's MAC: as a bridge port's own address, frames to
        # it would stay in the bridge. Another MAC sends them through the TAP to rvsd.
        ns "$d" ip link set "${P}t${side}" address "02:00:00:00:ee:0${side/f/1}"
        ns "$d" ip link set "${P}t${side}" master "$br"
        ns "$d" ip link set "${P}t${side}" up
        ns "$d" ip link set "$br" up
    done
}

case "$cmd" in
    up) up ;;
    tapports) tapports ;;
    ipv6) ipv6 ;;
    vlan) vlan ;;
    down) down ;;
    *) echo "usage: testbed.sh up|vlan|ipv6|tapports|down PREFIX [WORKDIR]" >&2; exit 2 ;;
esac
