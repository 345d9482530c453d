//! Run mode that never outlives its lock, against the real binary, a real etcd, real processes
//! and real signals: signals reach the command once each, a terminal's Ctrl-C and keyboard go to
//! the command, SIGKILL of distlock takes the command along, a lost lease or an operator's
//! `--unlock` stops the command (and its whole process group) before the lock could pass to
//! someone else, an etcd leader change or a lost member does not, `--hold-at-least` keeps the
//! lock after a quick command (also when the record rewrite lands late), and a waiter told to
//! stop leaves nothing behind.
//!
//! Every test starts its own etcd and uses its own key prefix. Tests wait for events (a file, a
//! key, a process state, a lease renewed, a watch re-established) with a deadline, never for a
//! fixed time.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::h2proxy::{varint, Frame, H2Proxy, Step, DATA};
use crate::common::*;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers

/// `distlock` against `endpoints` with keys under `p`, for lock `name`, with `args` after it.
fn distlock_cmd(endpoints: &str, p: &str, name: &str, args: &[&str]) -> Command {
    let mut cmd = distlock_std(endpoints, p);
    cmd.arg(format!("--lock-name={name}")).args(args);
    cmd
}

/// Arguments for `distlock ... -- sh -c <script>`.
fn sh(script: &str) -> Vec<&str> {
    vec!["--", "sh", "-c", script]
}

/// Waits until the file holds a pid (a script wrote `echo $$ > file`).
fn read_pid(path: &Path) -> Pid {
    wait_until(DEADLINE, &format!("a pid in {}", path.display()), || {
        let text = fs::read_to_string(path).ok()?;
        let text = text.strip_suffix('\n')?;
        text.parse().ok().map(Pid::from_raw)
    })
}

/// Whether the process exists and is not a zombie (a reparented process stays one until its
/// new parent reaps it, which counts as gone here: it runs no code any more).
fn alive(pid: Pid) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the command name, which is in parentheses and may hold spaces.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !matches!(state.and_then(|s| s.chars().next()), None | Some('Z' | 'X'))
}

/// Waits until every pid in `pids` is gone; returns when that was seen.
fn wait_gone(timeout: Duration, what: &str, pids: &[Pid]) -> Instant {
    wait_until(timeout, what, || {
        pids.iter().all(|&p| !alive(p)).then(Instant::now)
    })
}

fn touch(path: &Path) {
    File::create(path).unwrap();
}

fn scratch() -> (TempDir, PathBuf) {
    let dir = scratch_dir();
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// A path inside `dir` as text for a shell script (scratch paths hold no quotes or spaces).
fn at(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. Signals sent to distlock reach the command once each

/// A script that records every forwarded signal it gets in `F` and exits with `code` on
/// `last`; it writes its pid to `P` once its traps are set.
fn trapping_script(dir: &Path, last: &str, code: u8) -> String {
    let f = at(dir, "F");
    format!(
        "for s in INT TERM HUP QUIT USR1 USR2; do trap \"echo $s >> '{f}'\" $s; done
         trap \"echo {last} >> '{f}'; exit {code}\" {last}
         echo $$ > '{p}'
         while :; do sleep 0.05; done",
        p = at(dir, "P")
    )
}

/// Sends each signal of `then` and finally `last` to distlock, checking that each one lands
/// in the command once before sending the next; the command exits on `last`.
fn forward_each(etcd: &Etcd, dir: &Path, name: &str, then: &[Signal], last: Signal, code: u8) {
    let ep = etcd.endpoint();
    let p = prefix(name);
    let last_name = &last.as_str()[3..];
    let script = trapping_script(dir, last_name, code);
    let mut d = Background::logged(distlock_cmd(&ep, &p, name, &sh(&script)), dir, name);
    read_pid(&dir.join("P"));
    assert_eq!(contenders(&ep, &p, name).len(), 1);

    let file = dir.join("F");
    let mut expected = Vec::new();
    for &sig in then.iter().chain([&last]) {
        d.signal(sig);
        expected.push(sig.as_str()[3..].to_string());
        if sig != last {
            wait_for(DEADLINE, &format!("{sig} in the command's log"), || {
                read_lines(&file).len() >= expected.len()
            });
            assert_eq!(read_lines(&file), expected, "{}", d.report());
        }
    }
    let status = d.wait_code(DEADLINE);
    assert_eq!(
        status,
        i32::from(code),
        "distlock must exit with the command's status: {}",
        d.report()
    );
    assert_eq!(
        read_lines(&file),
        expected,
        "each signal must reach the command exactly once"
    );
    // Released before exiting, not some time later.
    assert_eq!(contenders(&ep, &p, name), vec![], "{}", d.report());
}

#[test]
fn every_forwarded_signal_reaches_the_command_once_and_the_lock_is_released() {
    let etcd = Etcd::start();
    let (_t1, dir1) = scratch();
    let (_t2, dir2) = scratch();
    let others = [
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ];
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut then = vec![Signal::SIGINT];
            then.extend(others);
            forward_each(&etcd, &dir1, "endsonterm", &then, Signal::SIGTERM, 43);
        });
        s.spawn(|| {
            let mut then = vec![Signal::SIGTERM];
            then.extend(others);
            forward_each(&etcd, &dir2, "endsonint", &then, Signal::SIGINT, 42);
        });
    });
}

