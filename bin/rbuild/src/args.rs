//! Parsing of flag values shared by the subcommands.

use anyhow::{anyhow, Context, Result};
use rbuild::{DockerfileSource, SecretSource};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

/// `NAME=value`, or a bare `NAME` taking its value from the environment (as Kaniko and docker
/// do; a bare name that is not set in the environment is left out).
pub fn parse_build_args(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut args = BTreeMap::new();
    for item in raw {
        let (name, value) = match item.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (item.as_str(), std::env::var(item).ok()),
        };
        if name.is_empty() {
            return Err(anyhow!(
                "--build-arg {item:?}: the name is empty (use NAME=value)"
            ));
        }
        if let Some(value) = value {
            args.insert(name.to_string(), value);
        }
    }
    Ok(args)
}

/// `KEY=value` items of a repeatable flag, in order.
pub fn parse_key_values(flag: &str, raw: &[String]) -> Result<Vec<(String, String)>> {
    raw.iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(anyhow!("{flag} {item:?}: expected KEY=VALUE")),
        })
        .collect()
}

/// `--secret id=ID,src=PATH` / `id=ID,env=VAR` / `id=ID` (BuildKit's syntax; `source=` and
/// `type=file|env` are accepted too).
pub fn parse_secrets(raw: &[String]) -> Result<BTreeMap<String, SecretSource>> {
    let mut secrets = BTreeMap::new();
    for item in raw {
        let mut id = None;
        let mut source = None;
        for field in item.split(',') {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| anyhow!("--secret {item:?}: expected key=value fields"))?;
            match key {
                "id" => id = Some(value.to_string()),
                "src" | "source" => source = Some(SecretSource::File(PathBuf::from(value))),
                "env" => source = Some(SecretSource::Env(value.to_string())),
                "type" if value == "file" || value == "env" => {}
                _ => return Err(anyhow!("--secret {item:?}: unknown field {key:?}")),
            }
        }
        let id = id
            .filter(|i| !i.is_empty())
            .ok_or_else(|| anyhow!("--secret {item:?}: id= is required"))?;
        let source = source.unwrap_or_else(|| SecretSource::Env(id.clone()));
        if secrets.insert(id.clone(), source).is_some() {
            return Err(anyhow!("--secret: id {id:?} given twice"));
        }
    }
    Ok(secrets)
}

/// Kaniko's `--cache-ttl` values: a number with a unit `s`, `m`, `h` or `d`, or Go-style
/// combinations such as `1h30m`.
pub fn parse_ttl(text: &str) -> Result<std::time::Duration> {
    let bad = || anyhow!("--cache-ttl {text:?}: expected a duration such as 90m, 24h or 7d");
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().map_err(|_| bad())?;
        number.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !number.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(total))
}

/// The text of a Dockerfile named on the command line (`-` is standard input).
pub fn read_dockerfile_text(path: &str) -> Result<String> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the Dockerfile from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow!("{path}: no such Dockerfile (pass its path with -f/--dockerfile)")
        }
        _ => anyhow!("{path}: cannot read the Dockerfile: {e}"),
    })
}

/// `--dockerfile` of a build: `-` is read now; a path is resolved by the library, relative to
/// the context. A relative path that is not in a local context but exists from the working
/// directory (`--context services/api --dockerfile services/api/Dockerfile`, as Kaniko and
/// buildx accept) is made absolute.
pub fn read_dockerfile_arg(
    path: &str,
    context: &str,
    sub_path: Option<&str>,
) -> Result<DockerfileSource> {
    if path == "-" {
        return Ok(DockerfileSource::Text(read_dockerfile_text(path)?));
    }
    let relative = PathBuf::from(path);
    let local_context = match context.strip_prefix("dir://") {
        Some(dir) => Some(dir),
        None => (!context.contains("://")).then_some(context),
    };
    if let (true, Some(dir)) = (relative.is_relative(), local_context) {
        let root = std::path::Path::new(dir).join(sub_path.unwrap_or(""));
        if !root.join(&relative).exists() && relative.is_file() {
            let absolute = std::env::current_dir()
                .context("cannot read the working directory")?
                .join(&relative);
            return Ok(DockerfileSource::Path(absolute));
        }
    }
    Ok(DockerfileSource::Path(relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_need_a_key() {
        assert_eq!(
            parse_key_values("--label", &["a=b=c".into()]).unwrap(),
            vec![("a".to_string(), "b=c".to_string())]
        );
        assert!(parse_key_values("--label", &["=x".into()]).is_err());
        assert!(parse_key_values("--label", &["novalue".into()]).is_err());
    }

    #[test]
    fn ttl_takes_kaniko_units() {
        assert_eq!(parse_ttl("90m").unwrap().as_secs(), 5400);
        assert_eq!(parse_ttl("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_ttl("7d").unwrap().as_secs(), 604_800);
        for bad in ["", "10", "h", "5x", "0s"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_take_buildkit_syntax() {
        let s = parse_secrets(&[
            "id=a,src=/run/a".into(),
            "id=b,env=B_VAR".into(),
            "id=C".into(),
        ])
        .unwrap();
        assert!(matches!(&s["a"], SecretSource::File(p) if p == &PathBuf::from("/run/a")));
        assert!(matches!(&s["b"], SecretSource::Env(v) if v == "B_VAR"));
        assert!(matches!(&s["C"], SecretSource::Env(v) if v == "C"));
        assert!(parse_secrets(&["src=/x".into()]).is_err());
        assert!(parse_secrets(&["id=a,bogus=1".into()]).is_err());
        assert!(parse_secrets(&["id=a".into(), "id=a,src=/y".into()]).is_err());
    }

    #[test]
    fn bare_build_arg_takes_the_environment() {
        let args = parse_build_args(&[
            "PATH".into(),
            "X=1".into(),
            "RBUILD_SURELY_UNSET_VAR".into(),
        ])
        .unwrap();
        assert_eq!(args.get("X").map(String::as_str), Some("1"));
        assert!(args.contains_key("PATH"));
        assert!(!args.contains_key("RBUILD_SURELY_UNSET_VAR"));
    }
}
