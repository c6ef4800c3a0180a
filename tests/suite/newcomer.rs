//! A newcomer's first hour: a fresh `git clone` of this repository's HEAD
//! in a temporary directory, then the README's quick start, its mock recipe
//! and its pi recipe run exactly as written, ending with a logged-in
//! `pi-authctl status` against `mock-openai` and a real pi 1.6.0 answered
//! by the mock.
//!
//! The commands are taken from the README itself (the fenced blocks
//! between the `<!-- quick-start -->`, `<!-- mock-recipe -->` and
//! `<!-- pi-recipe -->` markers),
//! so this test fails when the README drifts from what works. It tests the
//! committed HEAD: uncommitted edits to the README are not seen.
//!
//! **Build time.** The quick start's `cargo build` in a fresh clone would
//! rebuild every dependency, which takes far too long in CI. So a cargo
//! config beside the clone (`<temp>/.cargo/config.toml`, outside the
//! repository; the README's commands are unchanged) makes this suite's own
//! target directory cargo's *build directory* (`build.build-dir`, where
//! intermediate artifacts live): every dependency the suite already built
//! is reused, and only the workspace's own crates are compiled again. The
//! final binaries land in the clone's `target/debug/`, where the README's
//! commands look. Cargo names a workspace crate's artifacts by a hash of
//! its path *relative to the workspace*, which is the same in the clone, so
//! the same config gives the workspace's packages a profile setting of no
//! consequence (`codegen-units = 255`; a package's own profile settings
//! also apply to its build script): their artifacts get names of their own
//! and never overwrite, or pass for, the ones the rest of the suite runs.
//! Cargo runs offline.
//!
//! The recipe's mock listens on the README's fixed port 8787; the test
//! fails, saying so, when something else holds it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use piauth_tests::sandbox::bin_path;

/// The fenced code block after `<!-- name ...-->` and before
/// `<!-- /name -->` in `markdown`, without its fences. Pure.
fn marked_block(markdown: &str, name: &str) -> Option<String> {
    let start = markdown.find(&format!("<!-- {name}"))?;
    let rest = &markdown[start..];
    let end = rest.find(&format!("<!-- /{name} -->"))?;
    let region = &rest[..end];
    let open = region.find("```")?;
    let body = &region[open..];
    let body = &body[body.find('\n')? + 1..];
    let close = body.rfind("```")?;
    Some(body[..close].to_owned())
}

/// The repository this suite was built from, and the suite's target dir.
fn repo_and_target() -> (PathBuf, PathBuf) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_owned();
    // target/<profile>/piauthd -> target
    let target = bin_path("piauthd")
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_owned();
    (repo, target)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A fresh clone of `repo`'s HEAD at `dest`.
fn fresh_clone(repo: &Path, dest: &Path) {
    let head = git(repo, &["rev-parse", "HEAD"]);
    let status = Command::new("git")
        .args(["clone", "--quiet", "--no-checkout"])
        .arg(repo)
        .arg(dest)
        .status()
        .expect("git clone");
    assert!(status.success(), "git clone failed");
    git(dest, &["checkout", "--quiet", "--detach", &head]);
}

/// The workspace's packages, whose clone-built artifacts must not share
/// names with the suite's own (see the module doc).
const MEMBERS: [&str; 5] = [
    "piauth-proto",
    "piauthd",
    "piauth-client",
    "pi-authctl",
    "piauth-tests",
];

/// The cargo config beside the clone: the suite's target dir as the build
/// directory, and artifacts of the clone's own crates kept apart. Pure.
fn clone_cargo_config(target: &Path) -> String {
    let mut config = format!(
        "# Written by tests/suite/newcomer.rs; see its module doc.\n\
         [build]\nbuild-dir = {:?}\n",
        target.display().to_string()
    );
    for member in MEMBERS {
        config += &format!("\n[profile.dev.package.{member}]\ncodegen-units = 255\n");
    }
    config
}

/// A newcomer's environment: a new home, runtime and temp directory, so
/// nothing of the real user's is read or touched; the real cargo and
/// rustup, offline.
fn newcomer_env(cmd: &mut Command, home: &Path) {
    let real_home = std::env::var_os("HOME").map(PathBuf::from);
    let keep = |name: &str, fallback: Option<PathBuf>| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .or(fallback)
            .map(|v| (name.to_owned(), v))
    };
    let tools = [
        keep("CARGO_HOME", real_home.as_ref().map(|h| h.join(".cargo"))),
        keep("RUSTUP_HOME", real_home.as_ref().map(|h| h.join(".rustup"))),
        keep("RUSTUP_TOOLCHAIN", None),
    ];
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env("TMPDIR", home.join("tmp"))
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TERM_COLOR", "never");
    for (k, v) in tools.into_iter().flatten() {
        cmd.env(k, v);
    }
}

