//! From flags to a validated [`Job`]: the checks that need more than one
//! flag (or the config) to decide, the per-side connection caps and backend
//! options, and a configured job turned into the command line it stands for.

use std::sync::Arc;

use crate::backend::ftp::FtpOptions;
use crate::backend::ftp::tls::TlsOptions;
use crate::backend::sftp::SftpOptions;
use crate::backend::{self, RemoteOptions};
use crate::config::{Config, Remote};
use crate::engine::EngineConfig;
use crate::engine::adapt::{self, Concurrency};
use crate::engine::report::OutputOptions;
use crate::error::Error;
use crate::location::Location;
use crate::plan::filter::{AgeRange, Filter};
use crate::sync::{Job, Reports, Safety};
use crate::throttle::Bandwidth;

use super::{CommonArgs, RemoteArgs, RunArgs, SyncArgs};

impl CommonArgs {
    pub(super) fn output(&self) -> OutputOptions {
        self.output.options()
    }

    /// The permission bits a run keeps (see `EngineConfig::perms`).
    fn perm_mask(&self) -> Result<Option<crate::perms::Perms>, Error> {
        if self.no_perms {
            return Ok(None);
        }
        let chmod = self.chmod.clone();
        if !self.perms_all {
            return Ok(Some(crate::perms::Perms { mask: 0o777, chmod }));
        }
        if !rustix::process::geteuid().is_root() {
            return Err(Error::Usage(
                "--perms-all keeps setuid, setgid and sticky bits, which only root may give: run as root, \
                 or leave it out to keep the rwx bits"
                    .into(),
            ));
        }
        Ok(Some(crate::perms::Perms { mask: 0o7777, chmod }))
    }

    /// `--min-age`, `--max-age` as times, from the run's start.
    fn age_range(&self) -> Result<AgeRange, Error> {
        let now = crate::units::unix_now_secs();
        let ages = AgeRange {
            newest: self.min_age.map(|age| age.cutoff(now)),
            oldest: self.max_age.map(|age| age.cutoff(now)),
        };
        if let (Some(newest), Some(oldest)) = (ages.newest, ages.oldest)
            && oldest > newest
        {
            return Err(Error::Usage(
                "--max-age reaches less far back than --min-age: no file could be within both".into(),
            ));
        }
        Ok(ages)
    }

    pub(super) fn reports(&self) -> Reports {
        Reports {
            report: self.report.clone(),
            metrics: self.metrics.clone(),
            job_name: self.job_name.clone(),
            notify: self.notify.clone(),
        }
    }

