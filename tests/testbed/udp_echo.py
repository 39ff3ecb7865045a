"""UDP echo for the test bed's real servers: answers each datagram with "<name> <datagram>", and
counts what it received (printed on SIGTERM), so tests can tell which server got what."""
import signal
import socket
import sys

name, port = sys.argv[1].encode(), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", port))
count = 0


def done(*_):
    print(f"received {count}", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, done)
while True:
    data, peer = s.recvfrom(2048)
    count += 1
    s.sendto(name + b" " + data, peer)
