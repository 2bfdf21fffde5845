//! `docs/limits.md` is the operator's table of bounds; the configuration structs are the
//! source of truth. This test fails when a setting is added without a row, or a default
//! changes without the page.

use felix_broker::BrokerConfig;

#[test]
fn every_bound_has_a_row_with_its_default() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/limits.md"))
        .expect("docs/limits.md");
    let cfg = toml::Value::try_from(BrokerConfig::default()).unwrap();
    let mut checked = 0;
    for table in [
        "limits",
        "stream_defaults",
        "cache_defaults",
        "group_defaults",
        "transport",
        "quotas",
        "audit",
        "storage",
    ] {
        let t = cfg[table].as_table().unwrap();
        // `quotas.tenants` holds the per-tenant overrides (a table, empty by default).
        for (key, value) in t.iter().filter(|(k, _)| *k != "tenants") {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{table}.{key}` |")))
                .unwrap_or_else(|| panic!("docs/limits.md has no row for {table}.{key}"));
            let default_cell = row.split('|').nth(2).unwrap_or("");
            let want = format!("`{value}`");
            assert!(
                default_cell.contains(&want),
                "docs/limits.md gives {table}.{key} the default {default_cell:?}, the code {want}"
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} settings checked");
}
