//! The kernel's OOM-kill counter of this process's memory cgroup: a worker killed by `SIGKILL`
//! while the counter went up was likely killed for memory, which is what its error then says.

/// How many processes the kernel's OOM killer has killed in this process's memory cgroup, if the
/// cgroup says (v2 `memory.events`, or v1 `memory.oom_control`).
pub fn oom_kills() -> Option<u64> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut candidates = Vec::new();
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.is_empty() {
            candidates.push(format!("/sys/fs/cgroup{path}/memory.events"));
            candidates.push("/sys/fs/cgroup/memory.events".to_owned());
        } else if controllers.split(',').any(|c| c == "memory") {
            candidates.push(format!("/sys/fs/cgroup/memory{path}/memory.oom_control"));
            candidates.push("/sys/fs/cgroup/memory/memory.oom_control".to_owned());
        }
    }
    candidates
        .iter()
        .find_map(|file| std::fs::read_to_string(file).ok())
        .and_then(|text| oom_kill_count(&text))
}

/// The `oom_kill N` counter in a cgroup memory file.
pub fn oom_kill_count(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("oom_kill"))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_counter_is_read_from_either_cgroup_version() {
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n"),
            Some(2)
        );
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n"),
            Some(7)
        );
        assert_eq!(oom_kill_count("oom 1\n"), None);
    }
}
