//! The image config of a stage as its steps change it, following BuildKit's `dispatch*`
//! functions: the base config, then ENV, CMD, ENTRYPOINT, WORKDIR, USER, EXPOSE, VOLUME, LABEL,
//! STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD, ARG and MAINTAINER, each with its history entry.

use crate::history::{self, go_duration, go_list, go_quoted_list};
use rbuild_dockerfile::{CommandForm, Healthcheck, Instruction};
use rbuild_oci::{EmptyObject, HealthConfig, History, ImageConfig, Platform, RootFs};
use rbuild_plan::DEFAULT_PATH;

/// A stage's image config while it is being built.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageState {
    /// The config (its `history` and `rootfs` grow with the stage's layers).
    pub config: ImageConfig,
    /// Whether this stage set CMD itself (an ENTRYPOINT then keeps it).
    cmd_set: bool,
}

impl ImageState {
    /// The config of `FROM scratch`, as BuildKit's `emptyImage`.
    pub fn scratch(platform: &Platform) -> ImageState {
        let config = ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            os_version: platform.os_version.clone(),
            os_features: platform.os_features.clone(),
            rootfs: RootFs::default(),
            config: rbuild_oci::ContainerConfig {
                working_dir: "/".into(),
                env: vec![format!("PATH={DEFAULT_PATH}")],
                ..Default::default()
            },
            ..Default::default()
        };
        ImageState {
            config,
            cmd_set: false,
        }
    }

    /// A stage starting from an image (or an earlier stage's config): its `created` dropped,
    /// its ONBUILD triggers consumed, PATH set if missing.
    pub fn from_base(mut config: ImageConfig) -> ImageState {
        config.created = None;
        config.config.on_build.clear();
        if config.config.env_var("PATH").is_none() {
            config.config.env.push(format!("PATH={DEFAULT_PATH}"));
        }
        ImageState {
            config,
            cmd_set: false,
        }
    }

    /// The shell for shell-form commands: `SHELL`, else `/bin/sh -c`.
    pub fn shell(&self) -> Vec<String> {
        if self.config.config.shell.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            self.config.config.shell.clone()
        }
    }

    /// BuildKit's `withShell`: the shell followed by the command text.
    pub fn with_shell(&self, text: &str) -> Vec<String> {
        let mut args = self.shell();
        args.push(text.to_string());
        args
    }

    /// The command line of a command form.
    pub fn command_line(&self, form: &CommandForm) -> Vec<String> {
        match form {
            CommandForm::Shell(text) => self.with_shell(text),
            CommandForm::Exec(args) => args.clone(),
        }
    }

    /// Applies a WORKDIR: returns the normalised directory (the caller creates it as a layer
    /// unless it is `/`).
    pub fn set_workdir(&mut self, path: &str) -> String {
        let wd = normalize_workdir(&self.config.config.working_dir, path);
        self.config.config.working_dir = wd.clone();
        wd
    }

    /// Applies a metadata-only instruction and returns its history entry (none for ONBUILD,
    /// which BuildKit does not record). Filesystem steps (RUN, COPY, ADD, WORKDIR) are not
    /// handled here.
    pub fn apply_metadata(
        &mut self,
        instruction: &Instruction,
        created: &str,
    ) -> Result<Option<History>, String> {
        let c = &mut self.config.config;
        let created_by = match instruction {
            Instruction::Env(env) => {
                let mut msg = String::from("ENV");
                for pair in &env.pairs {
                    add_env(&mut c.env, &pair.key, &pair.value);
                    msg.push_str(&format!(" {}={}", pair.key, pair.value));
                }
                msg
            }
            Instruction::Label(label) => {
                let mut msg = String::from("LABEL");
                for pair in &label.pairs {
                    c.labels.insert(pair.key.clone(), pair.value.clone());
                    msg.push_str(&format!(" {}={}", pair.key, pair.value));
                }
                msg
            }
            Instruction::Cmd { command } => {
                let args = match command {
                    CommandForm::Shell(text) => self_shell(c, text),
                    CommandForm::Exec(a) => a.clone(),
                };
                let msg = format!("CMD {}", go_quoted_list(&args));
                c.cmd = Some(args);
                c.args_escaped = true;
                self.cmd_set = true;
                msg
            }
            Instruction::Entrypoint { command } => {
                let args = match command {
                    CommandForm::Shell(text) => self_shell(c, text),
                    CommandForm::Exec(a) => a.clone(),
                };
                let msg = format!("ENTRYPOINT {}", go_quoted_list(&args));
                c.entrypoint = Some(args);
                if !self.cmd_set {
                    c.cmd = None;
                }
                msg
            }
            Instruction::User { user } => {
                c.user = user.clone();
                format!("USER {user}")
            }
            Instruction::Expose { ports } => {
                let mut specs = std::collections::BTreeSet::new();
                for port in ports {
                    for spec in parse_port_spec(port)? {
                        specs.insert(spec);
                    }
                }
                for spec in &specs {
                    c.exposed_ports.insert(spec.clone(), EmptyObject {});
                }
                let shown: Vec<String> = specs.iter().map(|p| format!("{p}:{{}}")).collect();
                format!("EXPOSE map[{}]", shown.join(" "))
            }
            Instruction::Volume { paths } => {
                for p in paths {
                    if p.is_empty() {
                        return Err("VOLUME specified can not be an empty string".into());
                    }
                    c.volumes.insert(p.clone(), EmptyObject {});
                }
                format!("VOLUME {}", go_list(paths))
            }
            Instruction::StopSignal { signal } => {
                c.stop_signal = signal.clone();
                format!("STOPSIGNAL {signal}")
            }
            Instruction::Shell { shell } => {
                c.shell = shell.clone();
                format!("SHELL {}", go_list(shell))
            }
            Instruction::Healthcheck(check) => {
                let health = match check {
                    Healthcheck::None => HealthConfig {
                        test: vec!["NONE".into()],
                        ..Default::default()
                    },
                    Healthcheck::Check(cmd) => HealthConfig {
                        test: cmd.test(),
                        interval: cmd.interval.map(nanos),
                        timeout: cmd.timeout.map(nanos),
                        start_period: cmd.start_period.map(nanos),
                        start_interval: cmd.start_interval.map(nanos),
                        retries: (cmd.retries > 0).then_some(i64::from(cmd.retries)),
                    },
                };
                let d = |v: Option<i64>| {
                    go_duration(std::time::Duration::from_nanos(v.unwrap_or(0).max(0) as u64))
                };
                let msg = format!(
                    "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
                    go_list(&health.test),
                    d(health.interval),
                    d(health.timeout),
                    d(health.start_period),
                    d(health.start_interval),
                    health.retries.unwrap_or(0)
                );
                c.healthcheck = Some(health);
                msg
            }
            Instruction::Onbuild(trigger) => {
                c.on_build.push(trigger.expression.clone());
                return Ok(None);
            }
            Instruction::Arg(arg) => {
                let parts: Vec<String> = arg
                    .args
                    .iter()
                    .map(|a| match &a.default {
                        Some(v) => format!("{}={v}", a.name),
                        None => a.name.clone(),
                    })
                    .collect();
                format!("ARG {}", parts.join(" "))
            }
            Instruction::Maintainer { name } => {
                self.config.author = Some(name.clone());
                format!("MAINTAINER {name}")
            }
            Instruction::Run(_)
            | Instruction::Copy(_)
            | Instruction::Add(_)
            | Instruction::Workdir { .. } => {
                return Err(format!(
                    "{} is not a metadata instruction",
                    instruction.keyword()
                ))
            }
        };
        Ok(Some(history::entry(created_by, false, false, created)))
    }
}

