//! Processes the tests start and wait for: a background process in its own process group,
//! killed with its group when its guard drops, and deadline-bound waiting for events.

use std::fs;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Polls `check` every 10 ms until it returns `Some`, and returns that value; panics naming
/// `what` when `timeout` passes first. This is how tests wait for events: never a fixed sleep.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `wait_until` for a plain condition.
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_until(timeout, what, || cond().then_some(()))
}

/// What a shell shows as `$?`: the exit code, or 128 + the signal that killed the process.
pub fn shell_status(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => panic!("exit status with neither code nor signal: {status:?}"),
    }
}

/// A process running in the background in its own process group, its output captured (pipes,
/// read at the end) or logged to files (read while it runs). Dropping it while it runs
/// SIGKILLs the whole group (the process and whatever it started, e.g. etcdctl's command) and
/// reaps it.
pub struct Background {
    pub child: Child,
    what: String,
    status: Option<ExitStatus>,
    /// Its stdout and stderr files, when they are files (`logged`) rather than pipes.
    logs: Option<(PathBuf, PathBuf)>,
}

impl Background {
    /// Starts `cmd` with stdin from /dev/null and stdout/stderr captured (pipes, read by
    /// `output`).
    pub fn spawn(mut cmd: Command, what: &str) -> Background {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        Self::start(cmd, what, None)
    }

    /// Starts `cmd` with stdout and stderr going to `<dir>/<what>.stdout` and `.stderr`, so
    /// that a test can watch what it says while it runs.
    pub fn logged(mut cmd: Command, dir: &Path, what: &str) -> Background {
        let stdout = dir.join(format!("{what}.stdout"));
        let stderr = dir.join(format!("{what}.stderr"));
        cmd.stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap());
        Self::start(cmd, what, Some((stdout, stderr)))
    }

    fn start(mut cmd: Command, what: &str, logs: Option<(PathBuf, PathBuf)>) -> Background {
        cmd.stdin(Stdio::null()).process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Background {
            child,
            what: what.to_string(),
            status: None,
            logs,
        }
    }

    /// What it is, as given when it was started.
    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, sig: Signal) {
        signal::kill(self.pid(), sig).unwrap_or_else(|e| panic!("kill {sig} {}: {e}", self.what));
    }

    /// The exit status if it has exited by now (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits at most `timeout` for it to exit; panics otherwise.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let what = format!("{} to exit", self.what);
        wait_until(timeout, &what, || self.try_status())
    }

    /// Waits at most `timeout` for it to exit and returns what a shell shows as `$?`; the
    /// panic on a timeout shows what it said so far.
    pub fn wait_code(&mut self, timeout: Duration) -> i32 {
        let what = format!("{} to exit; {}", self.what, self.report());
        shell_status(wait_until(timeout, &what, || self.try_status()))
    }

    /// Its stderr so far (`logged` only; a pipe is read at the end, by `output`).
    pub fn stderr(&self) -> String {
        self.log(|(_, stderr)| stderr)
    }

    fn log(&self, which: impl Fn(&(PathBuf, PathBuf)) -> &PathBuf) -> String {
        self.logs
            .as_ref()
            .map(|logs| fs::read_to_string(which(logs)).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Everything it said, for assertion messages (`logged` only).
    pub fn report(&self) -> String {
        format!(
            "{} (status {:?})\n--- stdout ---\n{}--- stderr ---\n{}",
            self.what,
            self.status,
            self.log(|(stdout, _)| stdout),
            self.stderr()
        )
    }

    /// Asserts docs/CONTRACT.md's error style for an error exit: exactly one line on stderr that
    /// starts with `distlock: `; returns it (`logged` only).
    pub fn one_error_line(&self) -> String {
        let stderr = self.stderr();
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("distlock: "),
            "expected exactly one `distlock: ` line on stderr: {}",
            self.report()
        );
        lines[0].to_string()
    }

    /// Waits at most `timeout` for it to exit and returns its status, stdout and stderr.
    pub fn output(mut self, timeout: Duration) -> Output {
        // Drained while it runs: a process that says more than a pipe holds (trace logging)
        // would otherwise block on its next write and never exit.
        fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    pipe.read_to_end(&mut bytes).ok();
                }
                bytes
            })
        }
        let stdout = drain(self.child.stdout.take());
        let stderr = drain(self.child.stderr.take());
        let status = self.wait(timeout);
        let mut stdout = stdout.join().unwrap_or_default();
        let mut stderr = stderr.join().unwrap_or_default();
        if let Some((out, err)) = &self.logs {
            stdout = fs::read(out).unwrap_or_default();
            stderr = fs::read(err).unwrap_or_default();
        }
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Kill the whole group (the leader's children too), but only while the leader is not
        // reaped: until then its pid, which is the group id, cannot have been reused, so the
        // signal cannot reach anyone else's processes. A zombie leader still holds it.
        if self.status.is_none() {
            let _ = signal::killpg(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// `cmd` run inside network namespace `ns` by `ip netns exec`, which execs it, so the child's
/// pid is the program's. Keeps `cmd`'s program, arguments, environment changes and directory;
/// stdin, stdout and stderr are to be set on the result.
pub fn in_netns(ns: &str, cmd: &Command) -> Command {
    let mut wrapped = Command::new("ip");
    wrapped
        .args(["netns", "exec", ns])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (name, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}
