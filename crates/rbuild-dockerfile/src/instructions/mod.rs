//! The second pass: first-pass nodes → typed instructions, with BuildKit's per-instruction
//! argument counts, flags and messages (`instructions/parse.go`), and stages assembled from
//! them.

pub(crate) mod chmod;
pub(crate) mod device;
pub(crate) mod duration;
pub(crate) mod flags;
pub(crate) mod mount;

use crate::model::{
    AddInstruction, ArgDecl, ArgInstruction, CommandForm, CopyInstruction, CopySource,
    EnvInstruction, FromInstruction, Healthcheck, HealthcheckCommand, Heredoc, Instruction,
    KeyValue, LabelInstruction, NetworkMode, OnbuildInstruction, RunInstruction, SecurityMode,
    Warning,
};
use crate::shell::go_quote;
use crate::span::Span;
use crate::suggest;
use crate::syntax::{parse_heredoc_word, Node};
use flags::{Flags, Kind};

/// What one node turned into.
pub(crate) enum Built {
    /// A `FROM`: starts a stage.
    From(FromInstruction),
    /// Anything else.
    Instruction(Instruction),
}

const INSTRUCTION_NAMES: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

struct Ctx<'a> {
    span: Span,
    warnings: &'a mut Vec<Warning>,
}

impl Ctx<'_> {
    fn warn(&mut self, rule: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            rule: rule.to_string(),
            message: message.into(),
            span: self.span,
        });
    }
}

/// Converts one node. Errors are messages; the caller adds the node's location.
pub(crate) fn build(node: &Node, warnings: &mut Vec<Warning>) -> Result<Built, String> {
    let mut ctx = Ctx {
        span: node.span,
        warnings,
    };
    build_node(node, &node.heredocs, &mut ctx)
}

fn no_flags(node: &Node) -> Result<Flags, String> {
    Flags::parse(&node.flags, &[])
}

fn at_least_one(cmd: &str) -> String {
    format!("{cmd} requires at least one argument")
}

fn exactly_one(cmd: &str) -> String {
    format!("{cmd} requires exactly one argument")
}

/// BuildKit's `handleJSONArgs`.
fn command_form(args: &[String], json: bool) -> CommandForm {
    if json {
        CommandForm::Exec(args.to_vec())
    } else {
        CommandForm::Shell(args.join(" "))
    }
}

