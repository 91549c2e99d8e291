//! `--chmod`: an octal mode (`755`, `0644`) or a symbolic one (`u+x,go-w`, `a=rX`) applied to
//! each copied entry's own mode, as BuildKit's fsutil does.

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// A fixed mode.
    Octal(u32),
    /// Clauses applied to the entry's mode.
    Symbolic(Vec<Clause>),
}

/// One `who op perms` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    who: u32,
    op: char,
    perms: String,
}

impl Chmod {
    /// Parses a `--chmod` value.
    pub fn parse(spec: &str) -> Result<Chmod, String> {
        if !spec.is_empty() && spec.chars().all(|c| c.is_digit(8)) {
            let mode = u32::from_str_radix(spec, 8).map_err(|e| e.to_string())?;
            if mode > 0o7777 {
                return Err(format!("invalid chmod {spec:?}: mode out of range"));
            }
            return Ok(Chmod::Octal(mode));
        }
        let mut clauses = Vec::new();
        for part in spec.split(',') {
            let op_at = part
                .find(['+', '-', '='])
                .ok_or_else(|| format!("invalid chmod {spec:?}: no operator in {part:?}"))?;
            let (who_text, rest) = part.split_at(op_at);
            let mut who = 0;
            for c in who_text.chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(format!("invalid chmod {spec:?}: bad who {c:?}")),
                };
            }
            if who_text.is_empty() {
                who = 0o7777;
            }
            let op = rest.chars().next().unwrap_or('+');
            let perms = rest[1..].to_string();
            if let Some(c) = perms.chars().find(|c| !"rwxXst".contains(*c)) {
                return Err(format!("invalid chmod {spec:?}: bad permission {c:?}"));
            }
            clauses.push(Clause { who, op, perms });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The new permission bits (`0o7777` part) for an entry with `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                let mut mode = mode & 0o7777;
                for c in clauses {
                    let mut bits = 0;
                    for p in c.perms.chars() {
                        bits |= match p {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || mode & 0o111 != 0 => 0o111,
                            's' => 0o6000,
                            't' => 0o1000,
                            _ => 0,
                        };
                    }
                    let bits = bits & c.who;
                    mode = match c.op {
                        '+' => mode | bits,
                        '-' => mode & !bits,
                        _ => (mode & !(c.who & 0o777)) | bits,
                    };
                }
                mode
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_and_symbolic() {
        assert_eq!(Chmod::parse("755").unwrap().apply(0o644, false), 0o755);
        assert_eq!(Chmod::parse("0640").unwrap().apply(0o777, true), 0o640);
        assert_eq!(Chmod::parse("u+x").unwrap().apply(0o644, false), 0o744);
        assert_eq!(Chmod::parse("go-w").unwrap().apply(0o666, false), 0o644);
        assert_eq!(Chmod::parse("a=rX").unwrap().apply(0o640, false), 0o444);
        assert_eq!(Chmod::parse("a=rX").unwrap().apply(0o700, true), 0o555);
        assert_eq!(Chmod::parse("+x,o-r").unwrap().apply(0o644, false), 0o751);
        assert!(Chmod::parse("u*x").is_err());
        assert!(Chmod::parse("z+x").is_err());
        assert!(Chmod::parse("77777").is_err());
    }
}
