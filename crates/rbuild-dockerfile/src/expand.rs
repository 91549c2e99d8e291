//! Per-instruction word expansion: exactly the words BuildKit expands for each instruction.
//!
//! | instruction | expanded |
//! |---|---|
//! | `ENV`, `LABEL` | keys and values |
//! | `WORKDIR`, `USER`, `STOPSIGNAL`, `VOLUME` | the arguments |
//! | `EXPOSE` | each word, then split again on whitespace |
//! | `COPY`, `ADD` | sources, destination, `--chown`, `--chmod`, `ADD --checksum`, heredoc bodies whose delimiter was not quoted (quotes not special, `\` escapes) |
//! | `RUN` | the values of `--mount` options |
//! | `ARG` | default values (the planner uses them only when no build arg is given) |
//! | `FROM` | image and `--platform`, against the global (meta) ARGs |
//! | nothing | `RUN`'s command and heredocs, `CMD`, `ENTRYPOINT`, `SHELL`, `HEALTHCHECK`, `MAINTAINER`, `ONBUILD`, `--exclude`, `--network`, `--security`, `COPY --from` |

use crate::error::ExpandError;
use crate::instructions::{chmod, mount};
use crate::model::{
    AddInstruction, ArgDecl, ArgInstruction, CopyInstruction, CopySource, EnvInstruction,
    FromInstruction, Instruction, KeyValue, LabelInstruction, RunInstruction,
};
use crate::shell::{
    process, EmptyEnvironment, Environment, LexOptions, Lookups, MAX_EXPANSION_BYTES,
};

/// A value after expansion, with the variable names the expansion looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded<T> {
    /// The expanded value.
    pub value: T,
    /// Names looked up while expanding (found and missing).
    pub lookups: Lookups,
}

struct Expander<'a> {
    env: &'a dyn Environment,
    escape: char,
    lookups: Lookups,
    /// Only lex (unset variables left as written) to find errors that no environment can
    /// fix, such as unterminated quotes; words are returned unchanged.
    check_only: bool,
    /// Bytes produced so far for this instruction, kept under [`MAX_EXPANSION_BYTES`].
    produced: usize,
}

impl<'a> Expander<'a> {
    fn new(env: &'a dyn Environment, escape: char) -> Self {
        Expander {
            env,
            escape,
            lookups: Lookups::default(),
            check_only: false,
            produced: 0,
        }
    }

    fn lex(
        &mut self,
        w: &str,
        mut options: LexOptions,
    ) -> Result<crate::shell::Expanded, ExpandError> {
        if self.check_only {
            options.skip_unset_env = true;
            return process(w, &EmptyEnvironment, options);
        }
        let e = process(w, self.env, options)?;
        self.produced = self.produced.saturating_add(e.word.len());
        if self.produced > MAX_EXPANSION_BYTES {
            return Err(ExpandError::too_large());
        }
        self.lookups.merge(e.lookups.clone());
        Ok(e)
    }

    fn word(&mut self, w: &str) -> Result<String, ExpandError> {
        let e = self.lex(w, LexOptions::new(self.escape))?;
        Ok(if self.check_only {
            w.to_string()
        } else {
            e.word
        })
    }

    fn key(&mut self, w: &str, cmd: &str) -> Result<String, ExpandError> {
        let k = self.word(w)?;
        if k.is_empty() {
            return Err(ExpandError::new(format!("{cmd} names can not be blank")));
        }
        Ok(k)
    }

    fn opt(&mut self, w: &Option<String>) -> Result<Option<String>, ExpandError> {
        w.as_deref().map(|w| self.word(w)).transpose()
    }

    fn words(&mut self, w: &str) -> Result<Vec<String>, ExpandError> {
        let e = self.lex(w, LexOptions::new(self.escape))?;
        Ok(if self.check_only {
            vec![w.to_string()]
        } else {
            e.words
        })
    }