fn build_node(node: &Node, heredocs: &[Heredoc], ctx: &mut Ctx<'_>) -> Result<Built, String> {
    let args = &node.args;
    let keyword = node.keyword_lower();
    let inst = match keyword.as_str() {
        "from" => return build_from(node, ctx).map(Built::From),
        "env" => {
            no_flags(node)?;
            let (pairs, legacy) = key_values(args, "ENV")?;
            if legacy {
                ctx.warn(
                    "LegacyKeyValueFormat",
                    "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format",
                );
            }
            Instruction::Env(EnvInstruction { pairs, legacy })
        }
        "label" => {
            no_flags(node)?;
            let (pairs, legacy) = key_values(args, "LABEL")?;
            if legacy {
                ctx.warn(
                    "LegacyKeyValueFormat",
                    "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format",
                );
            }
            Instruction::Label(LabelInstruction { pairs, legacy })
        }
        "maintainer" => {
            if args.len() != 1 {
                return Err(exactly_one("MAINTAINER"));
            }
            no_flags(node)?;
            ctx.warn(
                "MaintainerDeprecated",
                "Maintainer instruction is deprecated in favor of using label",
            );
            Instruction::Maintainer {
                name: args[0].clone(),
            }
        }
        "add" => Instruction::Add(build_add(node, heredocs)?),
        "copy" => Instruction::Copy(build_copy(node, heredocs)?),
        "onbuild" => {
            let Some(child) = &node.child else {
                return Err(at_least_one("ONBUILD"));
            };
            no_flags(node)?;
            let trigger = child.keyword.trim().to_uppercase();
            match trigger.as_str() {
                "ONBUILD" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string())
                }
                "MAINTAINER" | "FROM" => {
                    return Err(format!("{trigger} isn't allowed as an ONBUILD trigger"))
                }
                _ => {}
            }
            let inner = match build_node(child, heredocs, ctx)? {
                Built::Instruction(i) => i,
                Built::From(_) => {
                    return Err("FROM isn't allowed as an ONBUILD trigger".to_string())
                }
            };
            let mut expression = strip_onbuild(&node.original).to_string();
            for h in heredocs {
                expression.push('\n');
                expression.push_str(&h.content);
                expression.push_str(&h.name);
            }
            Instruction::Onbuild(OnbuildInstruction {
                instruction: Box::new(inner),
                expression,
            })
        }
        "workdir" => {
            if args.len() != 1 {
                return Err(exactly_one("WORKDIR"));
            }
            no_flags(node)?;
            Instruction::Workdir {
                path: args[0].clone(),
            }
        }
        "run" => Instruction::Run(build_run(node, heredocs, ctx)?),
        "cmd" | "entrypoint" => {
            no_flags(node)?;
            let command = command_form(args, node.json);
            if let CommandForm::Shell(_) = &command {
                let upper = keyword.to_uppercase();
                ctx.warn(
                    "JSONArgsRecommended",
                    format!("JSON arguments recommended for {upper} to prevent unintended behavior related to OS signals"),
                );
            }
            if keyword == "cmd" {
                Instruction::Cmd { command }
            } else {
                Instruction::Entrypoint { command }
            }
        }
        "healthcheck" => {
            let h = build_healthcheck(node)?;
            if h == Healthcheck::None && !node.flags.is_empty() {
                ctx.warn(
                    "IgnoredFlags",
                    format!(
                        "HEALTHCHECK NONE ignores its flags: {}",
                        node.flags.join(" ")
                    ),
                );
            }
            Instruction::Healthcheck(h)
        }
        "expose" => {
            if args.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            no_flags(node)?;
            let mut ports = args.clone();
            ports.sort();
            Instruction::Expose { ports }
        }
        "user" => {
            if args.len() != 1 {
                return Err(exactly_one("USER"));
            }
            no_flags(node)?;
            Instruction::User {
                user: args[0].clone(),
            }
        }
        "volume" => {
            if args.is_empty() {
                return Err(at_least_one("VOLUME"));
            }
            no_flags(node)?;
            let mut paths = Vec::with_capacity(args.len());
            for v in args {
                let v = v.trim();
                if v.is_empty() {
                    return Err("VOLUME specified can not be an empty string".to_string());
                }
                paths.push(v.to_string());
            }
            Instruction::Volume { paths }
        }
        "stopsignal" => {
            if args.len() != 1 {
                return Err(exactly_one("STOPSIGNAL"));
            }
            // BuildKit never parses STOPSIGNAL's flags: they are accepted and ignored.
            if !node.flags.is_empty() {
                ctx.warn(
                    "IgnoredFlags",
                    format!("STOPSIGNAL ignores its flags: {}", node.flags.join(" ")),
                );
            }
            Instruction::StopSignal {
                signal: args[0].clone(),
            }
        }
        "arg" => {
            // BuildKit never parses ARG's flags: they are accepted and ignored.
            if !node.flags.is_empty() {
                ctx.warn(
                    "IgnoredFlags",
                    format!("ARG ignores its flags: {}", node.flags.join(" ")),
                );
            }
            Instruction::Arg(build_arg(node)?)
        }
        "shell" => {
            no_flags(node)?;
            if args.is_empty() {
                return Err(at_least_one("SHELL"));
            }
            if !node.json {
                return Err("SHELL requires the arguments to be in JSON form".to_string());
            }
            Instruction::Shell {
                shell: args.clone(),
            }
        }
        _ => {
            return Err(suggest::wrap(
                format!("unknown instruction: {}", node.keyword),
                &node.keyword,
                INSTRUCTION_NAMES,
                false,
            ))
        }
    };
    Ok(Built::Instruction(inst))
}

/// `(?i)^\s*ONBUILD\s*` removed from the original line.
fn strip_onbuild(original: &str) -> &str {
    const RE_SPACE: [char; 5] = [' ', '\t', '\n', '\u{c}', '\r'];
    let s = original.trim_start_matches(RE_SPACE);
    match s.get(..7) {
        Some(head) if head.eq_ignore_ascii_case("onbuild") => s[7..].trim_start_matches(RE_SPACE),
        _ => original,
    }
}

fn key_values(args: &[String], cmd: &str) -> Result<(Vec<KeyValue>, bool), String> {
    if args.is_empty() {
        return Err(at_least_one(cmd));
    }
    if args.len() % 3 != 0 {
        return Err(format!("Bad input to {cmd}, too many arguments"));
    }
    let mut pairs = Vec::with_capacity(args.len() / 3);
    let mut legacy = false;
    for t in args.chunks(3) {
        if t[0].is_empty() {
            return Err(format!("{cmd} names can not be blank"));
        }
        legacy |= t[2].is_empty();
        pairs.push(KeyValue {
            key: t[0].clone(),
            value: t[1].clone(),
        });
    }
    Ok((pairs, legacy))
}

