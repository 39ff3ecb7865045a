//! DPDK in the loop: the safe layer against a real EAL and real PMDs (net_ring, net_null), without
//! hugepages. The EAL can start once per process, so this file holds a single test that walks through
//! every property in order.

use rvs_dpdk::{
    BURST_SIZE, DpdkError, Eal, EalConfig, LcoreId, Mempool, MempoolConfig, PacketBurst, Port, PortConfig,
    QueueId,
};

fn one_queue() -> PortConfig {
    PortConfig {
        rx_queues: 1,
        tx_queues: 1,
        rx_descriptors: 512,
        tx_descriptors: 512,
        promiscuous: false,
        mtu_bytes: None,
        rss_key: None,
    }
}

#[test]
fn safe_layer_on_a_real_eal() {
    let cfg = EalConfig {
        main_lcore: 0,
        worker_lcores: vec![1],
        memory_mib: Some(256),
        no_huge: true,
        in_memory: true,
        file_prefix: Some(format!("rvs-dpdk-test-{}", std::process::id())),
        vdevs: vec![
            "net_ring0".into(),
            "net_null0".into(),
            "net_null1".into(),
            "net_ring1".into(),
            "net_null2".into(),
        ],
        ..EalConfig::default()
    };
    let eal = Eal::init(&cfg.to_args()).expect("EAL init");
    assert_eq!(Eal::init(&cfg.to_args()).unwrap_err(), DpdkError::AlreadyInitialized);
    assert_eq!(eal.worker_lcores(), vec![LcoreId(1)]);
    assert!(eal.tsc_hz() > 100_000_000, "TSC calibrated");

    // Cache 0 so that in_use is exact at every step (cached objects count as available anyway).
    let pool = Mempool::new(&MempoolConfig {
        name: "test_pool".into(),
        mbufs: 4095,
        cache_size: 0,
        data_room_bytes: 2176,
        socket: None,
    })
    .expect("pool");
    assert_eq!(pool.capacity(), 4095);
    assert_eq!(pool.in_use(), 0);

    mbuf_editing(&pool);
    exact_tx_ownership_on_a_full_ring(&eal, &pool);
    lcore_launch_and_panics(&eal, &pool);
    rss_steering_on_a_multi_queue_port(&eal, &pool);
    retaining_tx_and_bulk_alloc(&eal, &pool);
    assert_eq!(pool.in_use(), 0, "every mbuf is back in the pool");
}

fn mbuf_editing(pool: &Mempool) {
    let mut m = pool.alloc().expect("alloc");
    assert!(m.is_empty());
    assert_eq!(pool.in_use(), 1);
    let headroom = m.headroom();
    m.append(60).expect("tailroom").iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    assert_eq!(m.len(), 60);
    let hdr = m.prepend(20).expect("headroom");
    assert!(hdr.iter().all(|b| *b == 0), "prepended bytes are zeroed");
    hdr.fill(0xee);
    assert_eq!(m.headroom(), headroom - 20);
    assert_eq!(m.len(), 80);
    assert_eq!(&m.data()[..20], &[0xee; 20]);
    assert!(m.adj(20));
    assert_eq!(m.data()[..4], [0, 1, 2, 3]);
    assert!(m.trim(10));
    assert_eq!(m.len(), 50);
    assert_eq!(m.pkt_len(), 50);
    assert!(!m.trim(51), "trimming past the data is refused");
    assert!(!m.adj(51));
    assert_eq!(m.len(), 50, "a refused edit changes nothing");
    assert!(m.prepend(u16::MAX).is_none());
    drop(m);
    assert_eq!(pool.in_use(), 0);
}

