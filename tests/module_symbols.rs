//! The built module exports only its entry points, and every Asterisk symbol it needs exists in
//! the sandbox's Asterisk (a cheap link check before any call is placed).
mod harness;

use std::process::Command;

use harness::*;

fn nm(args: &[&str], file: &std::path::Path) -> Vec<String> {
    let out = Command::new("nm").args(args).arg(file).output().expect("run nm (binutils)");
    assert!(out.status.success(), "nm failed on {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

#[test]
fn exports_only_its_entry_points() {
    let defined = nm(&["-D", "--defined-only"], &module_path());
    let stray: Vec<_> = defined.iter().filter(|s| !s.starts_with("cc_rs_")).collect();
    assert!(stray.is_empty(), "the module exports more than its entry points: {stray:?}");
    assert!(defined.iter().any(|s| s == "cc_rs_exec"));
}

#[test]
fn every_asterisk_symbol_resolves() {
    let needed: Vec<String> = nm(&["-D", "--undefined-only"], &module_path())
        .into_iter()
        .filter(|s| {
            s.starts_with("ast_")
                || s.starts_with("__ast_")
                || s.starts_with("astman_")
                || s.starts_with("pbx_")
                || s.starts_with("__ao2")
        })
        .collect();
    assert!(needed.iter().any(|s| s == "ast_start_mixmonitor"), "{needed:?}");
    let exported = nm(&["-D", "--defined-only"], &sandbox_root().join("usr/sbin/asterisk"));
    let missing: Vec<_> = needed.iter().filter(|s| !exported.contains(s)).collect();
    assert!(missing.is_empty(), "symbols the sandbox's asterisk does not export: {missing:?}");
}

#[test]
fn shim_keeps_the_module_info_constructor() {
    let out = Command::new("nm").arg(module_path()).output().expect("run nm");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("__internal_res_callconsent_self"),
        "the AST_MODULE_INFO object was not linked in"
    );
}
