//! What a run writes about itself for monitoring: `--report` (the JSON
//! summary) and `--metrics` (a Prometheus textfile), each replaced whole
//! (a temporary and a rename). Every run that got as far as its arguments
//! writes them, a run that failed to start included ([`record_fatal`]):
//! a cron job's monitoring must see each failure, not the last success.

use std::path::{Path, PathBuf};

use crate::engine::report::{Reporter, Summary};
use crate::error::{Error, exit};
use crate::state::Db;

/// State db key: when the job last succeeded (unix seconds).
const LAST_SUCCESS: &str = "last_success";

/// Files a run writes about itself.
#[derive(Debug, Clone, Default)]
pub struct Reports {
    /// `--report FILE`: the final summary as JSON, written atomically.
    pub report: Option<PathBuf>,
    /// `--metrics FILE`: a Prometheus textfile (node_exporter's collector).
    pub metrics: Option<PathBuf>,
    /// The `job` label of the metrics.
    pub job_name: Option<String>,
    /// `--notify URL`: healthcheck pings (see [`super::notify`]).
    pub notify: Option<String>,
}

/// Whether `--report` and `--metrics` can be written where they are asked
/// for: a temporary made and removed beside each.
pub(super) fn check_writable(reports: &Reports) -> Result<(), Error> {
    for (flag, path) in [("--report", &reports.report), ("--metrics", &reports.metrics)] {
        let Some(path) = path else { continue };
        let refused = |why: String| Error::Usage(format!("{flag} {}: {why}", path.display()));
        if path.is_dir() {
            return Err(refused("a directory; give the file to write".into()));
        }
        let temp = temp_beside(path);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| refused(format!("cannot be written ({e})")))?;
        let _ = std::fs::remove_file(&temp);
    }
    Ok(())
}

/// `--report` and `--metrics`, each written to a temporary and renamed, so
/// a reader never sees half a file. False when one could not be written
/// (said on `reporter`).
pub(super) async fn write_reports(
    reports: &Reports,
    summary: &Summary,
    exit_code: i32,
    started_at: i64,
    db: Option<&Db>,
    state_path: &Path,
    reporter: &Reporter,
) -> bool {
    let now = crate::units::unix_now_secs();
    let mut written = true;
    let mut last_success = None;
    if let Some(db) = db {
        let success = exit_code == exit::OK;
        last_success = db
            .call(move |db| {
                if success {
                    db.meta_set(LAST_SUCCESS, &now.to_string())?;
                }
                db.meta_get(LAST_SUCCESS)
            })
            .await
            .ok()
            .flatten()
            .and_then(|v| v.parse::<i64>().ok());
    }
    let mut value = serde_json::to_value(summary).unwrap_or_default();
    value["exit_code"] = serde_json::json!(exit_code);
    value["started_at"] = serde_json::json!(crate::units::format_utc(started_at));
    value["finished_at"] = serde_json::json!(crate::units::format_utc(now));
    if let Some(path) = &reports.report
        && let Err(err) = write_atomically(path, format!("{value}\n").as_bytes())
    {
        reporter.error(&format!("cannot write --report {}: {err}", path.display()));
        written = false;
    }
    if let Some(path) = &reports.metrics {
        let job = reports.job_name.clone().unwrap_or_else(|| {
            state_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "barge".into())
        });
        let text = metrics_text(&job, summary, exit_code, started_at, last_success);
        if let Err(err) = write_atomically(path, text.as_bytes()) {
            reporter.error(&format!("cannot write --metrics {}: {err}", path.display()));
            written = false;
        }
    }
    if let Some(url) = &reports.notify {
        super::notify::finished(url, exit_code, value.to_string(), reporter).await;
    }
    written
}

/// The temporary `path` is written to before it takes its name.
fn temp_beside(path: &Path) -> PathBuf {
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(temp)
}