fn exact_tx_ownership_on_a_full_ring(eal: &Eal, pool: &Mempool) {
    let id = Port::lookup(eal, "net_ring0").expect("net_ring0 exists");
    assert!(matches!(Port::lookup(eal, "net_nothing9"), Err(DpdkError::NoSuchPort(_))));
    let mut port = Port::configure(eal, id, &one_queue(), pool).expect("configure").start().expect("start");
    let mut rx = port.take_rx_queue(QueueId(0)).expect("rx queue");
    let mut tx = port.take_tx_queue(QueueId(0)).expect("tx queue");
    assert!(matches!(port.take_rx_queue(QueueId(0)), Err(DpdkError::QueueTaken { .. })));
    assert!(matches!(port.take_tx_queue(QueueId(1)), Err(DpdkError::NoSuchQueue { .. })));

    // net_ring loops TX back to RX through one rte_ring. Fill it past capacity without receiving: the
    // refused packets must be freed at once (not leaked, not double-freed), the accepted ones held.
    let (mut sent, mut dropped, mut seq) = (0u32, 0u32, 0u32);
    for _ in 0..200 {
        let mut burst = PacketBurst::new();
        while !burst.is_full() {
            let mut m = pool.alloc().expect("pool has room");
            m.append(64)
                .expect("room")
                .copy_from_slice(&[seq.to_be_bytes().as_slice(), &[0xab; 60]].concat());
            seq += 1;
            burst.push(m).expect("not full");
        }
        let out = tx.tx_burst(&mut burst);
        assert!(burst.is_empty(), "tx_burst always empties the burst");
        assert_eq!(usize::from(out.sent + out.dropped), BURST_SIZE);
        sent += u32::from(out.sent);
        dropped += u32::from(out.dropped);
        assert_eq!(pool.in_use(), sent, "exactly the accepted mbufs are out of the pool");
        if dropped > 2 * BURST_SIZE as u32 {
            break;
        }
    }
    assert!(dropped > 0, "the ring filled up");
    assert!(sent > 0);

    // Drain: every accepted packet comes back once, in order, intact.
    let mut expect = 0u32;
    let mut received = 0u32;
    let mut burst = PacketBurst::new();
    loop {
        let n = rx.rx_burst(&mut burst);
        if n == 0 {
            break;
        }
        for m in burst.iter() {
            let got = u32::from_be_bytes(m.data()[..4].try_into().expect("4 bytes"));
            assert!(got >= expect, "in order");
            expect = got + 1;
            assert_eq!(m.len(), 64);
        }
        received += n as u32;
        burst.clear();
    }
    assert_eq!(received, sent);
    assert_eq!(pool.in_use(), 0);

    // The port will not stop under live queue handles; it hands itself back instead.
    let (port, err) = port.stop().expect_err("queues are out");
    assert_eq!(err, DpdkError::QueuesInUse(id.0));
    drop((rx, tx));
    let _stopped = port.stop().expect("stop once the queues are returned");
}

fn lcore_launch_and_panics(eal: &Eal, pool: &Mempool) {
    assert_eq!(eal.launch(LcoreId(1), || 7).expect("launch").join(), Ok(7));
    let h = eal.launch(LcoreId(1), || panic!("deliberate test panic on a worker lcore")).expect("launch");
    assert_eq!(h.join(), Err(DpdkError::Panicked(1)), "a panic is caught on the lcore and reported");
    assert!(matches!(eal.launch(eal.main_lcore(), || 0), Err(DpdkError::NotAWorker(0))));

    // A worker owns its queues: receive from net_null on lcore 1 and send everything back to it.
    let id = Port::lookup(eal, "net_null0").expect("net_null0");
    let mut port = Port::configure(eal, id, &one_queue(), pool).expect("configure").start().expect("start");
    let mut rx = port.take_rx_queue(QueueId(0)).expect("rx");
    let mut tx = port.take_tx_queue(QueueId(0)).expect("tx");
    let h = eal
        .launch(LcoreId(1), move || {
            let mut burst = PacketBurst::new();
            let mut total = 0;
            while total < 100_000 {
                total += rx.rx_burst(&mut burst) as i32;
                let out = tx.tx_burst(&mut burst);
                assert_eq!(out.dropped, 0, "net_null never refuses");
            }
            total
        })
        .expect("launch");
    assert!(h.join().expect("no panic") >= 100_000);
    let stats = port.stats().expect("stats");
    assert!(stats.rx_packets >= 100_000 && stats.tx_packets == stats.rx_packets, "{stats:?}");
    let port = port.stop().map_err(|(_, e)| e).expect("queues were dropped with the closure");
    drop(port);
    assert_eq!(pool.in_use(), 0);
}

