//! The integration examples in examples/ are what operators copy: each must at least parse
//! with the tool that will read it, and every distlock command line in it must be accepted by
//! distlock itself (its options and values are checked with `--show-config`, which resolves
//! and validates the configuration without talking to etcd).
//!
//! The Ansible playbook is read as YAML and its distlock task templated with Jinja2, as
//! Ansible would (Ansible itself is not needed).
//!
//! Needs bash, shellcheck, python3 with PyYAML and Jinja2, systemd-analyze and puppet
//! (scripts/setup installs them). A test whose tool is missing skips, saying so, and fails
//! under DISTLOCK_REQUIRE_ALL=1 (scripts/test).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{needs, python3_with_yaml_and_jinja2, Need};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn read(name: &str) -> String {
    fs::read_to_string(example(name)).unwrap_or_else(|e| panic!("examples/{name}: {e}"))
}

/// Runs `cmd`, failing the test with a pointer to scripts/setup if `tool` is not installed.
fn run_tool(tool: &str, cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{tool} is not installed: run scripts/setup")
        }
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Splits a command line the way sh (or systemd's ExecStart=) does for these examples:
/// blanks separate words, '...' is literal, "..." allows \" \\ \$ escapes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                w.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Checks that distlock accepts the options of `words` (a distlock command line, program name
/// first): everything before `--`, with the mode flag swapped for --show-config. Returns the
/// options, for the caller to check the ones its example is about.
fn assert_distlock_accepts(words: &[String], what: &str) -> Vec<String> {
    let program = words.first().map(String::as_str).unwrap_or_default();
    assert!(
        program == "distlock" || program.ends_with("/distlock"),
        "{what}: not a distlock command: {words:?}"
    );
    let options: Vec<String> = words[1..]
        .iter()
        .take_while(|w| *w != "--")
        .cloned()
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_distlock"))
        .args(
            options
                .iter()
                .filter(|o| *o != "--lock" && *o != "--unlock"),
        )
        .arg("--show-config")
        .env("DISTLOCK_CONFIG", "/dev/null")
        .env_remove("DISTLOCK_LOCKNAME")
        .output()
        .expect("run distlock");
    assert!(
        out.status.success(),
        "{what}: distlock rejects {options:?}:\n{}",
        text(&out)
    );
    options
}

#[test]
fn rolling_upgrade_script_parses_passes_shellcheck_and_stops_at_the_first_failure() {
    if !needs(&[Need::Program("shellcheck")]) {
        return;
    }
    let script = example("rolling-upgrade.sh");
    let out = run_tool("bash", Command::new("bash").arg("-n").arg(&script));
    assert!(out.status.success(), "bash -n:\n{}", text(&out));
    let out = run_tool("shellcheck", Command::new("shellcheck").arg(&script));
    assert!(out.status.success(), "shellcheck:\n{}", text(&out));

    // A dry run: "ssh" runs the remote command string with bash here, and a stand-in distlock
    // records its arguments and runs the command after `--`. This checks the quoting that
    // crosses ssh, and that the loop stops at the failing host.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let log = dir.path().join("calls");
    let write_script = |path: &Path, body: &str| {
        fs::write(path, body).unwrap();
        let status = Command::new("chmod").arg("755").arg(path).status().unwrap();
        assert!(status.success());
    };
    let fake_ssh = dir.path().join("fake-ssh");
    write_script(
        &fake_ssh,
        "#!/bin/bash\nhost=$1; shift\nFAKE_HOST=$host exec bash -c \"$*\"\n",
    );
    write_script(
        &bin.join("distlock"),
        &format!(
            "#!/bin/bash\n{{ echo \"host $FAKE_HOST\"; printf 'arg %s\\n' \"$@\"; }} >>'{}'\n\
             while [[ $# -gt 0 && $1 != -- ]]; do shift; done\nshift\nexec \"$@\"\n",
            log.display()
        ),
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(&script)
        .args(["db-1", "db-2", "bad", "db-4"])
        .env("PATH", path)
        .env("SSH", fake_ssh.to_str().unwrap())
        .env(
            "UPGRADE",
            "echo \"upgrading $FAKE_HOST\" && test \"$FAKE_HOST\" != bad",
        )
        .env("USER", "ops")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["upgrading db-1", "upgrading db-2", "upgrading bad"]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad failed (exit 1)"), "{stderr}");
    assert!(stderr.contains("not upgraded: bad db-4"), "{stderr}");

    let calls = fs::read_to_string(&log).unwrap();
    let first: Vec<&str> = calls
        .split("host ")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.strip_prefix("arg ").unwrap())
        .collect();
    assert_eq!(
        first[..5],
        [
            "--lock-name=percona_prod",
            "--timeout=30m",
            "--reason=rolling upgrade of db-1 by ops",
            "--",
            "sh"
        ]
    );
    let words: Vec<String> = ["distlock"]
        .iter()
        .chain(&first)
        .map(|s| s.to_string())
        .collect();
    assert_distlock_accepts(&words, "rolling-upgrade.sh");
}

#[test]
fn cron_file_has_valid_lines_and_a_fail_fast_held_lock() {
    let is_time_field = |f: &str| {
        !f.is_empty()
            && f.split(',').all(|part| {
                let (range, step) = part.split_once('/').unwrap_or((part, "1"));
                let name_or_number = |s: &str| {
                    s.chars().all(|c| c.is_ascii_digit())
                        || (s.len() == 3 && s.chars().all(|c| c.is_ascii_alphabetic()))
                };
                let range_ok = range == "*"
                    || range
                        .split_once('-')
                        .map_or(name_or_number(range), |(a, b)| {
                            name_or_number(a) && name_or_number(b)
                        });
                range_ok && !step.is_empty() && step.chars().all(|c| c.is_ascii_digit())
            })
    };
    let mut jobs = 0;
    for (n, line) in read("distlock-backup.cron").lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_env = fields[0].contains('=')
            && fields[0]
                .split('=')
                .next()
                .unwrap()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if is_env {
            continue;
        }
        // /etc/cron.d: minute hour day-of-month month day-of-week user command.
        assert!(fields.len() >= 7, "line {}: too few fields: {line}", n + 1);
        for field in &fields[..5] {
            assert!(
                is_time_field(field),
                "line {}: bad time field {field:?}",
                n + 1
            );
        }
        assert_eq!(fields[5], "root", "line {}: the user field", n + 1);
        let command = line[line.find(fields[6]).unwrap()..].to_string();
        assert!(
            !command.contains('%'),
            "line {}: cron turns % into a newline",
            n + 1
        );
        let out = run_tool("sh", Command::new("sh").arg("-n").arg("-c").arg(&command));
        assert!(
            out.status.success(),
            "line {}: sh -n: {}",
            n + 1,
            text(&out)
        );

        let options = assert_distlock_accepts(&shell_words(&command), "cron job");
        assert!(options.iter().any(|o| o == "--nowait"), "{options:?}");
        assert!(
            options.iter().any(|o| o.starts_with("--hold-at-least=")),
            "{options:?}"
        );
        jobs += 1;
    }
    assert_eq!(jobs, 1, "one cron job expected");
}

