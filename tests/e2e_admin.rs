//! The admin's experience (issue 6): the install command, Asterisk's own help, the CLI, the
//! CALLCONSENT() function, live reload mid-call, French prompts, the example dialplans.
mod harness;

use std::process::Command;
use std::time::Duration;

use harness::*;

fn install(args: &[&str]) -> std::process::Output {
    Command::new(project_dir().join("scripts/install.sh"))
        .args(args)
        .output()
        .expect("run scripts/install.sh")
}

#[test]
fn install_command_puts_module_docs_prompts_and_sample_into_asterisk() {
    let root = sandbox_root();
    let module = module_path();
    // Refusals first: no Asterisk at all, then an Asterisk without headers.
    let empty = std::env::temp_dir().join(format!("cc-noast-{}", std::process::id()));
    std::fs::create_dir_all(empty.join("etc/asterisk")).unwrap();
    let out = install(&["--root", empty.to_str().unwrap(), "--module", module.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("asterisk.conf is missing"), "{out:?}");
    std::fs::write(empty.join("etc/asterisk/asterisk.conf"), "[directories]\n").unwrap();
    let out = install(&["--root", empty.to_str().unwrap(), "--module", module.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("headers are missing"), "{out:?}");
    let _ = std::fs::remove_dir_all(&empty);

    // Install the shipped sample as a first install would; a second install keeps the admin's file.
    let conf = root.join("etc/asterisk/callconsent.conf");
    let _ = std::fs::remove_file(&conf);
    let out = install(&["--root", root.to_str().unwrap(), "--module", module.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "install failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let shipped = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{shipped}\n; edited by the admin\n")).unwrap();
    let out = install(&["--root", root.to_str().unwrap(), "--module", module.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept the existing"), "{out:?}");
    assert!(std::fs::read_to_string(&conf).unwrap().ends_with("; edited by the admin\n"));
    // Through the tree's own view (its sounds/en is an absolute symlink).
    let ls = |p: &str| {
        Command::new("chroot")
            .arg(&root)
            .args(["test", "-f", p])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    for f in [
        "/usr/lib/x86_64-linux-gnu/asterisk/modules/res_callconsent.so",
        "/etc/asterisk/callconsent.conf",
        "/usr/share/asterisk/documentation/thirdparty/res_callconsent-en_US.xml",
        "/usr/share/asterisk/sounds/en/callconsent/notice.wav",
        "/usr/share/asterisk/sounds/fr/callconsent/notice.wav",
        "/usr/share/asterisk/sounds/fr/callconsent/full-notice.wav",
        "/usr/share/asterisk/sounds/fr/callconsent/optout-confirm.wav",
    ] {
        assert!(ls(f), "{f} was not installed");
    }

    // The installed Asterisk: documentation in its own help, and each language's notice.
    let dialplan = "[test]\n\
        exten => fr,1,Answer()\n same => n,Set(CHANNEL(language)=fr)\n same => n,CallConsent(inbound)\n same => n,Hangup()\n\
        exten => en,1,Answer()\n same => n,Set(CHANNEL(language)=en)\n same => n,CallConsent(inbound)\n same => n,Hangup()\n\
        exten => dev,1,Wait(40)\n";
    let mut pbx = Pbx::builder("installed").installed().file("extensions.conf", dialplan).start();
    let app = pbx.rx("core show application CallConsent");
    assert!(app.contains("Tell the caller the call may be recorded"), "{app}");
    assert!(app.contains("CALLCONSENT_STATUS"), "{app}");
    assert!(pbx.rx("core show function CALLCONSENT").contains("consent state of the call"));
    assert!(pbx
        .rx("manager show command CallConsentPause")
        .contains("agent desktop's pause button"));
    assert!(
        !pbx.messages().contains("Couldn't find application CallConsent"),
        "the docs warning is still there"
    );
    pbx.originate("Local/fr@test", "dev@test");
    pbx.originate("Local/en@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(60));
    // Each channel was drawn, then told, the whole notice through, in its own language: Asterisk
    // played the installed callconsent/notice of the channel's language (checked by facts, the
    // audit lines and Asterisk's own log of what it played, never by timestamps).
    pbx.wait_event("notice_played", 2, Duration::from_secs(5));
    let audit = pbx.audit();
    let log = pbx.messages();
    for lang in ["fr", "en"] {
        let chan = format!("Local/{lang}@test");
        let of_chan =
            |v: &serde_json::Value| v["channel"].as_str().is_some_and(|c| c.starts_with(&chan));
        let drawn = audit
            .iter()
            .position(|v| (v["event"] == "selected" || v["event"] == "not_selected") && of_chan(v))
            .unwrap_or_else(|| panic!("no draw for {chan}: {audit:?}"));
        let told = audit
            .iter()
            .position(|v| v["event"] == "notice_played" && of_chan(v))
            .unwrap_or_else(|| panic!("no notice_played for {chan}: {audit:?}"));
        assert!(drawn < told, "{chan}: the notice before the draw: {audit:?}");
        assert_eq!(
            audit[told]["outcome"], "completed",
            "{chan} did not hear the whole notice: {}",
            audit[told]
        );
        assert_eq!(audit[told]["prompt"], "callconsent/notice", "{}", audit[told]);
        let played = log.lines().any(|l| {
            l.contains(&format!("<{chan}-"))
                && l.contains("Playing 'callconsent/notice.")
                && l.contains(&format!("(language '{lang}')"))
        });
        assert!(
            played,
            "Asterisk did not play callconsent/notice in {lang:?} on {chan}:\n{}",
            pbx.logs()
        );
    }
    // The installed prompts are two recordings of their own, not one file under two names.
    let wav_len = |lang: &str| -> f64 {
        let out = Command::new("chroot")
            .arg(&root)
            .args([
                "soxi",
                "-D",
                &format!("/usr/share/asterisk/sounds/{lang}/callconsent/notice.wav"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0.0)
    };
    let (fr_len, en_len) = (wav_len("fr"), wav_len("en"));
    assert!(
        (fr_len - en_len).abs() > 0.5,
        "the two notices should differ in length: {fr_len} {en_len}"
    );
    pbx.assert_alive();
    drop(pbx);

    let out = install(&["--root", root.to_str().unwrap(), "--uninstall"]);
    assert!(out.status.success());
    assert!(!ls("/usr/lib/x86_64-linux-gnu/asterisk/modules/res_callconsent.so"));
    assert!(ls("/etc/asterisk/callconsent.conf"), "the admin's configuration is kept");
}

#[test]
fn cli_function_and_reload_mid_call() {
    let conf = consent_conf(&profile("desk", 100, "start_tone = off"));
    // The agent presses *1 once the test has reloaded (the global RELOADED), not after a guessed delay.
    let dialplan = "[test]\nexten => in,1,Answer()\n same => n,CallConsent(desk)\n same => n,Dial(Local/agent@test)\n\
        exten => agent,1,Answer()\n same => n(wait),GotoIf($[\"${GLOBAL(RELOADED)}\" = \"yes\"]?go)\n same => n,Wait(0.2)\n same => n,Goto(wait)\n \
        same => n(go),SendDTMF(*1)\n same => n,Wait(0.5)\n same => n,NoOp(AGENTSTATE=${CALLCONSENT(state)})\n same => n,Wait(2)\n same => n,Hangup()\n\
        exten => dev,1,Wait(30)\n";
    let mut pbx = Pbx::builder("admin")
        .file("callconsent.conf", &conf)
        .file("extensions.conf", dialplan)
        .start();
    pbx.originate("Local/in@test", "dev@test");
    let started = pbx.wait_event("recording_started", 1, Duration::from_secs(10));
    let calls = wait_for(
        "callconsent show calls to list the recorded call and its agent",
        Duration::from_secs(5),
        || {
            let calls = pbx.rx("callconsent show calls");
            if calls.contains("Local/in@test-")
                && calls.contains("recording")
                && calls.contains("Local/agent@test-")
            {
                Ok(calls)
            } else {
                Err(calls)
            }
        },
    );
    assert!(
        calls.contains("Local/in@test-") && calls.contains("desk") && calls.contains("recording"),
        "{calls}"
    );
    assert!(calls.contains("Local/agent@test-"), "the agent column: {calls}");
    assert!(pbx.rx("callconsent show profiles").contains("desk"), "profiles");
    let chan = calls
        .lines()
        .find(|l| l.starts_with("Local/in@test-"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(pbx.rx(&format!("callconsent show call {chan}")).contains("State: recording"));
    let completion = pbx.rx("_command matchesarray \"callconsent show call \" \"\"");
    assert!(completion.contains(&chan), "tab completion does not offer {chan}: {completion}");

    // A new file mid-call: the call in progress keeps its profile (its *1 still pauses).
    pbx.write_conf(
        "callconsent.conf",
        &consent_conf(&format!(
            "{}\n{}",
            profile("desk", 100, "pause_code = *7"),
            profile("other", 10, "")
        )),
    );
    assert!(pbx.rx("callconsent reload").contains("configuration reloaded"));
    assert!(pbx.rx("callconsent show profiles").contains("other"));
    // A bad file is refused, with its reason, and the running configuration stays.
    pbx.write_conf("callconsent.conf", &consent_conf(&profile("desk", 100, "pause_code = 1")));
    pbx.rx("module reload res_callconsent.so");
    wait_until(
        "the refused reload's message and its reason in messages.log",
        Duration::from_secs(5),
        || {
            let m = pbx.messages();
            m.contains("reload refused, the running configuration stays")
                && m.contains("[desk] pause_code: must be 2 to 8 DTMF keys")
        },
    );
    assert!(
        pbx.messages().contains("reload refused, the running configuration stays"),
        "{}",
        pbx.logs()
    );
    assert!(pbx.messages().contains("[desk] pause_code: must be 2 to 8 DTMF keys"));
    assert!(
        pbx.rx("callconsent show profiles").contains("other"),
        "the good configuration must stay"
    );
    // Both reloads came mid-call, before the agent's *1: the pause below is the old profile's code at work.
    let events = pbx.events();
    assert!(
        !events.iter().any(|e| e == "paused" || e == "call_ended"),
        "the call must still be up and unpaused at the reload: {events:?}"
    );
    pbx.rx("dialplan set global RELOADED yes");
    pbx.wait_idle(Duration::from_secs(30));
    let paused = pbx.wait_event("paused", 1, Duration::from_secs(2));
    assert_eq!(paused[0]["profile"], "desk");
    assert_eq!(
        paused[0]["call"], started[0]["call"],
        "the pause belongs to the call that was up during the reload"
    );
    assert!(
        pbx.messages().contains("AGENTSTATE=paused"),
        "CALLCONSENT(state) on the agent's channel"
    );
    pbx.assert_alive();
}

#[test]
fn example_dialplans_load() {
    let conf = consent_conf(&format!(
        "{}\n{}",
        profile("inbound", 20, ""),
        profile("outbound", 20, "private_prefix = 8")
    ));
    let ext = std::fs::read_to_string(project_dir().join("dialplan/extensions.conf.sample"))
        .unwrap()
        + "\n#include extensions_custom.conf\n";
    let freepbx =
        std::fs::read_to_string(project_dir().join("dialplan/freepbx/extensions_custom.conf"))
            .unwrap();
    let features =
        std::fs::read_to_string(project_dir().join("dialplan/features.conf.sample")).unwrap();
    let mut pbx = Pbx::builder("examples")
        .file("callconsent.conf", &conf)
        .file("extensions.conf", &ext)
        .file("features.conf", &features)
        .file("extensions_custom.conf", &freepbx)
        .start();
    for (context, app) in [
        ("from-pstn", "CallConsent(inbound)"),
        ("from-pstn-direct", "b(callconsent-agent^s^1)"),
        ("from-agents", "U(sub-callconsent-outbound^${EXTEN})"),
        ("sub-callconsent-outbound", "CallConsent(outbound,${ARG1})"),
        ("callconsent-in", "CallConsent(inbound)"),
    ] {
        let d = pbx.rx(&format!("dialplan show {context}"));
        assert!(d.contains(app), "{context}: {d}");
    }
    assert!(pbx.rx("features show").contains("callconsent_pause"));
    assert!(
        !pbx.messages().contains("ERROR[") || !pbx.messages().contains("extensions.conf"),
        "{}",
        pbx.logs()
    );
    pbx.assert_alive();
}

/// What the admin reads on screen: ANSI colours removed, runs of whitespace (Asterisk wraps help
/// at 74 columns) made one space.
fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The keys `crates/core/src/config.rs` accepts in one kind of section (`GENERAL_KEYS`,
/// `ACCESS_KEYS`, `PROFILE_KEYS`), so the help cannot fall behind the parser.
fn keys_of(list: &str) -> Vec<String> {
    let src = std::fs::read_to_string(project_dir().join("crates/core/src/config.rs"))
        .expect("read config.rs");
    let start = src
        .find(&format!("const {list}: &[&str] = &["))
        .unwrap_or_else(|| panic!("{list} is not in config.rs"));
    let body = &src[start..];
    let body = &body[body.find("&[").unwrap() + 2..body.find("];").unwrap()];
    body.split('"').skip(1).step_by(2).map(str::to_string).collect()
}

#[test]
fn config_show_help_documents_callconsent_conf() {
    let mut pbx = Pbx::builder("cfghelp")
        .file("callconsent.conf", &consent_conf(&profile("desk", 20, "")))
        .start();
    assert!(
        pbx.rx("module show like res_callconsent").contains("res_callconsent.so"),
        "the module is loaded"
    );
    // Asterisk builds this help from the configInfo of doc/res_callconsent-en_US.xml at startup.
    let modules = pbx.rx("config show help");
    assert!(
        modules.lines().any(|l| l.trim() == "res_callconsent"),
        "res_callconsent is not among the modules with configuration help:\n{modules}"
    );
    let objects = pbx.rx("config show help res_callconsent");
    let listed = plain(&objects);
    assert!(listed.contains("Configuration option types for res_callconsent:"), "{objects}");
    for (object, synopsis) in [
        ("general", "The [general] section: where files go, retention, archives."),
        ("access", "The [access] section: who may reach recordings, how often."),
        ("console", "The [console] section: the DPO's and coaches' web console."),
        ("profile", "Any other section: a profile, named as in CallConsent(profile)."),
    ] {
        assert!(
            listed.contains(&format!("{object} -- {synopsis}")),
            "callconsent.conf's object {object} is not listed:\n{objects}"
        );
    }
    // Each object lists every key the parser accepts there.
    for (object, list) in [
        ("general", "GENERAL_KEYS"),
        ("access", "ACCESS_KEYS"),
        ("console", "CONSOLE_KEYS"),
        ("profile", "PROFILE_KEYS"),
    ] {
        let out = pbx.rx(&format!("config show help res_callconsent {object}"));
        let names: Vec<String> = plain(&out)
            .split(" -- ")
            .map(|s| s.rsplit(' ').next().unwrap_or("").to_string())
            .collect();
        for key in keys_of(list) {
            assert!(
                names.contains(&key),
                "[{object}] {key} is accepted by config.rs but not documented:\n{out}"
            );
        }
    }
    let store = plain(&pbx.rx("config show help res_callconsent general store"));
    assert!(
        store.contains("must not hold a password") && store.contains("share its secret"),
        "{store}"
    );
    let unavailable = plain(&pbx.rx("config show help res_callconsent profile store_unavailable"));
    assert!(unavailable.contains("privacy wins"), "{unavailable}");
    let profile = plain(&pbx.rx("config show help res_callconsent profile"));
    assert!(profile.contains("The section name is the profile's name"), "{profile}");

    // The new keys, in the detail the admin gets for one option.
    let encrypt_to = pbx.rx("config show help res_callconsent general encrypt_to");
    let text = plain(&encrypt_to);
    assert!(
        text.starts_with("-= Info about Config Option 'res_callconsent:general:encrypt_to' =-"),
        "{encrypt_to}"
    );
    assert!(
        text.contains("[Synopsis] Encrypt kept archives to these age X25519 recipients (age1...)."),
        "the synopsis of encrypt_to:\n{encrypt_to}"
    );
    assert!(
        text.contains("[Syntax] encrypt_to = [String] (Default: ) (Regex: False)"),
        "{encrypt_to}"
    );
    for fact in [
        "NAME.opus.age",
        "the PBX holds no identity",
        "archive = opus",
        "new files get the new list, files already kept keep theirs",
        "(R11)",
    ] {
        assert!(text.contains(fact), "encrypt_to's help does not say {fact:?}:\n{encrypt_to}");
    }
    let country = plain(&pbx.rx("config show help res_callconsent general default_country"));
    assert!(
        country.contains("ISO 3166")
            && country.contains("E.164")
            && country.contains("+33612345678"),
        "{country}"
    );
    let max = pbx.rx("config show help res_callconsent access max_listens_per_agent");
    let text = plain(&max);
    assert!(
        text.starts_with(
            "-= Info about Config Option 'res_callconsent:access:max_listens_per_agent' =-"
        ),
        "{max}"
    );
    assert!(
        text.contains("[Synopsis] Most listens of one agent's calls per period (0: no maximum)."),
        "the synopsis of max_listens_per_agent:\n{max}"
    );
    assert!(text.contains("max_listens_per_agent = [Unsigned Integer] (Default: 0)"), "{max}");
    assert!(text.contains("by anyone but the agent") && text.contains("(R6"), "{max}");
    let coach = plain(&pbx.rx("config show help res_callconsent access coach"));
    assert!(
        coach.contains("coach = NAME: AGENT[, AGENT...]") && coach.contains("PJSIP/anna"),
        "{coach}"
    );
    let cap = plain(&pbx.rx("config show help res_callconsent profile cap_period"));
    assert!(cap.contains("(Default: week)") && cap.contains("quarter"), "{cap}");
    let listen = plain(&pbx.rx("config show help res_callconsent access listen_period"));
    assert!(listen.contains("(Default: month)") && listen.contains("quarter"), "{listen}");
    // A key the file does not have is not invented.
    let none = plain(&pbx.rx("config show help res_callconsent general no_such_key"));
    assert!(none.contains("No option no_such_key found for res_callconsent:general"), "{none}");
    pbx.assert_alive();
}
