//! What a person reads: the manual pages as `man` renders them.

use std::process::Command;
use std::time::Duration;

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

/// PATH with the barge under test first, for the shells the tests run.
fn path_with_barge() -> String {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_barge")).parent().unwrap();
    format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default())
}

/// What bash offers at a TAB after `words` (the last one being completed),
/// with the script `barge completions bash` prints loaded.
fn bash_offers(s: &Scratch, words: &[&str]) -> Vec<String> {
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
        .env("PATH", path_with_barge())
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
    // A secret file this user cannot read must not stop completion.
    let config = "[remotes.origin]\nurl = \"ftp://u@ftp.example.com/pub\"\npassword_file = \"/nonexistent/pw\"\n\
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
    write(&s.path("home"), "mine.toml", b"[jobs.tilde]\nsource = \"/a\"\ndestination = \"/b\"\n");
    assert_eq!(bash_offers(&s, &["barge", "run", "--config", "~/mine.toml", "t"]), ["tilde"]);
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

/// A scratch whose default config (under `xdg/`) has the remote `origin`
/// and the job `nightly`.
fn one_job_one_remote() -> Scratch {
    let s = Scratch::new();
    let config = "[remotes.origin]\nurl = \"ftp://u@ftp.example.com/pub\"\n\
                  [jobs.nightly]\nsource = \"origin:releases\"\ndestination = \"/srv/mirror\"\n";
    write(&s.path("xdg/barge"), "config.toml", config.as_bytes());
    s
}

/// fish too, through `complete -C` (what fish offers for a command line),
/// with the script `barge completions fish` prints loaded.
#[test]
fn completion_offers_the_same_names_in_fish() {
    let s = one_job_one_remote();
    let offers = |line: &str| -> Vec<String> {
        let out = Command::new("fish")
            .args(["--no-config", "-c", "barge completions fish | source; complete -C $argv[1]", line])
            .env("PATH", path_with_barge())
            .env("XDG_CONFIG_HOME", s.path("xdg"))
            .env("HOME", s.path(""))
            .output()
            .expect("fish (tests/support/install.sh installs it)");
        assert!(out.status.success(), "fish: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('\t').next().unwrap_or("").to_string()).collect()
    };
    assert_eq!(offers("barge run ni"), ["nightly"]);
    assert_eq!(offers("barge sync or"), ["origin:"]);
    assert!(offers("barge sync --max-del").contains(&"--max-delete".to_string()));
}

/// zsh and elvish answer a TAB only at an interactive prompt: `shell`
/// started in a real terminal (tmux), `hook` typed (it must print HOOKED),
/// then a line typed with a TAB, the completed line read off the screen.
fn completes_at_a_prompt(shell: &str, hook: &str) {
    let s = one_job_one_remote();
    std::fs::create_dir_all(s.path("home")).unwrap();
    let command = format!(
        "cd '{}' && env PATH='{}' XDG_CONFIG_HOME='{}' HOME='{}' {shell}",
        s.path("").display(),
        path_with_barge(),
        s.path("xdg").display(),
        s.path("home").display()
    );
    let term = crate::screen::Terminal::run(&command, 100);
    let within = Duration::from_secs(20);
    term.wait_for(|line| !line.is_empty(), within);
    term.type_text(hook);
    term.press("Enter");
    term.wait_for(|line| line == "HOOKED", within);
    // What is typed is a prefix of the completed line: it is on the screen
    // only once the TAB has been answered.
    for (typed, completed) in [("barge run ni", "barge run nightly"), ("barge sync or", "barge sync origin:")] {
        term.type_text(typed);
        term.press("Tab");
        term.wait_for(|line| line.contains(completed), within);
        term.press("C-u");
    }
}

#[test]
fn completion_offers_the_same_names_in_zsh() {
    let hook = "autoload -U compinit && compinit -u && source <(barge completions zsh) && echo HOOKED";
    completes_at_a_prompt("PS1='zsh> ' zsh -f", hook);
}

#[test]
fn completion_offers_the_same_names_in_elvish() {
    // An exception in `eval` ends the line before the echo.
    completes_at_a_prompt("elvish -norc", "eval (barge completions elvish | slurp); echo HOOKED");
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

// --- The docs: every command in them is checked -----------------------------

fn repo() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page of docs/, with their text.
fn doc_files() -> Vec<(String, String)> {
    let mut files = vec![("README.md".to_string(), std::fs::read_to_string(repo().join("README.md")).unwrap())];
    let mut pages: Vec<_> = std::fs::read_dir(repo().join("docs")).unwrap().map(|e| e.unwrap().path()).collect();
    pages.sort();
    for page in pages.into_iter().filter(|p| p.extension().is_some_and(|e| e == "md")) {
        let name = format!("docs/{}", page.file_name().unwrap().to_string_lossy());
        files.push((name, std::fs::read_to_string(&page).unwrap()));
    }
    files
}

/// The fenced code blocks of a markdown text: (info string, body).
fn code_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_string(), String::new())),
            (Some(_), Some(rest)) if rest.trim().is_empty() => blocks.push(open.take().unwrap()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "a code block is never closed");
    blocks
}

