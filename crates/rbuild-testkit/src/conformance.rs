//! The conformance cases of `testdata/conformance/<case>/` and the harness that builds them
//! with Buildah (the oracle) and compares the result with rbuild's image.
//!
//! A case directory holds:
//! - `Dockerfile` — its bases are named `busybox` or `busybox-onbuild` (in `FROM`,
//!   `COPY --from=` and `ARG NAME=` defaults); [`ConformanceEnv::prepare`] rewrites them to the
//!   images pushed to the test registry;
//! - `context/` — the build context (copied to a temporary directory with normalised modes:
//!   0755 for directories and executables, 0644 for other files, whatever the checkout's umask);
//! - `args` (optional) — one `--build-arg NAME=value`, `--label NAME=value` or `--target STAGE`
//!   per line;
//! - `README` — what the case checks (first line); one or more `buildkit: <file> <function>
//!   ...` lines saying where BuildKit decides the behaviour the `expect` lines state; a line
//!   `oracle: none <reason>` marks cases Buildah 1.28 cannot build (they are checked against
//!   `expect` only);
//! - `expect` (optional) — facts the image must show ([`crate::expect`]);
//! - `xattrs` (optional) — `PATH NAME VALUE` lines: extended attributes set on the copied
//!   context's files (git keeps none);
//! - `allow` (optional) — known Buildah differences this case triggers ([`crate::AllowList`]).
//!
//! The engine's test builds each prepared case with rbuild and calls
//! [`ConformanceEnv::run_case`] with the image it wrote (OCI layout dir or docker-archive).

use std::fmt;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::allow_list::AllowList;
use crate::buildah::{Buildah, BuildahRequest};
use crate::busybox::{BusyboxImage, ExtraFile};
use crate::expect::{check_expectations, expected_failure, parse_expect, ExpectLine, Side};
use crate::image_tree::ImageTree;
use crate::tree_diff::{compare, Diff};
use crate::{skopeo, RegistryAuth, TestRegistry, TestkitError};

/// The base image names a case's Dockerfile may use.
pub const BASE_NAMES: [&str; 2] = ["busybox", "busybox-onbuild"];

/// The ONBUILD triggers of the `busybox-onbuild` base.
pub const ONBUILD_TRIGGERS: [&str; 2] = [
    "RUN echo triggered > /onbuild-ran.txt",
    "COPY onbuild.txt /onbuild-copied.txt",
];

/// The workspace's `testdata/conformance` directory.
pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/conformance")
}

/// Which oracle checks a case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Oracle {
    /// Buildah builds it too and the images are compared.
    Buildah,
    /// Buildah cannot build it (the reason); only `expect` is checked.
    None(String),
}

/// One conformance case.
#[derive(Clone, Debug)]
pub struct Case {
    /// The directory name.
    pub name: String,
    /// The case directory.
    pub dir: PathBuf,
    /// The first line of the README.
    pub summary: String,
    /// The README's `buildkit:` lines: where BuildKit's source decides the behaviour.
    pub buildkit: Vec<String>,
    /// `--build-arg`s in order.
    pub build_args: Vec<(String, String)>,
    /// `--target`.
    pub target: Option<String>,
    /// `--label`s in order.
    pub labels: Vec<(String, String)>,
    /// The oracle.
    pub oracle: Oracle,
    /// The `expect` file.
    pub expectations: Vec<ExpectLine>,
    /// This case's allowances (without the general ones).
    pub allow: AllowList,
}

