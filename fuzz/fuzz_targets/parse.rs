//! Fuzz target: the Dockerfile parser (both passes, the BuildKit dump) and word expansion of
//! every instruction, on arbitrary UTF-8. Must never panic or hang.
//!
//! Run: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run parse -- -max_total_time=60`

#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_dockerfile::{expand_word, expand_words, parse, parse_syntax, parse_trigger, Instruction};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: Vec<(String, String)> = vec![
        ("A".to_string(), "a b".to_string()),
        ("EMPTY".to_string(), String::new()),
        ("PATH".to_string(), "/usr/local/bin:/usr/bin".to_string()),
        ("PAT".to_string(), "*?\\".to_string()),
    ];
    if let Ok(tree) = parse_syntax(text) {
        let _ = tree.dump();
    }
    if let Ok(df) = parse(text) {
        let escape = df.directives.escape;
        for arg in &df.meta_args {
            for decl in &arg.node.args {
                let _ = decl.expand_default(&env, escape);
            }
        }
        for stage in &df.stages {
            let _ = stage.from.expand(&env, escape);
            for inst in &stage.instructions {
                let _ = inst.node.expand(&env, escape);
                if let Instruction::Onbuild(o) = &inst.node {
                    if let Ok(trigger) = parse_trigger(&o.expression) {
                        let _ = trigger.node.expand(&env, escape);
                    }
                }
            }
        }
    }
    let _ = expand_word(text, &env, '\\');
    let _ = expand_words(text, &env, '`');
});