fn self_shell(c: &rbuild_oci::ContainerConfig, text: &str) -> Vec<String> {
    let mut args = if c.shell.is_empty() {
        vec!["/bin/sh".to_string(), "-c".to_string()]
    } else {
        c.shell.clone()
    };
    args.push(text.to_string());
    args
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// BuildKit's `addEnv`: replaces the variable in place, else appends it.
pub fn add_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    for e in env.iter_mut() {
        if e.split('=').next() == Some(key) {
            *e = entry;
            return;
        }
    }
    env.push(entry);
}

/// WORKDIR and absolute-path rules, shared with the planner so both resolve paths alike.
pub use rbuild_plan::{clean_abs, normalize_workdir};

/// Docker's `nat.ParsePortSpecs` for one EXPOSE word: `80` → `80/tcp`, `53/UDP` → `53/udp`,
/// `8000-8002` → three ports.
fn parse_port_spec(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) if !proto.is_empty() => (p, proto.to_ascii_lowercase()),
        Some((p, _)) => (p, "tcp".to_string()),
        None => (spec, "tcp".to_string()),
    };
    let bad = || format!("invalid containerPort: {ports}");
    let parse = |s: &str| s.parse::<u16>().map_err(|_| bad());
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if end < start {
        return Err(format!(
            "invalid range specified for containerPort: {ports}"
        ));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_dockerfile::{parse, Instruction};

    fn apply_all(state: &mut ImageState, text: &str) -> Vec<String> {
        let df = parse(&format!("FROM scratch\n{text}")).unwrap();
        let mut out = Vec::new();
        for i in &df.stages[0].instructions {
            if let Some(h) = state.apply_metadata(&i.node, "T").unwrap() {
                out.push(h.created_by.unwrap());
            }
        }
        out
    }

    fn amd64() -> Platform {
        Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..Default::default()
        }
    }

    #[test]
    fn scratch_config_is_buildkits_empty_image() {
        let s = ImageState::scratch(&amd64());
        assert_eq!(s.config.config.working_dir, "/");
        assert_eq!(s.config.config.env, vec![format!("PATH={DEFAULT_PATH}")]);
        assert_eq!(s.config.rootfs.typ, "layers");
    }

    #[test]
    fn metadata_instructions_set_config_and_history() {
        let mut s = ImageState::scratch(&amd64());
        let history = apply_all(
            &mut s,
            "ENV A=1 B=two\nENV A=3\nLABEL x=y\nUSER app:app\nEXPOSE 80 53/UDP 8000-8001\n\
             VOLUME /data /cache\nSTOPSIGNAL SIGINT\nSHELL [\"/bin/bash\", \"-c\"]\n\
             CMD echo hi\nHEALTHCHECK --interval=30s --retries=3 CMD curl -f http://x/\n\
             ONBUILD RUN echo trigger\nMAINTAINER me\n",
        );
        assert_eq!(
            history,
            vec![
                "ENV A=1 B=two",
                "ENV A=3",
                "LABEL x=y",
                "USER app:app",
                "EXPOSE map[53/udp:{} 80/tcp:{} 8000/tcp:{} 8001/tcp:{}]",
                "VOLUME [/data /cache]",
                "STOPSIGNAL SIGINT",
                "SHELL [/bin/bash -c]",
                r#"CMD ["/bin/bash" "-c" "echo hi"]"#,
                "HEALTHCHECK {Test:[CMD-SHELL curl -f http://x/] Interval:30s Timeout:0s \
                 StartPeriod:0s StartInterval:0s Retries:3}",
                "MAINTAINER me",
            ]
        );
        let c = &s.config.config;
        assert_eq!(
            c.env,
            vec![format!("PATH={DEFAULT_PATH}"), "A=3".into(), "B=two".into()]
        );
        assert_eq!(c.labels.get("x").map(String::as_str), Some("y"));
        assert_eq!(c.user, "app:app");
        assert_eq!(
            c.exposed_ports.keys().cloned().collect::<Vec<_>>(),
            vec!["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]
        );
        assert_eq!(
            c.volumes.keys().cloned().collect::<Vec<_>>(),
            vec!["/cache", "/data"]
        );
        assert_eq!(c.stop_signal, "SIGINT");
        assert_eq!(c.shell, vec!["/bin/bash", "-c"]);
        assert_eq!(
            c.cmd,
            Some(vec!["/bin/bash".into(), "-c".into(), "echo hi".into()])
        );
        assert!(c.args_escaped);
        let hc = c.healthcheck.as_ref().unwrap();
        assert_eq!(hc.test, vec!["CMD-SHELL", "curl -f http://x/"]);
        assert_eq!(hc.interval, Some(30_000_000_000));
        assert_eq!(hc.timeout, None);
        assert_eq!(hc.retries, Some(3));
        assert_eq!(c.on_build, vec!["RUN echo trigger"]);
        assert_eq!(s.config.author.as_deref(), Some("me"));
    }

    #[test]
    fn entrypoint_resets_an_inherited_cmd_but_not_its_own_stages() {
        let mut base = ImageState::scratch(&amd64());
        apply_all(&mut base, "CMD [\"sh\"]\n");
        let mut child = ImageState::from_base(base.config.clone());
        let h = apply_all(&mut child, "ENTRYPOINT [\"/app\"]\n");
        assert_eq!(h, vec![r#"ENTRYPOINT ["/app"]"#]);
        assert_eq!(child.config.config.cmd, None);
        assert_eq!(child.config.config.entrypoint, Some(vec!["/app".into()]));

        let mut same = ImageState::scratch(&amd64());
        apply_all(&mut same, "CMD [\"--help\"]\nENTRYPOINT /app\n");
        assert_eq!(same.config.config.cmd, Some(vec!["--help".into()]));
        assert_eq!(
            same.config.config.entrypoint,
            Some(vec!["/bin/sh".into(), "-c".into(), "/app".into()])
        );
    }

    #[test]
    fn healthcheck_none_and_arg_history() {
        let mut s = ImageState::scratch(&amd64());
        let h = apply_all(&mut s, "HEALTHCHECK NONE\n");
        assert_eq!(
            h,
            vec!["HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}"]
        );
        let arg = Instruction::Arg(rbuild_dockerfile::ArgInstruction {
            args: vec![
                rbuild_dockerfile::ArgDecl {
                    name: "V".into(),
                    default: Some("1".into()),
                },
                rbuild_dockerfile::ArgDecl {
                    name: "W".into(),
                    default: None,
                },
            ],
        });
        let entry = s.apply_metadata(&arg, "T").unwrap().unwrap();
        assert_eq!(entry.created_by.as_deref(), Some("ARG V=1 W"));
        assert!(entry.empty_layer);
    }

    #[test]
    fn base_config_loses_created_and_onbuild() {
        let mut base = ImageState::scratch(&amd64()).config;
        base.created = Some("2020-01-01T00:00:00Z".into());
        base.config.on_build = vec!["RUN x".into()];
        base.config.env.clear();
        let s = ImageState::from_base(base);
        assert_eq!(s.config.created, None);
        assert!(s.config.config.on_build.is_empty());
        assert_eq!(s.config.config.env, vec![format!("PATH={DEFAULT_PATH}")]);
    }

    #[test]
    fn workdirs_normalise() {
        assert_eq!(normalize_workdir("/", "app"), "/app");
        assert_eq!(normalize_workdir("/app", "../srv/./x/"), "/srv/x");
        assert_eq!(normalize_workdir("/app", "/"), "/");
        assert_eq!(normalize_workdir("", "a"), "/a");
        assert!(parse_port_spec("x").is_err());
        assert!(parse_port_spec("9-8").is_err());
    }
}
