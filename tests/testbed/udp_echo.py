"""UDP echo for the test bed's real servers: answers each datagram with "<name> <datagram>", and
counts what it received (printed on SIGTERM), so tests can tell which server got what."""
import signal
import socket
import sys

name, port = sys.argv[1].encode(), int(sys.argv[2])
# Both families on one socket (IPv4 peers appear as ::ffff:a.b.c.d), even where the namespace has
# IPv6 turned off.
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", port))
count = 0


def done(*_):
    print(f"received {count}", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, done)
while True:
    data, peer = s.recvfrom(65535)
    count += 1
    s.sendto(name + b" " + data, peer)