#[test]
fn puppet_manifest_parses_and_locks_around_the_change() {
    if !needs(&[Need::Program("puppet")]) {
        return;
    }
    let manifest = example("percona-upgrade.pp");
    let out = run_tool(
        "puppet",
        Command::new("puppet")
            .args(["parser", "validate", "--color=false"])
            .arg(&manifest),
    );
    assert!(
        out.status.success(),
        "puppet parser validate:\n{}",
        text(&out)
    );

    // The exec commands, with the class's parameters at their defaults.
    let source = read("percona-upgrade.pp");
    let commands: Vec<String> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("command"))
        .map(|l| {
            let l = l
                .trim()
                .trim_start_matches("=>")
                .trim()
                .trim_end_matches(',');
            l.trim_matches('"')
                .replace("${lock_name}", "percona_prod")
                .replace("${package}", "percona-server-server")
                .replace("${host}", "db-1.example.com")
        })
        .collect();
    assert_eq!(commands.len(), 2, "{commands:?}");
    let take = assert_distlock_accepts(&shell_words(&commands[0]), "puppet take");
    let release = assert_distlock_accepts(&shell_words(&commands[1]), "puppet release");
    assert!(take.iter().any(|o| o == "--lock"), "{take:?}");
    assert!(release.iter().any(|o| o == "--unlock"), "{release:?}");
    // RHEL-family hosts check for an upgrade with yum (dnf), Debian's with apt-get.
    for checker in [
        "'RedHat' => \"yum -q check-update",
        "default  => \"apt-get -s",
    ] {
        assert!(source.contains(checker), "no {checker}");
    }
}

