//! The typed Dockerfile: stages of instructions, each instruction a plain serde value.
//!
//! Words are kept *unexpanded* (as written, quotes and `$VAR` included) exactly where BuildKit
//! expands them later; [`Instruction::expand`](crate::Instruction::expand) produces the expanded
//! copy once the planner knows the ARG/ENV values a step can observe.

use crate::span::{Span, Spanned};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dockerfile {
    /// Parser directives found at the top of the file.
    pub directives: Directives,
    /// `ARG` instructions before the first `FROM` (the global scope `FROM` lines can use).
    pub meta_args: Vec<Spanned<ArgInstruction>>,
    /// Build stages in file order; a stage's index is its position here.
    pub stages: Vec<Stage>,
    /// Non-fatal findings (deprecated forms, empty continuation lines, ...), in file order.
    pub warnings: Vec<Warning>,
}

/// Parser directives (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directives {
    /// `# syntax=` value (the frontend image BuildKit would run), if any.
    pub syntax: Option<String>,
    /// The escape character in force: `\` unless `# escape=` set it to a backtick.
    pub escape: char,
    /// `# check=` value (lint configuration), if any.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// One build stage: a `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Position of the stage in the file (0-based), usable as `COPY --from=<index>`.
    pub index: usize,
    /// The stage's `FROM`.
    pub from: FromInstruction,
    /// Span of the `FROM` line.
    pub span: Span,
    /// Instructions after `FROM`, in order.
    pub instructions: Vec<Spanned<Instruction>>,
}

/// `FROM [--platform=P] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FromInstruction {
    /// Base image or earlier stage name, unexpanded (meta ARGs apply).
    pub image: String,
    /// `--platform` value, unexpanded.
    pub platform: Option<String>,
    /// Stage name (lower-cased, as BuildKit does), if `AS name` was given.
    pub name: Option<String>,
}

/// A typed instruction inside a stage (or inside `ONBUILD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Instruction {
    /// `RUN`.
    Run(RunInstruction),
    /// `CMD`.
    Cmd {
        /// The command.
        command: CommandForm,
    },
    /// `ENTRYPOINT`.
    Entrypoint {
        /// The command.
        command: CommandForm,
    },
    /// `COPY`.
    Copy(CopyInstruction),
    /// `ADD`.
    Add(AddInstruction),
    /// `ENV`.
    Env(EnvInstruction),
    /// `ARG`.
    Arg(ArgInstruction),
    /// `LABEL`.
    Label(LabelInstruction),
    /// `EXPOSE` (ports sorted as BuildKit sorts them, unexpanded).
    Expose {
        /// Port specs such as `80`, `53/udp`, `$PORT`.
        ports: Vec<String>,
    },
    /// `VOLUME`.
    Volume {
        /// Mount points.
        paths: Vec<String>,
    },
    /// `USER`.
    User {
        /// `user[:group]`.
        user: String,
    },
    /// `WORKDIR`.
    Workdir {
        /// Directory.
        path: String,
    },
    /// `ONBUILD`.
    Onbuild(OnbuildInstruction),
    /// `STOPSIGNAL`.
    StopSignal {
        /// Signal name or number.
        signal: String,
    },
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `SHELL` (JSON form only).
    Shell {
        /// The shell and its arguments.
        shell: Vec<String>,
    },
    /// `MAINTAINER` (deprecated).
    Maintainer {
        /// Free text.
        name: String,
    },
}

impl Instruction {
    /// The upper-case keyword of this instruction (`"RUN"`, `"COPY"`, ...).
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Cmd { .. } => "CMD",
            Instruction::Entrypoint { .. } => "ENTRYPOINT",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Label(_) => "LABEL",
            Instruction::Expose { .. } => "EXPOSE",
            Instruction::Volume { .. } => "VOLUME",
            Instruction::User { .. } => "USER",
            Instruction::Workdir { .. } => "WORKDIR",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::StopSignal { .. } => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Shell { .. } => "SHELL",
            Instruction::Maintainer { .. } => "MAINTAINER",
        }
    }
}