// ---------------------------------------------------------------------------------------------
// 2. A terminal: Ctrl-C and the keyboard go to the command

/// distlock as the foreground job of its own pseudo-terminal: a new session whose controlling
/// terminal is the pty, as a login shell would run it. What it and the command write to the
/// terminal is collected for assertion messages.
struct Terminal {
    child: Child,
    master: File,
    output: Arc<Mutex<Vec<u8>>>,
    status: Option<ExitStatus>,
}

impl Terminal {
    fn spawn(mut cmd: Command) -> Terminal {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        cmd.stdin(slave(&pty.slave))
            .stdout(slave(&pty.slave))
            .stderr(slave(&pty.slave));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                // stdin is the pty: make it our controlling terminal, with our group (the
                // session's only one) in the foreground.
                if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("cannot start distlock in a terminal");
        // Only the session may hold the slave, or reading the master never ends.
        drop(pty.slave);
        let master = File::from(pty.master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once nobody holds the slave any more.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            master,
            output,
            status: None,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn type_bytes(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to the pty");
    }

    /// The terminal's foreground process group.
    fn foreground(&self) -> Pid {
        nix::unistd::tcgetpgrp(self.master.as_fd()).expect("tcgetpgrp on the pty master")
    }

    /// Waits until the command (`program`, in a group other than distlock's) owns the
    /// terminal; returns its group.
    fn wait_command_in_foreground(&self, program: &str) -> Pid {
        wait_until(
            DEADLINE,
            &format!("{program} to be in the terminal's foreground group"),
            || {
                let group = self.foreground();
                let runs = group_members(group.as_raw())
                    .iter()
                    .any(|(pid, _)| comm(pid) == program);
                (group != self.pid() && runs).then_some(group)
            },
        )
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let (child, status) = (&mut self.child, &mut self.status);
        wait_until(timeout, "distlock in the terminal to exit", || {
            if status.is_none() {
                *status = child.try_wait().unwrap();
            }
            *status
        })
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn ctrl_c_in_a_terminal_reaches_the_command_once_and_the_lock_is_released() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("ctrlc");
    let (_tmp, dir) = scratch();
    let (f, stop, ready) = (dir.join("F"), dir.join("S"), dir.join("R"));

    // A command that counts SIGINTs and goes on until told to stop. It says when its trap is
    // set: a Ctrl-C typed before that would kill it instead of being counted.
    let script = format!(
        "trap \"echo INT >> '{f}'\" INT
         : > '{r}'
         while [ ! -e '{s}' ]; do sleep 0.05; done
         echo done >> '{f}'",
        f = f.display(),
        r = ready.display(),
        s = stop.display()
    );
    let mut term = Terminal::spawn(distlock_cmd(
        &ep,
        &p,
        "ctrlc",
        &[&["-v"][..], &sh(&script)].concat(),
    ));
    term.wait_command_in_foreground("sh");
    wait_contenders(&ep, &p, "ctrlc", 1);
    wait_for(DEADLINE, "the command's INT trap to be set", || {
        ready.exists()
    });
    term.type_bytes(b"\x03");
    wait_for(DEADLINE, "the command's INT trap", || {
        read_lines(&f) == ["INT"]
    });
    touch(&stop);
    let status = term.wait(DEADLINE);
    assert_eq!(
        (shell_status(status), read_lines(&f)),
        (0, vec!["INT".to_string(), "done".to_string()]),
        "Ctrl-C must reach the command exactly once; terminal:\n{}",
        term.text()
    );
    // distlock is not in the terminal's foreground group, so it gets no SIGINT of its own and
    // must not pass one on (with -v it would say so).
    assert!(
        !term.text().contains("passing SIGINT"),
        "distlock forwarded a Ctrl-C the command already got:\n{}",
        term.text()
    );
    assert_eq!(contenders(&ep, &p, "ctrlc"), vec![]);

    // A bare command killed by Ctrl-C: distlock releases the lock and dies of SIGINT as the
    // command did, so a calling shell sees what it would have seen without distlock.
    let mut term = Terminal::spawn(distlock_cmd(&ep, &p, "ctrlc", &["--", "sleep", "1000"]));
    term.wait_command_in_foreground("sleep");
    term.type_bytes(b"\x03");
    let status = term.wait(DEADLINE);
    assert_eq!(
        shell_status(status),
        130,
        "terminal output:\n{}",
        term.text()
    );
    assert_eq!(contenders(&ep, &p, "ctrlc"), vec![]);
}

#[test]
fn an_interactive_command_reads_the_terminal() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("tty");
    let (_tmp, dir) = scratch();
    let f = dir.join("F");
    let script = format!("read line; echo \"got:$line\" > '{}'", f.display());
    let mut term = Terminal::spawn(distlock_cmd(&ep, &p, "tty", &sh(&script)));
    term.wait_command_in_foreground("sh");
    term.type_bytes(b"hello there\n");
    // A command outside the foreground group would be stopped by SIGTTIN instead.
    wait_for(DEADLINE, "the command to read the typed line", || {
        read_lines(&f) == ["got:hello there"]
    });
    let status = term.wait(DEADLINE);
    assert_eq!(shell_status(status), 0, "terminal:\n{}", term.text());
    assert_eq!(contenders(&ep, &p, "tty"), vec![]);
}

// ---------------------------------------------------------------------------------------------
// 3. SIGKILL of distlock

#[test]
fn sigkill_of_distlock_kills_the_command_and_the_lease_frees_the_lock() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("sigkill");
    let (_tmp, dir) = scratch();
    let pidfile = dir.join("P");
    let script = format!("echo $$ > '{}'; exec sleep 1000", pidfile.display());
    let args = [&["--ttl", "2"][..], &sh(&script)].concat();
    let mut d = Background::logged(distlock_cmd(&ep, &p, "k", &args), &dir, "distlock");
    let command = read_pid(&pidfile);
    wait_for(DEADLINE, "the command to exec sleep", || {
        comm(command) == "sleep"
    });
    wait_contenders(&ep, &p, "k", 1);

    let killed = Instant::now();
    d.signal(Signal::SIGKILL);
    assert_eq!(d.wait_code(DEADLINE), 128 + 9);
    let gone = wait_gone(DEADLINE, "the command to die with distlock", &[command]);
    assert!(
        gone - killed < Duration::from_secs(1),
        "the command outlived distlock by {:?}",
        gone - killed
    );
    // Nobody released the lock: the key stays until its lease expires by itself.
    assert_eq!(contenders(&ep, &p, "k").len(), 1, "released too early");
    wait_for(
        Duration::from_secs(2 + 2),
        "the lease of a SIGKILLed distlock to expire",
        || contenders(&ep, &p, "k").is_empty(),
    );
    assert!(
        killed.elapsed() < Duration::from_secs(2 + 1),
        "the lock freed only {:?} after the kill (TTL 2s)",
        killed.elapsed()
    );
}

#[test]
fn sigkill_of_a_waiting_distlock_takes_its_watchdog_along() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("sigkillwait");
    let (_tmp, dir) = scratch();
    let _holder = Background::logged(
        distlock_cmd(&ep, &p, "k", &["--", "sleep", "1000"]),
        &dir,
        "holder",
    );
    wait_contenders(&ep, &p, "k", 1);
    let mut d = Background::logged(
        distlock_cmd(&ep, &p, "k", &["--ttl", "2", "--", "true"]),
        &dir,
        "waiter",
    );
    wait_contenders(&ep, &p, "k", 2);
    // The watchdog is there before the command: it leads the group the command will run in,
    // apart from distlock's.
    let watchdog = children(d.pid().as_raw() as u32);
    assert_eq!(
        watchdog.len(),
        1,
        "one watchdog while waiting: {watchdog:?}"
    );
    let watchdog = watchdog[0] as i32;
    assert_eq!(comm(watchdog), "distlock");
    let group: Vec<i32> = group_members(watchdog)
        .iter()
        .map(|(pid, _)| *pid)
        .collect();
    assert_eq!(
        group,
        [watchdog],
        "the watchdog leads a group of its own while distlock waits"
    );

