"""Advanced stateful (ASTF): HTTP-like connections to the VIP — connect, a GET of ~100 bytes, a 32 KiB
response, close — at `cps` new connections per second per multiplier unit: the director's connection
rate (scheduling, insertion, the TCP state machine, expiry) with real TCP endpoints on both sides.
TRex's server side answers for the real-server addresses: point the rvs service's real servers at
16.0.0.0/16's counterpart below (NAT: `-a -t VIP:80 -r 48.0.0.1:80 -m`), and give the director's
neighbour table static entries for them if TRex does not answer ARP on that port (see README.md).

    start -f perf/trex/http_cps.py -m 100000 -t vip=192.0.2.80
"""
from trex.astf.api import (ASTFProfile, ASTFProgram, ASTFIPGen, ASTFIPGenDist, ASTFIPGenGlobal,
                           ASTFAssociationRule, ASTFTCPClientTemplate, ASTFTCPServerTemplate,
                           ASTFTemplate)

from common import VIP

REQUEST = (b"GET /32k HTTP/1.1\r\nHost: rvs-perf\r\nUser-Agent: trex\r\n"
           b"Accept: */*\r\nConnection: close\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: trex\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 32768\r\nConnection: close\r\n\r\n" + b"x" * 32768)


class HttpCps:
    def get_profile(self, vip=VIP, cps=1, **kwargs):
        client = ASTFProgram()
        client.connect()
        client.send(REQUEST)
        client.recv(len(RESPONSE))
        server = ASTFProgram()
        server.recv(len(REQUEST))
        server.send(RESPONSE)
        ip_gen = ASTFIPGen(glob=ASTFIPGenGlobal(ip_offset="1.0.0.0"),
                           dist_client=ASTFIPGenDist(ip_range=["198.51.100.1", "198.51.100.254"],
                                                     distribution="seq"),
                           dist_server=ASTFIPGenDist(ip_range=[vip, vip], distribution="seq"))
        template = ASTFTemplate(
            client_template=ASTFTCPClientTemplate(program=client, ip_gen=ip_gen, cps=float(cps),
                                                  port=80),
            server_template=ASTFTCPServerTemplate(program=server,
                                                  assoc=ASTFAssociationRule(port=80)))
        return ASTFProfile(default_ip_gen=ip_gen, templates=template)


def register():
    return HttpCps()
