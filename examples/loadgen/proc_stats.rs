//! What /proc and getrusage say about the server, this process and the machine: CPU time,
//! RSS, and datagrams dropped at this process's own sockets.

/// utime + stime of `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("server pid");
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks * jiffy()
}

/// This process's (user, system) CPU seconds.
fn own_times() -> (f64, f64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// This process's own CPU time, to tell a load-generator bottleneck from a server one.
pub fn own_cpu_seconds() -> f64 {
    let (user, system) = own_times();
    user + system
}

/// The "cpu" line of /proc/stat: jiffies of all cores by kind (user, nice, system, idle,
/// iowait, irq, softirq, steal, ...).
fn all_cores() -> Vec<u64> {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    (s.lines().next().unwrap_or("").split_whitespace().skip(1))
        .filter_map(|x| x.parse().ok())
        .collect()
}

/// (busy, total) jiffies of all cores from /proc/stat: whether the machine as a whole
/// (other jobs included) was saturated.
pub fn machine_jiffies() -> (u64, u64) {
    let v = all_cores();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Datagrams the kernel dropped at this process's own UDP sockets (full receive
/// buffers), from /proc/net/udp: loss that is the load generator's, not the server's.
pub fn own_drops(ports: &[u16]) -> u64 {
    let t = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    t.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = u16::from_str_radix(f.get(1)?.split(':').nth(1)?, 16).ok()?;
            let drops: u64 = f.last()?.parse().ok()?;
            ports.contains(&port).then_some(drops)
        })
        .sum()
}

pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server pid");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Seconds all cores spent idle, waiting for I/O or stolen by the hypervisor, from
/// /proc/stat. Busy time = wall time x cores - this: the kernel keeps idle time exactly
/// (tickless), while the busy fields are sampled at ticks and miss short bursts (a
/// generator that sleeps between sends: 25% short against /proc/PID/stat here).
pub fn machine_not_busy_seconds() -> f64 {
    let v = all_cores();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    (at(3) + at(4) + at(7)) as f64 * jiffy()
}

pub fn cores() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) as f64 }
}

/// Seconds per jiffy of /proc/stat and /proc/PID/stat (USER_HZ).
fn jiffy() -> f64 {
    // SAFETY: sysconf has no preconditions.
    1.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// This process's user time alone: the generator's own work, which no server changes
/// (its system time also carries the softirq work its sends set off, which may be the
/// relay's: this kernel has no IRQ time accounting).
pub fn own_utime_seconds() -> f64 {
    own_times().0
}

/// CPU time of every user-space process but `exclude` (utime + stime, plus cutime +
/// cstime so processes that started and ended in between still count once reaped): the
/// other jobs on a shared machine, to take out of the whole-machine figure. Kernel
/// threads stay in (ksoftirqd may be carrying the relay's packets).
pub fn others_cpu_seconds(exclude: &[u32]) -> f64 {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if exclude.contains(&pid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<u64> = stat[close + 2..]
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // After the state: ppid pgrp session tty tpgid flags ... utime(10) stime cutime cstime.
        if f.len() > 13 && f[5] & PF_KTHREAD == 0 {
            ticks += f[10] + f[11] + f[12] + f[13];
        }
    }
    ticks as f64 * jiffy()
}
