//! `include/felix.h` is generated from the sources by cbindgen and checked in; this test fails
//! when it is out of date. Regenerate with:
//!
//! ```sh
//! FELIX_REGEN_HEADER=1 cargo test -p felix-ffi --test header
//! ```

use std::path::PathBuf;

#[test]
fn header_is_up_to_date() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write(&mut generated);
    let path = crate_dir.join("../include/felix.h");
    if std::env::var_os("FELIX_REGEN_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write include/felix.h");
        return;
    }
    let current = std::fs::read(&path).unwrap_or_default();
    assert!(
        current == generated,
        "include/felix.h is out of date with ffi/src. Regenerate it with\n    \
         FELIX_REGEN_HEADER=1 cargo test -p felix-ffi --test header\nand commit the result."
    );
}
