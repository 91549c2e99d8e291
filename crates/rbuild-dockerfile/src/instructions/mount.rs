//! `RUN --mount=...` values, parsed as BuildKit's `parseMount` (CSV fields, `key=value`, the
//! defaults and the per-type validation).

use crate::error::ExpandError;
use crate::model::{CacheSharing, Mount, MountType};
use crate::suggest;

/// How variables in mount values are treated.
pub(crate) enum Values<'a> {
    /// At parse time: a value holding `$` is left for expansion and not interpreted yet.
    Deferred,
    /// At expansion time: every value goes through the expander first.
    Expand(&'a mut dyn FnMut(&str) -> Result<String, ExpandError>),
    /// Like `Deferred`, but every value is first passed to the checker (which lexes it).
    Check(&'a mut dyn FnMut(&str) -> Result<String, ExpandError>),
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: `64m`, `1.5g`, `512KiB`, `1024` (binary multiples).
fn ram_in_bytes(v: &str) -> Option<u64> {
    let num_len = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, mut unit) = v.split_at(num_len);
    if num.is_empty() || !num.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let size: f64 = num.parse().ok()?;
    unit = unit.strip_prefix(' ').unwrap_or(unit);
    let mut chars = unit.chars();
    let mult: f64 = match chars.clone().next() {
        None => 1.0,
        Some(c) => {
            let m = match c.to_ascii_lowercase() {
                'k' => 1024f64,
                'm' => 1024f64.powi(2),
                'g' => 1024f64.powi(3),
                't' => 1024f64.powi(4),
                'p' => 1024f64.powi(5),
                _ => 0.0,
            };
            if m > 0.0 {
                chars.next();
                m
            } else {
                1.0
            }
        }
    };
    let tail: String = chars.collect::<String>().to_ascii_lowercase();
    if !matches!(tail.as_str(), "" | "i" | "b" | "ib") {
        return None;
    }
    let bytes = size * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > i64::MAX as f64 {
        return None;
    }
    Some(bytes as u64)
}

/// Splits the first CSV record of `value` as Go's `encoding/csv` does; `what` names the
/// flag in the error (`mounts`, `devices`).
pub(crate) fn csv_fields(value: &str, what: &str) -> Result<Vec<String>, String> {
    let wrap = |m: &str| format!("failed to parse csv {what}: {m}");
    let text = value.trim_start_matches(['\r', '\n']);
    if text.is_empty() {
        return Err(wrap("EOF"));
    }
    let chars: Vec<char> = text.chars().collect();
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(wrap("extraneous or missing \" in quoted-field")),
                    Some('"') => {
                        if chars.get(i + 1) == Some(&'"') {
                            field.push('"');
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(&c) => {
                        field.push(c);
                        i += 1;
                    }
                }
            }
            match chars.get(i) {
                None | Some('\n') => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some('\r') if matches!(chars.get(i + 1), None | Some('\n')) => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {
                    i += 1;
                    fields.push(field);
                }
                Some(_) => return Err(wrap("extraneous or missing \" in quoted-field")),
            }
        } else {
            while let Some(&c) = chars.get(i) {
                if c == ',' || c == '\n' {
                    break;
                }
                if c == '"' {
                    return Err(wrap("bare \" in non-quoted-field"));
                }
                field.push(c);
                i += 1;
            }
            let end = chars.get(i).copied();
            if field.ends_with('\r') && end != Some(',') {
                field.pop();
            }
            fields.push(field);
            match end {
                Some(',') => i += 1,
                _ => return Ok(fields),
            }
        }
    }
}

const ALL_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "ro",
    "rw",
    "readwrite",
];

/// Parses one `--mount` value.
pub(crate) fn parse_mount(spec: &str, mut values: Values<'_>) -> Result<Mount, String> {
    let fields = csv_fields(spec, "mounts")?;
    let mut m = Mount {
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        read_only: false,
        id: None,
        sharing: CacheSharing::Shared,
        required: false,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        env: None,
    };
    let mut sharing_set = false;
    let mut ro_auto = true;
    let mut deferred_any = false;
    for field in &fields {
        let (key, raw_value) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v)),
            None => (field.to_lowercase(), None),
        };
        let Some(raw_value) = raw_value else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.read_only = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.read_only = false;
                    ro_auto = false;
                }
                "required" => {
                    if matches!(m.kind, MountType::Secret | MountType::Ssh) {
                        m.required = true;
                    } else {
                        return Err(format!(
                            "unexpected key '{key}' for mount type '{}'",
                            type_name(m.kind)
                        ));
                    }
                }
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        if key == "from" && has_variable(raw_value) {
            return Err(format!(
                "'{key}' doesn't support variable expansion, define alias stage instead"
            ));
        }
        if let Values::Check(check) = &mut values {
            check(raw_value).map_err(|e| e.message)?;
        }
        let value = match &mut values {
            Values::Expand(expand) => expand(raw_value).map_err(|e| e.message)?,
            Values::Deferred | Values::Check(_) => {
                if raw_value.contains('$')
                    && !matches!(
                        key.as_str(),
                        "from" | "source" | "src" | "target" | "dst" | "destination" | "id" | "env"
                    )
                {
                    deferred_any = true;
                    continue;
                }
                raw_value.to_string()
            }
        };
        let invalid = |k: &str| format!("invalid value for {k}: {value}");
        match key.as_str() {
            "type" => {
                m.kind = match value.to_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        return Err(suggest::wrap(
                            format!("unsupported mount type {}", crate::shell::go_quote(&value)),
                            &value,
                            &["bind", "cache", "secret", "ssh", "tmpfs"],
                            true,
                        ))
                    }
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.read_only = parse_bool(&value).ok_or_else(|| invalid(&key))?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.read_only = !parse_bool(&value).ok_or_else(|| invalid(&key))?;
                ro_auto = false;
            }
            "required" => {
                if matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    m.required = parse_bool(&value).ok_or_else(|| invalid(&key))?;
                } else {
                    return Err(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        type_name(m.kind)
                    ));
                }
            }
            "size" => {
                if m.kind == MountType::Tmpfs {
                    m.size = Some(ram_in_bytes(&value).ok_or_else(|| invalid(&key))?);
                } else {
                    return Err(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        type_name(m.kind)
                    ));
                }
            }
            "id" => m.id = Some(value),
            "env" => m.env = Some(value),
            "sharing" => {
                m.sharing = match value.to_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => {
                        return Err(suggest::wrap(
                            format!(
                                "unsupported sharing value {}",
                                crate::shell::go_quote(&value)
                            ),
                            &value,
                            &["locked", "private", "shared"],
                            true,
                        ))
                    }
                };
                sharing_set = true;
            }
            "mode" => {
                let ok = !value.is_empty() && value.bytes().all(|b| (b'0'..=b'7').contains(&b));
                m.mode = Some(
                    ok.then(|| u32::from_str_radix(&value, 8).ok())
                        .flatten()
                        .ok_or_else(|| format!("invalid value {value} for mode"))?,
                );
            }
            "uid" | "gid" => {
                let ok = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
                let n = ok
                    .then(|| value.parse::<u32>().ok())
                    .flatten()
                    .ok_or_else(|| format!("invalid value {value} for {key}"))?;
                if key == "uid" {
                    m.uid = Some(n);
                } else {
                    m.gid = Some(n);
                }
            }
            _ => {
                return Err(suggest::wrap(
                    format!("unexpected key '{key}' in '{field}'"),
                    &key,
                    ALL_KEYS,
                    true,
                ))
            }
        }
    }
    if deferred_any {
        // Checked again, completely, once the variables are known.
        if ro_auto {
            m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
        }
        return Ok(m);
    }
    validate(&mut m, ro_auto, sharing_set)?;
    Ok(m)
}

