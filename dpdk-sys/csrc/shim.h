/*
 * Callable copies of DPDK's `static inline` fast-path functions. bindgen cannot link to a static inline
 * function (there is no symbol), so each one gets a tiny exported wrapper here. They are deliberately
 * thin: same arguments, same return, no policy.
 */
#ifndef RVS_DPDK_SHIM_H
#define RVS_DPDK_SHIM_H

#include <stdint.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

/* ethdev fast path */
uint16_t rvs_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t rvs_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

/* mbuf */
struct rte_mbuf *rvs_pktmbuf_alloc(struct rte_mempool *mp);
int rvs_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int count);
void rvs_pktmbuf_free(struct rte_mbuf *m);
void *rvs_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t rvs_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t rvs_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t rvs_pktmbuf_nb_segs(const struct rte_mbuf *m);
uint16_t rvs_pktmbuf_port(const struct rte_mbuf *m);
uint16_t rvs_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t rvs_pktmbuf_tailroom(const struct rte_mbuf *m);
char *rvs_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *rvs_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *rvs_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int rvs_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
uint32_t rvs_pktmbuf_rss_hash(const struct rte_mbuf *m);
uint64_t rvs_pktmbuf_ol_flags(const struct rte_mbuf *m);

/* mempool */
unsigned int rvs_mempool_in_use_count(const struct rte_mempool *mp);
unsigned int rvs_mempool_avail_count(const struct rte_mempool *mp);

/* ring */
unsigned int rvs_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned int n, unsigned int *free_space);
unsigned int rvs_ring_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned int n, unsigned int *available);
unsigned int rvs_ring_count(const struct rte_ring *r);

/* lcore, time, cpu */
unsigned int rvs_lcore_id(void);
int rvs_errno(void);
uint64_t rvs_rdtsc(void);
uint64_t rvs_get_tsc_hz(void);
void rvs_pause(void);
void rvs_prefetch0(const volatile void *p);
const char *rvs_version(void);

#endif