    /// Heredoc bodies: quotes are not special and the escape is always `\` (BuildKit's
    /// `ExpandRaw` with `SkipProcessQuotes`).
    fn body(&mut self, w: &str) -> Result<String, ExpandError> {
        let mut options = LexOptions::new('\\');
        options.skip_process_quotes = true;
        let e = self.lex(w, options)?;
        Ok(if self.check_only {
            w.to_string()
        } else {
            e.word
        })
    }

    fn pairs(&mut self, pairs: &[KeyValue], cmd: &str) -> Result<Vec<KeyValue>, ExpandError> {
        pairs
            .iter()
            .map(|kv| {
                Ok(KeyValue {
                    key: self.key(&kv.key, cmd)?,
                    value: self.word(&kv.value)?,
                })
            })
            .collect()
    }

    fn sources(&mut self, sources: &[CopySource]) -> Result<Vec<CopySource>, ExpandError> {
        sources
            .iter()
            .map(|s| {
                Ok(match s {
                    CopySource::Path(p) => CopySource::Path(self.word(p)?),
                    CopySource::Heredoc(h) if h.expand => {
                        let mut h = h.clone();
                        h.content = self.body(&h.content)?;
                        CopySource::Heredoc(h)
                    }
                    CopySource::Heredoc(h) => CopySource::Heredoc(h.clone()),
                })
            })
            .collect()
    }

    fn chmod_chown(
        &mut self,
        chmod: &Option<String>,
        chown: &Option<String>,
    ) -> Result<(Option<String>, Option<String>), ExpandError> {
        let chmod = self.opt(chmod)?.filter(|v| !v.is_empty());
        let chown = self.opt(chown)?.filter(|v| !v.is_empty());
        if self.check_only {
            return Ok((chmod, chown));
        }
        if let Some(c) = &chmod {
            chmod::validate_chmod(c).map_err(ExpandError::new)?;
        }
        if let Some(c) = &chown {
            chmod::validate_chown(c).map_err(ExpandError::new)?;
        }
        Ok((chmod, chown))
    }
}

impl Instruction {
    /// Expands the words BuildKit expands for this instruction against `env`, with `escape`
    /// as escape character ([`Directives::escape`](crate::Directives)). Values that can only
    /// be checked once expanded (`--chmod`, `--chown`, `--mount` options, blank `ENV`/`LABEL`
    /// keys) are checked here.
    pub fn expand(
        &self,
        env: &dyn Environment,
        escape: char,
    ) -> Result<Expanded<Instruction>, ExpandError> {
        let mut x = Expander::new(env, escape);
        let value = self
            .expand_with(&mut x)
            .map_err(|e| e.for_instruction(self.keyword()))?;
        Ok(Expanded {
            value,
            lookups: x.lookups,
        })
    }

    /// Lexes every word [`Instruction::expand`] would expand, without an environment, to find
    /// the errors no variable value can fix (unterminated quotes, bad substitutions).
    pub(crate) fn check_words(&self, escape: char) -> Result<(), ExpandError> {
        let mut x = Expander::new(&EmptyEnvironment, escape);
        x.check_only = true;
        self.expand_with(&mut x).map(|_| ())
    }

