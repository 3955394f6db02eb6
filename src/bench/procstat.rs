//! Process and machine measurements from `/proc`: CPU time (`utime + stime` of
//! `/proc/<pid>/stat`), peak resident memory (`VmHWM` of `/proc/<pid>/status`), the CPU
//! of this run's PostgreSQL backends and of the RabbitMQ node, and the machine's own
//! busy time (the host is shared, so the report shows how much else was running).
//!
//! Linux only; on other systems every reading is `None` and the report says so.

use serde::Serialize;
use std::{collections::HashMap, sync::OnceLock};

/// Clock ticks per second of `/proc` CPU counters (`getconf CLK_TCK`, 100 on Linux).
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second())
}

/// A `kB` field of `/proc/<pid>/status`, in MiB.
fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Peak resident set size (`VmHWM`) in MiB.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    status_mib(pid, "VmHWM:")
}

/// Current resident set size (`VmRSS`) in MiB.
pub fn rss_mb(pid: u32) -> Option<f64> {
    status_mib(pid, "VmRSS:")
}

fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// CPU seconds of a set of processes, by pid.
fn cpu_of(pids: impl IntoIterator<Item = u32>) -> HashMap<u32, f64> {
    pids.into_iter()
        .filter_map(|p| Some((p, cpu_seconds(p)?)))
        .collect()
}

/// PostgreSQL backends serving `database` (their process title names it).
fn postgres_backends(database: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| {
            cmdline(p).is_some_and(|c| {
                c.starts_with("postgres:") && c.split_whitespace().any(|w| w == database)
            })
        })
        .collect()
}

/// The client port a PostgreSQL backend serves (its title reads `… 127.0.0.1(PORT) …`).
fn backend_client_port(pid: u32) -> Option<u16> {
    let title = cmdline(pid)?;
    let open = title.find("127.0.0.1(")? + "127.0.0.1(".len();
    let close = title[open..].find(')')? + open;
    title[open..close].parse().ok()
}

/// Local TCP ports of a process's sockets (from `/proc/<pid>/fd` and `/proc/net/tcp`).
fn local_ports(pid: u32) -> std::collections::HashSet<u16> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| {
                let target = std::fs::read_link(e.ok()?.path()).ok()?;
                let t = target.to_string_lossy();
                Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
            })
            .collect()
        })
        .unwrap_or_default();
    let mut ports = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(inode)) = (f.get(1), f.get(9)) else {
                continue;
            };
            if inodes.contains(*inode) {
                if let Some(port) = local
                    .rsplit(':')
                    .next()
                    .and_then(|h| u16::from_str_radix(h, 16).ok())
                {
                    ports.insert(port);
                }
            }
        }
    }
    ports
}

/// Which measured process each of `database`'s backends serves, by the client port.
fn backend_owners(processes: &[Measured], database: &str) -> HashMap<u32, String> {
    let owners: Vec<(String, std::collections::HashSet<u16>)> = processes
        .iter()
        .map(|p| (p.name.clone(), local_ports(p.pid)))
        .collect();
    postgres_backends(database)
        .into_iter()
        .filter_map(|b| {
            let port = backend_client_port(b)?;
            let (name, _) = owners.iter().find(|(_, ports)| ports.contains(&port))?;
            Some((b, name.clone()))
        })
        .collect()
}

/// The RabbitMQ node (`beam.smp` running `rabbit`).
fn rabbitmq_nodes() -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| cmdline(p).is_some_and(|c| c.contains("beam.smp") && c.contains("rabbit")))
        .collect()
}

/// Busy CPU seconds of the whole machine (every CPU; `/proc/stat` minus idle and
/// iowait).
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is already in user).
    let busy =
        v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7).unwrap_or(&0.0);
    Some(busy / ticks_per_second())
}

/// The host: what the README must say a figure was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs available to this process.
    pub nproc: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Total memory in GiB.
    pub ram_gib: f64,
    /// `/proc/loadavg` when the run started (other work on a shared host).
    pub load_average_at_start: String,
    /// `release` or `debug`: debug builds are several times slower.
    pub build_profile: &'static str,
    /// The command line that produced the report, after the `LOA_*` settings it ran
    /// with (they change what is measured).
    pub command: String,
}

/// The `LOA_*` settings in the environment as `NAME=value`, sorted, leaving out any
/// that may hold a secret (tokens, keys, passwords, URLs with credentials).
fn overrides() -> Vec<String> {
    const SECRET: [&str; 5] = ["TOKEN", "SECRET", "PASSWORD", "KEY", "URL"];
    let mut vars: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("LOA_") && !SECRET.iter().any(|s| k.contains(s)))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    vars.sort();
    vars
}