/// Runs `script` with bash in `dir`, in a process group of its own (so the
/// servers it starts in the background can be stopped with it), output to
/// `log`.
fn spawn_script(script: &str, dir: &Path, home: &Path, log: &Path) -> Child {
    let out = fs::File::create(log).expect("log");
    let err = out.try_clone().expect("log");
    let mut cmd = Command::new("bash");
    newcomer_env(&mut cmd, home);
    cmd.args(["-e", "-c", script])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    cmd.spawn().expect("bash runs")
}

/// Stops `child`'s whole process group: TERM, then KILL.
fn stop_group(child: &mut Child) {
    let pgid = child.id() as i32;
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: as above.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
}

/// Waits until `done` holds, `child` exits, or `limit` passes.
fn wait_for(child: &mut Child, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return done();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn the_clone_config_keeps_every_member_apart() {
    let config = clone_cargo_config(Path::new("/t/target"));
    assert!(config.contains("build-dir = \"/t/target\""), "{config}");
    for member in MEMBERS {
        assert!(config.contains(&format!("[profile.dev.package.{member}]")));
    }
    // Every package of the workspace is listed.
    let manifest = include_str!("../../Cargo.toml");
    let members = manifest
        .lines()
        .find_map(|l| l.strip_prefix("members = "))
        .expect("the workspace members");
    assert_eq!(members.matches('"').count() / 2, MEMBERS.len(), "{members}");
}

#[test]
fn readme_blocks_are_found_between_their_markers() {
    let md = "intro\n<!-- a: note -->\n```sh\none\ntwo\n```\n<!-- /a -->\n```sh\nthree\n```\n";
    assert_eq!(marked_block(md, "a").as_deref(), Some("one\ntwo\n"));
    assert_eq!(marked_block(md, "b"), None);
    let readme = include_str!("../../README.md");
    for name in ["quick-start", "mock-recipe", "pi-recipe"] {
        assert!(marked_block(readme, name).is_some(), "README lacks {name}");
    }
}

#[test]
fn a_fresh_clone_follows_the_readme_to_a_logged_in_status() {
    let (repo, target) = repo_and_target();
    // The temporary directory is the newcomer's home; the clone goes in it.
    let home = tempfile::Builder::new()
        .prefix("newcomer")
        .tempdir_in("/tmp")
        .expect("home");
    for d in ["run", "tmp", ".cargo"] {
        fs::create_dir(home.path().join(d)).expect("dir");
        fs::set_permissions(home.path().join(d), fs::Permissions::from_mode(0o700)).expect("0700");
    }
    fs::write(
        home.path().join(".cargo/config.toml"),
        clone_cargo_config(&target),
    )
    .expect("cargo config");
    let clone = home.path().join("clone");
    fresh_clone(&repo, &clone);
    let readme = fs::read_to_string(clone.join("README.md")).expect("README.md");
    let quick = marked_block(&readme, "quick-start").expect("the quick-start block");
    let recipe = marked_block(&readme, "mock-recipe").expect("the mock-recipe block");
    let pi_recipe = marked_block(&readme, "pi-recipe").expect("the pi-recipe block");
    let suite_authctl = fs::metadata(bin_path("pi-authctl")).expect("the suite's pi-authctl");

    // 1. The quick start: build everything, start the daemon with its
    //    defaults. It serves on the default socket once the build is done.
    let log = home.path().join("quick-start.log");
    let started = Instant::now();
    let mut quick_run = spawn_script(&quick, &clone, home.path(), &log);
    let socket = home.path().join("run/piauthd/piauthd.sock");
    let served = wait_for(&mut quick_run, Duration::from_secs(900), || socket.exists());
    let built_in = started.elapsed();
    let authctl = clone.join("target/debug/pi-authctl");
    let status = served.then(|| {
        let mut cmd = Command::new(&authctl);
        newcomer_env(&mut cmd, home.path());
        cmd.arg("status").output().expect("pi-authctl runs")
    });
    stop_group(&mut quick_run);
    let said = fs::read_to_string(&log).unwrap_or_default();
    assert!(served, "the quick start never served:\n{said}");
    let status = status.expect("status ran");
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(out.contains("issuer   https://auth.openai.com\n"), "{out}");
    assert!(out.contains("openai-codex  not logged in"), "{out}");
    eprintln!("newcomer: build and start took {built_in:?}");
    // The clone's build left the suite's own binaries alone.
    use std::os::unix::fs::MetadataExt;
    let after = fs::metadata(bin_path("pi-authctl")).expect("the suite's pi-authctl");
    assert_eq!(
        (after.ino(), after.mtime()),
        (suite_authctl.ino(), suite_authctl.mtime()),
        "the clone's build replaced the suite's pi-authctl"
    );
    let clone_authctl = fs::metadata(&authctl).expect("the clone's pi-authctl");
    assert_ne!(clone_authctl.ino(), after.ino(), "one binary for both");

    // 2. The mock recipe, then pi against it, as one shell script: pi 1.6.0
    //    from npm is on the newcomer's PATH (as `pi`), offline.
    assert!(
        std::net::TcpListener::bind("127.0.0.1:8787").is_ok(),
        "port 8787, which the README's mock recipe uses, is taken"
    );
    let pi_bin = home.path().join("bin");
    fs::create_dir(&pi_bin).expect("bin");
    let (node, cli) = crate::pi_home::pi16();
    fs::write(
        pi_bin.join("pi"),
        format!(
            "#!/bin/sh\nPI_SKIP_VERSION_CHECK=1 exec '{}' '{}' \"$@\"\n",
            node.display(),
            cli.display()
        ),
    )
    .expect("pi");
    fs::set_permissions(pi_bin.join("pi"), fs::Permissions::from_mode(0o755)).expect("0755");
    let script = format!(
        "export PATH=\"{}:$PATH\"\n{recipe}\n{pi_recipe}",
        pi_bin.display()
    );
    let log = home.path().join("mock-recipe.log");
    let mut recipe_run = spawn_script(&script, &clone, home.path(), &log);
    let deadline = Instant::now() + Duration::from_secs(120);
    let exit = loop {
        if let Some(status) = recipe_run.try_wait().expect("wait for bash") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    stop_group(&mut recipe_run);
    let said = fs::read_to_string(&log).unwrap_or_default();
    let exit = exit.unwrap_or_else(|| panic!("the recipe did not finish in 120 s:\n{said}"));
    assert!(exit.success(), "the recipe failed ({exit}):\n{said}");
    assert!(
        said.contains("Logged in to openai-codex as login@example.com"),
        "{said}"
    );
    assert!(said.contains("usage: "), "complete was answered:\n{said}");
    assert!(said.contains("issuer   http://127.0.0.1:8787\n"), "{said}");
    assert!(
        said.contains("backend  http://127.0.0.1:8787/backend-api\n"),
        "{said}"
    );
    let last = said.rfind("PROVIDER").map(|i| &said[i..]).unwrap_or("");
    assert!(
        last.contains("openai-codex  valid  acc-login"),
        "the status is logged in:\n{said}"
    );
    // pi answered through the package, from the mock, with no models.json.
    assert!(
        said.contains("Hello from the mock Codex backend."),
        "pi was answered by the mock:\n{said}"
    );
    let demo_models = fs::read_dir(home.path().join("tmp"))
        .expect("the demo dirs")
        .flatten()
        .any(|d| d.path().join("agent/models.json").exists());
    assert!(!demo_models, "no models.json was needed");
}

/// A newcomer's config mistakes: each is said once, naming the file, the
/// line and the key; `--check-config` and `status` show what is in use.
#[test]
fn config_mistakes_are_said_once_and_status_shows_the_config_in_use() {
    let sb = piauth_tests::Sandbox::new();
    let run = |args: &[&str]| {
        sb.command("piauthd")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("piauthd runs")
    };
    let missing = sb.dir.path().join("no-such.toml");
    let out = run(&["--config", &missing.display().to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "piauthd: cannot read the config file {}: No such file or directory (os error 2)",
            missing.display()
        )
    );

    let config = sb.dir.path().join("config.toml");
    fs::write(
        &config,
        "issuer = \"http://127.0.0.1:9\"\nstream_idle_secs = -1\n",
    )
    .unwrap();
    let out = run(&["--config", &config.display().to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the config file {} is invalid at line 2, key `stream_idle_secs`",
            config.display()
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    // No Secret Service in this environment (it is cleared): the keyring
    // error, with its cause, once.
    let out = run(&["--store", "keyring"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("piauthd: the OS keyring is not usable ("),
        "{err}"
    );
    let cause = last
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(cause, _)| cause)
        .expect("the cause in parentheses");
    assert_eq!(last.matches(cause).count(), 1, "said once: {last}");

    fs::write(&config, "issuer = \"http://127.0.0.1:9\"\n").unwrap();
    let out = run(&["--config", &config.display().to_string(), "--check-config"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("config file  {}\n", config.display())),
        "{said}"
    );
    assert!(said.contains("issuer       http://127.0.0.1:9\n"), "{said}");

    let _d = piauth_tests::Daemon::start_with(&sb, |cmd| {
        cmd.arg("--config")
            .arg(&config)
            .env_remove("PIAUTHD_ISSUER");
    });
    let out = sb.authctl(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["config_file"], config.display().to_string());
    assert_eq!(status["issuer"], "http://127.0.0.1:9");
    assert_eq!(status["codex_base_url"], "http://127.0.0.1:9/backend-api");
}

/// The README's first link for pi goes to the package the pi package
/// needs (its peer dependency), not to the legacy line.
#[test]
fn the_readme_links_pi_to_the_package_the_pi_package_needs() {
    let (repo, _) = repo_and_target();
    let readme = fs::read_to_string(repo.join("README.md")).expect("README.md");
    let manifest = fs::read_to_string(repo.join("client/pi/package.json")).expect("package.json");
    let needed = "@earendil-works/pi-coding-agent";
    assert!(manifest.contains(&format!("\"{needed}\"")), "{manifest}");
    let first = readme.find("[pi](").expect("a link for pi");
    assert!(
        readme[first..].starts_with(&format!("[pi](https://www.npmjs.com/package/{needed})")),
        "{}",
        &readme[first..first + 80]
    );
}