impl Case {
    /// Loads the case in `dir`.
    pub fn load(dir: &Path) -> Result<Case, TestkitError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let origin = |file: &str| format!("{}/{file}", dir.display());
        if !dir.join("Dockerfile").is_file() {
            return Err(TestkitError::Image(format!(
                "{}: missing",
                origin("Dockerfile")
            )));
        }
        let readme = fs::read_to_string(dir.join("README"))
            .map_err(|e| TestkitError::io(origin("README"), e))?;
        let summary = readme.lines().next().unwrap_or("").trim().to_owned();
        if summary.is_empty() {
            return Err(TestkitError::Image(format!(
                "{}:1: the first line must say what the case checks",
                origin("README")
            )));
        }
        let buildkit = readme
            .lines()
            .filter_map(|l| l.trim().strip_prefix("buildkit:"))
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        let oracle = readme
            .lines()
            .find_map(|l| l.trim().strip_prefix("oracle:"))
            .map(|rest| {
                let rest = rest.trim();
                match rest.strip_prefix("none") {
                    Some(reason) if !reason.trim().is_empty() => {
                        Ok(Oracle::None(reason.trim().to_owned()))
                    }
                    Some(_) => Err(TestkitError::Image(format!(
                        "{}: `oracle: none` needs a reason",
                        origin("README")
                    ))),
                    None if rest == "buildah" => Ok(Oracle::Buildah),
                    None => Err(TestkitError::Image(format!(
                        "{}: unknown oracle {rest:?} (buildah or none <reason>)",
                        origin("README")
                    ))),
                }
            })
            .transpose()?
            .unwrap_or(Oracle::Buildah);
        let args = match read_optional(&dir.join("args"))? {
            Some(text) => parse_args(&text, &origin("args"))?,
            None => CaseArgs::default(),
        };
        let expectations = match read_optional(&dir.join("expect"))? {
            Some(text) => parse_expect(&text, &origin("expect"))?,
            None => Vec::new(),
        };
        let allow = match read_optional(&dir.join("allow"))? {
            Some(text) => AllowList::parse(&text, &origin("allow"))?,
            None => AllowList::default(),
        };
        Ok(Case {
            name,
            dir: dir.to_path_buf(),
            summary,
            buildkit,
            build_args: args.build_args,
            target: args.target,
            labels: args.labels,
            oracle,
            expectations,
            allow,
        })
    }

    /// For a case whose `expect` file is an `error` line: the text the failing build's error
    /// output must contain.
    pub fn expected_error(&self) -> Option<&str> {
        expected_failure(&self.expectations)
    }

    /// All the allowances for comparing this case: the general Buildah ones and the case's.
    pub fn allow_list(&self) -> AllowList {
        let mut list = AllowList::buildkit_vs_buildah();
        list.extend(self.allow.clone());
        list
    }
}

/// Loads every case under `root` (each subdirectory), sorted by name.
pub fn load_cases(root: &Path) -> Result<Vec<Case>, TestkitError> {
    let mut dirs = fs::read_dir(root)
        .map_err(|e| TestkitError::io(format!("list {}", root.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect::<Vec<_>>();
    dirs.sort();
    dirs.iter().map(|d| Case::load(d)).collect()
}

/// How the cases are checked, counted from the case files themselves (the numbers the
/// READMEs quote; `tally_markdown` renders them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// All cases.
    pub cases: usize,
    /// Cases built by Buildah too and compared with rbuild's image (and their `expect` lines
    /// checked on both images, `candidate:` lines on rbuild's only).
    pub compared_with_buildah: usize,
    /// Cases Buildah 1.28 cannot build, or builds other than BuildKit (`oracle: none`): checked
    /// by `expect` lines only.
    pub expect_only: usize,
    /// Compared cases that accept at least one known Buildah difference (`allow` file).
    pub with_allowances: usize,
    /// `candidate:` lines: BuildKit behaviour checked on rbuild's image only, Buildah differing.
    pub candidate_lines: usize,
    /// `expect` lines in all.
    pub expect_lines: usize,
    /// Per known difference (by name): how many cases' `allow` files use it.
    pub allowances: Vec<(String, usize)>,
}

/// Counts how `cases` are checked.
pub fn tally(cases: &[Case]) -> Tally {
    let mut t = Tally {
        cases: cases.len(),
        ..Tally::default()
    };
    for case in cases {
        match case.oracle {
            Oracle::Buildah => t.compared_with_buildah += 1,
            Oracle::None(_) => t.expect_only += 1,
        }
        if !case.allow.allowances.is_empty() {
            t.with_allowances += 1;
        }
        t.expect_lines += case.expectations.len();
        t.candidate_lines += case
            .expectations
            .iter()
            .filter(|e| e.candidate_only)
            .count();
    }
    for known in crate::allow_list::KnownDifference::all() {
        let users = cases
            .iter()
            .filter(|c| c.allow.allowances.iter().any(|a| a.known == known))
            .count();
        t.allowances.push((known.name().to_owned(), users));
    }
    t
}

/// The tally as the Markdown block kept in `testdata/conformance/README.md` (between
/// `<!-- tally -->` and `<!-- /tally -->`): counts, then every known Buildah difference with
/// the cases using it, the reason, and BuildKit's source.
pub fn tally_markdown(t: &Tally) -> String {
    use crate::allow_list::KnownDifference;
    let mut out = format!(
        "{} cases: {} built by Buildah 1.28 too and compared path by path and field by field \
         with rbuild's image ({} of them accept known Buildah differences), {} that Buildah \
         1.28 cannot build (or builds other than BuildKit, as its README says), checked by their \
         `expect` lines only. {} `expect` lines state \
         BuildKit's result; {} of them (`candidate:`) are checked on rbuild's image only, where \
         Buildah differs.\n\n",
        t.cases,
        t.compared_with_buildah,
        t.with_allowances,
        t.expect_only,
        t.expect_lines,
        t.candidate_lines
    );
    out.push_str(
        "| known Buildah difference | cases | Buildah 1.28 vs BuildKit | BuildKit source |\n",
    );
    out.push_str("| --- | --- | --- | --- |\n");
    for (name, users) in &t.allowances {
        let Some(known) = KnownDifference::parse(name) else {
            continue;
        };
        let users = if AllowList::buildkit_vs_buildah()
            .allowances
            .iter()
            .any(|a| a.known == known)
        {
            "every".to_owned()
        } else {
            users.to_string()
        };
        out.push_str(&format!(
            "| `{name}` | {users} | {} | {} |\n",
            known.reason().replace('|', "\\|"),
            known.buildkit_reference().replace('|', "\\|")
        ));
    }
    out
}

fn read_optional(path: &Path) -> Result<Option<String>, TestkitError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TestkitError::io(format!("read {}", path.display()), e)),
    }
}