    d.signal(Signal::SIGKILL);
    assert_eq!(d.wait_code(DEADLINE), 128 + 9);
    wait_gone(
        DEADLINE,
        "the watchdog to go with its distlock",
        &[Pid::from_raw(watchdog)],
    );
}

#[test]
fn sigkill_of_distlock_kills_what_the_command_started() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("sigkillgroup");
    let (_tmp, dir) = scratch();
    let grandchild = dir.join("G");
    let script = format!("sleep 1000 & echo $! > '{}'; wait", grandchild.display());
    let args = [&["--ttl", "2"][..], &sh(&script)].concat();
    let mut d = Background::logged(distlock_cmd(&ep, &p, "k", &args), &dir, "distlock");
    let sleeper = read_pid(&grandchild);
    wait_contenders(&ep, &p, "k", 1);

    let killed = Instant::now();
    d.signal(Signal::SIGKILL);
    assert_eq!(d.wait_code(DEADLINE), 128 + 9);
    // Whatever the command started must not go on working once the lock can pass to someone
    // else, which is at most the TTL (2s) after the kill.
    let ttl = Duration::from_secs(2);
    while alive(sleeper) && killed.elapsed() < ttl {
        std::thread::sleep(Duration::from_millis(10));
    }
    let survived = alive(sleeper);
    if survived {
        let _ = signal::kill(sleeper, Signal::SIGKILL);
    }
    assert!(
        !survived,
        "the command's child (sleep, pid {sleeper}) still ran {:?} after distlock was \
         SIGKILLed, when its lock may already be someone else's",
        killed.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Lease loss: etcd stops answering

const LOST_TTL: Duration = Duration::from_secs(3);

/// Starts `distlock --ttl 3 <extra> -- sh -c <script>` and waits until the command wrote its
/// pid to `P` and the lock's key is there.
fn start_under_lease(etcd: &Etcd, dir: &Path, extra: &[&str], script: &str) -> (Background, Pid) {
    let ep = etcd.endpoint();
    let p = prefix("lost");
    let args = [&["--ttl", "3"][..], extra, &sh(script)].concat();
    let d = Background::logged(distlock_cmd(&ep, &p, "lost", &args), dir, "distlock");
    let pid = read_pid(&dir.join("P"));
    wait_contenders(&ep, &p, "lost", 1);
    (d, pid)
}

/// The exit after a lost lock: code 4, and a last line on stderr that says so.
fn assert_lost_exit(d: &mut Background) {
    let code = d.wait_code(DEADLINE);
    assert_eq!(code, 4, "{}", d.report());
    let stderr = d.stderr();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("distlock: ") && last.contains("lost"),
        "the last line must say the lock was lost: {}",
        d.report()
    );
}