    fn expand_with(&self, x: &mut Expander<'_>) -> Result<Instruction, ExpandError> {
        Ok(match self {
            Instruction::Env(e) => Instruction::Env(EnvInstruction {
                pairs: x.pairs(&e.pairs, "ENV")?,
                legacy: e.legacy,
            }),
            Instruction::Label(l) => Instruction::Label(LabelInstruction {
                pairs: x.pairs(&l.pairs, "LABEL")?,
                legacy: l.legacy,
            }),
            Instruction::Workdir { path } => Instruction::Workdir {
                path: x.word(path)?,
            },
            Instruction::User { user } => Instruction::User {
                user: x.word(user)?,
            },
            Instruction::StopSignal { signal } => Instruction::StopSignal {
                signal: x.word(signal)?,
            },
            Instruction::Volume { paths } => Instruction::Volume {
                paths: paths.iter().map(|p| x.word(p)).collect::<Result<_, _>>()?,
            },
            Instruction::Expose { ports } => {
                let mut out = Vec::with_capacity(ports.len());
                for p in ports {
                    out.extend(x.words(p)?);
                }
                Instruction::Expose { ports: out }
            }
            Instruction::Copy(c) => {
                let (chmod, chown) = x.chmod_chown(&c.chmod, &c.chown)?;
                Instruction::Copy(CopyInstruction {
                    sources: x.sources(&c.sources)?,
                    dest: x.word(&c.dest)?,
                    chmod,
                    chown,
                    ..c.clone()
                })
            }
            Instruction::Add(a) => {
                let (chmod, chown) = x.chmod_chown(&a.chmod, &a.chown)?;
                Instruction::Add(AddInstruction {
                    sources: x.sources(&a.sources)?,
                    dest: x.word(&a.dest)?,
                    chmod,
                    chown,
                    checksum: x.opt(&a.checksum)?.filter(|v| !v.is_empty()),
                    ..a.clone()
                })
            }
            Instruction::Run(r) => {
                let mut mounts = Vec::with_capacity(r.mount_specs.len());
                let check_only = x.check_only;
                for spec in &r.mount_specs {
                    let mut f = |w: &str| x.word(w);
                    let values = if check_only {
                        mount::Values::Check(&mut f)
                    } else {
                        mount::Values::Expand(&mut f)
                    };
                    mounts.push(mount::parse_mount(spec, values).map_err(ExpandError::new)?);
                }
                Instruction::Run(RunInstruction {
                    mounts,
                    ..r.clone()
                })
            }
            Instruction::Arg(a) => Instruction::Arg(a.expand_defaults(x)?),
            other => other.clone(),
        })
    }
}

impl ArgInstruction {
    fn expand_defaults(&self, x: &mut Expander<'_>) -> Result<ArgInstruction, ExpandError> {
        let args = self
            .args
            .iter()
            .map(|d| {
                Ok(ArgDecl {
                    name: d.name.clone(),
                    default: x.opt(&d.default)?,
                })
            })
            .collect::<Result<_, ExpandError>>()?;
        Ok(ArgInstruction { args })
    }
}

impl ArgDecl {
    /// Expands this declaration's default value (BuildKit expands it only when no build arg
    /// overrides it; the name is never expanded).
    pub fn expand_default(
        &self,
        env: &dyn Environment,
        escape: char,
    ) -> Result<Expanded<Option<String>>, ExpandError> {
        let mut x = Expander::new(env, escape);
        let value = x.opt(&self.default).map_err(|e| e.for_instruction("ARG"))?;
        Ok(Expanded {
            value,
            lookups: x.lookups,
        })
    }
}

impl FromInstruction {
    /// Expands the image and `--platform` against `env` (the meta ARGs in scope). An image
    /// that expands to nothing is an error, as in BuildKit.
    pub fn expand(
        &self,
        env: &dyn Environment,
        escape: char,
    ) -> Result<Expanded<FromInstruction>, ExpandError> {
        let mut x = Expander::new(env, escape);
        let value = self
            .expand_with(&mut x)
            .map_err(|e| e.for_instruction("FROM"))?;
        Ok(Expanded {
            value,
            lookups: x.lookups,
        })
    }

    /// See [`Instruction::check_words`].
    pub(crate) fn check_words(&self, escape: char) -> Result<(), ExpandError> {
        let mut x = Expander::new(&EmptyEnvironment, escape);
        x.check_only = true;
        self.expand_with(&mut x).map(|_| ())
    }

