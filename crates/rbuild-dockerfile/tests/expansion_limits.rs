//! Issue 12, item 3: expansion output is capped per instruction, and error messages quote long
//! inputs cut short (issue 12, item 7).

use rbuild_dockerfile::{expand_word, parse, MAX_EXPANSION_BYTES};

fn env_of(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[test]
fn doubling_env_stops_at_the_limit_naming_the_instruction() {
    // `ENV a1=$a0$a0` … each doubling: the instruction that passes 1 MiB is refused.
    let half = "x".repeat(MAX_EXPANSION_BYTES / 2 + 1);
    let env = env_of(&[("a", half)]);
    let file = parse("FROM scratch\nENV b=$a$a\n").unwrap();
    let env_step = &file.stages[0].instructions[0];
    let e = env_step.node.expand(&env, '\\').unwrap_err();
    assert_eq!(e.message, "ENV expands to more than 1 MiB");
    assert_eq!(
        e.at(env_step.span).render("Dockerfile"),
        "Dockerfile:2:1: ENV expands to more than 1 MiB"
    );
}

#[test]
fn the_limit_counts_every_word_of_the_instruction() {
    // Each value alone is under the limit; together they are not.
    let third = "y".repeat(MAX_EXPANSION_BYTES / 3 + 1);
    let env = env_of(&[("v", third)]);
    let file = parse("FROM scratch\nLABEL a=$v b=$v c=$v\n").unwrap();
    let e = file.stages[0].instructions[0]
        .node
        .expand(&env, '\\')
        .unwrap_err();
    assert_eq!(e.message, "LABEL expands to more than 1 MiB");
}

#[test]
fn replace_all_cannot_multiply_past_the_limit() {
    // 64 Ki characters, each replaced by 64 KiB: 4 GiB if unbounded.
    let env = env_of(&[("v", "z".repeat(64 << 10)), ("r", "w".repeat(64 << 10))]);
    let file = parse("FROM scratch\nENV x=${v//z/$r}\n").unwrap();
    let e = file.stages[0].instructions[0]
        .node
        .expand(&env, '\\')
        .unwrap_err();
    assert_eq!(e.message, "ENV expands to more than 1 MiB");
}

#[test]
fn an_expansion_just_under_the_limit_is_kept_whole() {
    let value = "q".repeat(MAX_EXPANSION_BYTES - 1);
    let env = env_of(&[("v", value.clone())]);
    let (word, _) = expand_word("$v", &env, '\\').unwrap();
    assert_eq!(word, value);
}

#[test]
fn a_deeply_nested_word_gives_a_short_error_line() {
    let n = 10_000;
    let word = format!("{}x{}", "${a:-".repeat(n), "}".repeat(n));
    let e = expand_word(&word, &Vec::<(String, String)>::new(), '\\').unwrap_err();
    assert!(
        e.message.len() < 400,
        "{} bytes: {}",
        e.message.len(),
        e.message
    );
    assert!(
        e.message.starts_with("failed to process \"${a:-${a:-"),
        "{}",
        e.message
    );
    assert!(e.message.contains("…("), "{}", e.message);
    assert!(e.message.contains("more characters)"), "{}", e.message);
    assert!(
        e.message.ends_with("nested deeper than 256 levels"),
        "{}",
        e.message
    );
}