/// Shell form (run through the stage's `SHELL`) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandForm {
    /// `RUN echo hi`: the text after the instruction (and its flags), continuations joined.
    Shell(String),
    /// `RUN ["echo", "hi"]`.
    Exec(Vec<String>),
}

/// A here-document attached to `RUN`, `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heredoc {
    /// The delimiter word with quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The body, every line with its line ending, delimiter line excluded. Leading tabs are
    /// *not* stripped here even for `<<-`; see [`Heredoc::chomped_content`].
    pub content: String,
    /// False when the delimiter was quoted: the body is then taken literally.
    pub expand: bool,
    /// True for `<<-`: leading tabs are stripped from every body line.
    pub chomp: bool,
    /// File descriptor prefix (`3<<EOF`), 0 when absent.
    pub fd: u32,
}

impl Heredoc {
    /// The body as it will be used: with leading tabs removed from each line when `chomp`.
    pub fn chomped_content(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        let mut out = String::with_capacity(self.content.len());
        let mut at_line_start = true;
        for ch in self.content.chars() {
            if at_line_start && ch == '\t' {
                continue;
            }
            at_line_start = ch == '\n';
            out.push(ch);
        }
        out
    }
}

/// `RUN [--mount=...]... [--network=...] [--security=...] command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInstruction {
    /// The command as written (a shell-form heredoc run is `Shell("<<EOF")` plus `heredocs`).
    pub command: CommandForm,
    /// Here-documents in the order they appear.
    pub heredocs: Vec<Heredoc>,
    /// `--mount` flags, parsed, in order. Values holding a variable are interpreted only by
    /// [`Instruction::expand`](crate::Instruction::expand); until then they keep defaults.
    pub mounts: Vec<Mount>,
    /// The raw `--mount` values (unexpanded), one per entry of `mounts`.
    pub mount_specs: Vec<String>,
    /// `--device` flags (CDI device requests), in order; never expanded.
    pub devices: Vec<Device>,
    /// `--network`.
    pub network: Option<NetworkMode>,
    /// `--security`.
    pub security: Option<SecurityMode>,
}

/// One `RUN --device=name[,required]` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The CDI device name (`vendor.com/class=name`, or a bare name).
    pub name: String,
    /// Fail the build when the device is not available.
    pub required: bool,
}

/// `RUN --network=` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// `default`.
    Default,
    /// `none`.
    None,
    /// `host`.
    Host,
}

/// `RUN --security=` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    /// `sandbox` (the default).
    Sandbox,
    /// `insecure`.
    Insecure,
}

/// `RUN --mount=type=...` kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountType {
    /// `bind` (the default type).
    Bind,
    /// `cache`.
    Cache,
    /// `tmpfs`.
    Tmpfs,
    /// `secret`.
    Secret,
    /// `ssh`.
    Ssh,
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSharing {
    /// `shared` (the default).
    Shared,
    /// `private`.
    Private,
    /// `locked`.
    Locked,
}

/// One `RUN --mount`, keys parsed and defaults applied as BuildKit applies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// `type=`.
    pub kind: MountType,
    /// `target=`/`dst=`/`destination=`; for secret/ssh mounts BuildKit fills a default path
    /// at build time when absent.
    pub target: Option<String>,
    /// `source=`/`src=`.
    pub source: Option<String>,
    /// `from=`: a stage name, index or image.
    pub from: Option<String>,
    /// `ro`/`readonly` (`rw`/`readwrite` clear it). Bind mounts default to read-only.
    pub read_only: bool,
    /// `id=` (cache id, secret id, ssh id).
    pub id: Option<String>,
    /// `sharing=` (cache mounts).
    pub sharing: CacheSharing,
    /// `required=` (secret/ssh mounts).
    pub required: bool,
    /// `mode=` in octal (cache, secret, ssh mounts).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `size=` in bytes (tmpfs mounts).
    pub size: Option<u64>,
    /// `env=` (secret mounts exposed as an environment variable).
    pub env: Option<String>,
}

