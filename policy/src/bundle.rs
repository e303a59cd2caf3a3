//! Policy bundles: Cedar policies from one or more files, validated strictly against the mesh
//! schema, named by their `@id("…")` annotations, content-hashed and versioned.
//!
//! A bundle is all or nothing: any problem in any file rejects the whole bundle, and every
//! problem is reported as `file:line:col: message`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{PolicyId, PolicySet, ValidationMode, Validator};
use miette::Diagnostic;

use crate::schema::MeshSchema;

/// Largest policy file accepted, in bytes.
pub const MAX_FILE_LEN: usize = 1024 * 1024;

/// One policy file's name (for messages) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// Where the text came from, as shown in messages.
    pub name: String,
    /// The Cedar text.
    pub text: String,
}

/// One problem in a bundle, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The source's name.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// A bundle was rejected; every problem found is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct BundleError {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl BundleError {
    fn one(file: &str, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                file: file.to_owned(),
                line: 1,
                col: 1,
                message: message.into(),
            }],
        }
    }
}

/// Where a policy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOrigin {
    /// The source's name.
    pub file: String,
    /// 1-based line of its `@id` annotation.
    pub line: usize,
    /// 1-based column of its `@id` annotation.
    pub col: usize,
    /// The policy's Cedar text.
    pub text: String,
}

/// A validated set of policies.
#[derive(Debug, Clone)]
pub struct PolicyBundle {
    policies: PolicySet,
    origins: BTreeMap<String, PolicyOrigin>,
    hash: String,
    version: u64,
}

impl PolicyBundle {
    /// Parses and validates `sources` as one bundle.
    pub fn from_sources(sources: &[PolicySource]) -> Result<Self, BundleError> {
        let schema = MeshSchema::embedded();
        let mut problems = Vec::new();
        let mut policies = PolicySet::new();
        let mut origins = BTreeMap::new();
        for source in sources {
            if source.text.len() > MAX_FILE_LEN {
                problems.push(Problem {
                    file: source.name.clone(),
                    line: 1,
                    col: 1,
                    message: format!(
                        "file is {} bytes; the limit is {MAX_FILE_LEN}",
                        source.text.len()
                    ),
                });
                continue;
            }
            let parsed = match PolicySet::from_str(&source.text) {
                Ok(set) => set,
                Err(errors) => {
                    problems.extend(diagnostics(&source.name, &source.text, &errors));
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                problems.push(Problem {
                    file: source.name.clone(),
                    line: 1,
                    col: 1,
                    message: "policy templates (`?principal`, `?resource`) are not supported"
                        .to_owned(),
                });
            }
            let mut in_file: Vec<_> = parsed.policies().collect();
            // Parser ids are `policy0`, `policy1`... in source order.
            in_file.sort_by_key(|p| {
                p.id()
                    .to_string()
                    .trim_start_matches("policy")
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
            });
            // How often each id has appeared so far in this file, to locate repeats.
            let mut seen_here: BTreeMap<String, usize> = BTreeMap::new();
            for (nth, policy) in in_file.into_iter().enumerate() {
                let Some(id) = policy.annotation("id").map(str::to_owned) else {
                    let (line, col) = policy_position(&source.text, nth);
                    problems.push(Problem {
                        file: source.name.clone(),
                        line,
                        col,
                        message: "policy has no `@id(\"…\")` annotation; every policy needs a \
                                  unique id"
                            .to_owned(),
                    });
                    continue;
                };
                let occurrence = seen_here.entry(id.clone()).or_default();
                let (line, col) = id_position(&source.text, &id, *occurrence);
                *occurrence += 1;
                if id.trim().is_empty() {
                    problems.push(Problem {
                        file: source.name.clone(),
                        line,
                        col,
                        message: "policy id is empty".to_owned(),
                    });
                    continue;
                }
                if let Some(first) = origins.get(&id) {
                    let first: &PolicyOrigin = first;
                    problems.push(Problem {
                        file: source.name.clone(),
                        line,
                        col,
                        message: format!(
                            "duplicate policy id `{id}` (first at {}:{}:{})",
                            first.file, first.line, first.col
                        ),
                    });
                    continue;
                }
                let renamed = policy.new_id(PolicyId::new(&id));
                let text = renamed.to_string();
                if let Err(e) = policies.add(renamed) {
                    problems.push(Problem {
                        file: source.name.clone(),
                        line,
                        col,
                        message: e.to_string(),
                    });
                    continue;
                }
                origins.insert(
                    id,
                    PolicyOrigin {
                        file: source.name.clone(),
                        line,
                        col,
                        text,
                    },
                );
            }
        }
        if problems.is_empty() {
            let result =
                Validator::new(schema.schema().clone()).validate(&policies, ValidationMode::Strict);
            for error in result.validation_errors() {
                let id = error.policy_id().to_string();
                let Some(origin) = origins.get(&id) else {
                    continue;
                };
                let source = sources.iter().find(|s| s.name == origin.file);
                let (line, col) = error
                    .labels()
                    .and_then(|mut l| l.next())
                    .zip(source)
                    .map_or((origin.line, origin.col), |(label, s)| {
                        line_col(&s.text, label.offset())
                    });
                problems.push(Problem {
                    file: origin.file.clone(),
                    line,
                    col,
                    message: format!("policy `{id}`: {}", flatten(error)),
                });
            }
        }
        if !problems.is_empty() {
            return Err(BundleError { problems });
        }
        Ok(Self::assemble(policies, origins))
    }

    /// A bundle with no policies: it denies everything.
    pub fn empty() -> Self {
        Self::assemble(PolicySet::new(), BTreeMap::new())
    }

    /// A bundle of already-validated policies.
    pub(crate) fn assemble(policies: PolicySet, origins: BTreeMap<String, PolicyOrigin>) -> Self {
        let hash = content_hash(&origins);
        Self {
            policies,
            origins,
            hash,
            version: 0,
        }
    }

    /// Reads `paths` (files, or directories whose `*.cedar` files are read in name order) as
    /// one bundle.
    pub fn load(paths: &[PathBuf]) -> Result<Self, BundleError> {
        let mut sources = Vec::new();
        for path in paths {
            if path.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| BundleError::one(&path.display().to_string(), e.to_string()))?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "cedar") && p.is_file())
                    .collect();
                files.sort();
                if files.is_empty() {
                    return Err(BundleError::one(
                        &path.display().to_string(),
                        "directory holds no `.cedar` files",
                    ));
                }
                for file in files {
                    sources.push(read_source(&file)?);
                }
            } else {
                sources.push(read_source(path)?);
            }
        }
        Self::from_sources(&sources)
    }

    /// The policies, named by their `@id`s.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// Where each policy came from, by id.
    pub fn origins(&self) -> &BTreeMap<String, PolicyOrigin> {
        &self.origins
    }

    /// Where one policy came from.
    pub fn origin(&self, id: &str) -> Option<&PolicyOrigin> {
        self.origins.get(id)
    }

    /// How many policies the bundle has.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    /// Whether the bundle has no policies (and so denies everything).
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// SHA-256 (hex) over the policies' ids and texts, independent of file layout.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The version the control plane gave this bundle (0 for a bundle read from files).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The same bundle with a version number.
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }
}