/// The contents of an `args` file.
#[derive(Debug, Default)]
struct CaseArgs {
    build_args: Vec<(String, String)>,
    target: Option<String>,
    labels: Vec<(String, String)>,
}

fn parse_args(text: &str, origin: &str) -> Result<CaseArgs, TestkitError> {
    let mut args = CaseArgs::default();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| TestkitError::Image(format!("{origin}:{}: {what}", index + 1));
        if let Some(arg) = line.strip_prefix("--build-arg ") {
            let (name, value) = arg
                .trim()
                .split_once('=')
                .ok_or_else(|| bad("expected --build-arg NAME=value"))?;
            args.build_args.push((name.to_owned(), value.to_owned()));
        } else if let Some(label) = line.strip_prefix("--label ") {
            let (name, value) = label
                .trim()
                .split_once('=')
                .ok_or_else(|| bad("expected --label NAME=value"))?;
            args.labels.push((name.to_owned(), value.to_owned()));
        } else if let Some(stage) = line.strip_prefix("--target ") {
            args.target = Some(stage.trim().to_owned());
        } else {
            return Err(bad(
                "expected `--build-arg NAME=value`, `--label NAME=value` or `--target STAGE`",
            ));
        }
    }
    Ok(args)
}

/// A case ready to build: the rewritten Dockerfile and a normalised copy of the context in a
/// temporary directory (removed on drop).
#[derive(Debug)]
pub struct PreparedCase {
    /// The Dockerfile with its base names pointing at the test registry (outside the context).
    pub dockerfile: PathBuf,
    /// The build context.
    pub context: PathBuf,
    /// `--build-arg`s.
    pub build_args: Vec<(String, String)>,
    /// `--target`.
    pub target: Option<String>,
    /// `--label`s.
    pub labels: Vec<(String, String)>,
    /// Where to write an image for [`ConformanceEnv::run_case`] (an unused path in the
    /// temporary directory).
    pub output: PathBuf,
    _dir: tempfile::TempDir,
}

/// Why a case failed.
#[derive(Debug)]
pub enum CaseFailure {
    /// Building or reading an image failed.
    Setup(TestkitError),
    /// The images differ.
    Diff(Diff),
    /// `expect` lines failed.
    Expectations(Vec<String>),
}

impl fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaseFailure::Setup(e) => write!(f, "{e}"),
            CaseFailure::Diff(d) => write!(f, "{d}"),
            CaseFailure::Expectations(lines) => {
                for line in lines {
                    writeln!(f, "{line}")?;
                }
                Ok(())
            }
        }
    }
}

impl From<TestkitError> for CaseFailure {
    fn from(e: TestkitError) -> Self {
        CaseFailure::Setup(e)
    }
}

/// A test registry holding the busybox bases, and a Buildah with private storage.
#[derive(Debug)]
pub struct ConformanceEnv {
    registry: TestRegistry,
    buildah: Buildah,
}

impl ConformanceEnv {
    /// Starts the environment, or returns `None` (with a notice) when a tool is missing and
    /// `CI` is unset; with `CI` set a missing tool panics.
    pub fn start_or_skip() -> Option<ConformanceEnv> {
        if !(BusyboxImage::available_or_skip()
            && Buildah::available_or_skip()
            && skopeo::available_or_skip())
        {
            return None;
        }
        let registry = TestRegistry::start_or_skip(RegistryAuth::None)?;
        Some(Self::with_registry(registry).expect("conformance environment"))
    }