fn rss_steering_on_a_multi_queue_port(eal: &Eal, pool: &Mempool) {
    // net_null offers RSS and a redirection table, as an Intel NIC does.
    let id = Port::lookup(eal, "net_null1").expect("net_null1");
    let cfg = PortConfig { rx_queues: 2, tx_queues: 2, ..one_queue() };
    let port = Port::configure(eal, id, &cfg, pool).expect("configure").start().expect("start");
    assert_ne!(port.rss_hash_fields(), 0, "two queues: RSS on");
    let (key, reta) = port.rss_steering(2).expect("reta update").expect("net_null has a RETA");
    assert!(key.len() >= 40, "a Toeplitz key: {} bytes", key.len());
    assert!(reta.len() >= 64 && reta.len().is_power_of_two());
    assert!(reta.iter().enumerate().all(|(i, &q)| usize::from(q) == i % 2), "entries alternate queues");

    let single = Port::lookup(eal, "net_null2").expect("net_null2");
    let one = Port::configure(eal, single, &one_queue(), pool).expect("configure").start().expect("start");
    assert_eq!(one.rss_steering(1).expect("no error"), None, "one queue: nothing to predict");
}

fn retaining_tx_and_bulk_alloc(eal: &Eal, pool: &Mempool) {
    let id = Port::lookup(eal, "net_ring1").expect("net_ring1");
    let mut port = Port::configure(eal, id, &one_queue(), pool).expect("configure").start().expect("start");
    let mut rx = port.take_rx_queue(QueueId(0)).expect("rx");
    let mut tx = port.take_tx_queue(QueueId(0)).expect("tx");
    // Fill the ring; a refused packet stays in the burst, in order, for the next offer.
    let mut burst = PacketBurst::new();
    let (mut sent, mut seq, mut kept) = (0u32, 0u32, 0usize);
    for _ in 0..200 {
        let before = burst.len();
        let added = pool.alloc_into(&mut burst);
        assert_eq!(added, BURST_SIZE - before, "bulk allocation fills the free slots");
        for m in burst.iter_mut().skip(before) {
            m.append(8).expect("room").copy_from_slice(&u64::from(seq).to_be_bytes());
            seq += 1;
        }
        let n = tx.tx_burst_retaining(&mut burst);
        sent += u32::from(n);
        kept = burst.len();
        if kept > 0 {
            break;
        }
    }
    assert!(kept > 0, "the ring filled up");
    let first_kept =
        u64::from_be_bytes(burst.iter().next().expect("kept").data()[..8].try_into().expect("8"));
    assert_eq!(first_kept, u64::from(sent), "the first refused packet leads the burst");
    assert_eq!(pool.in_use(), seq, "nothing freed, nothing leaked");
    let mut got = PacketBurst::new();
    let mut expect = 0u64;
    while rx.rx_burst(&mut got) > 0 {
        for m in got.iter() {
            assert_eq!(u64::from_be_bytes(m.data()[..8].try_into().expect("8")), expect);
            expect += 1;
        }
        got.clear();
        // Room again: the kept ones go out next, still in order.
        sent += u32::from(tx.tx_burst_retaining(&mut burst));
    }
    assert_eq!(expect, u64::from(seq), "every packet arrived once, in order");
    assert!(burst.is_empty());
    assert_eq!(pool.in_use(), 0);
    let _ = sent;
}
