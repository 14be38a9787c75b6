//! `loadstar.example.toml` must stay loadable and complete: it documents every key.
#![allow(clippy::unwrap_used)]

use loadstar_core::config::Config;
use std::path::Path;

fn example_path() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../loadstar.example.toml"
    ))
}

#[test]
fn the_example_config_loads_and_equals_the_defaults() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let from_file: Config = toml::from_str(&text).unwrap();
    let defaults = Config::default();
    assert_eq!(
        toml::to_string(&from_file).unwrap(),
        toml::to_string(&defaults).unwrap()
    );
}

#[test]
fn the_example_config_names_every_key() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let defaults: toml::Value = toml::Value::try_from(Config::default()).unwrap();
    let mut missing = Vec::new();
    for (section, value) in defaults.as_table().unwrap() {
        match value.as_table() {
            Some(keys) => {
                assert!(
                    text.contains(&format!("[{section}]")),
                    "missing [{section}]"
                );
                for key in keys.keys() {
                    if !text.contains(&format!("\n{key} = ")) {
                        missing.push(format!("{section}.{key}"));
                    }
                }
            }
            None if !text.contains(&format!("\n{section} = ")) => missing.push(section.clone()),
            None => {}
        }
    }
    assert!(missing.is_empty(), "undocumented keys: {missing:?}");
}
