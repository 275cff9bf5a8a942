//! The progress line as a person sees it: barge run in a real terminal
//! (tmux, at 80 and 120 columns), the screen read back while it runs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// A tmux server of its own (its own socket), killed when dropped.
pub(crate) struct Terminal {
    socket: String,
}

impl Terminal {
    /// Runs `command` (a shell line) in a fresh `columns`-wide terminal.
    pub(crate) fn run(command: &str, columns: u16) -> Terminal {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("barge-test-{}-{n}", std::process::id());
        // bash itself, not tmux's default shell: dash dies with a Ctrl-C
        // meant for barge, fish has no `$?`. (Several words: tmux runs
        // them directly.)
        let status = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d", "-x", &columns.to_string(), "-y", "20"])
            .args(["bash", "-c", &format!("{command}; echo EXITED $?; sleep 120")])
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux (tests/support/install.sh installs it)");
        assert!(status.success());
        Terminal { socket }
    }

    /// The screen's lines now, trailing blanks trimmed.
    pub(crate) fn screen(&self) -> Vec<String> {
        let out = Command::new("tmux").args(["-L", &self.socket, "capture-pane", "-p"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim_end().to_string()).collect()
    }

    /// Types `keys` (tmux's names: C-c is Ctrl-C).
    pub(crate) fn press(&self, keys: &str) {
        let status = Command::new("tmux").args(["-L", &self.socket, "send-keys", keys]).status().unwrap();
        assert!(status.success());
    }

    /// Types `text` as it is (no key names).
    pub(crate) fn type_text(&self, text: &str) {
        let status = Command::new("tmux").args(["-L", &self.socket, "send-keys", "-l", text]).status().unwrap();
        assert!(status.success());
    }

    /// Waits until a line of the screen satisfies `wanted`; the screen then.
    pub(crate) fn wait_for(&self, wanted: impl Fn(&str) -> bool, within: Duration) -> Vec<String> {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if screen.iter().any(|line| wanted(line)) {
                return screen;
            }
            assert!(started.elapsed() < within, "not on the screen after {within:?}: {screen:#?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every distinct screen until the command has exited.
    fn screens_until_exit(&self, within: Duration) -> Vec<Vec<String>> {
        let started = Instant::now();
        let mut screens: Vec<Vec<String>> = Vec::new();
        loop {
            let screen = self.screen();
            let exited = screen.iter().any(|l| l.starts_with("EXITED"));
            if screens.last() != Some(&screen) {
                screens.push(screen);
            }
            if exited {
                return screens;
            }
            assert!(started.elapsed() < within, "still running after {within:?}: {:?}", screens.last());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

/// A tree that takes a few seconds at 4 MB/s: one large file, many small.
fn slow_tree(s: &Scratch) {
    write(&s.src(), "iso/big-file-number-one.iso", &bytes(7, 12 << 20));
    for i in 0..200 {
        write(&s.src(), format!("small/f{i}"), format!("{i}").as_bytes());
    }
}

fn sync_line(s: &Scratch, redirect: &str) -> String {
    format!(
        "{} sync {} {} --state {} --bwlimit 4M{redirect}",
        env!("CARGO_BIN_EXE_barge"),
        s.src().display(),
        s.dst().display(),
        s.state().display()
    )
}

fn is_progress(line: &str) -> bool {
    line.contains("eta ") || line.starts_with("listing")
}

#[test]
fn the_progress_line_fits_the_terminal_and_leaves_only_the_summary() {
    for columns in [80u16, 120] {
        let s = Scratch::new();
        slow_tree(&s);
        let terminal = Terminal::run(&sync_line(&s, ""), columns);
        let screens = terminal.screens_until_exit(Duration::from_secs(60));
        let shown: Vec<&String> = screens.iter().flatten().filter(|l| is_progress(l)).collect();
        assert!(!shown.is_empty(), "{columns} columns: no progress line in {screens:?}");
        for screen in &screens {
            // One line, never wrapped onto a second row nor stacked.
            assert!(screen.iter().filter(|l| is_progress(l)).count() <= 1, "{columns}: {screen:?}");
            for line in screen {
                assert!(
                    line.chars().count() < columns as usize || line.starts_with("transferred"),
                    "{columns}: {line:?}"
                );
            }
        }
        // A bar, the share, the rate of the last seconds and an ETA once listed,
        // and the large file named while it runs alone.
        let rated =
            |l: &&&String| l.contains('%') && l.contains("eta ") && (l.contains("MiB/s") || l.contains("KiB/s"));
        assert!(shown.iter().any(|l| rated(&l)), "{columns}: {shown:?}");
        assert!(shown.iter().any(|l| l.contains("big-file") && l.ends_with('%')), "{columns}: {shown:?}");
        if columns >= 100 {
            assert!(shown.iter().any(|l| l.starts_with('[')), "a bar at {columns} columns: {shown:?}");
        }
        // No flash of empty totals.
        assert!(!shown.iter().any(|l| l.contains("0 B/0 B") || l.contains("0/0 files")), "{shown:?}");
        // At the end: the summary, and no progress line left behind.
        let last = screens.last().unwrap();
        assert!(last.iter().any(|l| l.starts_with("transferred 201 files")), "{last:?}");
        assert!(last.iter().any(|l| l == "EXITED 0"), "{last:?}");
        assert!(!last.iter().any(|l| is_progress(l)), "{last:?}");
        assert_mirrors(&s.src(), &s.dst());
    }
}

#[test]
fn with_stdout_not_a_terminal_only_the_summary_is_written() {
    let s = Scratch::new();
    slow_tree(&s);
    let out = s.path("out.txt");
    let terminal = Terminal::run(&sync_line(&s, &format!(" > {}", out.display())), 80);
    let screens = terminal.screens_until_exit(Duration::from_secs(60));
    for screen in &screens {
        assert!(!screen.iter().any(|l| is_progress(l)), "drawn although stdout is a file: {screen:?}");
    }
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(written.starts_with("transferred 201 files") && written.lines().count() == 1, "{written}");
    assert!(Path::new(&s.dst()).join("iso/big-file-number-one.iso").exists());
}

#[test]
fn ctrl_c_leaves_the_notice_and_the_summary_not_a_progress_line() {
    let s = Scratch::new();
    slow_tree(&s);
    let terminal = Terminal::run(&sync_line(&s, ""), 80);
    // Once the line shows the large file under way, the terminal's Ctrl-C
    // (its echo, ^C, lands where the cursor is).
    let started = Instant::now();
    while !terminal.screen().iter().any(|l| l.contains("big-file")) {
        assert!(started.elapsed() < Duration::from_secs(30), "{:?}", terminal.screen());
        std::thread::sleep(Duration::from_millis(50));
    }
    terminal.press("C-c");
    let screens = terminal.screens_until_exit(Duration::from_secs(60));
    let last = screens.last().unwrap();
    let text = last.join("\n");
    assert!(text.contains("SIGINT: finishing the transfers in flight"), "{text}");
    assert!(last.iter().any(|l| l.starts_with("transferred")) && last.iter().any(|l| l == "EXITED 1"), "{text}");
    assert!(!last.iter().any(|l| is_progress(l)), "a progress line left on the screen:\n{text}");
}

/// vsftpd behind the WAN emulator (40 ms round trips), a tree of many
/// directories: listing it takes seconds, and the screen says so.
#[test]
fn a_far_servers_listing_is_shown_as_such_by_sync_and_by_plan() {
    use crate::harness::{self, FtpServerKind, FtpTls};
    use crate::wanem::{self, Link};
    let server = harness::ftp_server_with(FtpServerKind::Vsftpd, FtpTls::None, &["pasv_address=127.0.0.2"]);
    for d in 0..150 {
        write(&server.root, format!("d{d}/a.txt"), b"a");
        write(&server.root, format!("d{d}/b.txt"), b"bb");
    }
    harness::give_to_test_user(&server.root);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ports = std::iter::once(server.port).chain(server.pasv_ports.0..=server.pasv_ports.1);
    let link = Link { one_way_delay: Duration::from_millis(20), ..Link::default() };
    runtime.block_on(wanem::forward("127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap(), ports, link)).unwrap();
    let remote = format!("ftp://{}@127.0.0.2:{}/", server.user, server.port);
    for command in ["sync", "plan"] {
        let s = Scratch::new();
        let line = format!(
            "BARGE_PASSWORD={} {} {command} {remote} {} --state {} --timeout 20",
            server.password,
            env!("CARGO_BIN_EXE_barge"),
            s.dst().display(),
            s.state().display()
        );
        let terminal = Terminal::run(&line, 100);
        let screens = terminal.screens_until_exit(Duration::from_secs(120));
        let listing: Vec<&String> = screens.iter().flatten().filter(|l| l.starts_with("listing")).collect();
        assert!(!listing.is_empty(), "{command}: the listing was never shown: {screens:?}");
        if command == "sync" {
            // Copies start while the tree is listed: entries counted as they
            // come, the totals growing.
            let counted = |l: &str| {
                l.split_whitespace().nth(1).is_some_and(|n| n.replace(',', "").parse::<u64>().is_ok_and(|n| n > 0))
            };
            assert!(listing.iter().any(|l| counted(l) && l.contains("to copy") && l.contains('+')), "{listing:?}");
        } else {
            // plan reads the trees whole: entries counted as they arrive and
            // the time it has taken, no totals; its lines replace the listing's.
            assert!(listing.iter().all(|l| l.starts_with("listing both trees")), "{listing:?}");
            assert!(!listing.iter().any(|l| l.contains("to copy")), "{listing:?}");
            let arrived: Vec<u64> = listing
                .iter()
                .filter_map(|l| l.strip_prefix("listing both trees: ")?.split_whitespace().next())
                .map(|n| n.replace(',', "").parse().unwrap())
                .collect();
            assert!(arrived.is_sorted(), "the count only grows: {arrived:?}");
            // 450 entries in all (150 directories of 2 files): seen part-way.
            assert!(arrived.iter().any(|&n| n > 0 && n < 450), "never counted while arriving: {listing:?}");
        }
        let last = screens.last().unwrap();
        assert!(last.iter().any(|l| l == "EXITED 0"), "{command}: {last:?}");
        assert!(!last.iter().any(|l| is_progress(l)), "{command}: a progress line left: {last:?}");
    }
}
