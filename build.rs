//! Builds the C shim against the Asterisk headers and binds the shim's own header.
//!
//! Headers are found, in order, from `ASTERISK_INCLUDE_DIR` (the directory holding `asterisk.h`),
//! the project's sandbox (`$CALLCONSENT_SANDBOX/sid/usr/include`, default `.sandbox`), then
//! `/usr/include`. Only `asterisk.h` and `asterisk/` are put on the include path, through symlinks
//! in `OUT_DIR`: the sandbox's newer glibc headers must not shadow the host's.
use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    for var in ["ASTERISK_INCLUDE_DIR", "CALLCONSENT_SANDBOX"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=c-shim/asterisk");
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    let sandbox = env::var_os("CALLCONSENT_SANDBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join(".sandbox"));
    let mut candidates = Vec::new();
    if let Some(dir) = env::var_os("ASTERISK_INCLUDE_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    candidates.push(sandbox.join("sid/usr/include"));
    candidates.push(PathBuf::from("/usr/include"));
    let Some(include) = candidates.iter().find(|d| d.join("asterisk.h").is_file()) else {
        panic!(
            "callconsent: Asterisk headers not found (looked for asterisk.h in {}). \
             Set ASTERISK_INCLUDE_DIR to the directory holding asterisk.h, \
             or run scripts/sandbox.sh to provision the project's Asterisk 22.",
            candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    };
    // Relative paths are relative to where the user ran cargo; the symlinks need absolute ones.
    let include = fs::canonicalize(include).unwrap_or_else(|_| include.clone());
    println!("cargo:rerun-if-changed={}", include.join("asterisk.h").display());

    // A directory holding only the Asterisk headers.
    let only = out.join("asterisk-include");
    let _ = fs::remove_dir_all(&only);
    fs::create_dir_all(&only).expect("create OUT_DIR/asterisk-include");
    for name in ["asterisk.h", "asterisk"] {
        std::os::unix::fs::symlink(include.join(name), only.join(name))
            .expect("symlink Asterisk headers");
    }

    // The host version becomes cfg gates rather than guesses.
    println!("cargo::rustc-check-cfg=cfg(asterisk_framehook_v4)");
    let framehook = fs::read_to_string(include.join("asterisk/framehook.h")).unwrap_or_default();
    let version = framehook
        .lines()
        .find_map(|l| l.trim().strip_prefix("#define AST_FRAMEHOOK_INTERFACE_VERSION"))
        .and_then(|v| v.trim().parse::<u32>().ok());
    match version {
        Some(4) => println!("cargo:rustc-cfg=asterisk_framehook_v4"),
        other => panic!(
            "callconsent: {} declares framehook interface {:?}; this module supports Asterisk 22 (interface 4)",
            include.join("asterisk/framehook.h").display(),
            other
        ),
    }

    let shim = manifest.join("c-shim/asterisk");
    cc::Build::new()
        .file(shim.join("shim.c"))
        .include(&only)
        .include(&shim)
        .define("_GNU_SOURCE", None)
        .define("AST_MODULE", "\"res_callconsent\"")
        .define("AST_MODULE_SELF_SYM", "__internal_res_callconsent_self")
        .flag("-fPIC")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-old-style-declaration")
        .warnings(true)
        .cargo_metadata(false)
        .compile("ccshim");
    // The shim (with AST_MODULE_INFO's constructor) goes whole into the Asterisk module only;
    // tests and tools link the rlib, which must not need any ast_* symbol.
    let lib = out.join("libccshim.a");
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
        .expect("bindgen on c-shim/asterisk/shim.h (needs libclang-dev)");
    bindings.write_to_file(out.join("shim.rs")).expect("write shim bindings");
}