/// A source of `COPY`/`ADD`: a path (or URL) or an inline heredoc file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopySource {
    /// A path in the context / source stage, or a URL / git address for `ADD`.
    Path(String),
    /// `COPY <<EOF /dest`: a file whose name is the heredoc name and whose data is its body.
    Heredoc(Heredoc),
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyInstruction {
    /// Sources in order.
    pub sources: Vec<CopySource>,
    /// Destination.
    pub dest: String,
    /// `--from` (stage name, index or image), unexpanded.
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=` (octal or symbolic), validated when it holds no variable.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude=` patterns, in order.
    pub excludes: Vec<String>,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddInstruction {
    /// Sources in order.
    pub sources: Vec<CopySource>,
    /// Destination.
    pub dest: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--checksum=` (`sha256:...` for URLs, a commit for git).
    pub checksum: Option<String>,
    /// `--exclude=` patterns.
    pub excludes: Vec<String>,
    /// `--unpack` (None when the flag is absent: BuildKit then unpacks local archives only).
    pub unpack: Option<bool>,
}

/// A `key=value` pair of `ENV` or `LABEL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Key, unexpanded.
    pub key: String,
    /// Value, unexpanded (quotes still in place).
    pub value: String,
}

/// `ENV`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvInstruction {
    /// Pairs in order.
    pub pairs: Vec<KeyValue>,
    /// True for the legacy `ENV key value` form (one pair, value is the rest of the line).
    pub legacy: bool,
}

/// `LABEL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelInstruction {
    /// Pairs in order.
    pub pairs: Vec<KeyValue>,
    /// True for the legacy `LABEL key value` form.
    pub legacy: bool,
}

/// One `name[=default]` of an `ARG`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgDecl {
    /// Name, unexpanded.
    pub name: String,
    /// Default value, unexpanded; `None` for `ARG name`.
    pub default: Option<String>,
}

/// `ARG name[=default] ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgInstruction {
    /// Declarations in order.
    pub args: Vec<ArgDecl>,
}

/// `ONBUILD <instruction>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnbuildInstruction {
    /// The trigger, parsed (never `ONBUILD`, `FROM` or `MAINTAINER`).
    pub instruction: Box<Instruction>,
    /// The trigger text as it goes into the image config's `OnBuild` list (BuildKit's form:
    /// the line without `ONBUILD`, followed by each heredoc's body and name).
    pub expression: String,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [options] CMD command`.
    Check(HealthcheckCommand),
}

/// The `CMD` variant of `HEALTHCHECK`. Durations are `None` when the flag is absent or zero
/// (zero means "inherit" in the image config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthcheckCommand {
    /// Exec form gives `["CMD", args...]` in the config, shell form `["CMD-SHELL", text]`.
    pub command: CommandForm,
    /// `--interval`.
    pub interval: Option<Duration>,
    /// `--timeout`.
    pub timeout: Option<Duration>,
    /// `--start-period`.
    pub start_period: Option<Duration>,
    /// `--start-interval`.
    pub start_interval: Option<Duration>,
    /// `--retries` (0 when absent).
    pub retries: u32,
}

impl HealthcheckCommand {
    /// The `Test` array of the image config (`["CMD", ...]` or `["CMD-SHELL", text]`).
    pub fn test(&self) -> Vec<String> {
        match &self.command {
            CommandForm::Exec(args) => {
                let mut t = vec!["CMD".to_string()];
                t.extend(args.iter().cloned());
                t
            }
            CommandForm::Shell(text) => vec!["CMD-SHELL".to_string(), text.clone()],
        }
    }
}

/// A non-fatal finding, as a value (libraries print nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// BuildKit's rule name where one exists (`MaintainerDeprecated`, `LegacyKeyValueFormat`,
    /// `NoEmptyContinuation`, ...), otherwise a short rbuild name.
    pub rule: String,
    /// Human-readable text.
    pub message: String,
    /// Where.
    pub span: Span,
}