#[test]
fn a_lost_lease_stops_the_command_and_its_group_before_the_ttl_passes() {
    let etcd = Etcd::start();
    let (_tmp, dir) = scratch();
    let script = format!(
        "sleep 1000 & echo $! > '{g}'; echo $$ > '{p}'; wait",
        g = at(&dir, "G"),
        p = at(&dir, "P")
    );
    let (mut d, command) = start_under_lease(&etcd, &dir, &[], &script);
    let grandchild = read_pid(&dir.join("G"));

    let stopped = Instant::now();
    etcd.pause();
    let gone = wait_gone(
        LOST_TTL + Duration::from_secs(2),
        "the command and its child to be stopped",
        &[command, grandchild],
    );
    assert!(
        gone - stopped < LOST_TTL,
        "the command ran {:?} after etcd stopped answering: its lease (TTL 3s) may have \
         expired and the lock passed on while it still ran",
        gone - stopped
    );
    d.wait_code(DEADLINE);
    eprintln!(
        "command gone {:?} after the stop; distlock exited {:?} after the stop",
        gone - stopped,
        stopped.elapsed()
    );
    assert_lost_exit(&mut d);
    // docs/CONTRACT.md: every error is one line. Warnings while it happens are fine, but the lost
    // lock must not be reported as an error twice (once when noticed, once on exit).
    let errors: Vec<String> = d
        .stderr()
        .lines()
        .filter(|l| l.contains("lost") && !l.starts_with("distlock: warning: "))
        .map(str::to_string)
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "the lost lock must be one error line: {}",
        d.report()
    );
    etcd.resume();
}

#[test]
fn a_lost_lease_with_on_lost_warn_lets_the_command_finish_and_exits_4() {
    let etcd = Etcd::start();
    let (_tmp, dir) = scratch();
    let (f, stop) = (dir.join("F"), dir.join("S"));
    let script = format!(
        "echo $$ > '{p}'; while [ ! -e '{s}' ]; do sleep 0.05; done; echo finished > '{f}'",
        p = at(&dir, "P"),
        s = stop.display(),
        f = f.display()
    );
    let (mut d, command) = start_under_lease(&etcd, &dir, &["--on-lost=warn"], &script);

    let stopped = Instant::now();
    etcd.pause();
    let warned = wait_until(
        LOST_TTL + Duration::from_secs(2),
        "a warning about the lost lock",
        || d.stderr().contains("lost the lock").then(Instant::now),
    );
    // Before it, once: etcd's silence, and when the lock may be lost.
    let stderr = d.stderr();
    let early: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("if it stays silent"))
        .collect();
    assert!(
        early.len() == 1 && early[0].contains("the lock may be lost at"),
        "{}",
        d.report()
    );
    assert!(
        stderr.lines().next() == Some(early[0]),
        "the silence is warned about before the loss: {}",
        d.report()
    );
    assert!(
        warned - stopped < LOST_TTL,
        "warned only {:?} after etcd stopped",
        warned - stopped
    );
    assert!(
        alive(command),
        "--on-lost=warn must not stop the command: {}",
        d.report()
    );
    touch(&stop);
    wait_for(DEADLINE, "the command to finish", || {
        read_lines(&f) == ["finished"]
    });
    assert_lost_exit(&mut d);
    etcd.resume();
}

#[test]
fn a_lost_lease_kills_a_command_that_ignores_sigterm_after_the_grace_period() {
    let etcd = Etcd::start();
    let (_tmp, dir) = scratch();
    let f = dir.join("F");
    let script = format!(
        "trap \"echo TERM >> '{f}'\" TERM; echo $$ > '{p}'; while :; do sleep 0.05; done",
        f = f.display(),
        p = at(&dir, "P")
    );
    let (mut d, command) = start_under_lease(&etcd, &dir, &["--kill-grace=1s"], &script);

    let stopped = Instant::now();
    etcd.pause();
    let termed = wait_until(LOST_TTL + Duration::from_secs(2), "SIGTERM", || {
        (!read_lines(&f).is_empty()).then(Instant::now)
    });
    let gone = wait_gone(
        Duration::from_secs(3),
        "SIGKILL after the grace",
        &[command],
    );
    assert_eq!(read_lines(&f), ["TERM"], "one SIGTERM, then SIGKILL");
    let grace = gone - termed;
    assert!(
        grace >= Duration::from_millis(900) && grace < Duration::from_millis(1800),
        "SIGKILL came {grace:?} after SIGTERM; --kill-grace is 1s"
    );
    assert!(
        gone - stopped < LOST_TTL,
        "the command ran {:?} after etcd stopped answering (TTL 3s)",
        gone - stopped
    );
    assert_lost_exit(&mut d);
    etcd.resume();
}

/// The local time of day `phrase` is followed by in `line` (`... stopped at 14:03:07 ...`), in
/// seconds since midnight.
fn clock_after(line: &str, phrase: &str) -> u64 {
    let at = line
        .split(phrase)
        .nth(1)
        .and_then(|rest| rest.get(..8))
        .unwrap_or_else(|| panic!("no `{phrase}HH:MM:SS` in {line:?}"));
    let parts: Vec<u64> = at
        .split(':')
        .map(|n| n.parse().unwrap_or_else(|_| panic!("{at:?} in {line:?}")))
        .collect();
    assert_eq!(parts.len(), 3, "{at:?} in {line:?}");
    parts[0] * 3600 + parts[1] * 60 + parts[2]
}

