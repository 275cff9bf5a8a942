//! Glob patterns over relative paths, with the filters' syntax (see
//! [`crate::plan::filter`]): `*` and `?` within one component, `**` across
//! any number; a pattern without `/` matches a name at any depth, one with
//! `/` the whole path; a trailing `/` matches directories only. Below the
//! planner, so that backends can choose files by pattern too (`--ascii`).

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::Error;
use crate::path::RelPath;

#[derive(Debug, Default)]
pub(crate) struct PatternSet {
    /// Matched against the last component, any entry.
    name: GlobSet,
    /// Matched against the whole relative path, any entry.
    path: GlobSet,
    /// As above, directories only.
    dir_name: GlobSet,
    dir_path: GlobSet,
}

impl PatternSet {
    pub(crate) fn build(patterns: &[String]) -> Result<Self, Error> {
        let mut builders: [GlobSetBuilder; 4] = std::array::from_fn(|_| GlobSetBuilder::new());
        for pattern in patterns {
            let (body, dir_only) = match pattern.strip_suffix('/') {
                Some(body) => (body, true),
                None => (pattern.as_str(), false),
            };
            let anchored = body.contains('/');
            let body = body.trim_start_matches('/');
            if body.is_empty() {
                return Err(Error::Usage(format!("empty filter pattern `{pattern}`")));
            }
            let glob: Glob = GlobBuilder::new(body)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::Usage(format!("bad filter pattern `{pattern}`: {e}")))?;
            let slot = usize::from(anchored) + 2 * usize::from(dir_only);
            builders[slot].add(glob);
        }
        let [name, path, dir_name, dir_path] = builders.map(|b| b.build());
        let built = |set: Result<GlobSet, globset::Error>| set.map_err(|e| Error::Usage(format!("bad filter: {e}")));
        Ok(PatternSet {
            name: built(name)?,
            path: built(path)?,
            dir_name: built(dir_name)?,
            dir_path: built(dir_path)?,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.name.is_empty() && self.path.is_empty() && self.dir_name.is_empty() && self.dir_path.is_empty()
    }

    pub(crate) fn matches(&self, path: &RelPath, is_dir: bool) -> bool {
        if self.is_empty() {
            return false;
        }
        // Globs match text; a non-UTF-8 byte becomes U+FFFD, which `*` matches.
        let full = String::from_utf8_lossy(path.as_bytes());
        let name = String::from_utf8_lossy(path.file_name());
        self.name.is_match(name.as_ref())
            || self.path.is_match(full.as_ref())
            || (is_dir && (self.dir_name.is_match(name.as_ref()) || self.dir_path.is_match(full.as_ref())))
    }
}

/// Files chosen by patterns with the filters' syntax (`--ascii GLOB`).
#[derive(Debug, Default)]
pub struct FilePatterns(PatternSet);

impl FilePatterns {
    pub fn new(patterns: &[String]) -> Result<Self, Error> {
        PatternSet::build(patterns).map(FilePatterns)
    }

    pub fn matches(&self, path: &RelPath) -> bool {
        self.0.matches(path, false)
    }
}

/// A pattern (`--ascii GLOB`), checked when the flag is read so that a
/// typo is a usage error (exit 2).
pub fn parse_glob(text: &str) -> Result<String, String> {
    FilePatterns::new(&[text.to_string()]).map(|_| text.to_string()).map_err(|e| e.to_string())
}
