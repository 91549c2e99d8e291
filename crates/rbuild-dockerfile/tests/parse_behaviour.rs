//! Behaviour of the parser on inputs the BuildKit data does not cover: line endings, the BOM,
//! directives, ONBUILD triggers, warnings, spans, and hostile input.

use rbuild_dockerfile::{
    expand_word, parse, parse_syntax, parse_trigger, CommandForm, CopySource, Instruction, Span,
};

#[test]
fn crlf_and_bom_are_accepted() {
    let df =
        parse("\u{feff}FROM a\r\nRUN echo \\\r\n  hi\r\nCOPY <<EOF /x\r\nbody\r\nEOF\r\n").unwrap();
    let insts = &df.stages[0].instructions;
    assert!(
        matches!(&insts[0].node, Instruction::Run(r) if r.command == CommandForm::Shell("echo   hi".into()))
    );
    let Instruction::Copy(c) = &insts[1].node else {
        panic!("not COPY")
    };
    assert!(matches!(&c.sources[0], CopySource::Heredoc(h) if h.content == "body\r\n"));
}

#[test]
fn backtick_escape_continues_lines_and_keeps_backslashes() {
    let df = parse("# escape=`\nFROM a\nRUN dir c:\\ `\n  && echo done\n").unwrap();
    assert_eq!(df.directives.escape, '`');
    let Instruction::Run(r) = &df.stages[0].instructions[0].node else {
        panic!()
    };
    assert_eq!(
        r.command,
        CommandForm::Shell("dir c:\\   && echo done".into())
    );
}

#[test]
fn directives_only_at_the_top() {
    let df = parse("# check=skip=all\n# syntax=docker/dockerfile:1\nFROM a\n").unwrap();
    assert_eq!(df.directives.check.as_deref(), Some("skip=all"));
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert!(df.warnings.is_empty());
    let df = parse("# hello\n# escape=`\nFROM a\n").unwrap();
    assert_eq!(df.directives.escape, '\\');
    let df = parse("\n# escape=`\nFROM a\n").unwrap();
    assert_eq!(df.directives.escape, '\\');
}

#[test]
fn foreign_syntax_frontend_is_a_warning() {
    let df = parse("# syntax=example.com/my/frontend:2\nFROM a\n").unwrap();
    assert_eq!(df.warnings.len(), 1);
    assert_eq!(df.warnings[0].rule, "UnsupportedSyntax");
    assert_eq!(df.warnings[0].span, Span::new(1, 1, 1));
}

#[test]
fn meta_args_and_stage_indices() {
    let df = parse("ARG A=1 B\nARG C\nFROM x AS one\nARG A\nFROM one\n").unwrap();
    assert_eq!(df.meta_args.len(), 2);
    assert_eq!(df.meta_args[0].node.args[1].name, "B");
    assert_eq!(df.stages.len(), 2);
    assert_eq!(df.stages[1].index, 1);
    assert_eq!(df.stages[1].from.image, "one");
    assert_eq!(df.stages[0].instructions.len(), 1);
}

#[test]
fn spans_cover_continuations_and_heredocs_with_columns() {
    let df = parse("FROM a\n\n   RUN a \\\n b\nCOPY <<X /y\n1\n2\nX\nUSER u\n").unwrap();
    let spans: Vec<Span> = df.stages[0].instructions.iter().map(|i| i.span).collect();
    assert_eq!(
        spans,
        vec![Span::new(3, 4, 4), Span::new(5, 1, 8), Span::new(9, 1, 9)]
    );
}

#[test]
fn onbuild_trigger_round_trip() {
    let df = parse("FROM a\nONBUILD COPY <<EOF /etc/x\nhello\nEOF\n").unwrap();
    let Instruction::Onbuild(o) = &df.stages[0].instructions[0].node else {
        panic!()
    };
    assert_eq!(o.expression, "COPY <<EOF /etc/x\nhello\nEOF");
    let t = parse_trigger(&o.expression).unwrap();
    assert_eq!(&t.node, o.instruction.as_ref());
    assert_eq!(
        parse_trigger("RUN a\nRUN b").unwrap_err().message,
        "onbuild trigger should be a single expression"
    );
    assert_eq!(
        parse_trigger("FROM x").unwrap_err().message,
        "FROM isn't allowed as an ONBUILD trigger"
    );
}

