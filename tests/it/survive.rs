//! A lock is lost only when it really is. A holder rides out what an etcd cluster goes through
//! in a normal week (a member restarted, a member gone for good, the leader gone), a waiter
//! whose lease expired while etcd was unreachable joins the queue again, and a command that
//! ended while distlock was paused is reported with its own status. A member without a leader
//! says so at once.
//!
//! Real etcd members on loopback, the real binary, real signals. The waits for "nothing went
//! wrong" are bounded by events: a keepalive counted by the member that received it, the time
//! the lease would have run out without one.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

/// The holders' TTL: the issue's case (`sleep 7` under `--ttl=6`).
const TTL: Duration = Duration::from_secs(6);

/// `distlock --ttl=6 --lock-name=<name> -- sh -c <script>` against `endpoints`.
fn holder_cmd(endpoints: &str, p: &str, name: &str, script: &str) -> Command {
    let mut cmd = distlock_std(endpoints, p);
    cmd.args([
        &format!("--lock-name={name}"),
        "--ttl=6",
        "--",
        "sh",
        "-c",
        script,
    ]);
    cmd
}

/// A command that says it started (its pid in `P`), runs until the test creates `S`, and then
/// writes `done` to `F`.
fn waiting_script(dir: &Path) -> String {
    format!(
        "echo $$ > '{d}/P'; while [ ! -e '{d}/S' ]; do sleep 0.05; done; echo done > '{d}/F'",
        d = dir.display()
    )
}

