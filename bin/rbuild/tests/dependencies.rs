//! DESIGN.md §2: the binary depends on the `rbuild` library only, never on its inner crates.

#[test]
fn binary_depends_on_the_rbuild_library_only() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("Cargo.toml");
    let mut section = String::new();
    let mut inner = Vec::new();
    let mut has_rbuild = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section != "[dependencies]" {
            continue;
        }
        let name = line.split(['=', ' ']).next().unwrap_or("");
        if name == "rbuild" {
            has_rbuild = true;
        } else if name.starts_with("rbuild") {
            inner.push(name.to_string());
        }
    }
    assert!(has_rbuild, "bin/rbuild must depend on the rbuild library");
    assert!(
        inner.is_empty(),
        "bin/rbuild depends on inner crates {inner:?}: go through `rbuild`"
    );
}
