#include <rte_config.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_pause.h>
#include <rte_prefetch.h>
#include <rte_ring.h>
#include <rte_version.h>

#include "shim.h"

uint16_t rvs_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{ return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts); }

uint16_t rvs_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{ return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts); }

struct rte_mbuf *rvs_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

int rvs_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int count)
{ return rte_pktmbuf_alloc_bulk(mp, mbufs, count); }

void rvs_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
void *rvs_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
uint16_t rvs_pktmbuf_data_len(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }
uint32_t rvs_pktmbuf_pkt_len(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }
uint16_t rvs_pktmbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }
uint16_t rvs_pktmbuf_port(const struct rte_mbuf *m) { return m->port; }
uint16_t rvs_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
uint16_t rvs_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
char *rvs_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
char *rvs_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_prepend(m, len); }
char *rvs_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_adj(m, len); }
int rvs_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
uint32_t rvs_pktmbuf_rss_hash(const struct rte_mbuf *m) { return m->hash.rss; }
uint64_t rvs_pktmbuf_ol_flags(const struct rte_mbuf *m) { return m->ol_flags; }

unsigned int rvs_mempool_in_use_count(const struct rte_mempool *mp) { return rte_mempool_in_use_count(mp); }
unsigned int rvs_mempool_avail_count(const struct rte_mempool *mp) { return rte_mempool_avail_count(mp); }

unsigned int rvs_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned int n, unsigned int *free_space)
{ return rte_ring_enqueue_burst(r, obj_table, n, free_space); }

unsigned int rvs_ring_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned int n, unsigned int *available)
{ return rte_ring_dequeue_burst(r, obj_table, n, available); }

unsigned int rvs_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }

unsigned int rvs_lcore_id(void) { return rte_lcore_id(); }
int rvs_errno(void) { return rte_errno; }
uint64_t rvs_rdtsc(void) { return rte_rdtsc(); }
uint64_t rvs_get_tsc_hz(void) { return rte_get_tsc_hz(); }
void rvs_pause(void) { rte_pause(); }
void rvs_prefetch0(const volatile void *p) { rte_prefetch0(p); }
const char *rvs_version(void) { return rte_version(); }