impl Machine {
    /// Reads the host's description.
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram_kb: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0.0);
        let program = std::env::args()
            .next()
            .map(|a| {
                let name = std::path::Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                match name {
                    Some(n) if a.contains("release") => format!("target/release/{n}"),
                    Some(n) => n,
                    None => a,
                }
            })
            .unwrap_or_else(|| "loa".to_owned());
        Self {
            nproc: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model,
            ram_gib: (ram_kb / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            load_average_at_start: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            build_profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            command: overrides()
                .into_iter()
                .chain(std::iter::once(program))
                .chain(std::env::args().skip(1))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// One line for reports.
    pub fn line(&self) -> String {
        format!(
            "{} CPUs ({}), {} GiB RAM, load average at start {}, {} build",
            self.nproc,
            self.cpu_model,
            self.ram_gib,
            self.load_average_at_start,
            self.build_profile
        )
    }
}

/// A process the harness measures: a service (or `all` of them in one process).
#[derive(Debug, Clone)]
pub struct Measured {
    /// `intake`, `tracker`, `notifier`, `zalo-sandbox` or `all`.
    pub name: String,
    /// Its pid.
    pub pid: u32,
}

/// CPU counters at the start of a measured window.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    services: HashMap<u32, f64>,
    postgres: HashMap<u32, f64>,
    rabbitmq: HashMap<u32, f64>,
    harness: Option<f64>,
    machine: Option<f64>,
    owners: HashMap<u32, String>,
}

/// CPU used during a window, per service and by the infrastructure.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUsage {
    /// Per measured process, in CPU seconds.
    pub services: Vec<(String, f64)>,
    /// This run's PostgreSQL backends (by database name in their process title).
    pub postgres: Option<f64>,
    /// The whole RabbitMQ node (shared with anything else using the broker).
    pub rabbitmq: Option<f64>,
    /// This process: the load generator (and, in-process, the services too).
    pub harness: Option<f64>,
    /// The PostgreSQL CPU above, split by the service each backend serves (split
    /// mode; backends whose client could not be found are left out).
    pub postgres_by_service: Vec<(String, f64)>,
    /// The whole machine (every process, including other users of a shared host).
    pub machine: Option<f64>,
}

/// Takes the CPU counters of `processes`, this database's PostgreSQL backends, the
/// RabbitMQ node and the machine.
pub fn snapshot(processes: &[Measured], database: &str) -> CpuSnapshot {
    CpuSnapshot {
        services: cpu_of(processes.iter().map(|p| p.pid)),
        postgres: cpu_of(postgres_backends(database)),
        rabbitmq: cpu_of(rabbitmq_nodes()),
        harness: cpu_seconds(std::process::id()),
        machine: machine_busy_seconds(),
        owners: backend_owners(processes, database),
    }
}

impl CpuSnapshot {
    /// CPU used since this snapshot. PostgreSQL backends that started since count in
    /// full; ones that exited in between are lost (pools keep theirs open).
    pub fn usage_since(&self, processes: &[Measured], database: &str) -> CpuUsage {
        let delta = |before: &HashMap<u32, f64>, now: HashMap<u32, f64>| -> Option<f64> {
            if now.is_empty() {
                return None;
            }
            Some(
                now.iter()
                    .map(|(pid, s)| s - before.get(pid).copied().unwrap_or(0.0))
                    .sum(),
            )
        };
        let services = processes
            .iter()
            .filter_map(|p| {
                Some((
                    p.name.clone(),
                    cpu_seconds(p.pid)? - self.services.get(&p.pid).copied()?,
                ))
            })
            .collect();
        let backends_now = cpu_of(postgres_backends(database));
        let mut owners = backend_owners(processes, database);
        owners.extend(self.owners.iter().map(|(k, v)| (*k, v.clone())));
        let mut by_service: Vec<(String, f64)> = Vec::new();
        for (pid, now) in &backends_now {
            let Some(owner) = owners.get(pid) else {
                continue;
            };
            let used = now - self.postgres.get(pid).copied().unwrap_or(0.0);
            match by_service.iter_mut().find(|(n, _)| n == owner) {
                Some((_, s)) => *s += used,
                None => by_service.push((owner.clone(), used)),
            }
        }
        by_service.sort_by(|a, b| a.0.cmp(&b.0));
        CpuUsage {
            services,
            postgres_by_service: by_service,
            postgres: delta(&self.postgres, backends_now),
            rabbitmq: delta(&self.rabbitmq, cpu_of(rabbitmq_nodes())),
            harness: cpu_seconds(std::process::id())
                .zip(self.harness)
                .map(|(now, then)| now - then),
            machine: machine_busy_seconds()
                .zip(self.machine)
                .map(|(now, then)| now - then),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_a_peak_rss() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x > 0);
        assert!(cpu_seconds(pid).is_some_and(|s| s >= 0.0));
        assert!(peak_rss_mb(pid).is_some_and(|m| m > 0.0));
        // The current size first: other tests in this process allocate meanwhile, and
        // only the peak read afterwards is sure to cover it.
        let now = rss_mb(pid).unwrap();
        let peak = peak_rss_mb(pid).unwrap();
        assert!(peak + 0.01 >= now, "{peak} < {now}");
    }
}