fn build_from(node: &Node, ctx: &mut Ctx<'_>) -> Result<FromInstruction, String> {
    let args = &node.args;
    let name = match args.len() {
        3 if args[1].eq_ignore_ascii_case("as") => {
            let lower = args[2].to_lowercase();
            let valid = lower.starts_with(|c: char| c.is_ascii_lowercase())
                && lower.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                });
            if !valid {
                return Err(format!(
                    "invalid name for build stage: {}, name can't start with a number or contain symbols",
                    go_quote(&args[2])
                ));
            }
            if args[2] != lower {
                ctx.warn(
                    "StageNameCasing",
                    format!("Stage name '{}' should be lowercase", args[2]),
                );
            }
            let from_upper = node.keyword == node.keyword.to_uppercase();
            let as_upper = args[1] == args[1].to_uppercase();
            if from_upper != as_upper {
                ctx.warn(
                    "FromAsCasing",
                    format!(
                        "'{}' and '{}' keywords' casing do not match",
                        args[1], node.keyword
                    ),
                );
            }
            Some(lower)
        }
        1 => None,
        _ => return Err("FROM requires either one or three arguments".to_string()),
    };
    let flags = Flags::parse(&node.flags, &[("platform", Kind::Str)])?;
    Ok(FromInstruction {
        image: args[0].clone(),
        platform: flags.non_empty("platform"),
        name,
    })
}

fn build_arg(node: &Node) -> Result<ArgInstruction, String> {
    if node.args.is_empty() {
        return Err(at_least_one("ARG"));
    }
    let mut args = Vec::with_capacity(node.args.len());
    for a in &node.args {
        let decl = match a.split_once('=') {
            Some((k, v)) => {
                if k.is_empty() {
                    return Err("ARG names can not be blank".to_string());
                }
                ArgDecl {
                    name: k.to_string(),
                    default: Some(v.to_string()),
                }
            }
            None => ArgDecl {
                name: a.clone(),
                default: None,
            },
        };
        args.push(decl);
    }
    Ok(ArgInstruction { args })
}

/// `parseSourcesAndDest`: the last word is the destination; heredoc words among the sources
/// become inline files.
fn sources_and_dest(
    node: &Node,
    heredocs: &[Heredoc],
    cmd: &str,
) -> Result<(Vec<CopySource>, String), String> {
    let (dest, srcs) = node.args.split_last().ok_or_else(|| no_destination(cmd))?;
    if parse_heredoc_word(dest)?.is_some() {
        return Err(format!("{cmd} cannot accept a heredoc as a destination"));
    }
    let mut sources = Vec::with_capacity(srcs.len());
    for s in srcs {
        match parse_heredoc_word(s)? {
            Some(marker) => {
                let content = heredocs
                    .iter()
                    .rev()
                    .find(|h| h.name == marker.name)
                    .map(|h| h.content.clone())
                    .unwrap_or_default();
                sources.push(CopySource::Heredoc(Heredoc { content, ..marker }));
            }
            None => sources.push(CopySource::Path(s.clone())),
        }
    }
    Ok((sources, dest.clone()))
}

fn no_destination(cmd: &str) -> String {
    format!("{cmd} requires at least two arguments, but only one was provided. Destination could not be determined")
}

fn checked_chmod(v: Option<String>) -> Result<Option<String>, String> {
    if let Some(c) = &v {
        if !c.contains('$') {
            chmod::validate_chmod(c)?;
        }
    }
    Ok(v)
}

fn checked_chown(v: Option<String>) -> Result<Option<String>, String> {
    if let Some(c) = &v {
        if !c.contains('$') {
            chmod::validate_chown(c)?;
        }
    }
    Ok(v)
}

