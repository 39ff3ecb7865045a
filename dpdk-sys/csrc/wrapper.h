/* The DPDK surface rvs binds. Keep it to what the appliance uses: every header here costs bindgen time. */
#include <rte_config.h>
#include <rte_common.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <rte_version.h>
#include <rte_prefetch.h>
#include <rte_pause.h>

#include "shim.h"