#[test]
fn syntax_dump_is_buildkit_format() {
    let t = parse_syntax("FROM a\nCOPY --link [\"a b\", \"c\"]\nONBUILD RUN [\"x\"]\nfoo bar\n")
        .unwrap();
    assert_eq!(
        t.dump(),
        "(from \"a\")\n(copy [\"--link\"] \"a b\" \"c\")\n(onbuild (run \"x\"))\n(foo)\n"
    );
}

#[test]
fn empty_continuation_at_eof_is_accepted_like_buildkit() {
    let df = parse("FROM a\nRUN \\\n").unwrap();
    let Instruction::Run(r) = &df.stages[0].instructions[0].node else {
        panic!()
    };
    assert_eq!(r.command, CommandForm::Shell(String::new()));
    assert!(df.warnings.iter().any(|w| w.rule == "EmptyCommand"));
}

#[test]
fn over_long_line_is_rejected() {
    let text = format!("FROM a\nRUN {}\n", "x".repeat(70_000));
    assert_eq!(
        parse(&text).unwrap_err().to_string(),
        "2:1: dockerfile line greater than max allowed size of 65535"
    );
}

#[test]
fn hostile_input_stays_bounded() {
    let deep = "${a:-".repeat(100_000);
    assert!(expand_word(&deep, &Vec::new(), '\\').is_err());
    let onbuild = format!("FROM a\n{}RUN x\n", "ONBUILD ".repeat(5_000));
    assert!(parse(&onbuild).is_err());
    let quotes = format!("FROM a\nENV A={}\n", "\"".repeat(50_000));
    assert!(parse(&quotes).is_ok());
    let nested_json = format!("FROM a\nCMD [{}\n", "[".repeat(60_000));
    assert!(parse(&nested_json).is_ok());
    let stars = format!("FROM a\nARG V=${{X%{}}}\n", "*a".repeat(3_000));
    assert!(parse(&stars).is_ok());
}