    pub(super) fn job(
        &self,
        config: &Config,
        src: &str,
        dst: &str,
        delete: bool,
        safety: Safety,
    ) -> Result<Job, Error> {
        if let (Some(min), Some(max)) = (self.min_size, self.max_size)
            && min > max
        {
            return Err(Error::Usage(format!("--min-size {min} is larger than --max-size {max}")));
        }
        if self.bwlimit == Some(Bandwidth::Rate(0)) {
            return Err(Error::Usage("--bwlimit must be more than 0".into()));
        }
        let ages = self.age_range()?;
        let files_from = match &self.files_from {
            Some(_) if delete => {
                return Err(Error::Usage(
                    "--files-from copies the paths it lists and looks at nothing else: it cannot tell what \
                     --delete should remove"
                        .into(),
                ));
            }
            Some(_) if self.verify_state => {
                return Err(Error::Usage("--verify-state lists whole trees: not with --files-from".into()));
            }
            Some(file) => Some(Arc::new(crate::sync::files_from::FileList::read(file, self.from0)?)),
            None => None,
        };
        if self.remove_source_files && delete {
            return Err(Error::Usage(
                "--remove-source-files empties the source, and --delete would then empty the destination: \
                 give one or the other"
                    .into(),
            ));
        }
        let backup_dir = self.backup_dir.as_deref().map(backup_dir).transpose()?;
        let mut exclude = self.exclude.clone();
        if let Some(dir) = &backup_dir {
            // The backups are not part of the mirror: never compared, copied or deleted.
            // Its first component, so `.old/<date>` keeps every earlier night's too.
            let top = dir.components().next().unwrap_or_default();
            exclude.push(format!("/{}/", globset::escape(&String::from_utf8_lossy(top))));
        }
        let (src, src_config) = config.location(src)?;
        let (dst, dst_config) = config.location(dst)?;
        if self.fxp && !(backend::profile(&src).server_copy && backend::profile(&dst).server_copy) {
            return Err(Error::Usage("--fxp copies between two FTP servers: both locations must be ftp://".into()));
        }
        // Each remote side gets its own cap; the transfers at once are
        // capped by the tighter of the two (each holds one of each side's).
        let side_cap = |location: &Location, side: Option<u16>| {
            let given = side.or(self.parallel).map(usize::from);
            backend::profile(location).auto_ceiling.map(|auto| given.unwrap_or(auto)).or(given)
        };
        let side_options = |cap: Option<usize>, remote: Option<&Remote>| {
            let mut options = self.remote.options(cap.unwrap_or(adapt::AUTO_MAX_LOCAL));
            options.retries = self.retries;
            if let Some(remote) = remote {
                remote.apply(&mut options, self.remote.timeout.is_some());
            }
            options
        };
        let (src_cap, dst_cap) = (side_cap(&src, self.src_parallel), side_cap(&dst, self.dst_parallel));
        let (src_remote, dst_remote) = (side_options(src_cap, src_config), side_options(dst_cap, dst_config));
        let timeout = src_remote.timeout.max(dst_remote.timeout);
        for (location, options) in [(&src, &src_remote), (&dst, &dst_remote)] {
            // A password variable that is not set would send an empty
            // password and show the server's 530: say which variable.
            if let (Location::Remote(_), Some(var)) = (location, &options.password_env)
                && options.password.is_none()
                && std::env::var_os(var).is_none_or(|v| v.is_empty())
            {
                return Err(Error::Usage(format!(
                    "the password for {location} is to come from the environment variable {var} \
                     (--password-env or password_env), which is not set"
                )));
            }
        }
        let remote_caps = [(src_cap, &src_remote), (dst_cap, &dst_remote)];
        let max = remote_caps
            .iter()
            .filter(|(cap, _)| cap.is_some())
            .map(|(_, options)| options.connections)
            .min()
            .unwrap_or(adapt::AUTO_MAX_LOCAL);
        let concurrency = Concurrency { start: adapt::DEFAULT_START.min(max), max };
        // Every byte passes through both servers: a remote's bandwidth cap
        // is a cap on the whole run.
        let (rate, bw_timetable) = match &self.bwlimit {
            Some(Bandwidth::Rate(rate)) => (Some(*rate), None),
            Some(Bandwidth::Timetable(table)) => (None, Some(table.clone())),
            None => (None, None),
        };
        let bwlimit =
            [rate, src_config.and_then(|r| r.bwlimit), dst_config.and_then(|r| r.bwlimit)].into_iter().flatten().min();
        Ok(Job {
            src_remote,
            dst_remote,
            src,
            dst,
            compare: self.compare,
            delete,
            safety,
            reports: self.reports(),
            filter: Filter::new(&self.include, &exclude, self.min_size, self.max_size)?
                .with_ages(ages)
                .with_shard(self.shard.map(|shard| shard.at_depth(self.shard_depth.unwrap_or(1)))),
            engine: EngineConfig {
                concurrency,
                retries: self.retries,
                bwlimit,
                bw_timetable,
                inplace: self.inplace,
                backup_dir,
                verify: self.verify,
                fxp: self.fxp,
                segmenting: crate::commit::Segmenting::new(self.segment_threshold, self.segments, self.retries),
                timeout,
                perms: self.perm_mask()?,
                owners: crate::perms::Owners { user: self.owner, group: self.group, numeric: self.numeric_ids },
                moving: self
                    .remove_source_files
                    .then_some(crate::engine::Moving { empty_dirs: self.remove_empty_source_dirs }),
            },
            state_path: self.state.clone(),
            links: self.links,
            trust_state: self.trust_state,
            verify_state: self.verify_state,
            files_from,
        })
    }
}

/// `--backup-dir DIR`: a relative path inside the destination, not its root.
fn backup_dir(text: &str) -> Result<crate::path::RelPath, Error> {
    let bad = |why: &str| Error::Usage(format!("--backup-dir {text}: {why}"));
    if text.starts_with('/') {
        return Err(bad("give a path inside the destination, relative to its root (e.g. .old/2026-12-01)"));
    }
    let path = crate::path::RelPath::parse(text.trim_end_matches('/').as_bytes())
        .map_err(|e| bad(&format!("{e} (it must stay inside the destination)")))?;
    if path.is_root() {
        return Err(bad("it cannot be the destination's root"));
    }
    Ok(path)
}