    /// Pushes the bases to `registry` and prepares a Buildah.
    pub fn with_registry(registry: TestRegistry) -> Result<ConformanceEnv, TestkitError> {
        BusyboxImage::build()?.push_to(&registry, "library/busybox:latest")?;
        let onbuild = BusyboxImage::build_with(
            &[ExtraFile::new("opt/base/data.txt", "from the base\n").owned_by(1000, 1000)],
            |config| {
                config.on_build = ONBUILD_TRIGGERS.iter().map(|t| (*t).to_owned()).collect();
                config
                    .labels
                    .insert("org.example.base".into(), "busybox-onbuild".into());
            },
        )?;
        onbuild.push_to(&registry, "library/busybox-onbuild:latest")?;
        Ok(ConformanceEnv {
            registry,
            buildah: Buildah::new()?,
        })
    }

    /// The registry holding the bases.
    pub fn registry(&self) -> &TestRegistry {
        &self.registry
    }

    /// The full reference of base `name` (`busybox` → `127.0.0.1:PORT/library/busybox:latest`).
    pub fn base_ref(&self, name: &str) -> String {
        format!("{}/library/{name}:latest", self.registry.host())
    }

    /// Writes the case's Dockerfile with its bases rewritten and a normalised copy of its
    /// context into a temporary directory.
    pub fn prepare(&self, case: &Case) -> Result<PreparedCase, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rbuild-case-{}-", case.name))
            .tempdir()
            .map_err(|e| TestkitError::io("create temp dir", e))?;
        let source = fs::read_to_string(case.dir.join("Dockerfile"))
            .map_err(|e| TestkitError::io(format!("read {}/Dockerfile", case.dir.display()), e))?;
        let dockerfile = dir.path().join("Dockerfile");
        fs::write(&dockerfile, rewrite_bases(&source, &|n| self.base_ref(n)))
            .map_err(|e| TestkitError::io("write Dockerfile", e))?;
        let ignore = case.dir.join("Dockerfile.dockerignore");
        if ignore.is_file() {
            fs::copy(&ignore, dir.path().join("Dockerfile.dockerignore"))
                .map_err(|e| TestkitError::io("copy Dockerfile.dockerignore", e))?;
        }
        let context = dir.path().join("context");
        fs::create_dir(&context).map_err(|e| TestkitError::io("create context", e))?;
        let source_context = case.dir.join("context");
        if source_context.is_dir() {
            copy_normalised(&source_context, &context)?;
        }
        if let Some(text) = read_optional(&case.dir.join("xattrs"))? {
            set_xattrs(&context, &text, &format!("{}/xattrs", case.dir.display()))?;
        }
        Ok(PreparedCase {
            dockerfile,
            context,
            build_args: case.build_args.clone(),
            target: case.target.clone(),
            labels: case.labels.clone(),
            output: dir.path().join("image"),
            _dir: dir,
        })
    }

    /// Builds the case with Buildah into the docker-archive file `output`.
    pub fn build_with_buildah(&self, case: &Case, output: &Path) -> Result<(), TestkitError> {
        let prepared = self.prepare(case)?;
        let request = BuildahRequest {
            context: prepared.context.clone(),
            dockerfile: prepared.dockerfile.clone(),
            build_args: prepared.build_args.clone(),
            target: prepared.target.clone(),
            labels: prepared.labels.clone(),
        };
        self.buildah.build(&request, output)
    }

    /// Builds the case with Buildah and snapshots the image.
    pub fn oracle_tree(&self, case: &Case) -> Result<ImageTree, TestkitError> {
        let dir = tempfile::tempdir().map_err(|e| TestkitError::io("create temp dir", e))?;
        let output = dir.path().join("oracle.tar");
        self.build_with_buildah(case, &output)?;
        ImageTree::from_docker_archive(&output)
    }

    /// Compares rbuild's image of `case` (an OCI layout dir holding one image, or a
    /// docker-archive) with Buildah's, and checks the case's `expect` lines on it. Cases with
    /// `oracle: none` are checked against `expect` only.
    pub fn run_case(&self, case: &Case, rbuild_image: &Path) -> Result<(), CaseFailure> {
        let candidate = ImageTree::from_path(rbuild_image)?;
        let failures = check_expectations(
            &candidate,
            &case.expectations,
            &format!("{}/expect", case.dir.display()),
            Side::Candidate,
        );
        if !failures.is_empty() {
            return Err(CaseFailure::Expectations(failures));
        }
        if case.oracle != Oracle::Buildah {
            return Ok(());
        }
        let oracle = self.oracle_tree(case)?;
        let diff = compare(&candidate, &oracle, &case.allow_list());
        if diff.is_clean() {
            Ok(())
        } else {
            Err(CaseFailure::Diff(diff))
        }
    }
}

