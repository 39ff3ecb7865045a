"""Shared defaults of the rvs TRex profiles. Addresses are the documentation ranges used throughout
rvs; on a real bed, pass tunables (`-t vip=...,clients=...`) to match the director's configuration."""

# The VIP of the service under test (rvsadm -A -t 192.0.2.80:80 / -u 192.0.2.80:5300).
VIP = "192.0.2.80"
# Client addresses: the first of a range TRex walks through.
CLIENT_FIRST = "198.51.100.1"
# Ethernet payload overhead: 14 (Ethernet) + 4 (FCS) is what TRex's sizes do not include.
FCS = 4


def client_last(first, count):
    """The last address of a range of `count` addresses starting at `first`."""
    a = [int(x) for x in first.split(".")]
    n = (a[0] << 24 | a[1] << 16 | a[2] << 8 | a[3]) + max(count, 1) - 1
    return ".".join(str((n >> s) & 255) for s in (24, 16, 8, 0))


def pad(pkt, frame_size):
    """Pads a scapy packet to `frame_size` bytes on the wire (FCS included)."""
    need = frame_size - FCS - len(pkt)
    return pkt / ("x" * need) if need > 0 else pkt