fn read_source(path: &Path) -> Result<PolicySource, BundleError> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| BundleError::one(&name, e.to_string()))?;
    if meta.len() > MAX_FILE_LEN as u64 {
        return Err(BundleError::one(
            &name,
            format!("file is {} bytes; the limit is {MAX_FILE_LEN}", meta.len()),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| BundleError::one(&name, e.to_string()))?;
    Ok(PolicySource { name, text })
}

/// Each diagnostic of a parse failure, located by its first label.
fn diagnostics(file: &str, text: &str, errors: &cedar_policy::ParseErrors) -> Vec<Problem> {
    errors
        .iter()
        .map(|e| {
            let (line, col) = e
                .labels()
                .and_then(|mut l| l.next())
                .map_or((1, 1), |label| line_col(text, label.offset()));
            Problem {
                file: file.to_owned(),
                line,
                col,
                message: flatten(e),
            }
        })
        .collect()
}

/// A diagnostic as one line: its message plus its help, if any.
fn flatten(e: &dyn Diagnostic) -> String {
    let mut out = e.to_string().replace('\n', " ");
    if let Some(help) = e.help() {
        out.push_str(&format!(" (help: {})", help.to_string().replace('\n', " ")));
    }
    out
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Where the `occurrence`-th (0-based) `@id("<id>")` of a file is.
fn id_position(text: &str, id: &str, occurrence: usize) -> (usize, usize) {
    text.match_indices(&format!("@id(\"{id}\")"))
        .nth(occurrence)
        .map_or((1, 1), |(offset, _)| line_col(text, offset))
}

/// Where the `nth` policy of a file starts: the nth `permit (` or `forbid (` outside comments
/// and strings. Only used to point at a policy that has no `@id`.
fn policy_position(text: &str, nth: usize) -> (usize, usize) {
    let bytes = text.as_bytes();
    let (mut i, mut seen) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            _ => {
                let rest = &text[i..];
                let at_word_start = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
                let keyword = ["permit", "forbid"].iter().find(|k| rest.starts_with(**k));
                if let (true, Some(k)) = (at_word_start, keyword)
                    && rest[k.len()..].trim_start().starts_with('(')
                {
                    if seen == nth {
                        return line_col(text, i);
                    }
                    seen += 1;
                }
            }
        }
        i += 1;
    }
    (1, 1)
}

fn content_hash(origins: &BTreeMap<String, PolicyOrigin>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (id, origin) in origins {
        ctx.update(id.as_bytes());
        ctx.update(&[0]);
        ctx.update(origin.text.as_bytes());
        ctx.update(&[0]);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;
