//! # rbuild-dockerfile
//!
//! rbuild's Dockerfile front end: a pure (no I/O), BuildKit-exact parser.
//!
//! Parsing runs in two passes, as in BuildKit:
//!
//! 1. [`parse_syntax`] turns text into [`Node`]s: parser directives (`# syntax=`,
//!    `# escape=`, `# check=`), comments, continuation lines with the active escape character
//!    (comment and blank lines inside a continuation dropped), heredoc bodies, the
//!    per-instruction argument split, JSON (exec) form with BuildKit's fallback to shell form.
//!    [`SyntaxTree::dump`] renders BuildKit's s-expression dump.
//! 2. [`parse`] turns nodes into typed [`Instruction`]s grouped in [`Stage`]s, with
//!    BuildKit's argument and flag rules and messages, `--mount` parsed into [`Mount`]s,
//!    durations parsed like Go's `time.ParseDuration`, and warnings as values.
//!
//! Words stay unexpanded; [`Instruction::expand`] expands exactly the words BuildKit expands
//! for that instruction, and reports every variable name it looked up, so that a planner can
//! key a step on exactly the ARG/ENV values it observed. [`expand_word`] and [`expand_words`]
//! are BuildKit's `ProcessWord` and `ProcessWords`. Unlike BuildKit, one instruction expands to
//! at most [`MAX_EXPANSION_BYTES`] (`ENV expands to more than 1 MiB`), so hostile doubling
//! cannot exhaust memory.
//!
//! ```
//! use rbuild_dockerfile::{parse, Instruction, CommandForm};
//!
//! let df = parse("FROM alpine AS base\nENV DIR=/srv\nWORKDIR $DIR\nRUN echo hi\n").unwrap();
//! assert_eq!(df.stages[0].from.name.as_deref(), Some("base"));
//! let workdir = &df.stages[0].instructions[1];
//! assert_eq!(workdir.span.line, 3);
//!
//! let env = vec![("DIR".to_string(), "/srv".to_string())];
//! let expanded = workdir.node.expand(&env, df.directives.escape).unwrap();
//! assert_eq!(expanded.value, Instruction::Workdir { path: "/srv".into() });
//! assert!(expanded.lookups.found.contains("DIR"));
//!
//! let run = &df.stages[0].instructions[2].node;
//! assert!(matches!(run, Instruction::Run(r) if r.command == CommandForm::Shell("echo hi".into())));
//!
//! let err = rbuild_dockerfile::parse("FROM a\nRUNN x\n").unwrap_err();
//! assert_eq!(err.render("Dockerfile"), "Dockerfile:2:1: unknown instruction: RUNN (did you mean RUN?)");
//! ```
//!
//! ## Where rbuild is stricter or simpler than BuildKit (deliberately)
//!
//! - Input is `&str`: a Dockerfile that is not UTF-8 is refused by the caller.
//! - Words that no variable value can make valid (an unterminated quote, `${`, a bad
//!   pattern escape) are errors at parse time in every stage; BuildKit reports them only
//!   when it builds the stage.
//! - An `ONBUILD` trigger is parsed and checked with the Dockerfile; BuildKit checks it only
//!   when a child image runs it.
//! - `--chown` values are checked for shape (`user[:group]`, no empty part), and an
//!   `ENV`/`LABEL` key that expands to nothing is an error.
//! - `--flag` words are read per character; BuildKit reads them per byte and mangles
//!   non-ASCII text in flag values.
//! - Nesting is bounded (`${...}` 256 levels, JSON arrays 512, `ONBUILD ONBUILD` 16) so
//!   hostile input cannot exhaust the stack.

mod error;
mod expand;
mod instructions;
mod model;
mod run_script;
mod shell;
mod span;
mod suggest;
mod syntax;

pub use error::{ExpandError, ParseError};
pub use expand::Expanded;
pub use instructions::chmod::{validate_chmod, validate_chown};
pub use model::{
    AddInstruction, ArgDecl, ArgInstruction, CacheSharing, CommandForm, CopyInstruction,
    CopySource, Device, Directives, Dockerfile, EnvInstruction, FromInstruction, Healthcheck,
    HealthcheckCommand, Heredoc, Instruction, KeyValue, LabelInstruction, Mount, MountType,
    NetworkMode, OnbuildInstruction, RunInstruction, SecurityMode, Stage, Warning,
};
pub use run_script::RunScript;
pub use shell::{
    expand_word, expand_words, go_quote, process as expand_with_options, EmptyEnvironment,
    Environment, Expanded as WordExpansion, LexOptions, Lookups, MAX_EXPANSION_BYTES,
};
pub use span::{Span, Spanned};
pub use syntax::{parse_syntax, Node, SyntaxTree};

