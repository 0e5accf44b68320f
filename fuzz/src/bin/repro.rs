//! Runs a target's harness on files, without AFL: `repro TARGET FILE...`. A panic is the bug.
fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("usage: repro config|call|policy|audit FILE...");
    let run: fn(&[u8]) = match target.as_str() {
        "config" => callconsent_fuzz::config::run,
        "call" => callconsent_fuzz::call::run,
        "policy" => callconsent_fuzz::policy::run,
        "audit" => callconsent_fuzz::audit::run,
        t => panic!("unknown target {t}"),
    };
    for f in args {
        let data = std::fs::read(&f).unwrap_or_else(|e| panic!("{f}: {e}"));
        let t = std::time::Instant::now();
        run(&data);
        println!("{f}: ok ({} bytes, {:?})", data.len(), t.elapsed());
    }
}
