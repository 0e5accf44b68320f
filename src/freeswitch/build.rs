//! Builds the C shim against the FreeSWITCH 1.10 headers and binds the shim's own header.
//!
//! Headers are found, in order, from `FREESWITCH_INCLUDE_DIR` (the directory holding `switch.h`),
//! `pkg-config --cflags freeswitch` (a FreeSWITCH installed with its .pc file), then the
//! project's sandbox (`$CALLCONSENT_SANDBOX/freeswitch/include/freeswitch`, default `.sandbox`).
use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    for var in ["FREESWITCH_INCLUDE_DIR", "CALLCONSENT_SANDBOX", "PKG_CONFIG_PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let project = manifest.join("../..");
    let shim = project.join("c-shim/freeswitch");
    println!("cargo:rerun-if-changed={}", shim.display());
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    let sandbox = env::var_os("CALLCONSENT_SANDBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| project.join(".sandbox"));
    let mut candidates = Vec::new();
    if let Some(dir) = env::var_os("FREESWITCH_INCLUDE_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    if let Ok(o) = Command::new("pkg-config").args(["--cflags-only-I", "freeswitch"]).output() {
        if o.status.success() {
            for flag in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                if let Some(d) = flag.strip_prefix("-I") {
                    candidates.push(PathBuf::from(d));
                }
            }
        }
    }
    candidates.push(sandbox.join("freeswitch/include/freeswitch"));
    let Some(include) = candidates.iter().find(|d| d.join("switch.h").is_file()) else {
        panic!(
            "callconsent: FreeSWITCH headers not found (looked for switch.h in {}). \
             Set FREESWITCH_INCLUDE_DIR to the directory holding switch.h, make `pkg-config freeswitch` work, \
             or run scripts/sandbox-freeswitch.sh to build the project's FreeSWITCH 1.10.",
            candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    };
    let include = fs::canonicalize(include).unwrap_or_else(|_| include.clone());
    println!("cargo:rerun-if-changed={}", include.join("switch_types.h").display());

    // FreeSWITCH 1.10 loads modules of API version 5; the table in lib.rs says 5.
    let types = fs::read_to_string(include.join("switch_types.h")).unwrap_or_default();
    let api = types
        .lines()
        .find_map(|l| l.trim().strip_prefix("#define SWITCH_API_VERSION"))
        .and_then(|v| v.trim().parse::<u32>().ok());
    if api != Some(5) {
        panic!("callconsent: {} declares module API version {api:?}; mod_callconsent supports FreeSWITCH 1.10 (API version 5)", include.join("switch_types.h").display());
    }

    cc::Build::new()
        .file(shim.join("shim.c"))
        .include(&include)
        .include(&shim)
        .flag("-fPIC")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(true)
        .cargo_metadata(false)
        .compile("ccfsshim");
    // The shim goes whole into the FreeSWITCH module only: a test build of this crate (cargo
    // build --all-targets) links no switch_* symbol.
    let lib = out.join("libccfsshim.a");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--whole-archive,{},--no-whole-archive",
        lib.display()
    );

    let bindings = bindgen::Builder::default()
        .header(shim.join("shim.h").display().to_string())
        .allowlist_file(".*/shim\\.h")
        .generate_comments(false)
        .layout_tests(false)
        .generate()
        .expect("bindgen on c-shim/freeswitch/shim.h (needs libclang-dev)");
    bindings.write_to_file(out.join("shim.rs")).expect("write shim bindings");
}
