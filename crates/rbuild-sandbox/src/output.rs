//! Splitting a step's output into lines for the caller's callback.

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The step's stdout.
    Stdout,
    /// The step's stderr.
    Stderr,
}

/// One line of output (without its `\n`), as bytes: steps may print anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLine<'a> {
    /// The stream.
    pub stream: Stream,
    /// The line, without the trailing newline. A line longer than [`MAX_LINE`] is cut in
    /// pieces, and the last piece of a stream may lack a newline.
    pub bytes: &'a [u8],
}

/// Longest piece handed out at once, so a step printing without newlines cannot use unbounded
/// memory.
pub const MAX_LINE: usize = 64 * 1024;

/// Accumulates bytes and hands out complete lines.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; calls `each` for every complete line.
    pub(crate) fn push(&mut self, mut data: &[u8], each: &mut dyn FnMut(&[u8])) {
        while let Some(nl) = data.iter().position(|b| *b == b'\n') {
            if self.pending.is_empty() {
                each(&data[..nl]);
            } else {
                self.pending.extend_from_slice(&data[..nl]);
                each(&self.pending);
                self.pending.clear();
            }
            data = &data[nl + 1..];
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() >= MAX_LINE {
            let rest = self.pending.split_off(MAX_LINE);
            each(&self.pending);
            self.pending = rest;
        }
    }

    /// End of stream: hands out the unterminated remainder, if any.
    pub(crate) fn finish(&mut self, each: &mut dyn FnMut(&[u8])) {
        if !self.pending.is_empty() {
            each(&self.pending);
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        for c in chunks {
            s.push(c, &mut |l| out.push(l.to_vec()));
        }
        s.finish(&mut |l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_across_chunks_and_a_last_partial_line() {
        let got = split(&[b"a\nb", b"c\n\nd", b"e"]);
        assert_eq!(
            got,
            vec![b"a".to_vec(), b"bc".to_vec(), b"".to_vec(), b"de".to_vec()]
        );
    }

    #[test]
    fn long_lines_are_cut() {
        let big = vec![b'x'; MAX_LINE * 2 + 3];
        let got = split(&[&big]);
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![MAX_LINE, MAX_LINE, 3]
        );
    }
}