/// The barge command lines of a shell (or cron) block, split as the shell
/// would: `$VAR` and `$(...)` stand in as `1` and `X`, comments, pipes and
/// redirections end a command.
fn barge_commands(info: &str, body: &str) -> Vec<Vec<String>> {
    let joined = body.replace("\\\n", " ");
    let mut commands = Vec::new();
    for line in joined.lines() {
        let mut line = line.trim().to_string();
        if info == "cron" {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            line = line.split_whitespace().skip(5).collect::<Vec<_>>().join(" ");
        }
        if info == "ini" {
            let Some(command) = line.strip_prefix("ExecStart=") else { continue };
            line = command.replace("/usr/local/bin/barge", "barge");
        }
        let line = substitute(&line);
        let Some(words) = shlex::split(&line) else { panic!("unbalanced quotes in {line:?}") };
        let ends = |w: &str| {
            matches!(w, "|" | "||" | "&&" | ";" | "&" | "2>&1")
                || w.starts_with('>')
                || w.starts_with('<')
                || w.starts_with('#')
                || w.starts_with("2>")
        };
        // What may stand before a command: a separator, a keyword, a wrapper.
        let starts = |w: &str| {
            matches!(
                w,
                ";" | "&&" | "||" | "|" | "&" | "do" | "then" | "if" | "!" | "exec" | "sudo" | "nice" | "time" | "env"
            ) || is_assignment(w)
                || w.starts_with('-')
                || w.parse::<u32>().is_ok()
        };
        let mut i = 0;
        while i < words.len() {
            // `source <(barge completions bash)`: the substitution's command.
            if let Some(inner) = words[i].strip_prefix("<(").filter(|inner| *inner == "barge") {
                let mut command = vec![inner.to_string()];
                for word in &words[i + 1..] {
                    match word.strip_suffix(')') {
                        Some(last) => {
                            command.push(last.to_string());
                            break;
                        }
                        None => command.push(word.clone()),
                    }
                }
                i += command.len();
                commands.push(command);
            } else if words[i] == "barge" && (i == 0 || starts(&words[i - 1])) {
                let command: Vec<String> = words[i..].iter().take_while(|w| !ends(w)).cloned().collect();
                i += command.len();
                commands.push(command);
            } else {
                i += 1;
            }
        }
    }
    commands
}