/// Rewrites base image names in `FROM` lines, `--from=` flags and `ARG NAME=` defaults with
/// `reference(name)`.
pub fn rewrite_bases(dockerfile: &str, reference: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(dockerfile.len() + 64);
    for line in dockerfile.split_inclusive('\n') {
        let first = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let words: Vec<String> = line
            .split(' ')
            .map(|word| {
                let (body, end) = match word.strip_suffix('\n') {
                    Some(body) => (body, "\n"),
                    None => (word, ""),
                };
                let rewritten = if BASE_NAMES.contains(&body) && first == "FROM" {
                    Some(reference(body))
                } else if let Some(name) = body.strip_prefix("--from=") {
                    BASE_NAMES
                        .contains(&name)
                        .then(|| format!("--from={}", reference(name)))
                } else if first == "ARG" {
                    body.split_once('=')
                        .filter(|(_, v)| BASE_NAMES.contains(v))
                        .map(|(k, v)| format!("{k}={}", reference(v)))
                } else {
                    None
                };
                format!("{}{end}", rewritten.unwrap_or_else(|| body.to_owned()))
            })
            .collect();
        out.push_str(&words.join(" "));
    }
    out
}

/// Sets the extended attributes listed in `text` (`PATH NAME VALUE` lines) under `context`.
fn set_xattrs(context: &Path, text: &str, origin: &str) -> Result<(), TestkitError> {
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.splitn(3, char::is_whitespace);
        let (Some(path), Some(name), Some(value)) = (words.next(), words.next(), words.next())
        else {
            return Err(TestkitError::Image(format!(
                "{origin}:{}: expected `PATH NAME VALUE`",
                index + 1
            )));
        };
        let file = context.join(path.trim_start_matches('/'));
        xattr::set(&file, name, value.trim().as_bytes()).map_err(|e| {
            TestkitError::io(format!("{origin}:{}: set {name} on {path}", index + 1), e)
        })?;
    }
    Ok(())
}

/// Copies `from` into `to` with modes normalised (directories and executables 0755, other
/// files 0644), symlinks kept as links.
fn copy_normalised(from: &Path, to: &Path) -> Result<(), TestkitError> {
    let mut entries = fs::read_dir(from)
        .map_err(|e| TestkitError::io(format!("list {}", from.display()), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TestkitError::io(format!("list {}", from.display()), e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let source = entry.path();
        let dest = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&source)
            .map_err(|e| TestkitError::io(format!("stat {}", source.display()), e))?;
        let copy_error = |e| TestkitError::io(format!("copy {}", source.display()), e);
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&source).map_err(copy_error)?;
            symlink(target, &dest).map_err(copy_error)?;
        } else if meta.is_dir() {
            fs::create_dir(&dest).map_err(copy_error)?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).map_err(copy_error)?;
            copy_normalised(&source, &dest)?;
        } else {
            fs::copy(&source, &dest).map_err(copy_error)?;
            let mode = if meta.permissions().mode() & 0o100 != 0 {
                0o755
            } else {
                0o644
            };
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).map_err(copy_error)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_are_rewritten_only_where_they_name_images() {
        let text = "ARG BASE=busybox\nFROM busybox AS build\nRUN echo busybox\nFROM ${BASE}\nCOPY --from=busybox /bin/sh /x\nFROM busybox-onbuild\n";
        let out = rewrite_bases(text, &|n| format!("reg/{n}:latest"));
        assert_eq!(
            out,
            "ARG BASE=reg/busybox:latest\nFROM reg/busybox:latest AS build\nRUN echo busybox\nFROM ${BASE}\nCOPY --from=reg/busybox:latest /bin/sh /x\nFROM reg/busybox-onbuild:latest\n"
        );
    }

    #[test]
    fn args_file_errors_name_the_line() {
        let args = parse_args(
            "# c\n--build-arg A=1\n--label l=v w\n--target final\n",
            "c/args",
        )
        .unwrap();
        assert_eq!(args.build_args, vec![("A".to_owned(), "1".to_owned())]);
        assert_eq!(args.labels, vec![("l".to_owned(), "v w".to_owned())]);
        assert_eq!(args.target.as_deref(), Some("final"));
        let err = parse_args("\n--build-arg A\n", "c/args").unwrap_err();
        assert!(err
            .to_string()
            .contains("c/args:2: expected --build-arg NAME=value"));
    }
}
