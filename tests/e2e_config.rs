//! A bad callconsent.conf is refused with file, line, key and rule; Asterisk keeps running.
mod harness;

use harness::*;

fn loaded(pbx: &Pbx) -> bool {
    let out = pbx.rx("module show like res_callconsent");
    out.contains("Running") && !out.contains("Not Running")
}

#[test]
fn good_configuration_loads_and_registers_the_application() {
    let mut pbx = Pbx::builder("good")
        .file("callconsent.conf", &consent_conf(&profile("sales", 20, "")))
        .start();
    assert!(loaded(&pbx), "{}", pbx.logs());
    assert!(pbx.rx("core show applications like CallConsent").contains("CallConsent"));
    assert!(pbx.rx("manager show commands").contains("CallConsentPause"));
    // Unloading joins the module's threads and leaves Asterisk running.
    let out = pbx.rx("module unload res_callconsent.so");
    assert!(out.contains("Unloaded res_callconsent.so"), "{out}");
    assert!(!loaded(&pbx));
    assert!(!pbx.rx("core show applications like CallConsent").contains("CallConsent:"));
    pbx.assert_alive();
}

#[test]
fn missing_file_is_refused() {
    let mut pbx = Pbx::builder("missing").start();
    assert!(!loaded(&pbx));
    assert!(pbx.messages().contains("callconsent.conf: file not found"), "{}", pbx.logs());
    pbx.assert_alive();
}

#[test]
fn bad_configurations_are_refused_and_asterisk_keeps_running() {
    let good = profile("sales", 20, "");
    let cases: Vec<(String, &str)> = vec![
        (
            good.replace("info_key = 0", "info_key = 0\ncolour = blue"),
            "[sales] colour: unknown key",
        ),
        (
            good.replace("optout_key = 9", "optout_key = 99"),
            "[sales] optout_key: must be one DTMF key",
        ),
        (
            good.replace("record_share = 20", "record_share = 150"),
            "[sales] record_share: must be a whole percentage from 0 to 100",
        ),
        (
            good.replace("record_share = 20", "record_share = 50"),
            "[sales] record_share: 50 % is more than 30 %: set legal_basis",
        ),
        (
            good.replace(&sound("full-notice", 600, 2.0), "/var/tmp/cc-sounds/no-such-sound"),
            "[sales] full_notice: sound \"/var/tmp/cc-sounds/no-such-sound\" not found",
        ),
        (
            good.replace("info_key = 0", "info_key = 9"),
            "[sales] info_key: must differ from optout_key",
        ),
        (
            good.replace(
                "info_key = 0",
                "info_key = 0\nnever_record = agent:PJSIP/rep-*, caller:_01[45",
            ),
            "[sales] never_record: pattern _01[45: unclosed [",
        ),
    ];
    for (text, expected) in cases {
        let conf = consent_conf(&text);
        let key = expected.split("] ").nth(1).and_then(|k| k.split(':').next()).unwrap();
        let line =
            conf.lines().position(|l| l.starts_with(&format!("{key} ="))).map(|i| i + 1).unwrap();
        let mut pbx = Pbx::builder("bad").file("callconsent.conf", &conf).start();
        assert!(!loaded(&pbx), "a bad file was accepted: {expected}");
        let want = format!("/etc/callconsent.conf:{line}: {expected}");
        assert!(pbx.messages().contains(&want), "expected {want:?} in:\n{}", pbx.logs());
        pbx.assert_alive();
        pbx.originate("Local/s@nowhere", "s@nowhere");
        pbx.assert_alive();
    }
}

#[test]
fn retention_over_six_months_is_refused() {
    let conf = consent_conf(&profile("sales", 20, ""))
        .replace("[general]\n", "[general]\nretention_days = 400\n");
    let mut pbx = Pbx::builder("retention400").file("callconsent.conf", &conf).start();
    assert!(!loaded(&pbx));
    assert!(pbx.messages().contains("callconsent.conf:2: [general] retention_days: must be a whole number from 1 to 183 (R7"), "{}", pbx.logs());
    pbx.assert_alive();
}