/// The cases of BuildKit's `TestParseExtractsHeredoc`: which lines carry which heredocs.
#[test]
fn heredoc_extraction_matches_buildkit() {
    let text = "FROM alpine:3.6\n\nENV NAME=me\n\nRUN ls\n\nUSER <<INVALID\nINVALID\n\n\
RUN <<EMPTY\nEMPTY\n\nRUN 3<<EMPTY2\nEMPTY2\n\nRUN \"<<NOHEREDOC\"\n\n\
RUN <<INDENT\n\tfoo\n\tbar\nINDENT\n\nRUN <<-UNINDENT\n\tbaz\n\tquux\nUNINDENT\n\n\
RUN <<-UNINDENT2\n\tbaz\n\tquux\n\tUNINDENT2\n\nRUN <<-EXPAND\n\texpand $NAME\nEXPAND\n\n\
RUN <<-'NOEXPAND'\n\tdon't expand $NAME\nNOEXPAND\n\n\
RUN <<COPY\necho hello world\necho foo bar\nCOPY\n\n\
RUN <<COMMENT\n# internal comment\necho hello world\necho foo bar # trailing comment\nCOMMENT\n\n\
RUN --mount=type=cache,target=/foo <<MOUNT\necho hello\nMOUNT\n\n\
COPY <<FILE1 <<FILE2 /dest\ncontent 1\nFILE1\ncontent 2\nFILE2\n\n\
COPY <<EOF /quotes\n\"foo\"\n'bar'\nEOF\n\nCOPY <<X <<Y /dest\nY\nX\nX\nY\n\n\
RUN <<COMPLEX python3\nprint('hello world')\nCOMPLEX\n\nCOPY <<file.txt /dest\nhello world\nfile.txt\n\n\
RUN <<eo'f'\necho foo\neof\n\nRUN <<eo\\'f\necho foo\neo'f\n\nRUN <<'e'o\\'f\necho foo\neo'f\n\n\
RUN <<'one two'\necho bar\none two\n\nRUN <<$EOF\n$EOF\n\nRUN <<  EOF\nEOF\n\nRUN <<  EOF  > foo\nEOF\n\t";
    let tree = parse_syntax(text).unwrap();
    // (name, content, expand, chomp, fd) per node after FROM.
    type Doc = (&'static str, &'static str, bool, bool, u32);
    let expected: Vec<Vec<Doc>> = vec![
        vec![],
        vec![],
        vec![],
        vec![],
        vec![("EMPTY", "", true, false, 0)],
        vec![("EMPTY2", "", true, false, 3)],
        vec![],
        vec![("INDENT", "\tfoo\n\tbar\n", true, false, 0)],
        vec![("UNINDENT", "\tbaz\n\tquux\n", true, true, 0)],
        vec![("UNINDENT2", "\tbaz\n\tquux\n", true, true, 0)],
        vec![("EXPAND", "\texpand $NAME\n", true, true, 0)],
        vec![("NOEXPAND", "\tdon't expand $NAME\n", false, true, 0)],
        vec![("COPY", "echo hello world\necho foo bar\n", true, false, 0)],
        vec![(
            "COMMENT",
            "# internal comment\necho hello world\necho foo bar # trailing comment\n",
            true,
            false,
            0,
        )],
        vec![("MOUNT", "echo hello\n", true, false, 0)],
        vec![
            ("FILE1", "content 1\n", true, false, 0),
            ("FILE2", "content 2\n", true, false, 0),
        ],
        vec![("EOF", "\"foo\"\n'bar'\n", true, false, 0)],
        vec![("X", "Y\n", true, false, 0), ("Y", "X\n", true, false, 0)],
        vec![("COMPLEX", "print('hello world')\n", true, false, 0)],
        vec![("file.txt", "hello world\n", true, false, 0)],
        vec![("eof", "echo foo\n", false, false, 0)],
        vec![("eo'f", "echo foo\n", true, false, 0)],
        vec![("eo'f", "echo foo\n", false, false, 0)],
        vec![("one two", "echo bar\n", false, false, 0)],
        vec![("$EOF", "", true, false, 0)],
        vec![("EOF", "", true, false, 0)],
        vec![("EOF", "", true, false, 0)],
    ];
    assert_eq!(tree.nodes.len(), expected.len() + 1);
    for (i, want) in expected.iter().enumerate() {
        let node = &tree.nodes[i + 1];
        let got: Vec<(String, String, bool, bool, u32)> = node
            .heredocs
            .iter()
            .map(|h| (h.name.clone(), h.content.clone(), h.expand, h.chomp, h.fd))
            .collect();
        let want: Vec<(String, String, bool, bool, u32)> = want
            .iter()
            .map(|&(n, c, e, ch, fd)| (n.to_string(), c.to_string(), e, ch, fd))
            .collect();
        assert_eq!(got, want, "node {} ({})", i + 1, node.original);
    }
}

/// BuildKit's argument-count messages (`instructions/parse_test.go`).
#[test]
fn argument_count_messages() {
    let err = |body: &str| parse(&format!("FROM a\n{body}\n")).unwrap_err().message;
    for cmd in ["MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"] {
        assert_eq!(err(cmd), format!("{cmd} requires exactly one argument"));
    }
    for cmd in [
        "ENV",
        "LABEL",
        "ONBUILD",
        "HEALTHCHECK",
        "EXPOSE",
        "VOLUME",
        "ARG",
        "SHELL",
    ] {
        assert_eq!(err(cmd), format!("{cmd} requires at least one argument"));
    }
    for cmd in ["ADD", "COPY"] {
        assert_eq!(
            err(&format!("{cmd} arg1")),
            format!("{cmd} requires at least two arguments, but only one was provided. Destination could not be determined")
        );
    }
    assert_eq!(
        err("MAINTAINER --boo joe@example.com"),
        "unknown flag: --boo"
    );
    assert_eq!(
        err("foo bar"),
        "unknown instruction: foo (did you mean from?)"
    );
    assert_eq!(
        err("FOO bar"),
        "unknown instruction: FOO (did you mean FROM?)"
    );
    assert_eq!(err("XYZZY bar"), "unknown instruction: XYZZY");
    assert_eq!(err("COPY\t\n\t\tquux \\\n      bar"), "COPY requires at least two arguments, but only one was provided. Destination could not be determined");
}
