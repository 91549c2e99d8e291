//! Instruction flags (`--name=value`), parsed as BuildKit's `BFlags`: each instruction declares
//! the flags it takes; anything else is an error with a suggestion.

use crate::suggest;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Str,
    Strings,
}

#[derive(Debug, Default)]
pub(crate) struct Flags {
    bools: BTreeMap<&'static str, bool>,
    strings: BTreeMap<&'static str, String>,
    lists: BTreeMap<&'static str, Vec<String>>,
}

impl Flags {
    /// Parses `args` (as the first pass extracted them) against the declared flags.
    pub(crate) fn parse(
        args: &[String],
        declared: &[(&'static str, Kind)],
    ) -> Result<Flags, String> {
        let mut out = Flags::default();
        for a in args {
            if a == "--" {
                break;
            }
            let Some(body) = a.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {a}"));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let flag_name = format!("--{name}");
            let Some(&(decl, kind)) = declared.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = declared.iter().map(|(n, _)| *n).collect();
                return Err(suggest::wrap(
                    format!("unknown flag: {flag_name}"),
                    name,
                    &names,
                    true,
                ));
            };
            let used = out.bools.contains_key(decl)
                || out.strings.contains_key(decl)
                || out.lists.contains_key(decl);
            if used && kind != Kind::Strings {
                return Err(format!("duplicate flag specified: {flag_name}"));
            }
            match kind {
                Kind::Bool => {
                    if value == Some("") {
                        return Err(format!("missing a value on flag: {flag_name}"));
                    }
                    let v = match value.map(str::to_lowercase).as_deref() {
                        None | Some("true") => true,
                        Some("false") => false,
                        Some(_) => {
                            return Err(format!(
                                "expecting boolean value for flag {flag_name}, not: {}",
                                value.unwrap_or_default()
                            ))
                        }
                    };
                    out.bools.insert(decl, v);
                }
                Kind::Str => {
                    let Some(v) = value else {
                        return Err(format!("missing a value on flag: {flag_name}"));
                    };
                    out.strings.insert(decl, v.to_string());
                }
                Kind::Strings => {
                    let Some(v) = value else {
                        return Err(format!("missing a value on flag: {flag_name}"));
                    };
                    out.lists.entry(decl).or_default().push(v.to_string());
                }
            }
        }
        Ok(out)
    }

    /// A boolean flag's value (false when absent).
    pub(crate) fn bool(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }

    /// A boolean flag's value, `None` when absent.
    pub(crate) fn opt_bool(&self, name: &str) -> Option<bool> {
        self.bools.get(name).copied()
    }

    /// A string flag's value, `None` when absent.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.strings.get(name).cloned()
    }

    /// A string flag's value, treating an empty value as absent (BuildKit compares with "").
    pub(crate) fn non_empty(&self, name: &str) -> Option<String> {
        self.strings.get(name).filter(|v| !v.is_empty()).cloned()
    }

    /// A repeatable flag's values in order.
    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.lists.get(name).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_and_rejects() {
        let decl = [
            ("link", Kind::Bool),
            ("from", Kind::Str),
            ("exclude", Kind::Strings),
        ];
        let f = Flags::parse(
            &s(&["--link", "--from=a", "--exclude=x", "--exclude=y"]),
            &decl,
        )
        .unwrap();
        assert!(f.bool("link"));
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert_eq!(f.list("exclude"), vec!["x", "y"]);
        assert_eq!(
            Flags::parse(&s(&["--form=a"]), &decl).unwrap_err(),
            "unknown flag: --form (did you mean from?)"
        );
        assert_eq!(
            Flags::parse(&s(&["--from"]), &decl).unwrap_err(),
            "missing a value on flag: --from"
        );
        assert_eq!(
            Flags::parse(&s(&["--from=a", "--from=b"]), &decl).unwrap_err(),
            "duplicate flag specified: --from"
        );
        assert_eq!(
            Flags::parse(&s(&["--link=maybe"]), &decl).unwrap_err(),
            "expecting boolean value for flag --link, not: maybe"
        );
    }
}
