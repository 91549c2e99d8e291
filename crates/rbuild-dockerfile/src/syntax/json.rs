//! Just enough JSON for exec-form arguments: is the text one JSON value, and if it is an array,
//! are all its elements strings. Mirrors Go's `encoding/json` acceptance (RFC 8259, no
//! trailing commas, whitespace around the value allowed).

/// What the text after an instruction is, as JSON.
pub(crate) enum JsonArgs {
    /// A valid JSON array of strings.
    Strings(Vec<String>),
    /// Valid JSON, an array, but with an element that is not a string.
    NotStrings,
    /// Not valid JSON (or not an array): the caller falls back to shell form.
    Invalid,
}

pub(crate) fn parse_json_args(text: &str) -> JsonArgs {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    p.skip_ws();
    if p.peek() != Some(b'[') {
        return JsonArgs::Invalid;
    }
    let mut out = Vec::new();
    let mut all_strings = true;
    p.i += 1;
    p.skip_ws();
    if p.peek() == Some(b']') {
        p.i += 1;
    } else {
        loop {
            p.skip_ws();
            if p.peek() == Some(b'"') {
                match p.string() {
                    Some(s) => out.push(s),
                    None => return JsonArgs::Invalid,
                }
            } else {
                all_strings = false;
                if p.value().is_none() {
                    return JsonArgs::Invalid;
                }
            }
            p.skip_ws();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b']') => {
                    p.i += 1;
                    break;
                }
                _ => return JsonArgs::Invalid,
            }
        }
    }
    p.skip_ws();
    if p.i != p.s.len() {
        return JsonArgs::Invalid;
    }
    if all_strings {
        JsonArgs::Strings(out)
    } else {
        JsonArgs::NotStrings
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Option<()> {
        self.skip_ws();
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'[' | b'{' => {
                // Go's decoder limits nesting to 10000 levels; we stop far earlier and call
                // deeper input invalid, which keeps recursion bounded.
                if self.depth >= 512 {
                    return None;
                }
                self.depth += 1;
                let r = self.container();
                self.depth -= 1;
                r
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn container(&mut self) -> Option<()> {
        let close = if self.peek()? == b'[' { b']' } else { b'}' };
        let object = close == b'}';
        self.i += 1;
        self.skip_ws();
        if self.peek()? == close {
            self.i += 1;
            return Some(());
        }
        loop {
            self.skip_ws();
            if object {
                if self.peek()? != b'"' {
                    return None;
                }
                self.string()?;
                self.skip_ws();
                if self.peek()? != b':' {
                    return None;
                }
                self.i += 1;
            }
            self.value()?;
            self.skip_ws();
            match self.peek()? {
                b',' => self.i += 1,
                c if c == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    fn number(&mut self) -> Option<()> {
        let start = self.i;
        self.number_syntax()?;
        // Go cannot store a number beyond float64 in an `any` and fails the whole decode,
        // which sends the text to shell form.
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        text.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|_| ())
    }

    fn number_syntax(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return None;
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return None;
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        Some(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.i..self.i + 4)?;
        let h = std::str::from_utf8(h).ok()?;
        let v = u32::from_str_radix(h, 16).ok()?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        Some(v)
    }

    fn string(&mut self) -> Option<String> {
        self.i += 1; // opening quote
        let mut out = String::new();
        let start = self.i;
        let mut run_start = start;
        loop {
            let b = self.peek()?;
            match b {
                b'"' => {
                    out.push_str(std::str::from_utf8(&self.s[run_start..self.i]).ok()?);
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    out.push_str(std::str::from_utf8(&self.s[run_start..self.i]).ok()?);
                    self.i += 1;
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let u = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&u) {
                                // A surrogate pair; Go substitutes U+FFFD for a lone surrogate.
                                let save = self.i;
                                if self.s.get(self.i..self.i + 2) == Some(b"\\u") {
                                    self.i += 2;
                                    match self.hex4() {
                                        Some(l) if (0xDC00..0xE000).contains(&l) => char::from_u32(
                                            0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00),
                                        ),
                                        _ => {
                                            self.i = save;
                                            None
                                        }
                                    }
                                } else {
                                    None
                                }
                            } else {
                                char::from_u32(u)
                            };
                            out.push(c.unwrap_or('\u{fffd}'));
                        }
                        _ => return None,
                    }
                    run_start = self.i;
                }
                0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> &'static str {
        match parse_json_args(s) {
            JsonArgs::Strings(_) => "strings",
            JsonArgs::NotStrings => "not-strings",
            JsonArgs::Invalid => "invalid",
        }
    }

    #[test]
    fn go_json_acceptance() {
        assert_eq!(kind("[]"), "strings");
        assert_eq!(kind(" [ \"a\" , \"\\u00e9\\n\" ] "), "strings");
        assert_eq!(kind("[\"a\", 1]"), "not-strings");
        assert_eq!(
            kind("[\"a\", {\"k\": [null, true, -1.5e3]}]"),
            "not-strings"
        );
        assert_eq!(kind("[\"a\", 1e999]"), "invalid");
        assert_eq!(kind("[\"a\",]"), "invalid");
        assert_eq!(kind("[\"a\"] x"), "invalid");
        assert_eq!(kind("['a']"), "invalid");
        assert_eq!(kind("[\"a\tb\"]"), "invalid");
        assert_eq!(kind("[01]"), "invalid");
        match parse_json_args("[\"\\ud83d\\ude00\", \"\\ud800\"]") {
            JsonArgs::Strings(v) => {
                assert_eq!(v, vec!["\u{1f600}".to_string(), "\u{fffd}".to_string()])
            }
            _ => panic!("surrogates"),
        }
    }
}