/// Seconds between two times of day, across midnight.
fn clock_distance(a: u64, b: u64) -> u64 {
    let d = a.abs_diff(b) % 86_400;
    d.min(86_400 - d)
}

/// Whether `line` holds an RFC 3339 timestamp (`2026-12-06T14:03:07.123Z`).
fn has_timestamp(line: &str) -> bool {
    line.as_bytes().windows(11).any(|w| {
        w[..4].iter().all(u8::is_ascii_digit) && w[4] == b'-' && w[7] == b'-' && w[10] == b'T'
    })
}

/// etcd stops answering: one warning once it has been silent for a third of the TTL, while the
/// command still runs, saying on the local clock when the command will be stopped; the command
/// is stopped then; the loss is one line, with durations and local times of day.
#[test]
fn a_silent_etcd_is_warned_about_once_before_the_command_is_stopped() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("silent"));
    let (_tmp, dir) = scratch();
    let script = format!("echo $$ > '{}'; exec sleep 1000", at(&dir, "P"));
    // TTL 6s, grace 1s: warned about 2.6s into the silence, stopped 1.5s before the lease may
    // expire, 4.5s at the latest.
    let args = [&["--ttl=6", "--kill-grace=1s"][..], &sh(&script)].concat();
    let mut cmd = distlock_cmd(&ep, &p, "silent", &args);
    // The test reads the local clock of the messages as UTC.
    cmd.env("TZ", "UTC");
    let mut d = Background::logged(cmd, &dir, "distlock");
    let command = read_pid(&dir.join("P"));
    wait_contenders(&ep, &p, "silent", 1);

    etcd.pause();
    let warning = wait_until(Duration::from_secs(8), "a warning about etcd", || {
        let stderr = d.stderr();
        let line = stderr.lines().find(|l| l.contains("not answered"))?;
        Some(line.to_string())
    });
    assert!(
        alive(command),
        "the warning came after the command was stopped: {}",
        d.report()
    );
    assert!(
        warning.starts_with("distlock: warning: etcd has not answered for "),
        "{warning}"
    );
    let stop_at = clock_after(&warning, "the command will be stopped at ");
    let expires_at = clock_after(&warning, "may expire at ");
    assert!(
        (1..=2).contains(&clock_distance(expires_at, stop_at)),
        "stopped 1.5s (grace and margin) before the lease may expire: {warning}"
    );
    wait_gone(
        Duration::from_secs(8),
        "the command to be stopped",
        &[command],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        clock_distance(now % 86_400, stop_at) <= 1,
        "the command was stopped at {}s of the day, the warning said {stop_at}s: {}",
        now % 86_400,
        d.report()
    );
    let code = d.wait_code(DEADLINE);
    etcd.resume();
    assert_eq!(code, 4, "{}", d.report());
    let stderr = d.stderr();
    eprintln!("{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "the warning, then the loss in one line: {}",
        d.report()
    );
    assert_eq!(lines[0], warning);
    assert!(
        lines[1].starts_with("distlock: lost the lock ")
            && lines[1].contains("etcd has not answered for ")
            && lines[1].contains("stopped the command: SIGTERM"),
        "{}",
        d.report()
    );
    for line in lines {
        assert!(!has_timestamp(line), "{line}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. An operator's --unlock

#[test]
fn an_operators_unlock_stops_the_running_command_and_exits_4() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("unlock");
    let (_tmp, dir) = scratch();
    let pidfile = dir.join("P");
    let script = format!("echo $$ > '{}'; exec sleep 1000", pidfile.display());
    let mut d = Background::logged(distlock_cmd(&ep, &p, "u", &sh(&script)), &dir, "distlock");
    let command = read_pid(&pidfile);
    wait_contenders(&ep, &p, "u", 1);

    let unlock = distlock_cmd(&ep, &p, "u", &["--unlock"]).output().unwrap();
    assert_eq!(
        shell_status(unlock.status),
        0,
        "--unlock: {}",
        String::from_utf8_lossy(&unlock.stderr)
    );
    let unlocked = Instant::now();
    let gone = wait_gone(
        Duration::from_secs(5),
        "the command to be stopped after --unlock",
        &[command],
    );
    assert!(
        gone - unlocked < Duration::from_secs(2),
        "the command ran on for {:?} after its lock was removed",
        gone - unlocked
    );
    assert_lost_exit(&mut d);
    assert_eq!(contenders(&ep, &p, "u"), vec![]);
}

// ---------------------------------------------------------------------------------------------
// 6. A leader change is not a lost lock

/// Makes member `to` the leader (`etcdctl move-leader`, asked of the current leader).
fn move_leader(cluster: &EtcdCluster, to: usize) {
    let leader = cluster.wait_leader(None);
    if leader == to {
        return;
    }
    let out = etcdctl(&cluster.endpoint(to), ["member", "list", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == format!("m{to}"))
        .and_then(|m| m["ID"].as_u64())
        .unwrap_or_else(|| panic!("no member m{to} in {out}"));
    etcdctl(
        &cluster.endpoint(leader),
        ["move-leader", &format!("{id:x}")],
    );
    wait_for(DEADLINE, "the leadership to move", || {
        cluster.leader() == Some(to)
    });
}

#[test]
fn losing_the_etcd_leader_does_not_stop_the_command_and_the_waiter_runs_after() {
    let mut cluster = EtcdCluster::start(3);
    let all = cluster.endpoints();
    let p = prefix("leader");
    let (_tmp, dir) = scratch();
    let (f, stop) = (dir.join("F"), dir.join("S"));
    // The first endpoint, the one distlock dials first, is the leader we are going to kill.
    move_leader(&cluster, 0);

    let holder_script = format!(
        "echo $$ > '{p}'; while [ ! -e '{s}' ]; do sleep 0.05; done; echo holder >> '{f}'",
        p = at(&dir, "P"),
        s = stop.display(),
        f = f.display()
    );
    let args = [&["--ttl", "4"][..], &sh(&holder_script)].concat();
    let mut holder = Background::logged(distlock_cmd(&all, &p, "ha", &args), &dir, "holder");
    let command = read_pid(&dir.join("P"));
    let waiter_script = format!("echo waiter >> '{}'", f.display());
    let args = [&["--ttl", "4"][..], &sh(&waiter_script)].concat();
    let mut waiter = Background::logged(distlock_cmd(&all, &p, "ha", &args), &dir, "waiter");
    let lease = wait_contenders(&all, &p, "ha", 2)[0].lease;

    cluster.kill(0);
    cluster.wait_leader(Some(0));
    let live = format!("{},{}", cluster.endpoint(1), cluster.endpoint(2));
    // Until the holder's lease has been renewed through the new leader twice (its time to
    // live went up twice), the command runs on and the waiter waits: nothing else happens.
    let mut renewals = 0;
    let mut last = i64::MAX;
    wait_until(DEADLINE, "two keepalives through the new leader", || {
        assert!(
            holder.try_status().is_none() && alive(command),
            "the holder stopped after the leader was killed: {}",
            holder.report()
        );
        assert!(
            read_lines(&f).is_empty(),
            "the waiter ran while the holder held the lock"
        );
        // etcdctl itself may fail while the cluster settles: look again.
        let out = etcdctl_cmd(&live)
            .args(["lease", "timetolive", &format!("{lease:x}"), "-w", "json"])
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let left = v["ttl"].as_i64()?;
        assert!(left >= 0, "the holder's lease expired: {}", holder.report());
        renewals += u32::from(left > last);
        last = left;
        (renewals >= 2).then_some(())
    });
    touch(&stop);
    assert_eq!(holder.wait_code(DEADLINE), 0, "{}", holder.report());
    assert_eq!(waiter.wait_code(DEADLINE), 0, "{}", waiter.report());
    assert_eq!(read_lines(&f), ["holder", "waiter"]);
    assert_eq!(contenders(&live, &p, "ha"), vec![]);
}

/// How many watchers the members of `cluster` in `members` serve, from their /metrics.
fn watchers(cluster: &EtcdCluster, members: &[usize]) -> u64 {
    members
        .iter()
        .filter_map(|&i| http_get(cluster.members[i].client_port, "/metrics").ok())
        .flat_map(|(_, body)| {
            body.lines()
                .filter_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
                .filter_map(|n| n.trim().parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .map(|n| n as u64)
        .sum()
}

#[test]
fn losing_one_etcd_member_stops_no_command_and_every_lock_is_released() {
    const HOLDERS: usize = 10;
    let mut cluster = EtcdCluster::start(3);
    let leader = cluster.wait_leader(None);
    // A follower, so that no election is involved: the cluster keeps serving throughout.
    let (victim, other) = ((leader + 1) % 3, (leader + 2) % 3);
    let endpoints = format!("{},{}", cluster.endpoint(victim), cluster.endpoint(other));
    let live = cluster.endpoint(other);
    let p = prefix("member");
    let (_tmp, dir) = scratch();
    let mut holders: Vec<Background> = (0..HOLDERS)
        .map(|i| {
            let args = ["--ttl", "10", "--", "sleep", "1000"];
            let cmd = distlock_cmd(&endpoints, &p, &format!("m{i}"), &args);
            Background::logged(cmd, &dir, &format!("holder{i}"))
        })
        .collect();
    wait_for(DEADLINE, "every holder to hold its lock", || {
        get_prefix(&live, &p).len() == HOLDERS
    });
    // Each holder watches its own key (for an operator's --unlock); wait until all do, so
    // that some of those watches run through the member about to go.
    wait_for(DEADLINE, "every holder's watch", || {
        watchers(&cluster, &[victim, other]) >= HOLDERS as u64
    });

    cluster.kill(victim);
    // Nothing is supposed to happen: the lease is renewed through the other member, and a
    // broken watch is no lost lock. Every holder watches its key again, now through the
    // surviving member, which a holder that took its lock for lost would not do.
    wait_for(
        DEADLINE,
        "every holder to watch through the surviving member",
        || watchers(&cluster, &[other]) >= HOLDERS as u64,
    );
    let mut stopped = Vec::new();
    for h in &mut holders {
        if h.try_status().is_some() {
            stopped.push(h.report());
        } else {
            h.signal(Signal::SIGTERM);
        }
    }
    assert!(
        stopped.is_empty(),
        "{} of {HOLDERS} commands were stopped when one etcd member of three went away \
         (their leases were fine):\n{}",
        stopped.len(),
        stopped.join("\n")
    );
    let mut unreleased = Vec::new();
    for h in &mut holders {
        assert_eq!(h.wait_code(DEADLINE), 128 + 15, "{}", h.report());
        let name = h.what().replace("holder", "m");
        if !contenders(&live, &p, &name).is_empty() {
            unreleased.push(h.report());
        }
    }
    assert!(
        unreleased.is_empty(),
        "{} of {HOLDERS} locks were not released on exit (they linger until their 10s TTL):\n{}",
        unreleased.len(),
        unreleased.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 7. --hold-at-least

#[test]
fn hold_at_least_keeps_the_lock_after_a_quick_command_then_lets_it_expire() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("hold");
    let (_tmp, dir) = scratch();

    let started = Instant::now();
    let mut d = Background::logged(
        distlock_cmd(&ep, &p, "h", &["--hold-at-least", "5", "--", "true"]),
        &dir,
        "distlock",
    );
    assert_eq!(d.wait_code(DEADLINE), 0, "{}", d.report());
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "distlock must not wait out --hold-at-least; it took {:?}",
        started.elapsed()
    );

    let kvs = contenders(&ep, &p, "h");
    assert_eq!(kvs.len(), 1, "the lock must still be held");
    let kv = &kvs[0];
    assert_ne!(kv.lease, 0, "held on a lease that expires by itself");
    let (left, granted) = lease_ttl(&ep, kv.lease).expect("the key's lease exists");
    assert!(
        (4..=5).contains(&granted) && (3..=5).contains(&left),
        "lease TTL left {left}s of {granted}s; expected about the 5s minus the run time"
    );

    let nowait = distlock_cmd(&ep, &p, "h", &["--nowait", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(
        shell_status(nowait.status),
        1,
        "a --nowait run while held: {}",
        String::from_utf8_lossy(&nowait.stderr)
    );

    wait_for(
        Duration::from_secs(8),
        "the held lock to expire by itself",
        || contenders(&ep, &p, "h").is_empty(),
    );
    let held = started.elapsed();
    assert!(
        held > Duration::from_millis(4500) && held < Duration::from_millis(7000),
        "the lock was held {held:?}; --hold-at-least is 5s"
    );
}

/// What a record says once its run holds the lock (while waiting it says not).
const HELD: &[u8] = b"\"held\":true";

/// A proxy rule: holds back the run's record rewrite (its key, a record that says held, put
/// on its own lease `mine.lease`) until --hold-at-least's move (the same key put on another
/// lease) has been handled, then lets the rewrite go and waits for etcd to handle it before
/// anything else: the revoke of the run's lease comes after both.
fn rewrite_after_the_move(mine: &Kv) -> impl FnMut(Frame) -> Vec<Step> + Send {
    let key = mine.key.clone().into_bytes();
    // PutRequest.lease is field 3, a varint.
    let mut on_ours = vec![0x18];
    on_ours.extend(varint(mine.lease));
    // The rewrite's streams (a retry is one more); the first is waited for.
    let mut rewrites: Vec<u32> = Vec::new();
    let mut held = Vec::new();
    let mut done = false;
    move |frame: Frame| match rewrites.first().copied() {
        _ if done => vec![Step::Forward(frame)],
        first if frame.data_with(&[&key, HELD, &on_ours]) => {
            rewrites.push(frame.stream);
            held.push(frame);
            match first {
                None => vec![Step::Note("rewrite held".into())],
                Some(_) => vec![],
            }
        }
        // Its streams' later frames too: the reset distlock sends when it stops waiting for
        // the answer would make etcd drop the request.
        Some(_) if rewrites.contains(&frame.stream) => {
            held.push(frame);
            vec![]
        }
        Some(r) if frame.data_with(&[&key, HELD]) => {
            done = true;
            let stream = frame.stream;
            let mut steps = vec![
                Step::Forward(frame),
                Step::AwaitAnswer(stream),
                Step::Note("move answered".into()),
            ];
            steps.extend(held.drain(..).filter(|f| f.kind == DATA).map(Step::Forward));
            steps.extend([Step::AwaitAnswer(r), Step::Note("rewrite answered".into())]);
            steps
        }
        _ => vec![Step::Forward(frame)],
    }
}

#[test]
fn a_late_record_rewrite_does_not_undo_hold_at_least() {
    // A run that waited rewrites its record 250 ms after it takes the lock. Its command ends
    // while that write is on its way, and --hold-at-least moves the key to a fresh lease and
    // revokes the run's own. etcd serves concurrent requests concurrently, so the rewrite may
    // land after the move (a proxy makes it so here): it must not put the key back on the
    // run's lease, whose revoke would free the lock at once.
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("hold-rewrite");
    let (_tmp, dir) = scratch();
    let proxy = H2Proxy::start(etcd.client_port());
    let ctl = etcdctl_lock(&ep, &format!("{p}h"), &[]);
    wait_contenders(&ep, &p, "h", 1);
    let go = dir.join("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let script = format!("read line < '{}'", go.display());
    let args = [
        "--hold-at-least=30",
        "--maxtime=10s",
        "--",
        "sh",
        "-c",
        &script,
    ];
    let mut d = Background::logged(
        distlock_cmd(&proxy.endpoint(), &p, "h", &args),
        &dir,
        "distlock",
    );
    let mine = wait_contenders(&ep, &p, "h", 2).remove(1);
    proxy.steer(rewrite_after_the_move(&mine));
    // SIGTERM makes etcdctl release.
    ctl.signal(Signal::SIGTERM);
    wait_for(DEADLINE, "the rewrite 250 ms after the take", || {
        proxy.notes().iter().any(|n| n == "rewrite held")
    });
    // The command ends once the rewrite is on its way (without a reader, opening fails).
    let mut fifo = wait_until(DEADLINE, "the command reading its FIFO", || {
        fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&go)
            .ok()
    });
    fifo.write_all(b"go\n").unwrap();
    drop(fifo);
    assert_eq!(d.wait_code(DEADLINE), 0, "{}", d.report());
    assert_eq!(
        proxy.notes(),
        ["rewrite held", "move answered", "rewrite answered"],
        "{}",
        d.report()
    );

    let kv = get_key(&ep, &mine.key)
        .unwrap_or_else(|| panic!("--hold-at-least=30, but the lock is free: {}", d.report()));
    assert_eq!(
        kv.create_revision, mine.create_revision,
        "same key, same place"
    );
    assert!(
        kv.lease != 0 && kv.lease != mine.lease,
        "held on a lease of its own, not the run's {:x}: {kv:?}",
        mine.lease
    );
    let (left, granted) = lease_ttl(&ep, kv.lease).expect("the key's lease exists");
    assert!(
        (29..=30).contains(&granted) && left >= 25,
        "lease TTL left {left}s of {granted}s; expected about the 30s of --hold-at-least"
    );
    assert_eq!(
        lease_ttl(&ep, mine.lease),
        None,
        "the run's lease is revoked"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. A waiter told to stop

#[test]
fn a_waiter_interrupted_by_a_signal_exits_128_plus_n_and_leaves_no_key() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("interrupted");
    let (_tmp, dir) = scratch();
    let f = dir.join("F");
    let locked = distlock_cmd(&ep, &p, "w", &["--lock"]).output().unwrap();
    assert_eq!(shell_status(locked.status), 0);
    let holder = wait_contenders(&ep, &p, "w", 1);

    for (sig, code) in [(Signal::SIGTERM, 128 + 15), (Signal::SIGINT, 128 + 2)] {
        let script = format!("echo ran >> '{}'", f.display());
        let mut d =
            Background::logged(distlock_cmd(&ep, &p, "w", &sh(&script)), &dir, sig.as_str());
        wait_contenders(&ep, &p, "w", 2);
        d.signal(sig);
        assert_eq!(d.wait_code(DEADLINE), code, "{}", d.report());
        d.one_error_line();
        assert_eq!(
            contenders(&ep, &p, "w"),
            holder,
            "the waiter's key must be gone"
        );
        assert!(!f.exists(), "the command must not have run");
    }
}

/// A signal while etcd is frozen before the lock is joined (connecting, the `--nowait` and
/// `--min-interval` looks, the lease grant) ends distlock as interrupted, not as an etcd
/// failure: exit 128+N, one line, nothing written; at most within `maxtime`, the time the
/// grant in flight is awaited so that a granted lease is revoked. A feed ends with 0.
#[test]
fn a_signal_while_etcd_is_frozen_before_joining_ends_distlock_as_interrupted() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("frozen-start"));
    let (_tmp, dir) = scratch();
    etcd.pause();
    let cases: [(&[&str], i32, &str); 5] = [
        (
            &["--lock-name=a", "--", "true"],
            130,
            "before the command ran",
        ),
        (
            &["--lock-name=a", "--lock"],
            130,
            "while waiting for the lock",
        ),
        (
            &["--lock-name=a", "-n", "--", "true"],
            130,
            "before the command ran",
        ),
        (
            &["--lock-name=a", "--min-interval=1h", "--", "true"],
            130,
            "before the command ran",
        ),
        (&["--list", "--follow"], 0, ""),
    ];
    for (i, (args, code, when)) in cases.into_iter().enumerate() {
        let mut cmd = distlock_std(&ep, &p);
        cmd.args(["-v", "--maxtime=2s"]).args(args);
        let what = format!("case{i}");
        let mut d = Background::logged(cmd, &dir, &what);
        // Its signal handlers are in place once it connects (debug line), before any request.
        wait_for(DEADLINE, "distlock to connect", || {
            d.stderr().contains("connecting to")
        });
        let sent = Instant::now();
        d.signal(Signal::SIGINT);
        assert_eq!(d.wait_code(DEADLINE), code, "{args:?}: {}", d.report());
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "{args:?} took {:?} after SIGINT: {}",
            sent.elapsed(),
            d.report()
        );
        let last = d.stderr().lines().last().unwrap_or_default().to_string();
        match code {
            0 => assert!(!last.contains("interrupted"), "{args:?}: {}", d.report()),
            _ => assert_eq!(
                last,
                format!("distlock: interrupted by SIGINT {when}; nothing is left in etcd"),
                "{args:?}: {}",
                d.report()
            ),
        }
    }
    etcd.resume();
    assert!(etcd.keys(&p).is_empty(), "{:?}", etcd.keys(&p));
}