fn build_add(node: &Node, heredocs: &[Heredoc]) -> Result<AddInstruction, String> {
    if node.args.len() < 2 {
        return Err(no_destination("ADD"));
    }
    let f = Flags::parse(
        &node.flags,
        &[
            ("exclude", Kind::Strings),
            ("chown", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
            ("keep-git-dir", Kind::Bool),
            ("checksum", Kind::Str),
            ("unpack", Kind::Bool),
        ],
    )?;
    let (sources, dest) = sources_and_dest(node, heredocs, "ADD")?;
    Ok(AddInstruction {
        sources,
        dest,
        chown: checked_chown(f.non_empty("chown"))?,
        chmod: checked_chmod(f.non_empty("chmod"))?,
        link: f.bool("link"),
        keep_git_dir: f.bool("keep-git-dir"),
        checksum: f.non_empty("checksum"),
        excludes: f.list("exclude"),
        unpack: f.opt_bool("unpack"),
    })
}

fn build_copy(node: &Node, heredocs: &[Heredoc]) -> Result<CopyInstruction, String> {
    if node.args.len() < 2 {
        return Err(no_destination("COPY"));
    }
    let f = Flags::parse(
        &node.flags,
        &[
            ("exclude", Kind::Strings),
            ("parents", Kind::Bool),
            ("chown", Kind::Str),
            ("from", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
        ],
    )?;
    let (sources, dest) = sources_and_dest(node, heredocs, "COPY")?;
    let from = f.non_empty("from");
    if let Some(v) = &from {
        if mount::has_variable(v) {
            return Err("variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround".to_string());
        }
    }
    Ok(CopyInstruction {
        sources,
        dest,
        from,
        chown: checked_chown(f.non_empty("chown"))?,
        chmod: checked_chmod(f.non_empty("chmod"))?,
        link: f.bool("link"),
        parents: f.bool("parents"),
        excludes: f.list("exclude"),
    })
}

fn build_run(
    node: &Node,
    heredocs: &[Heredoc],
    ctx: &mut Ctx<'_>,
) -> Result<RunInstruction, String> {
    let f = Flags::parse(
        &node.flags,
        &[
            ("mount", Kind::Strings),
            ("device", Kind::Strings),
            ("network", Kind::Str),
            ("security", Kind::Str),
        ],
    )?;
    let mount_specs = f.list("mount");
    let mut mounts = Vec::with_capacity(mount_specs.len());
    for spec in &mount_specs {
        mounts.push(mount::parse_mount(spec, mount::Values::Deferred)?);
    }
    let devices = f
        .list("device")
        .iter()
        .map(|d| device::parse_device(d))
        .collect::<Result<Vec<_>, _>>()?;
    let network = match f.string("network").as_deref() {
        None => None,
        Some("default") => Some(NetworkMode::Default),
        Some("none") => Some(NetworkMode::None),
        Some("host") => Some(NetworkMode::Host),
        Some(v) => return Err(format!("unsupported network mode {}", go_quote(v))),
    };
    let security = match f.string("security").as_deref() {
        None => None,
        Some("sandbox") => Some(SecurityMode::Sandbox),
        Some("insecure") => Some(SecurityMode::Insecure),
        Some(v) => return Err(format!("unsupported security mode {}", go_quote(v))),
    };
    let command = command_form(&node.args, node.json);
    if command == CommandForm::Shell(String::new()) && heredocs.is_empty() {
        ctx.warn(
            "EmptyCommand",
            "RUN has no command; BuildKit runs the shell with nothing to execute",
        );
    }
    Ok(RunInstruction {
        command,
        heredocs: heredocs.to_vec(),
        mounts,
        mount_specs,
        devices,
        network,
        security,
    })
}

fn build_healthcheck(node: &Node) -> Result<Healthcheck, String> {
    let args = &node.args;
    if args.is_empty() {
        return Err(at_least_one("HEALTHCHECK"));
    }
    let typ = args[0].to_uppercase();
    let rest = &args[1..];
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".to_string());
        }
        return Ok(Healthcheck::None);
    }
    let f = Flags::parse(
        &node.flags,
        &[
            ("interval", Kind::Str),
            ("timeout", Kind::Str),
            ("start-period", Kind::Str),
            ("start-interval", Kind::Str),
            ("retries", Kind::Str),
        ],
    )?;
    if typ != "CMD" {
        return Err(format!(
            "Unknown type {} in HEALTHCHECK (try CMD)",
            go_quote(&typ)
        ));
    }
    if rest.is_empty() {
        return Err("Missing command after HEALTHCHECK CMD".to_string());
    }
    let command = command_form(rest, node.json);
    let interval = duration::parse_interval("interval", f.string("interval").as_deref())?;
    let timeout = duration::parse_interval("timeout", f.string("timeout").as_deref())?;
    let start_period =
        duration::parse_interval("start-period", f.string("start-period").as_deref())?;
    let start_interval =
        duration::parse_interval("start-interval", f.string("start-interval").as_deref())?;
    let retries = match f.string("retries").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => {
            let n: i64 = v
                .parse()
                .ok()
                .filter(|n| i32::try_from(*n).is_ok())
                .ok_or_else(|| {
                    format!("strconv.ParseInt: parsing {}: invalid syntax", go_quote(&v))
                })?;
            if n < 0 {
                return Err(format!("--retries cannot be negative ({n})"));
            }
            n as u32
        }
    };
    Ok(Healthcheck::Check(HealthcheckCommand {
        command,
        interval,
        timeout,
        start_period,
        start_interval,
        retries,
    }))
}
