//! The FFI boundary is what the architecture says: every C->Rust entry is written with the
//! guard's `entry!` macro, the shim's header and the built module agree on them, and the
//! compiler-unchecked code stays in the FFI modules.
mod harness;

use std::path::Path;
use std::process::Command;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read a source directory").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `cc_rs_*` functions a shim's header declares (`asterisk` or `freeswitch`).
fn declared_by(pbx: &str) -> Vec<String> {
    let h = std::fs::read_to_string(harness::project_dir().join(format!("c-shim/{pbx}/shim.h")))
        .expect("read shim.h");
    let mut v: Vec<String> = h
        .lines()
        .filter(|l| !l.trim_start().starts_with('/') && !l.trim_start().starts_with('*'))
        .filter_map(|l| {
            l.split_once("cc_rs_").map(|(_, rest)| {
                format!(
                    "cc_rs_{}",
                    rest.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                )
            })
        })
        .filter(|n| n.len() > 6)
        .collect();
    v.sort();
    v.dedup();
    v
}

fn declared() -> Vec<String> {
    declared_by("asterisk")
}

#[test]
fn no_entry_is_written_by_hand() {
    let mut files = vec![];
    rust_files(&harness::project_dir().join("src"), &mut files);
    rust_files(&harness::project_dir().join("crates"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read a source file");
        let guard = f.ends_with("crates/guard/src/lib.rs");
        // The one exported datum that is no entry: FreeSWITCH's module table (a static).
        let table = f.ends_with("src/freeswitch/lib.rs");
        for (i, line) in text.lines().enumerate() {
            let hand_made = (line.contains("#[no_mangle]") && !table)
                || (line.contains("extern \"C\" fn ") && line.contains('{'));
            assert!(
                guard || !hand_made,
                "{}:{}: a C entry written by hand (use callconsent_guard::entry!): {line}",
                f.display(),
                i + 1
            );
        }
        // Code the compiler cannot check stays in the FFI modules (and each block says why).
        let ffi = guard || f.ends_with("src/ffi.rs") || f.ends_with("src/freeswitch/ffi.rs");
        // Rust's unsafe code, not the word in a string (a CSP's 'unsafe-inline').
        let unsafe_code = text.lines().any(|l| {
            ["unsafe {", "unsafe fn", "unsafe impl", "unsafe extern", "unsafe trait", "#[unsafe("]
                .iter()
                .any(|k| l.contains(k))
        });
        assert!(ffi || !unsafe_code, "{}: unsafe code outside the FFI modules", f.display());
        if ffi {
            let lines: Vec<&str> = text.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                if l.contains("unsafe {") && !l.trim_start().starts_with("//") {
                    let said = lines[..i].iter().rev().take(3).any(|p| p.contains("SAFETY:"))
                        || l.contains("SAFETY:");
                    assert!(
                        said,
                        "{}:{}: an unsafe block without a SAFETY line",
                        f.display(),
                        i + 1
                    );
                }
            }
        }
    }
}

#[test]
fn the_module_exports_exactly_the_entries_the_shim_declares() {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(harness::module_path())
        .output()
        .expect("run nm");
    let mut exported: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .filter(|s| s.starts_with("cc_rs_"))
        .collect();
    exported.sort();
    let declared = declared();
    assert!(declared.len() >= 13, "{declared:?}");
    assert_eq!(exported, declared, "the module's cc_rs_* symbols and shim.h differ");
}

#[test]
fn the_freeswitch_module_exports_its_table_and_exactly_the_entries_its_shim_declares() {
    let module = harness::project_dir().join("target/release/libmod_callconsent.so");
    let out =
        Command::new("nm").args(["-D", "--defined-only"]).arg(&module).output().expect("run nm");
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    assert!(
        names.iter().any(|n| n == "mod_callconsent_module_interface"),
        "{} does not export the module table",
        module.display()
    );
    let mut exported: Vec<String> = names.into_iter().filter(|s| s.starts_with("cc_rs_")).collect();
    exported.sort();
    let declared = declared_by("freeswitch");
    assert!(declared.len() >= 11, "{declared:?}");
    assert_eq!(exported, declared, "the FreeSWITCH module's cc_rs_* symbols and its shim.h differ");
}