/// The Prometheus text exposition of one run.
fn metrics_text(job: &str, s: &Summary, exit_code: i32, started_at: i64, last_success: Option<i64>) -> String {
    let label = job.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, value: String| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{job=\"{label}\"}} {value}\n"));
    };
    metric("barge_last_run_start_timestamp_seconds", "When the last run started.", "gauge", started_at.to_string());
    if let Some(success) = last_success {
        metric("barge_last_success_timestamp_seconds", "When the job last succeeded.", "gauge", success.to_string());
    }
    metric("barge_last_run_exit_code", "Exit code of the last run.", "gauge", exit_code.to_string());
    metric(
        "barge_last_run_files_transferred",
        "Files copied by the last run.",
        "gauge",
        s.files_transferred.to_string(),
    );
    metric(
        "barge_last_run_bytes_transferred",
        "Bytes copied by the last run.",
        "gauge",
        s.bytes_transferred.to_string(),
    );
    metric("barge_last_run_files_deleted", "Entries deleted by the last run.", "gauge", s.files_deleted.to_string());
    metric("barge_last_run_errors", "Errors in the last run.", "gauge", s.errors.to_string());
    metric("barge_last_run_duration_seconds", "How long the last run took.", "gauge", format!("{}", s.duration_s));
    out
}

/// Writes `path` via a temporary beside it (mode 0600) and a rename.
fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temp = temp_beside(path);
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
    file.write_all(content)?;
    file.sync_all()?;
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// Records a run that ended in a fatal error (it could not start, or
/// stopped as a whole): a line in the log file, the fatal object as the
/// report, and the metrics with its exit code and start time. The last
/// success and the job's label are the previous metrics file's: without a
/// state database to ask, that file is what monitoring last saw.
pub async fn record_fatal(
    reports: &Reports,
    reporter: &Reporter,
    err: &Error,
    started_at: i64,
    took: std::time::Duration,
) {
    let code = err.exit_code();
    reporter.log_only(&format!("fatal (exit {code}): {err}"));
    let value = serde_json::json!({
        "type": "fatal",
        "exit_code": code,
        "message": err.to_string(),
        "started_at": crate::units::format_utc(started_at),
        "finished_at": crate::units::format_utc(crate::units::unix_now_secs()),
    });
    if let Some(path) = &reports.report
        && let Err(e) = write_atomically(path, format!("{value}\n").as_bytes())
    {
        reporter.error(&format!("cannot write --report {}: {e}", path.display()));
    }
    if let Some(path) = &reports.metrics {
        let previous = std::fs::read_to_string(path).unwrap_or_default();
        let job = reports.job_name.clone().or_else(|| job_label(&previous)).unwrap_or_else(|| "barge".into());
        let last_success = metric_value(&previous, "barge_last_success_timestamp_seconds");
        // What was done before the failure still counts.
        let mut summary = reporter.summary(took);
        summary.errors += 1;
        let text = metrics_text(&job, &summary, code, started_at, last_success);
        if let Err(e) = write_atomically(path, text.as_bytes()) {
            reporter.error(&format!("cannot write --metrics {}: {e}", path.display()));
        }
    }
    if let Some(url) = &reports.notify {
        super::notify::finished(url, code, value.to_string(), reporter).await;
    }
}

/// The `job` label of a metrics file barge wrote.
fn job_label(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("barge_last_run_exit_code{"))?;
    let quoted = line.split_once("job=\"")?.1;
    // The label's own escapes (\\, \", \n), undone.
    let mut label = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(label),
            '\\' => match chars.next()? {
                'n' => label.push('\n'),
                other => label.push(other),
            },
            c => label.push(c),
        }
    }
    None
}

/// The value of one metric in a metrics file barge wrote.
fn metric_value(text: &str, name: &str) -> Option<i64> {
    let line = text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))?;
    line.rsplit_once(' ')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metrics_file_gives_back_its_label_and_last_success() {
        let reporter = Reporter::new(crate::engine::report::OutputOptions {
            json: false,
            verbosity: crate::engine::report::Verbosity::Quiet,
        });
        let summary = reporter.summary(std::time::Duration::ZERO);
        let text = metrics_text("nightly \"a\\b\"", &summary, 0, 100, Some(90));
        assert_eq!(job_label(&text).as_deref(), Some("nightly \"a\\b\""));
        assert_eq!(metric_value(&text, "barge_last_success_timestamp_seconds"), Some(90));
        assert_eq!(metric_value(&text, "barge_last_run_start_timestamp_seconds"), Some(100));
        let without = metrics_text("j", &summary, 3, 100, None);
        assert_eq!(metric_value(&without, "barge_last_success_timestamp_seconds"), None);
        assert_eq!(job_label(""), None);
    }
}