fn report(out: &Output) -> String {
    format!(
        "exit {}\n--- stderr ---\n{}",
        shell_status(out.status),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until `what` holds while the holder keeps running; fails at once, with what it said,
/// if the holder exits first.
fn while_holding(
    holder: &mut Background,
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) {
    wait_for(timeout, what, || {
        if let Some(status) = holder.try_status() {
            let mut stderr = String::new();
            if let Some(mut pipe) = holder.child.stderr.take() {
                pipe.read_to_string(&mut stderr).ok();
            }
            panic!("the holder exited ({status}) while waiting for {what}: {stderr}");
        }
        cond()
    });
}

/// Lets the command finish and checks the run: exit 0, the command completed, no key left.
fn finish(holder: Background, dir: &Path, live: &str, p: &str) {
    fs::write(dir.join("S"), "").unwrap();
    let out = holder.output(DEADLINE);
    assert_eq!(shell_status(out.status), 0, "{}", report(&out));
    assert_eq!(
        fs::read_to_string(dir.join("F")).unwrap_or_default(),
        "done\n",
        "the command did not complete: {}",
        report(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("lost"),
        "{}",
        report(&out)
    );
    assert_eq!(get_prefix(live, p), vec![], "keys left behind");
}

/// Which member (by index) the holder's keepalive stream runs through: the first keepalive is
/// counted by the member that received it, a third of the TTL after the lock was taken.
fn keepalive_member(cluster: &EtcdCluster, holder: &mut Background) -> usize {
    let mut found = None;
    while_holding(holder, DEADLINE, "the holder's first keepalive", || {
        found = cluster
            .members
            .iter()
            .position(|m| keepalives_received(m.client_port) > 0);
        found.is_some()
    });
    found.unwrap_or_default()
}

#[test]
fn a_holder_survives_its_only_member_restarted() {
    let mut etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("restart");
    let tmp = scratch_dir();
    let dir = tmp.path();
    let mut holder = Background::spawn(holder_cmd(&ep, &p, "r", &waiting_script(dir)), "holder");
    while_holding(&mut holder, DEADLINE, "the command to start", || {
        dir.join("P").exists()
    });
    // The keepalive stream is open: the restart breaks it (and the connection) mid-use.
    while_holding(&mut holder, DEADLINE, "the first keepalive", || {
        keepalives_received(etcd.client_port()) > 0
    });

    let killed = Instant::now();
    etcd.kill();
    std::thread::sleep(Duration::from_millis(500));
    etcd.restart();
    // Renewed through the restarted member, and past the moment the lease would have run out
    // without a renewal after the kill: the holder must still be running.
    while_holding(
        &mut holder,
        TTL + DEADLINE,
        "a renewal after the restart",
        || keepalives_received(etcd.client_port()) > 0 && killed.elapsed() > TTL,
    );
    finish(holder, dir, &ep, &p);
}

#[test]
fn a_holder_survives_the_member_it_uses_dying_for_good() {
    let mut cluster = EtcdCluster::start(3);
    let p = prefix("member-dies");
    let tmp = scratch_dir();
    let dir = tmp.path();
    let cmd = holder_cmd(&cluster.endpoints(), &p, "m", &waiting_script(dir));
    let mut holder = Background::spawn(cmd, "holder");
    let used = keepalive_member(&cluster, &mut holder);
    // A follower, so that no election is involved: only the connection goes away.
    let leader = cluster.wait_leader(None);
    if leader == used {
        cluster.move_leader((used + 1) % 3);
    }

    let killed = Instant::now();
    cluster.kill(used);
    let others: Vec<usize> = (0..3).filter(|&i| i != used).collect();
    while_holding(
        &mut holder,
        TTL + DEADLINE,
        "a renewal through another member",
        || {
            others
                .iter()
                .any(|&i| keepalives_received(cluster.members[i].client_port) > 0)
                && killed.elapsed() > TTL
        },
    );
    finish(holder, dir, &cluster.endpoint(others[0]), &p);
}

#[test]
fn a_holder_survives_the_leader_dying() {
    let mut cluster = EtcdCluster::start(3);
    let p = prefix("leader-dies");
    let tmp = scratch_dir();
    let dir = tmp.path();
    let cmd = holder_cmd(&cluster.endpoints(), &p, "l", &waiting_script(dir));
    let mut holder = Background::spawn(cmd, "holder");
    // The member the holder talks to leads: its death breaks the stream and needs an election.
    let used = keepalive_member(&cluster, &mut holder);
    cluster.move_leader(used);

    let killed = Instant::now();
    cluster.kill(used);
    let new_leader = cluster.wait_leader(Some(used));
    let others: Vec<usize> = (0..3).filter(|&i| i != used).collect();
    while_holding(
        &mut holder,
        TTL + DEADLINE,
        "a renewal after the election",
        || {
            others
                .iter()
                .any(|&i| keepalives_received(cluster.members[i].client_port) > 0)
                && killed.elapsed() > TTL
        },
    );
    finish(holder, dir, &cluster.endpoint(new_leader), &p);
}

/// A member that has lost its leader (the rest of its cluster is gone or cut off) says so at
/// once, because distlock asks it to require a leader: the run tries again within `maxtime` and
/// then names the cause, instead of each attempt hanging until a timeout. Once the cluster is
/// back, the same run works.
#[test]
fn a_member_without_a_leader_says_so_at_once() {
    let cluster = EtcdCluster::start(3);
    let p = prefix("no-leader");
    let leader = cluster.wait_leader(None);
    let lonely = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|&i| i != lonely).collect();
    for &i in &others {
        cluster.pause(i);
    }
    let port = cluster.members[lonely].client_port;
    wait_for(DEADLINE, "the lone member to lose its leader", || {
        metric(port, "etcd_server_has_leader") == Some(0)
    });
    let status = |maxtime: &str| {
        let mut cmd = distlock_std(&cluster.endpoint(lonely), &p);
        cmd.args([&format!("--maxtime={maxtime}"), "--lock-name=x", "--status"]);
        run_timed(cmd, DEADLINE)
    };
    let (out, took) = status("2s");
    let r = report(&out);
    assert_eq!(out.status.code(), Some(3), "{r}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has no leader"), "{r}");
    assert_eq!(stderr.lines().count(), 1, "{r}");
    assert!(took < Duration::from_secs(3), "{took:?}: {r}");

    for &i in &others {
        cluster.resume(i);
    }
    wait_for(DEADLINE, "the member to have a leader again", || {
        metric(port, "etcd_server_has_leader") == Some(1)
    });
    // Answered: the lock is free, which --status says with exit 1.
    let (out, _) = status("5s");
    assert_eq!(out.status.code(), Some(1), "{}", report(&out));
}

/// A waiter (TTL 2s) whose lease expires while its only member is frozen for longer than that
/// joins the queue again at the back once etcd answers, says so, and gets the lock after the
/// holder (TTL 10s, which rides the freeze out).
#[test]
fn a_waiter_whose_lease_expired_while_etcd_was_away_joins_again() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("rejoin");
    let tmp = scratch_dir();
    let dir = tmp.path();
    let mut cmd = distlock_std(&ep, &p);
    cmd.args(["--lock-name=w", "--ttl=10", "--", "sh", "-c"])
        .arg(waiting_script(dir));
    let mut holder = Background::spawn(cmd, "holder");
    while_holding(&mut holder, DEADLINE, "the holder's command", || {
        dir.join("P").exists()
    });
    let mut cmd = distlock_std(&ep, &p);
    cmd.args(["--lock-name=w", "--ttl=2", "--timeout=60", "--", "sh", "-c"])
        .arg(format!("echo waiter > '{}/W'", dir.display()));
    let waiter = Background::spawn(cmd, "waiter");
    wait_for(DEADLINE, "the waiter's key", || {
        get_prefix(&ep, &p).len() == 2
    });
    let waiter_lease = get_prefix(&ep, &p)[1].lease;

    // Frozen past the waiter's TTL, well within the holder's; the waiter's lease expires
    // when etcd runs again (the lessor catches up), the holder's does not.
    etcd.pause();
    std::thread::sleep(Duration::from_millis(2200));
    etcd.resume();
    wait_for(DEADLINE, "the waiter's first lease to expire", || {
        lease_ttl(&ep, waiter_lease).is_none()
    });
    wait_for(DEADLINE, "the waiter to join again", || {
        let keys = get_prefix(&ep, &p);
        keys.len() == 2 && keys[1].lease != waiter_lease
    });
    assert!(
        holder.try_status().is_none(),
        "the holder stopped during the freeze"
    );
    assert!(
        !dir.join("W").exists(),
        "the waiter ran while the holder held"
    );

    fs::write(dir.join("S"), "").unwrap();
    let out = holder.output(DEADLINE);
    assert_eq!(shell_status(out.status), 0, "holder: {}", report(&out));
    let out = waiter.output(DEADLINE);
    assert_eq!(shell_status(out.status), 0, "waiter: {}", report(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("joining it again at the back"),
        "the waiter must say it joined again: {}",
        report(&out)
    );
    assert!(dir.join("W").exists());
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

/// A holder whose etcd falls silent for a while, twice, and answers again each time before the
/// command must be stopped: one warning per silence, one line each time etcd answers again,
/// and the command runs to its end with its own status.
#[test]
fn a_silence_that_ends_is_warned_about_once_and_the_command_runs_on() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("silence");
    let tmp = scratch_dir();
    let dir = tmp.path();
    // TTL 9s: warned about 3.9s into a silence, stopped at 6.5s; the test resumes etcd as soon
    // as it sees the warning.
    let mut cmd = distlock_std(&ep, &p);
    cmd.args(["--lock-name=s", "--ttl=9", "--", "sh", "-c"])
        .arg(waiting_script(dir));
    let holder = Background::logged(cmd, dir, "holder");
    let count = |text: &str| holder.stderr().matches(text).count();
    wait_for(DEADLINE, "the command to start", || dir.join("P").exists());
    for silence in 1..=2 {
        etcd.pause();
        wait_for(DEADLINE, "a warning about the silence", || {
            count("has not answered") == silence
        });
        etcd.resume();
        wait_for(DEADLINE, "etcd to answer again", || {
            count("etcd answers again") == silence
        });
    }
    let stderr = holder.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{}", holder.report());
    for (i, line) in lines.iter().enumerate() {
        let said = match i % 2 {
            0 => "distlock: warning: etcd has not answered for ",
            _ => "distlock: warning: etcd answers again",
        };
        assert!(line.starts_with(said), "{}", holder.report());
    }
    finish(holder, dir, &ep, &p);
}

/// distlock paused (SIGSTOP) while its command ends, and woken after its lease expired on the
/// server: the command's own status comes back (7), not a lost lock (4).
#[test]
fn a_command_that_ended_while_distlock_was_paused_keeps_its_status() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("paused");
    let tmp = scratch_dir();
    let dir = tmp.path();
    let script = format!(
        "echo $$ > '{d}/P'; while [ ! -e '{d}/S' ]; do sleep 0.05; done; exit 7",
        d = dir.display()
    );
    let mut cmd = distlock_std(&ep, &p);
    cmd.args(["--lock-name=z", "--ttl=2", "--", "sh", "-c", &script]);
    let mut holder = Background::spawn(cmd, "holder");
    while_holding(&mut holder, DEADLINE, "the command to start", || {
        dir.join("P").exists()
    });
    let lease = get_prefix(&ep, &p)[0].lease;

    holder.signal(Signal::SIGSTOP);
    fs::write(dir.join("S"), "").unwrap();
    wait_for(DEADLINE, "the lease to expire on the server", || {
        lease_ttl(&ep, lease).is_none()
    });
    holder.signal(Signal::SIGCONT);
    let out = holder.output(DEADLINE);
    assert_eq!(shell_status(out.status), 7, "{}", report(&out));
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

/// SIGKILL lands before the lease may expire, whatever `--kill-grace` says: distlock paused
/// past the moment it should have started stopping the command (etcd frozen meanwhile, so no
/// renewal comes) wakes with less than the grace period left, and kills a command that
/// ignores SIGTERM before the deadline instead of a full grace period later.
#[test]
fn sigkill_lands_before_the_deadline_whatever_the_grace() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("deadline");
    let tmp = scratch_dir();
    let dir = tmp.path();
    let script = format!(
        "trap '' TERM; echo $$ > '{}/P'; while :; do sleep 0.05; done",
        dir.display()
    );
    let mut cmd = distlock_std(&ep, &p);
    // TTL 4s, grace 2s (the most allowed): the deadline is at most 4s after the freeze, the
    // stop should begin by 1.6s after it at the latest.
    cmd.args([
        "--lock-name=k",
        "--ttl=4",
        "--kill-grace=2s",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let mut holder = Background::spawn(cmd, "holder");
    while_holding(&mut holder, DEADLINE, "the command to start", || {
        dir.join("P").exists()
    });
    let command: i32 = fs::read_to_string(dir.join("P"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let frozen = Instant::now();
    etcd.pause();
    holder.signal(Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(2));
    holder.signal(Signal::SIGCONT);
    let gone = wait_until(DEADLINE, "the command to be killed", || {
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(command), None).is_ok()
            && !fs::read_to_string(format!("/proc/{command}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        (!alive).then(Instant::now)
    });
    etcd.resume();
    eprintln!("the command died {:?} after etcd froze", gone - frozen);
    let out = holder.output(DEADLINE);
    assert_eq!(shell_status(out.status), 4, "{}", report(&out));
    assert!(
        gone - frozen < Duration::from_secs(4),
        "the command died {:?} after etcd froze: past the lease's deadline (at most 4s): {}",
        gone - frozen,
        report(&out)
    );
}
