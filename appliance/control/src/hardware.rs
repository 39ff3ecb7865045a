//! What `rvsd --check` reports of the machine the configuration will run on, read from sysfs (and
//! ethtool, for a kernel netdev's RSS): the check must not start the EAL, which would take the NICs from whatever holds them. For each
//! PCI port: its driver, NUMA node and, while a kernel driver holds it, link speed, queue count and
//! RSS (ethtool: the redirection table's size, the kernel's hash fields);
//! the workers' NUMA nodes and isolation; the hugepages. Mismatches that cost throughput or stop rvsd
//! at start are warnings; none of them fails the check.

use std::path::Path;

use crate::config::{Config, Device};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub warning: bool,
    pub text: String,
}

fn info(text: String) -> Finding {
    Finding { warning: false, text }
}

fn warn(text: String) -> Finding {
    Finding { warning: true, text }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// Drivers DPDK's PCI PMDs work through; mlx4/mlx5 NICs stay on their kernel driver (the PMD uses
/// them through rdma-core).
const DPDK_DRIVERS: &[&str] = &["vfio-pci", "uio_pci_generic", "igb_uio"];
const BIFURCATED: &[&str] = &["mlx5_core", "mlx4_core"];

/// A CPU list as the kernel prints it ("2-3,5").
fn cpu_list(s: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    v.extend(a..=b.min(a.saturating_add(4096)));
                }
            }
            None => v.extend(part.parse::<u32>().ok()),
        }
    }
    v
}

/// The NUMA node of CPU `cpu`, from its `nodeN` entry.
fn cpu_node(root: &Path, cpu: u32) -> Option<u32> {
    let dir = root.join(format!("sys/devices/system/cpu/cpu{cpu}"));
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        e.file_name().to_str().and_then(|n| n.strip_prefix("node")).and_then(|n| n.parse().ok())
    })
}

/// `ethtool -x` and `-n rx-flow-hash` for a netdev, as one line; `None` when ethtool is missing or
/// the device has no RSS (a veth, say).
fn ethtool_rss(iface: &str) -> Option<String> {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("ethtool").args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let reta = run(&["-x", iface]).as_deref().and_then(reta_size);
    let fields = |flow: &str| {
        let f = run(&["-n", iface, "rx-flow-hash", flow]).map(|t| flow_hash_fields(&t)).unwrap_or_default();
        if f.is_empty() { "unknown".to_owned() } else { f.join(" ") }
    };
    let reta = reta?;
    Some(format!(
        "RSS redirection table of {reta} entries; the kernel hashes TCPv4 on {} and UDPv4 on {}",
        fields("tcp4"),
        fields("udp4")
    ))
}

/// The number of entries in `ethtool -x`'s "RX flow hash indirection table" (rows of "N: q q q ...").
fn reta_size(text: &str) -> Option<usize> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("RX flow hash indirection table"));
    lines.next()?;
    let n: usize = lines
        .map_while(|l| {
            let (idx, queues) = l.trim().split_once(':')?;
            idx.trim().parse::<usize>().ok()?;
            Some(queues.split_whitespace().filter(|q| q.parse::<u32>().is_ok()).count())
        })
        .sum();
    (n > 0).then_some(n)
}

/// `ethtool -n IF rx-flow-hash FLOW`'s fields, by short names.
fn flow_hash_fields(text: &str) -> Vec<&'static str> {
    text.lines()
        .filter_map(|l| match l.trim() {
            "IP SA" => Some("src-ip"),
            "IP DA" => Some("dst-ip"),
            l if l.starts_with("L4 bytes 0 & 1") => Some("src-port"),
            l if l.starts_with("L4 bytes 2 & 3") => Some("dst-port"),
            "L2DA" => Some("dst-mac"),
            "VLAN tag" => Some("vlan"),
            _ => None,
        })
        .collect()
}

