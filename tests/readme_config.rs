//! The README's configuration table and `McpSessionLayerBuilder` agree: every public
//! builder method has a row, and every row names a method that exists. The table is
//! the one place a user reads the defaults, so a method added without a row (or a row
//! left behind by a removed method) fails here rather than misleading someone.

use std::collections::BTreeSet;

fn read(path: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::read_to_string(format!("{root}/{path}")).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The public methods of `impl McpSessionLayerBuilder { .. }`, `build` aside.
fn builder_methods() -> BTreeSet<String> {
    let source = read("src/layer/mod.rs");
    let start = source
        .find("\nimpl McpSessionLayerBuilder {")
        .expect("the builder's impl block");
    let body = &source[start..];
    let end = body.find("\n}\n").expect("the end of the impl block");
    body[..end]
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("pub fn "))
        .map(|rest| rest.split(['(', '<']).next().unwrap().to_owned())
        .filter(|name| name != "build")
        .collect()
}

/// The methods named in the first column of the README's configuration table.
fn table_methods() -> BTreeSet<String> {
    let readme = read("README.md");
    let start = readme.find("\n## Configuration\n").expect("a Configuration section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut names = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split('|').nth(1).unwrap();
        for code in first.split('`').skip(1).step_by(2) {
            if let Some((name, _)) = code.split_once('(') {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

#[test]
fn every_builder_method_has_a_row_and_every_row_a_method() {
    let methods = builder_methods();
    let rows = table_methods();
    assert!(methods.len() > 20, "the parser found the builder: {methods:?}");
    let missing: Vec<_> = methods.difference(&rows).collect();
    let stale: Vec<_> = rows.difference(&methods).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README configuration table out of date: methods without a row {missing:?}, rows without a method {stale:?}"
    );
}
