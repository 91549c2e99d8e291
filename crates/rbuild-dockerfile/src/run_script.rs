//! What a `RUN` executes once its heredocs are taken into account (BuildKit's `dispatchRun`).

use crate::model::{CommandForm, RunInstruction};
use crate::syntax::parse_heredoc_word;
use serde::{Deserialize, Serialize};

/// The process a `RUN` starts, before the stage's `SHELL` is prepended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunScript {
    /// Exec form: these arguments, as they are.
    Exec(Vec<String>),
    /// Shell form: `SHELL + [text]`. For `RUN <<EOF` this is the heredoc body (tabs removed
    /// for `<<-`, never expanded by the frontend); for a line with other words or several
    /// heredocs it is the line followed by each `\n<body><NAME>`, for the shell to interpret.
    Shell(String),
    /// `RUN <<EOF` whose body starts with `#!`: the body is written with mode 0755 to a
    /// read-only mount at `/dev/pipes/<name>` and run as `SHELL + ["/dev/pipes/<name>"]`.
    ShebangFile {
        /// The heredoc name (the file name under `/dev/pipes/`).
        name: String,
        /// The file content.
        content: String,
    },
}

impl RunInstruction {
    /// What BuildKit runs for this instruction (Linux targets).
    pub fn script(&self) -> RunScript {
        let text = match &self.command {
            CommandForm::Exec(args) => return RunScript::Exec(args.clone()),
            CommandForm::Shell(text) => text,
        };
        let Some(first) = self.heredocs.first() else {
            return RunScript::Shell(text.clone());
        };
        if matches!(parse_heredoc_word(text), Ok(Some(_))) {
            let content = first.chomped_content();
            if first.content.starts_with("#!") {
                return RunScript::ShebangFile {
                    name: first.name.clone(),
                    content,
                };
            }
            return RunScript::Shell(content);
        }
        let mut full = text.clone();
        for h in &self.heredocs {
            full.push('\n');
            full.push_str(&h.content);
            full.push_str(&h.name);
        }
        RunScript::Shell(full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, Instruction};

    fn run(text: &str) -> RunInstruction {
        let df = parse(&format!("FROM a\n{text}")).unwrap();
        match &df.stages[0].instructions[0].node {
            Instruction::Run(r) => r.clone(),
            other => panic!("not RUN: {other:?}"),
        }
    }

    #[test]
    fn scripts() {
        assert_eq!(
            run("RUN echo hi\n").script(),
            RunScript::Shell("echo hi".into())
        );
        assert_eq!(
            run("RUN [\"a\", \"b\"]\n").script(),
            RunScript::Exec(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            run("RUN <<-EOF\n\techo $X\n\tEOF\n").script(),
            RunScript::Shell("echo $X\n".into())
        );
        assert_eq!(
            run("RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n").script(),
            RunScript::ShebangFile {
                name: "EOF".into(),
                content: "#!/usr/bin/env python3\nprint(1)\n".into()
            }
        );
        assert_eq!(
            run("RUN <<A cat - <<B\na\nA\nb\nB\n").script(),
            RunScript::Shell("<<A cat - <<B\na\nA\nb\nB".into())
        );
    }
}
