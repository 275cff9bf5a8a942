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