/// A configured job as the `barge sync` command line it stands for.
pub(super) fn job_args(config: &Config, args: &RunArgs) -> Result<SyncArgs, Error> {
    let Some(spec) = config.jobs.get(&args.job) else {
        let known: Vec<&str> = config.jobs.keys().map(String::as_str).collect();
        let file = config.path.as_ref().map_or("no config file found".to_string(), |p| p.display().to_string());
        return Err(Error::Usage(format!(
            "no job `{}` in the config ({file}; jobs: {})",
            args.job,
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        )));
    };
    Ok(SyncArgs {
        src: spec.source.clone(),
        dst: spec.destination.clone(),
        delete: spec.delete,
        max_delete: spec.max_delete,
        max_shrink: spec.max_shrink,
        force: args.force,
        dry_run: args.dry_run,
        common: CommonArgs {
            include: spec.include.clone(),
            exclude: spec.exclude.clone(),
            min_size: spec.min_size,
            max_size: spec.max_size,
            min_age: spec.min_age,
            max_age: spec.max_age,
            compare: spec.compare,
            output: args.output,
            state: spec.state.clone(),
            parallel: spec.parallel,
            src_parallel: None,
            dst_parallel: None,
            retries: spec.retries,
            bwlimit: spec.bwlimit.clone(),
            report: spec.report.clone(),
            metrics: spec.metrics.clone(),
            job_name: Some(spec.name.clone()),
            log_file: spec.log_file.clone(),
            links: spec.links,
            max_duration: spec.max_duration,
            cutoff_mode: spec.cutoff_mode,
            remove_source_files: spec.remove_source_files,
            notify: spec.notify.clone(),
            files_from: spec.files_from.clone(),
            from0: spec.from0,
            remove_empty_source_dirs: spec.remove_empty_source_dirs,
            inplace: spec.inplace,
            backup_dir: spec.backup_dir.clone(),
            verify: spec.verify,
            fxp: spec.fxp,
            segment_threshold: crate::commit::DEFAULT_THRESHOLD,
            segments: crate::commit::DEFAULT_SEGMENTS,
            shard: args.shard,
            shard_depth: args.shard_depth.or(spec.shard_depth),
            shard_stats: None,
            trust_state: spec.trust_state,
            verify_state: spec.verify_state,
            no_perms: !spec.perms,
            perms_all: spec.perms_all,
            chmod: spec.chmod.clone(),
            owner: spec.owner,
            group: spec.group,
            numeric_ids: spec.numeric_ids,
            remote: RemoteArgs { timeout: spec.timeout, encoding: spec.encoding, ..RemoteArgs::default() },
        },
    })
}

impl RemoteArgs {
    /// The backend options these flags ask for, with `connections` per server.
    pub fn options(&self, connections: usize) -> RemoteOptions {
        RemoteOptions {
            ftp: FtpOptions {
                explicit_tls: self.tls.is_some(),
                tls: TlsOptions { ca_file: self.ca_file.clone(), insecure: self.insecure },
                active: self.active,
                active_ports: self.active_ports.clone(),
                ascii: self.ascii.clone(),
                pasv_address_from_reply: self.pasv_address_from_reply,
                list_times: self.list_times,
                encoding: self.encoding.unwrap_or_default(),
            },
            sftp: SftpOptions {
                identity: self.identity.clone(),
                known_hosts: self.known_hosts.clone(),
                ssh_config: self.ssh_config.clone(),
                accept_new_host_key: self.accept_new_host_key,
                passphrase_env: self.passphrase_env.clone(),
                jump: (!self.jump.is_empty()).then(|| self.jump.iter().flat_map(|chain| chain.0.clone()).collect()),
            },
            password_env: self.password_env.clone(),
            proxy: self.proxy.clone().unwrap_or_default(),
            timeout: std::time::Duration::from_secs(self.timeout.unwrap_or(60).max(1)),
            connections,
            memory: None,
            password: None,
            // A sync sets its --retries (see `side_options`).
            ..RemoteOptions::default()
        }
    }
}