    fn expand_with(&self, x: &mut Expander<'_>) -> Result<FromInstruction, ExpandError> {
        let image = x.word(&self.image)?;
        if image.is_empty() {
            return Err(ExpandError::new(format!(
                "base name ({}) should not be blank",
                self.image
            )));
        }
        let platform = x.opt(&self.platform)?.filter(|p| !p.is_empty());
        Ok(FromInstruction {
            image,
            platform,
            name: self.name.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{parse, CommandForm, CopySource, Instruction};

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn copy_expands_paths_and_flags_but_not_from() {
        let df =
            parse("FROM a AS b\nFROM c\nCOPY --from=b --chown=$U --chmod=$M $SRC /d/$D\n").unwrap();
        let i = &df.stages[1].instructions[0].node;
        let e = i
            .expand(
                &env(&[("U", "1:2"), ("M", "755"), ("SRC", "s"), ("D", "x")]),
                '\\',
            )
            .unwrap();
        let Instruction::Copy(c) = e.value else {
            panic!()
        };
        assert_eq!(c.from.as_deref(), Some("b"));
        assert_eq!(c.chown.as_deref(), Some("1:2"));
        assert_eq!(c.chmod.as_deref(), Some("755"));
        assert_eq!(c.sources, vec![CopySource::Path("s".into())]);
        assert_eq!(c.dest, "/d/x");
        assert_eq!(
            e.lookups.all().into_iter().collect::<Vec<_>>(),
            vec!["D", "M", "SRC", "U"]
        );
    }

    #[test]
    fn bad_chmod_after_expansion() {
        let df = parse("FROM a\nCOPY --chmod=$M a /b\n").unwrap();
        let err = df.stages[0].instructions[0]
            .node
            .expand(&env(&[("M", "999")]), '\\')
            .unwrap_err();
        assert_eq!(
            err.message,
            "invalid chmod parameter: '999'. it should be octal string and between 0 and 07777"
        );
    }

    #[test]
    fn run_command_is_not_expanded_but_mounts_are() {
        let df = parse("FROM a\nRUN --mount=type=cache,target=$T echo $T\n").unwrap();
        let e = df.stages[0].instructions[0]
            .node
            .expand(&env(&[("T", "/c")]), '\\')
            .unwrap();
        let Instruction::Run(r) = e.value else {
            panic!()
        };
        assert_eq!(r.command, CommandForm::Shell("echo $T".into()));
        assert_eq!(r.mounts[0].target.as_deref(), Some("/c"));
    }

    #[test]
    fn heredoc_body_expansion_follows_the_delimiter_quoting() {
        let df = parse("FROM a\nCOPY <<A <<\"B\" /d/\n$X \"q\"\nA\n$X\nB\n").unwrap();
        let e = df.stages[0].instructions[0]
            .node
            .expand(&env(&[("X", "v")]), '\\')
            .unwrap();
        let Instruction::Copy(c) = e.value else {
            panic!()
        };
        let bodies: Vec<String> = c
            .sources
            .iter()
            .map(|s| match s {
                CopySource::Heredoc(h) => h.content.clone(),
                CopySource::Path(p) => p.clone(),
            })
            .collect();
        assert_eq!(bodies, vec!["v \"q\"\n", "$X\n"]);
    }

    #[test]
    fn expose_splits_after_expansion() {
        let df = parse("FROM a\nEXPOSE $P 80\n").unwrap();
        let e = df.stages[0].instructions[0]
            .node
            .expand(&env(&[("P", "1 2/udp")]), '\\')
            .unwrap();
        assert_eq!(
            e.value,
            Instruction::Expose {
                ports: vec!["1".into(), "2/udp".into(), "80".into()]
            }
        );
    }

    #[test]
    fn from_blank_after_expansion() {
        let df = parse("ARG IMG\nFROM $IMG\n").unwrap();
        let err = df.stages[0].from.expand(&env(&[]), '\\').unwrap_err();
        assert_eq!(err.message, "base name ($IMG) should not be blank");
    }
}
