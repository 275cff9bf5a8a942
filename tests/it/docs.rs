//! What a person reads: the manual pages as `man` renders them.

use std::process::Command;

use crate::common::*;

const PAGES: [&str; 12] = [
    "barge.1",
    "barge-sync.1",
    "barge-plan.1",
    "barge-check.1",
    "barge-demo.1",
    "barge-doctor.1",
    "barge-run.1",
    "barge-jobs.1",
    "barge-remotes.1",
    "barge-completions.1",
    "barge-man.1",
    "barge-config.5",
];

/// `man -l` at 80 columns, with groff's warnings on: (screen, warnings).
fn render(page: &std::path::Path) -> (String, String) {
    let out = Command::new("man")
        .args(["--warnings=w", "-E", "UTF-8", "-l"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("man (tests/support/install.sh installs man-db)");
    assert!(out.status.success(), "man -l {}: {}", page.display(), String::from_utf8_lossy(&out.stderr));
    (plain(&String::from_utf8_lossy(&out.stdout)), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The text without grotty's overstrikes (`b\x08b` bold, `_\x08x` underlined).
fn plain(screen: &str) -> String {
    let mut out = String::new();
    let mut chars = screen.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'\u{8}') {
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
}

#[test]
fn man_pages_are_written_one_per_command_and_render_without_warnings() {
    let s = Scratch::new();
    let dir = s.path("man");
    let run = Run::of(s.barge().arg("man").arg("--dir").arg(&dir).output().unwrap());
    run.expect_code(0);
    let mut written: Vec<String> = ["man1", "man5"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(dir.join(sub)).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let mut expected: Vec<String> = PAGES.iter().map(|p| p.to_string()).collect();
    expected.sort();
    assert_eq!(written, expected);
    let at = |page: &str| dir.join(format!("man{}", page.rsplit('.').next().unwrap())).join(page);
    for page in PAGES {
        let (screen, warnings) = render(&at(page));
        assert_eq!(warnings, "", "{page}: groff warned");
        let title = page.rsplit_once('.').map(|(name, section)| format!("{}({section})", name.to_uppercase())).unwrap();
        assert!(screen.starts_with(&title), "{page} starts: {}", &screen[..screen.len().min(80)]);
        for line in screen.lines() {
            assert!(line.chars().count() <= 80, "{page}: a line wider than 80 columns: {line:?}");
        }
    }
    let (sync, _) = render(&at("barge-sync.1"));
    for said in ["--max-delete", "sftp://user@host:22/path", "EXIT STATUS", "BARGE_PASSWORD", "FILTERS"] {
        assert!(sync.contains(said), "barge-sync(1) lacks {said}");
    }
    let (config, _) = render(&at("barge-config.5"));
    for said in ["password_file", "max_delete", "remove_source_files", "[jobs.releases]"] {
        assert!(config.contains(said), "barge-config(5) lacks {said}");
    }
    // Without --dir: barge(1) on stdout, the same page.
    let out = s.barge().arg("man").output().unwrap();
    assert_eq!(out.stdout, std::fs::read(at("barge.1")).unwrap());
}

/// What bash offers at a TAB after `words` (the last one being completed),
/// with the script `barge completions bash` prints loaded.
fn bash_offers(s: &Scratch, words: &[&str]) -> Vec<String> {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_barge")).parent().unwrap();
    let script = r#"
source <(barge completions bash) || exit 9
COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; COMP_TYPE=9
_clap_complete_barge barge "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("bash")
        .args(words)
        .current_dir(s.path(""))
        .env("PATH", format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default()))
        .env("XDG_CONFIG_HOME", s.path("xdg"))
        .env("HOME", s.path("home"))
        .output()
        .unwrap();
    assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn completion_offers_the_config_files_jobs_and_remotes() {
    let s = Scratch::new();
    let config = "[remotes.origin]\nurl = \"ftp://u@ftp.example.com/pub\"\n\
                  [remotes.vault]\nurl = \"sftp://b@vault.example.org/srv\"\n\
                  [jobs.nightly]\nsource = \"origin:releases\"\ndestination = \"/srv/mirror\"\n\
                  [jobs.home-backup]\nsource = \"/home\"\ndestination = \"vault:home\"\n";
    write(&s.path("xdg/barge"), "config.toml", config.as_bytes());
    write(&s.path("other"), "c.toml", b"[jobs.elsewhere]\nsource = \"/a\"\ndestination = \"/b\"\n");
    std::fs::create_dir_all(s.path("home")).unwrap();
    std::fs::create_dir_all(s.path("archive")).unwrap();

    // The default config's jobs, filtered by what is typed.
    let offered = bash_offers(&s, &["barge", "run", ""]);
    assert!(offered.contains(&"nightly".into()) && offered.contains(&"home-backup".into()), "{offered:?}");
    assert_eq!(bash_offers(&s, &["barge", "run", "ni"]), ["nightly"]);
    // --config, before or after the command, is the config asked.
    assert_eq!(bash_offers(&s, &["barge", "--config", "other/c.toml", "run", "e"]), ["elsewhere"]);
    assert_eq!(bash_offers(&s, &["barge", "run", "--config", "other/c.toml", "e"]), ["elsewhere"]);
    // Locations: remotes as NAME:, and local paths.
    assert_eq!(bash_offers(&s, &["barge", "sync", "or"]), ["origin:"]);
    assert_eq!(bash_offers(&s, &["barge", "doctor", "v"]), ["vault:"]);
    let offered = bash_offers(&s, &["barge", "sync", "origin:", "a"]);
    assert_eq!(offered, ["archive/"], "a local path for the destination");
    // Flags and commands, as before.
    assert_eq!(bash_offers(&s, &["barge", "sync", "--max-del"]), ["--max-delete"]);
    assert_eq!(bash_offers(&s, &["barge", "ch"]), ["check"]);
    // A broken config offers nothing rather than an error on the prompt.
    write(&s.path("xdg/barge"), "config.toml", b"[jobs.x\n");
    assert_eq!(bash_offers(&s, &["barge", "run", ""]).iter().filter(|w| !w.starts_with('-')).count(), 0);
}

#[test]
fn completion_scripts_hook_up_every_shell() {
    let s = Scratch::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = s.barge().args(["completions", shell]).output().unwrap();
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && script.contains("_BARGE_COMPLETE"), "{shell}: {script}");
    }
}