/// The first python3 that has PyYAML and Jinja2 (the one on PATH may be a separate install
/// from Debian's /usr/bin/python3).
fn python() -> &'static str {
    python3_with_yaml_and_jinja2().unwrap_or_else(|| {
        panic!("no python3 with PyYAML and Jinja2 (Debian: python3-yaml python3-jinja2): run scripts/setup")
    })
}

#[test]
fn salt_state_renders_and_is_well_formed() {
    if !needs(&[Need::PythonYamlJinja]) {
        return;
    }
    // RHEL-family minions check for an upgrade with yum (dnf), Debian's with apt-get.
    for (family, checker) in [("RedHat", "yum -q check-update"), ("Debian", "apt-get -s")] {
        let onlyif = salt_state_for(family);
        assert!(onlyif.starts_with(checker), "{family}: {onlyif}");
    }
}

/// Renders the Salt state for a minion of `family`, checks it, and returns the take state's
/// `onlyif`.
fn salt_state_for(family: &str) -> String {
    // Salt renders a state with Jinja, then reads it as YAML.
    const RENDER: &str = "import json, sys, jinja2, yaml
env = jinja2.Environment(undefined=jinja2.StrictUndefined)
grains = {'id': 'db-1', 'os_family': sys.argv[2]}
text = env.from_string(open(sys.argv[1]).read()).render(grains=grains, pillar={})
print(json.dumps(yaml.safe_load(text)))";
    let out = run_tool(
        "python3",
        Command::new(python())
            .args(["-c", RENDER])
            .arg(example("percona-upgrade.sls"))
            .arg(family),
    );
    assert!(out.status.success(), "render:\n{}", text(&out));
    let states: Value = serde_json::from_slice(&out.stdout).unwrap();
    let states = states.as_object().expect("a mapping of state ids");

    // Each state: { "module.function": [ {arg: value}, ... ] }; requisites name existing
    // states of the named module.
    let mut distlock_commands = Vec::new();
    let mut onlyif = Vec::new();
    for (id, state) in states {
        let state = state
            .as_object()
            .unwrap_or_else(|| panic!("{id}: not a mapping"));
        assert_eq!(state.len(), 1, "{id}: one module.function per state");
        let (function, args) = state.iter().next().unwrap();
        assert!(
            function.contains('.'),
            "{id}: {function} is not module.function"
        );
        for arg in args
            .as_array()
            .unwrap_or_else(|| panic!("{id}: arguments are not a list"))
        {
            let arg = arg.as_object().filter(|a| a.len() == 1);
            let (key, value) = arg
                .unwrap_or_else(|| panic!("{id}: one key per argument"))
                .iter()
                .next()
                .unwrap();
            if ["require", "onchanges", "watch"].contains(&key.as_str()) {
                for req in value.as_array().unwrap() {
                    let (module, target) = req.as_object().unwrap().iter().next().unwrap();
                    let target_state = states
                        .get(target.as_str().unwrap())
                        .unwrap_or_else(|| panic!("{id}: {key} names no state {target}"));
                    let target_fn = target_state.as_object().unwrap().keys().next().unwrap();
                    assert!(
                        target_fn.starts_with(&format!("{module}.")),
                        "{id}: {key} {module}: {target}"
                    );
                }
            }
            if function == "cmd.run" && key == "name" {
                distlock_commands.push(value.as_str().unwrap().to_string());
            }
            if key == "onlyif" {
                onlyif.push(value.as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(distlock_commands.len(), 2, "{distlock_commands:?}");
    let take = assert_distlock_accepts(&shell_words(&distlock_commands[0]), "salt take");
    let release = assert_distlock_accepts(&shell_words(&distlock_commands[1]), "salt release");
    assert!(take.iter().any(|o| o == "--lock"), "{take:?}");
    assert!(release.iter().any(|o| o == "--unlock"), "{release:?}");
    assert_eq!(onlyif.len(), 1, "{family}: {onlyif:?}");
    onlyif.remove(0)
}

#[test]
fn ansible_playbook_parses_and_runs_the_upgrade_under_the_lock_in_batches() {
    if !needs(&[Need::PythonYamlJinja]) {
        return;
    }
    // The playbook as YAML, and the distlock task's argv as Ansible templates it, with the
    // play's vars, for a host of each OS family.
    const RENDER: &str = "import json, sys, jinja2, yaml
plays = yaml.safe_load(open(sys.argv[1]))
env = jinja2.Environment(undefined=jinja2.StrictUndefined)
out = {'plays': plays, 'argv': {}}
for play in plays:
    for task in play.get('tasks', []):
        argv = task.get('ansible.builtin.command', {})
        if isinstance(argv, dict) and 'argv' in argv:
            for family in ['RedHat', 'Debian']:
                names = dict(play.get('vars', {}), ansible_facts={'os_family': family},
                             inventory_hostname='db-1')
                out['argv'][family] = [env.from_string(a).render(names) for a in argv['argv']]
print(json.dumps(out))";
    let out = run_tool(
        "python3",
        Command::new(python())
            .args(["-c", RENDER])
            .arg(example("percona-upgrade.yml")),
    );
    assert!(out.status.success(), "render:\n{}", text(&out));
    let rendered: Value = serde_json::from_slice(&out.stdout).unwrap();
    let plays = rendered["plays"].as_array().expect("a list of plays");
    assert_eq!(plays.len(), 1, "{plays:?}");
    let play = &plays[0];
    assert!(play["hosts"].is_string(), "{play}");
    assert!(play["serial"].as_u64().is_some_and(|n| n > 1), "{play}");
    assert_eq!(play["max_fail_percentage"], 0, "{play}");
    for (family, upgrade) in [
        ("RedHat", "yum -y upgrade"),
        ("Debian", "apt-get -y install"),
    ] {
        let words: Vec<String> = rendered["argv"][family]
            .as_array()
            .unwrap_or_else(|| panic!("no distlock task with argv: {rendered}"))
            .iter()
            .map(|w| w.as_str().unwrap().to_string())
            .collect();
        let options = assert_distlock_accepts(&words, &format!("ansible ({family})"));
        assert!(
            options.iter().any(|o| o == "--lock-name=percona_prod"),
            "{options:?}"
        );
        let command: Vec<&str> = words
            .iter()
            .skip_while(|w| *w != "--")
            .skip(1)
            .map(String::as_str)
            .collect();
        assert_eq!(command[..2], ["sh", "-c"], "{family}: {words:?}");
        assert!(command[2].starts_with(upgrade), "{family}: {}", command[2]);
        assert!(command[2].contains("systemctl restart"), "{}", command[2]);
    }
}

#[test]
fn systemd_unit_verifies_and_wraps_the_service_in_distlock() {
    if !needs(&[Need::Program("systemd-analyze")]) {
        return;
    }
    let unit = read("report-worker.service");
    let exec_start = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart= line");
    let words = shell_words(exec_start);
    assert_eq!(words[0], "/usr/bin/distlock", "the package's path");
    let options = assert_distlock_accepts(&words, "ExecStart");
    assert!(options.iter().any(|o| o.starts_with("--lock-name=")));
    assert!(
        words.iter().skip_while(|w| *w != "--").nth(1).is_some(),
        "no command after --"
    );

    // systemd-analyze verify also checks that ExecStart's program exists: point it at the
    // distlock under test. It reports bad settings on stderr but still exits 0, so any line
    // naming the unit fails the test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("report-worker.service");
    fs::write(
        &copy,
        unit.replace("/usr/bin/distlock", env!("CARGO_BIN_EXE_distlock")),
    )
    .unwrap();
    let out = run_tool(
        "systemd-analyze",
        Command::new("systemd-analyze").arg("verify").arg(&copy),
    );
    let report = text(&out);
    assert!(out.status.success(), "systemd-analyze verify:\n{report}");
    assert!(
        !report.contains("report-worker.service"),
        "systemd-analyze verify:\n{report}"
    );
}