/// The report for `cfg` on the machine whose filesystem is at `root` ("/" in rvsd).
pub fn survey(cfg: &Config, root: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    let workers = &cfg.eal.worker_lcores;
    let isolated =
        read(&root.join("sys/devices/system/cpu/isolated")).map(|s| cpu_list(&s)).unwrap_or_default();
    // Each worker's NUMA node, read once for its own line and for every port's comparison.
    let worker_nodes: Vec<(u32, Option<u32>)> = workers.iter().map(|&w| (w, cpu_node(root, w))).collect();
    for &(w, node) in &worker_nodes {
        let node = node.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
        out.push(info(format!("worker lcore {w}: NUMA node {node}")));
        if !isolated.contains(&w) {
            out.push(warn(format!(
                "worker lcore {w} is not isolated (isolcpus/nohz_full on the kernel command line): \
                 the kernel may schedule other work on it"
            )));
        }
    }
    for port in &cfg.ports {
        let Device::Pci(addr) = &port.device else {
            out.push(info(format!("port {}: virtual device {}", port.name, port.dpdk_name)));
            continue;
        };
        let dev = root.join("sys/bus/pci/devices").join(addr);
        if !dev.exists() {
            out.push(warn(format!("port {}: no PCI device {addr} on this machine", port.name)));
            continue;
        }
        let driver = std::fs::read_link(dev.join("driver"))
            .ok()
            .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned));
        let node = read(&dev.join("numa_node")).and_then(|s| s.parse::<i32>().ok()).filter(|&n| n >= 0);
        let ids = [read(&dev.join("vendor")), read(&dev.join("device"))];
        let id = match ids {
            [Some(v), Some(d)] => format!(" [{}:{}]", v.trim_start_matches("0x"), d.trim_start_matches("0x")),
            _ => String::new(),
        };
        out.push(info(format!(
            "port {} ({addr}{id}): driver {}, NUMA node {}",
            port.name,
            driver.as_deref().unwrap_or("none"),
            node.map_or_else(|| "unknown".to_owned(), |n| n.to_string())
        )));
        match driver.as_deref() {
            Some(d) if DPDK_DRIVERS.contains(&d) || BIFURCATED.contains(&d) => {}
            Some(d) => out.push(warn(format!(
                "port {}: {addr} is held by the kernel driver {d}; DPDK cannot drive it until it is bound \
                 to vfio-pci (dpdk-devbind.py -b vfio-pci {addr})",
                port.name
            ))),
            None => out.push(warn(format!(
                "port {}: {addr} has no driver; bind it to vfio-pci (dpdk-devbind.py -b vfio-pci {addr})",
                port.name
            ))),
        }
        if let Some(nic) = node {
            for &(w, node) in &worker_nodes {
                if let Some(wn) = node.and_then(|n| i32::try_from(n).ok()).filter(|&wn| wn != nic) {
                    out.push(warn(format!(
                        "worker lcore {w} is on NUMA node {wn}, port {}'s NIC on node {nic}: every packet \
                         crosses the interconnect",
                        port.name
                    )));
                }
            }
        }
        // While a kernel driver holds the NIC its netdev tells the link speed and the queues.
        let netdevs =
            std::fs::read_dir(dev.join("net")).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
        for nd in netdevs {
            let name = nd.file_name().to_string_lossy().into_owned();
            let speed = read(&nd.path().join("speed")).and_then(|s| s.parse::<i64>().ok()).filter(|&s| s > 0);
            let rx_queues = std::fs::read_dir(nd.path().join("queues"))
                .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count())
                .unwrap_or(0);
            out.push(info(format!(
                "port {}: netdev {name}, link {}, {rx_queues} RX queues",
                port.name,
                speed.map_or_else(|| "down or unknown".to_owned(), |s| format!("{s} Mb/s"))
            )));
            // RSS as the kernel driver has it (ethtool): the redirection table's size is the NIC's;
            // the hash fields are the kernel's choice, which DPDK replaces with rvs's when it takes
            // the port (rvsd logs those at start). Only on the real machine: a test's tree has no
            // such interface.
            if root == Path::new("/") {
                if let Some(rss) = ethtool_rss(&name) {
                    out.push(info(format!("port {}: netdev {name}, {rss}", port.name)));
                }
            }
            if rx_queues > 0 && rx_queues < workers.len() {
                out.push(warn(format!(
                    "port {}: {rx_queues} RX queues for {} workers; some workers would get no traffic",
                    port.name,
                    workers.len()
                )));
            }
        }
    }
    let mut free_mib = 0u64;
    let mut free_parts = Vec::new();
    if let Ok(dir) = std::fs::read_dir(root.join("sys/kernel/mm/hugepages")) {
        let mut sizes: Vec<_> = dir.flatten().collect();
        sizes.sort_by_key(std::fs::DirEntry::file_name);
        for e in sizes {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(kib) = name
                .strip_prefix("hugepages-")
                .and_then(|s| s.strip_suffix("kB"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let total = read(&e.path().join("nr_hugepages")).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            let free =
                read(&e.path().join("free_hugepages")).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            free_mib = free_mib.saturating_add(free.saturating_mul(kib) / 1024);
            if free > 0 {
                free_parts.push(format!("{free} of {kib} kB"));
            }
            out.push(info(format!("hugepages of {kib} kB: {total} reserved, {free} free")));
        }
    }
    // The connection tables are ordinary memory that rvsd's allocator asks to back with transparent
    // huge pages; without them every lookup at a million flows also walks the page tables.
    if let Some(mode) = read(&root.join("sys/kernel/mm/transparent_hugepage/enabled"))
        .and_then(|t| rvs_dpdk::huge::parse_thp_mode(&t))
    {
        if mode == "never" {
            out.push(warn(
                "transparent huge pages are off (never): the connection tables get 4 kB pages, lookups cost more \
                 (echo madvise > /sys/kernel/mm/transparent_hugepage/enabled)"
                    .into(),
            ));
        } else {
            out.push(info(format!("transparent huge pages: {mode} (the connection tables use them)")));
        }
    }
    if !cfg.eal.no_huge {
        let want = u64::from(cfg.eal.memory_mib.unwrap_or(0));
        if free_mib == 0 {
            out.push(warn(
                "no free hugepages: rvsd will not start (reserve some, or set eal.hugepages = false)".into(),
            ));
        } else if free_mib < want {
            out.push(warn(format!(
                "{free_mib} MiB of free hugepages ({}), eal.memory_mib asks for {want}",
                free_parts.join(", ")
            )));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(p, text).expect("write");
    }

    fn config(devices: &[&str], workers: &str) -> Config {
        let ports: String = devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                format!("[[port]]\nname = \"p{i}\"\ndevice = \"{d}\"\naddress = \"192.0.{}.2/24\"\n", 2 + i)
            })
            .collect();
        let text = format!(
            "[eal]\nmain_lcore = 0\nworker_lcores = {workers}\nmemory_mib = 1024\nhugepages = true\n\n[mempool]\nmbufs = 65535\n\n{ports}\n\
             [forwarding]\nmode = \"director\"\n"
        );
        Config::from_toml(&text).expect("config")
    }

    /// A sysfs tree laid out as the kernel lays it out, for NICs and NUMA nodes this machine lacks.
    #[test]
    fn a_nic_on_a_kernel_driver_and_a_worker_on_another_node_are_warned_about() {
        let root = std::env::temp_dir().join(format!("rvs-hw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let nic = "sys/bus/pci/devices/0000:3b:00.0";
        write(&root, &format!("{nic}/numa_node"), "1\n");
        write(&root, &format!("{nic}/vendor"), "0x8086\n");
        write(&root, &format!("{nic}/device"), "0x1572\n");
        write(&root, &format!("{nic}/net/ens1f0/speed"), "10000\n");
        write(&root, &format!("{nic}/net/ens1f0/queues/rx-0/rps_cpus"), "0\n");
        std::fs::create_dir_all(root.join("sys/bus/pci/drivers/i40e")).expect("driver dir");
        std::os::unix::fs::symlink(root.join("sys/bus/pci/drivers/i40e"), root.join(nic).join("driver"))
            .expect("link");
        let vf = "sys/bus/pci/devices/0000:3b:00.1";
        write(&root, &format!("{vf}/numa_node"), "0\n");
        std::fs::create_dir_all(root.join("sys/bus/pci/drivers/vfio-pci")).expect("driver dir");
        std::os::unix::fs::symlink(root.join("sys/bus/pci/drivers/vfio-pci"), root.join(vf).join("driver"))
            .expect("link");
        for cpu in [2, 3] {
            std::fs::create_dir_all(root.join(format!("sys/devices/system/cpu/cpu{cpu}/node0")))
                .expect("cpu");
        }
        write(&root, "sys/devices/system/cpu/isolated", "2\n");
        write(&root, "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "512\n");
        write(&root, "sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "256\n");
        write(&root, "sys/kernel/mm/transparent_hugepage/enabled", "always madvise [never]\n");

        let cfg = config(&["0000:3b:00.0", "0000:3b:00.1", "0000:af:00.0"], "[2, 3]");
        let report = survey(&cfg, &root);
        let warnings: Vec<&str> = report.iter().filter(|f| f.warning).map(|f| f.text.as_str()).collect();
        let infos: Vec<&str> = report.iter().filter(|f| !f.warning).map(|f| f.text.as_str()).collect();
        assert!(infos.contains(&"port p0 (0000:3b:00.0 [8086:1572]): driver i40e, NUMA node 1"), "{infos:?}");
        assert!(infos.contains(&"port p0: netdev ens1f0, link 10000 Mb/s, 1 RX queues"), "{infos:?}");
        assert!(infos.contains(&"port p1 (0000:3b:00.1): driver vfio-pci, NUMA node 0"), "{infos:?}");
        assert!(infos.contains(&"hugepages of 2048 kB: 512 reserved, 256 free"), "{infos:?}");
        let expect = [
            "worker lcore 3 is not isolated",
            "held by the kernel driver i40e",
            "worker lcore 2 is on NUMA node 0, port p0's NIC on node 1",
            "worker lcore 3 is on NUMA node 0, port p0's NIC on node 1",
            "1 RX queues for 2 workers",
            "port p2: no PCI device 0000:af:00.0",
            "512 MiB of free hugepages (256 of 2048 kB), eal.memory_mib asks for 1024",
            "transparent huge pages are off (never)",
        ];
        for e in expect {
            assert!(warnings.iter().any(|w| w.contains(e)), "no warning {e:?} in {warnings:?}");
        }
        assert_eq!(warnings.len(), expect.len(), "{warnings:?}");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// What ethtool prints for an i40e port with 4 queues (a 512-entry table shown 8 per row), and
    /// its default flow hashes: TCP on the 4-tuple, UDP on the addresses alone.
    #[test]
    fn ethtool_rss_output_reads_as_table_size_and_fields() {
        let mut x = String::from("RX flow hash indirection table for ens1f0 with 4 RX ring(s):\n");
        for row in 0..64 {
            x.push_str(&format!("{:5}:      0     1     2     3     0     1     2     3\n", row * 8));
        }
        x.push_str(
            "RSS hash key:\n7c:9c:37:de:18:dd:de\nRSS hash function:\n    toeplitz: on\n    xor: off\n",
        );
        assert_eq!(reta_size(&x), Some(512));
        assert_eq!(reta_size("Cannot get RX ring count: Operation not supported\n"), None);
        let tcp = "TCP over IPV4 flows use these fields for computing Hash flow key:\nIP SA\nIP DA\n\
                   L4 bytes 0 & 1 [TCP/UDP src port]\nL4 bytes 2 & 3 [TCP/UDP dst port]\n\n";
        assert_eq!(flow_hash_fields(tcp), ["src-ip", "dst-ip", "src-port", "dst-port"]);
        let udp = "UDP over IPV4 flows use these fields for computing Hash flow key:\nIP SA\nIP DA\n\n";
        assert_eq!(flow_hash_fields(udp), ["src-ip", "dst-ip"]);
    }

    #[test]
    fn cpu_lists_read_as_the_kernel_writes_them() {
        assert_eq!(cpu_list("2-3,5\n"), vec![2, 3, 5]);
        assert_eq!(cpu_list(""), Vec::<u32>::new());
        assert_eq!(cpu_list("x,1"), vec![1]);
    }
}