/// The commands a YAML block runs (`command: ["sh", "-c", "exec barge ..."]`).
fn yaml_commands(body: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for quoted in body.split('"').skip(1).step_by(2) {
        found.extend(barge_commands("sh", &format!("{quoted}\n")));
    }
    found
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=')
        .is_some_and(|(name, _)| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// `$(...)` as `X`, `$VAR` and `${VAR}` as `1`.
fn substitute(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(inner) = after.strip_prefix('(') {
            let close = inner.find(')').map(|c| c + 1).unwrap_or(inner.len());
            out.push('X');
            rest = &inner[close.min(inner.len())..];
        } else if let Some(inner) = after.strip_prefix('{') {
            let close = inner.find('}').map(|c| c + 1).unwrap_or(inner.len());
            out.push('1');
            rest = &inner[close..];
        } else {
            let len = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '?').count();
            out.push_str(if len == 0 { "$" } else { "1" });
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn every_barge_command_in_the_docs_parses_with_this_barge() {
    use clap::Parser;
    let mut checked = 0;
    for (file, text) in doc_files() {
        for (info, body) in code_blocks(&text) {
            let lang = info.split_whitespace().next().unwrap_or("");
            if !matches!(lang, "sh" | "cron" | "ini" | "yaml") {
                continue;
            }
            let commands = if lang == "yaml" { yaml_commands(&body) } else { barge_commands(lang, &body) };
            // A line that runs barge yet yields no command would be skipped
            // silently: each must give one.
            let runs_barge = |l: &str| {
                // What a comment says is not run.
                let l = l.split(" #").next().unwrap_or(l).replace("/usr/local/bin/barge", "barge");
                l.split(|c: char| c.is_whitespace() || matches!(c, '"' | '(' | '\'' | '=')).any(|w| w == "barge")
                    && !l.trim_start().starts_with('#')
            };
            let lines_running = body
                .replace("\\\n", " ")
                .lines()
                .filter(|l| lang != "ini" || l.starts_with("ExecStart="))
                // YAML runs what its quoted strings say (`- name: barge` does not).
                .filter(|l| lang != "yaml" || l.split('"').skip(1).step_by(2).any(&runs_barge))
                .filter(|l| runs_barge(l))
                .count();
            assert!(commands.len() >= lines_running, "{file}: a barge line in a {lang} block gave no command:\n{body}");
            for command in commands {
                let shown = command.join(" ");
                match barge::cli::Cli::try_parse_from(&command) {
                    Ok(cli) => {
                        if let barge::cli::Command::Sync(args) | barge::cli::Command::Plan(args) = &cli.command {
                            for location in [&args.src, &args.dst] {
                                barge::location::Location::parse(location)
                                    .unwrap_or_else(|e| panic!("{file}: `{shown}`: {location}: {e}"));
                            }
                        }
                    }
                    Err(err)
                        if matches!(
                            err.kind(),
                            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                        ) => {}
                    Err(err) => panic!("{file}: `{shown}` does not parse:\n{err}"),
                }
                checked += 1;
            }
        }
    }
    // The README's recipes and the guide hold dozens: a parser that found
    // none would pass for the wrong reason.
    assert!(checked >= 30, "only {checked} commands found in the docs");
}

#[test]
fn every_config_file_in_the_docs_loads() {
    let s = Scratch::new();
    let secret = s.path("secret.pw");
    write(&s.path(""), "secret.pw", b"hunter2\n");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut loaded = 0;
    for (file, text) in doc_files() {
        for (info, body) in code_blocks(&text) {
            if info != "toml" {
                continue;
            }
            // The secret files named there are the reader's own; one of ours stands in.
            let body: String = body
                .lines()
                .map(|l| match l.trim_start().starts_with("password_file") {
                    true => format!("password_file = \"{}\"", secret.display()),
                    false => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            barge::config::Config::parse(&body, std::path::Path::new(&file))
                .unwrap_or_else(|e| panic!("{file}: a config file does not load: {e}\n{body}"));
            loaded += 1;
        }
    }
    assert!(loaded >= 2, "only {loaded} config files found in the docs");
}

/// The `sh run` blocks of the guide, run in order in one shell in an empty
/// directory (HOME there too), barge on the PATH. A line ending in
/// `# exit N` must exit N; any other failing line fails the test.
#[test]
fn the_guides_steps_run_as_written() {
    let s = Scratch::new();
    let work = s.path("work");
    std::fs::create_dir_all(&work).unwrap();
    let (_, guide) = doc_files().into_iter().find(|(f, _)| f == "docs/README.md").unwrap();
    let mut script = String::from("set -e\n");
    let mut steps = 0;
    for (_, body) in code_blocks(&guide).into_iter().filter(|(info, _)| info == "sh run") {
        for line in body.lines() {
            let expected =
                line.rsplit_once("# exit ").and_then(|(_, code)| code.split(':').next()?.trim().parse::<i32>().ok());
            match expected {
                Some(code) => {
                    let command = line.split(" # ").next().unwrap().trim();
                    script.push_str(&format!(
                        "if {command}; then rc=0; else rc=$?; fi; [ $rc -eq {code} ] || {{ echo \"expected exit {code}, got $rc: {}\" >&2; exit 1; }}\n",
                        command.replace('"', "\\\"")
                    ));
                }
                None => {
                    script.push_str(line);
                    script.push('\n');
                }
            }
            steps += 1;
        }
    }
    assert!(steps >= 15, "the guide's runnable steps were not found");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        .env("PATH", path_with_barge())
        .env("HOME", &work)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME")
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the guide's steps failed:\n{said}\nscript:\n{script}");
    assert!(said.contains("0 differences"), "{said}");
    assert!(work.join("backup/photos/2026/a.jpg").exists() && !work.join("backup/photos/2026/b.jpg").exists());
}

/// The README's first command: the demo mirrors its sample tree and its
/// check ends with the trees matching (the numbers as the README says them).
#[test]
fn the_readmes_demo_runs_as_it_says() {
    let s = Scratch::new();
    let (_, readme) = &doc_files()[0];
    assert!(readme.contains("cargo run --locked -- demo") && readme.contains("cargo test --locked"));
    let out = s.barge().arg("demo").env("TMPDIR", s.path("")).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(readme.contains("generates 501 files") && said.contains("501 files identical"), "{said}");
}

/// docs/reference.md is every command's --help as this barge prints it
/// (`BARGE_BLESS=1` writes it anew).
#[test]
fn the_reference_is_this_barges_help() {
    let s = Scratch::new();
    let mut reference = String::from(
        "# Command reference\n\nEvery command's `--help`, as this version prints it (`tests/it/docs.rs` fails\n\
         when it differs; `BARGE_BLESS=1 cargo test --test it docs::` writes it anew).\n",
    );
    for command in ["", "sync", "plan", "check", "run", "doctor", "jobs", "remotes", "demo", "completions", "man"] {
        let mut cmd = s.barge();
        if !command.is_empty() {
            cmd.arg(command);
        }
        let out = cmd.arg("--help").output().unwrap();
        assert!(out.status.success());
        let title = if command.is_empty() { "barge".to_string() } else { format!("barge {command}") };
        reference.push_str(&format!("\n## {title}\n\n```text\n{}```\n", String::from_utf8_lossy(&out.stdout)));
    }
    let path = repo().join("docs/reference.md");
    if std::env::var_os("BARGE_BLESS").is_some() {
        std::fs::write(&path, &reference).unwrap();
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == reference,
        "docs/reference.md is not this barge's --help: run BARGE_BLESS=1 cargo test --test it docs::"
    );
}