/// A `$` followed by anything (BuildKit's `\$.`).
pub(crate) fn has_variable(v: &str) -> bool {
    v.find('$').is_some_and(|i| i + 1 < v.len())
}

pub(crate) fn type_name(t: MountType) -> &'static str {
    match t {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

fn validate(m: &mut Mount, ro_auto: bool, sharing_set: bool) -> Result<(), String> {
    let file_info_allowed = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    let t = type_name(m.kind);
    if !file_info_allowed {
        if m.mode.is_some() {
            return Err(format!("mode not allowed for \"{t}\" type mounts"));
        }
        if m.uid.is_some() {
            return Err(format!("uid not allowed for \"{t}\" type mounts"));
        }
        if m.gid.is_some() {
            return Err(format!("gid not allowed for \"{t}\" type mounts"));
        }
    }
    if ro_auto {
        m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        let empty = |v: &Option<String>| v.as_deref().unwrap_or("").is_empty();
        if !empty(&m.from) {
            return Err("secret mount should not have a from".to_string());
        }
        if sharing_set {
            return Err("secret mount should not define sharing".to_string());
        }
        if empty(&m.source) && empty(&m.target) && empty(&m.id) && empty(&m.env) {
            return Err("invalid secret mount. one of source, target required".to_string());
        }
        if !empty(&m.source) && !empty(&m.id) {
            return Err("both source and id can't be set".to_string());
        }
    }
    if sharing_set && m.kind != MountType::Cache {
        return Err(format!("invalid cache sharing set for {t} mount"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_mount() {
        let m = parse_mount(
            "type=cache,target=/root/.cache,sharing=locked,id=x,mode=0755,uid=1",
            Values::Deferred,
        )
        .unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing, CacheSharing::Locked);
        assert_eq!(m.mode, Some(0o755));
        assert_eq!(m.uid, Some(1));
        assert!(!m.read_only);
    }

    #[test]
    fn bind_defaults_read_only() {
        let m = parse_mount("target=/src,from=build", Values::Deferred).unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.read_only);
        let m = parse_mount("type=bind,target=/src,rw", Values::Deferred).unwrap();
        assert!(!m.read_only);
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_mount("type=cahce,target=/x", Values::Deferred).unwrap_err(),
            "unsupported mount type \"cahce\" (did you mean cache?)"
        );
        assert_eq!(
            parse_mount("type=bind,mode=0700,target=/x", Values::Deferred).unwrap_err(),
            "mode not allowed for \"bind\" type mounts"
        );
        assert_eq!(
            parse_mount("type=secret", Values::Deferred).unwrap_err(),
            "invalid secret mount. one of source, target required"
        );
        assert_eq!(
            parse_mount("target=/x,foo", Values::Deferred).unwrap_err(),
            "invalid field 'foo' must be a key=value pair"
        );
        assert_eq!(
            parse_mount("from=$X,target=/x", Values::Deferred).unwrap_err(),
            "'from' doesn't support variable expansion, define alias stage instead"
        );
        assert_eq!(
            parse_mount("", Values::Deferred).unwrap_err(),
            "failed to parse csv mounts: EOF"
        );
    }

    #[test]
    fn tmpfs_size() {
        let m = parse_mount("type=tmpfs,target=/t,size=64m", Values::Deferred).unwrap();
        assert_eq!(m.size, Some(64 * 1024 * 1024));
        assert_eq!(ram_in_bytes("1.5GiB"), Some(1610612736));
        assert_eq!(ram_in_bytes("abc"), None);
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(
            csv_fields("a,\"b,c\",d", "mounts").unwrap(),
            vec!["a", "b,c", "d"]
        );
        assert!(csv_fields("a\"b", "mounts").is_err());
    }
}