use instructions::Built;

/// Parses a whole Dockerfile into stages of typed instructions.
///
/// Errors carry the line and column of the offending instruction; warnings (deprecated forms,
/// empty continuation lines, a `# syntax` frontend rbuild does not run, ...) are returned in
/// [`Dockerfile::warnings`].
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let tree = parse_syntax(text)?;
    let mut warnings = tree.warnings;
    if let Some(syntax) = &tree.directives.syntax {
        if !is_standard_frontend(syntax) {
            warnings.push(Warning {
                rule: "UnsupportedSyntax".to_string(),
                message: format!(
                    "# syntax={syntax} names a frontend rbuild does not run; the Dockerfile is built with rbuild's own BuildKit-compatible parser"
                ),
                span: Span::new(1, 1, 1),
            });
        }
    }
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &tree.nodes {
        let built =
            instructions::build(node, &mut warnings).map_err(|m| ParseError::at(node.span, m))?;
        let checked = match &built {
            Built::From(from) => from.check_words(tree.directives.escape),
            Built::Instruction(inst) => inst.check_words(tree.directives.escape),
        };
        checked.map_err(|e| e.at(node.span))?;
        match built {
            Built::From(from) => stages.push(Stage {
                index: stages.len(),
                from,
                span: node.span,
                instructions: Vec::new(),
            }),
            Built::Instruction(Instruction::Arg(arg)) if stages.is_empty() => {
                meta_args.push(Spanned::new(arg, node.span));
            }
            Built::Instruction(inst) => match stages.last_mut() {
                Some(stage) => stage.instructions.push(Spanned::new(inst, node.span)),
                None => {
                    return Err(ParseError::at(
                        node.span,
                        "no build stage in current context",
                    ))
                }
            },
        }
    }
    if stages.is_empty() {
        let span = tree.nodes.last().map(|n| n.span).unwrap_or_default();
        return Err(ParseError::at(
            span,
            "dockerfile contains no stages to build",
        ));
    }
    warnings.sort_by_key(|w| w.span.line);
    Ok(Dockerfile {
        directives: tree.directives,
        meta_args,
        stages,
        warnings,
    })
}

/// Parses one `ONBUILD` trigger as stored in an image config's `OnBuild` list (for example
/// `RUN echo hi`, or `COPY <<EOF /x` followed by its heredoc body), as BuildKit does when a
/// stage builds on an image that has triggers. The span is relative to the trigger text.
pub fn parse_trigger(expression: &str) -> Result<Spanned<Instruction>, ParseError> {
    let tree = parse_syntax(expression)?;
    let [node] = tree.nodes.as_slice() else {
        let span = tree.nodes.get(1).map(|n| n.span).unwrap_or_default();
        return Err(ParseError::at(
            span,
            "onbuild trigger should be a single expression",
        ));
    };
    let mut warnings = Vec::new();
    let keyword = node.keyword.to_uppercase();
    if matches!(keyword.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
        return Err(ParseError::at(
            node.span,
            format!("{keyword} isn't allowed as an ONBUILD trigger"),
        ));
    }
    match instructions::build(node, &mut warnings).map_err(|m| ParseError::at(node.span, m))? {
        Built::Instruction(inst) => Ok(Spanned::new(inst, node.span)),
        Built::From(_) => Err(ParseError::at(
            node.span,
            "FROM isn't allowed as an ONBUILD trigger",
        )),
    }
}

/// `docker/dockerfile[:tag][@digest]` (optionally `docker.io/`-prefixed): the standard
/// frontend, whose behaviour rbuild implements.
fn is_standard_frontend(syntax: &str) -> bool {
    let s = syntax.split_whitespace().next().unwrap_or("");
    let s = s.strip_prefix("docker.io/").unwrap_or(s);
    let name = s.split(['@', ':']).next().unwrap_or("");
    name == "docker/dockerfile"
}
