//! Agent controls on a real Asterisk (R8, R9, R10): feature codes from the agent's side, AMI
//! actions, auto-resume; the caller never hears a code and cannot use one.
mod harness;

use std::time::Duration;

use harness::*;

fn dialplan(agent_script: &str, devices: &str) -> String {
    format!(
        "[test]\nexten => in,1,Answer()\n same => n,CallConsent(agents)\n same => n,Dial(Local/agent@test)\n same => n,Hangup()\n\
         exten => agent,1,Answer()\n{agent_script}\n{devices}\n"
    )
}

fn start(name: &str, extra: &str, agent_script: &str, devices: &str) -> Pbx {
    let conf = consent_conf(&profile(
        "agents",
        100,
        &format!("start_tone = off\npause_tone = off\nresume_tone = off\n{extra}"),
    ));
    Pbx::builder(name)
        .file("callconsent.conf", &conf)
        .file("extensions.conf", &dialplan(agent_script, devices))
        .start()
}

fn digits_received(ami: &mut Ami, channel_prefix: &str) -> String {
    ami.events()
        .iter()
        .filter(|m| m.get("Event").map(String::as_str) == Some("DTMFEnd"))
        .filter(|m| m.get("Direction").map(String::as_str) == Some("Received"))
        .filter(|m| m.get("Channel").is_some_and(|c| c.starts_with(channel_prefix)))
        .filter_map(|m| m.get("Digit").cloned())
        .collect()
}

#[test]
fn paused_span_is_silent_and_the_caller_never_hears_the_codes() {
    let tone = sound("agent-880-2s", 880, 2.0);
    let agent = format!(
        " same => n,Playback({tone})\n same => n,SendDTMF(5)\n same => n,SendDTMF(*1)\n same => n,Playback({tone})\n \
         same => n,SendDTMF(*2)\n same => n,Playback({tone})\n same => n,Hangup()\n"
    );
    let mut pbx = start("pause", "", &agent, "exten => dev,1,Wait(30)\n");
    let mut ami = pbx.ami();
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(30));
    let kept = pbx.wait_event("recording_kept", 1, Duration::from_secs(5));
    assert_eq!(kept[0]["pauses"], 1);
    let paused = pbx.wait_event("paused", 1, Duration::from_secs(1));
    assert_eq!(
        (paused[0]["by"].as_str(), paused[0]["source"].as_str()),
        (Some("agent"), Some("keypad"))
    );
    pbx.wait_event("resumed", 1, Duration::from_secs(1));
    let file = pbx.host_path(kept[0]["file"].as_str().unwrap());
    let windows = silent_windows(&wav_samples(&file));
    let (start, len) = longest_run(&windows, true);
    assert!(len >= 90, "no silent paused span of at least 1.8 s: longest {len} windows at {start}");
    let before = &windows[..start];
    let after = &windows[start + len..];
    assert!(before.iter().filter(|s| !**s).count() >= 75, "too little audio before the pause");
    assert!(after.iter().filter(|s| !**s).count() >= 75, "too little audio after the resume");
    // The caller's phone got the 5, never the keys of a code.
    let heard = digits_received(&mut ami, "Local/in@test-");
    assert!(heard.contains('5'), "the 5 should pass: {heard:?}");
    assert!(
        !heard.contains('*') && !heard.contains('1') && !heard.contains('2'),
        "the caller heard a code: {heard:?}"
    );
    pbx.assert_alive();
}

#[test]
fn delete_code_leaves_no_file() {
    let tone = sound("agent-880-2s", 880, 2.0);
    let agent = format!(" same => n,Playback({tone})\n same => n,SendDTMF(*3)\n same => n,Playback({tone})\n same => n,Hangup()\n");
    let mut pbx = start("delete", "record_legs = yes", &agent, "exten => dev,1,Wait(30)\n");
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(30));
    let del = pbx.wait_event("recording_deleted", 1, Duration::from_secs(5));
    assert_eq!(del[0]["by"], "agent");
    assert_eq!(del[0]["files"].as_array().map(Vec::len), Some(3), "mixed and both legs: {del:?}");
    // The later looks for the call's files (after hangup) are done once the call has settled.
    let settled = pbx.wait_settled(1, Duration::from_secs(15));
    assert_eq!(settled[0]["call"], del[0]["call"]);
    assert_eq!(pbx.wait_event("call_ended", 1, Duration::from_secs(1))[0]["outcome"], "deleted");
    assert_eq!(pbx.spool_files(), Vec::<std::path::PathBuf>::new());
    assert!(!pbx.events().iter().any(|e| e == "recording_kept"));
    pbx.assert_alive();
}

#[test]
fn a_forgotten_pause_resumes_by_itself_after_a_warning() {
    let tone = sound("agent-880-9s", 880, 9.0);
    let agent = format!(" same => n,Wait(1)\n same => n,SendDTMF(*1)\n same => n,Playback({tone})\n same => n,Hangup()\n");
    let mut pbx =
        start("auto-resume", "pause_max_seconds = 6", &agent, "exten => dev,1,Wait(30)\n");
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(30));
    let warn = pbx.wait_event("pause_warning", 1, Duration::from_secs(2));
    assert!(warn[0]["resumes_in_ms"].as_u64().is_some_and(|ms| ms <= 5000));
    let resumed = pbx.wait_event("resumed", 1, Duration::from_secs(2));
    assert_eq!(resumed[0]["by"], "auto");
    let events = pbx.events();
    let order: Vec<&str> = events
        .iter()
        .map(String::as_str)
        .filter(|e| matches!(*e, "paused" | "pause_warning" | "resumed"))
        .collect();
    assert_eq!(order, vec!["paused", "pause_warning", "resumed"]);
    pbx.assert_alive();
}

#[test]
fn the_caller_pressing_agent_codes_changes_nothing() {
    let tone = sound("agent-880-3s", 880, 3.0);
    let agent = format!(" same => n,Playback({tone})\n same => n,Wait(2)\n same => n,Hangup()\n");
    let mut pbx = start(
        "caller-codes",
        "",
        &agent,
        "exten => dev,1,Wait(2)\n same => n,SendDTMF(*1*3)\n same => n,Wait(30)\n",
    );
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(30));
    pbx.wait_event("recording_kept", 1, Duration::from_secs(5));
    // Nothing of the call is left to happen once it has settled.
    pbx.wait_settled(1, Duration::from_secs(10));
    let events = pbx.events();
    assert!(!events.iter().any(|e| e == "paused" || e == "recording_deleted"), "{events:?}");
    pbx.assert_alive();
}

fn channel_named(pbx: &Pbx, prefix: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = pbx.rx("core show channels concise");
        if let Some(c) =
            out.lines().filter_map(|l| l.split('!').next()).find(|c| c.starts_with(prefix))
        {
            return c.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no channel {prefix}*: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ami_actions_control_a_live_call_from_either_channel() {
    let tone = sound("agent-880-9s", 880, 9.0);
    let agent = format!(" same => n,Playback({tone})\n same => n,Hangup()\n");
    let mut pbx = start("ami", "", &agent, "exten => dev,1,Wait(30)\n");
    let mut ami = pbx.ami();
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_event("recording_started", 1, Duration::from_secs(10));
    let agent_chan = channel_named(&pbx, "Local/agent@test-");
    let agent_chan =
        if agent_chan.ends_with(";1") { agent_chan.replace(";1", ";2") } else { agent_chan };
    // What the desktop's pause needs: the module finds the recorded call from the agent's channel.
    wait_for(
        "CallConsentStatus on the agent's channel to report the recording",
        Duration::from_secs(5),
        || {
            let s = ami.action("CallConsentStatus", &[("Channel", &agent_chan)]);
            if s.get("Response").map(String::as_str) == Some("Success")
                && s.get("State").map(String::as_str) == Some("recording")
            {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    );
    // The agent's desktop names the agent's own channel.
    let r = ami.action("CallConsentPause", &[("Channel", &agent_chan)]);
    assert_eq!(r.get("Response").map(String::as_str), Some("Success"), "{r:?}");
    assert_eq!(r.get("State").map(String::as_str), Some("paused"), "{r:?}");
    let caller_chan = channel_named(&pbx, "Local/in@test-").replace(";1", ";2");
    let s = ami.action("CallConsentStatus", &[("Channel", &caller_chan)]);
    assert_eq!(s.get("Paused").map(String::as_str), Some("yes"), "{s:?}");
    let r = ami.action("CallConsentResume", &[("Channel", &caller_chan)]);
    assert_eq!(r.get("State").map(String::as_str), Some("recording"), "{r:?}");
    let r = ami.action("CallConsentPause", &[("Channel", "Local/nobody@test-0000;2")]);
    assert_eq!(r.get("Response").map(String::as_str), Some("Error"), "{r:?}");
    let ev = ami.wait_for(Duration::from_secs(2), |m| {
        m.get("Event").map(String::as_str) == Some("CallConsent")
            && m.get("State").map(String::as_str) == Some("paused")
    });
    assert_eq!(ev.get("Profile").map(String::as_str), Some("agents"));
    pbx.wait_idle(Duration::from_secs(30));
    let paused = pbx.wait_event("paused", 1, Duration::from_secs(2));
    assert_eq!(paused[0]["source"], "ami");
    // The control's line says who acted: the channel the desktop named.
    assert_eq!(
        paused[0]["actor"].as_str(),
        Some(format!("AMI Channel: {agent_chan}").as_str()),
        "{paused:?}"
    );
    let resumed = pbx.wait_event("resumed", 1, Duration::from_secs(2));
    assert_eq!(resumed[0]["by"], "agent");
    pbx.assert_alive();
}

/// R8: the agent hears when recording starts, pauses and resumes (and when the caller refuses);
/// the tones reach the agent only, never the recording.
#[test]
fn the_agent_hears_the_start_pause_and_resume_tones_and_the_recording_does_not() {
    let conf = consent_conf(&profile(
        "agents",
        100,
        "start_tone = 440/300\npause_tone = 620/300\nresume_tone = 820/300",
    ));
    let dialplan = "[test]\nexten => in,1,Answer()\n same => n,CallConsent(agents)\n same => n,Dial(Local/agent@test)\n\
        exten => agent,1,Answer()\n same => n,MixMonitor({D}/heard-mix.wav,r({D}/heard.wav))\n same => n,Wait(1.5)\n \
        same => n,SendDTMF(*1)\n same => n,Wait(1.5)\n same => n,SendDTMF(*2)\n same => n,Wait(1.5)\n same => n,Hangup()\n\
        exten => dev,1,Wait(30)\n";
    let mut pbx = Pbx::builder("tones")
        .file("callconsent.conf", &conf)
        .file("extensions.conf", dialplan)
        .start();
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(30));
    let kept = pbx.wait_event("recording_kept", 1, Duration::from_secs(5));
    // heard.wav is the agent's side's own MixMonitor (on Local/agent@test-...;2): read it closed.
    pbx.wait_mixmonitor_closed("Local/agent@test-", Duration::from_secs(10));
    let heard = wav_samples(&pbx.path("heard.wav"));
    for (what, f) in [("start", 440.0), ("pause", 620.0), ("resume", 820.0)] {
        let ms = tone_ms(&heard, f);
        assert!(ms >= 150, "the agent did not hear the {what} tone ({f} Hz): {ms} ms");
    }
    let recorded = wav_samples(&pbx.host_path(kept[0]["file"].as_str().unwrap()));
    for f in [440.0, 620.0, 820.0] {
        assert_eq!(tone_ms(&recorded, f), 0, "the {f} Hz tone reached the recording");
    }
    pbx.assert_alive();
}

#[test]
fn the_agent_hears_when_the_caller_refuses() {
    let conf = consent_conf(&profile("agents", 100, "start_tone = off\noptout_tone = 950/400"));
    let dialplan = "[test]\nexten => in,1,Answer()\n same => n,CallConsent(agents)\n same => n,Dial(Local/agent@test)\n\
        exten => agent,1,Answer()\n same => n,MixMonitor({D}/heard-mix.wav,r({D}/heard.wav))\n same => n,Wait(4)\n same => n,Hangup()\n\
        exten => dev,1,Wait(2)\n same => n,SendDTMF(9)\n same => n,Wait(30)\n";
    let mut pbx = Pbx::builder("optout-tone")
        .file("callconsent.conf", &conf)
        .file("extensions.conf", dialplan)
        .start();
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(30));
    pbx.wait_event("opt_out", 1, Duration::from_secs(5));
    // heard.wav is the agent's side's own MixMonitor (on Local/agent@test-...;2): read it closed.
    pbx.wait_mixmonitor_closed("Local/agent@test-", Duration::from_secs(10));
    let ms = tone_ms(&wav_samples(&pbx.path("heard.wav")), 950.0);
    assert!(ms >= 250, "the agent did not hear the refusal tone: {ms} ms");
    pbx.assert_alive();
}

/// Issue 10 (5): a pause from the desktop (AMI), with no key pressed afterwards, ends within
/// `pause_max_seconds` with its warning, as a keypad pause does.
#[test]
fn a_desktop_pause_also_resumes_by_itself_after_a_warning() {
    let tone = sound("agent-880-12s", 880, 12.0);
    let agent = format!(" same => n,Playback({tone})\n same => n,Hangup()\n");
    let mut pbx =
        start("ami-auto-resume", "pause_max_seconds = 6", &agent, "exten => dev,1,Wait(30)\n");
    let mut ami = pbx.ami();
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_event("recording_started", 1, Duration::from_secs(10));
    let caller_chan = channel_named(&pbx, "Local/in@test-").replace(";1", ";2");
    let r = ami.action("CallConsentPause", &[("Channel", &caller_chan)]);
    assert_eq!(r.get("State").map(String::as_str), Some("paused"), "{r:?}");
    // The warning comes about 5 s before the end of the pause, then the automatic resume; both
    // while the call (12 s of tone) is still up.
    let warn = pbx.wait_event("pause_warning", 1, Duration::from_secs(10));
    assert!(warn[0]["resumes_in_ms"].as_u64().is_some_and(|ms| ms > 0 && ms <= 5000), "{warn:?}");
    let resumed = pbx.wait_event("resumed", 1, Duration::from_secs(10));
    assert_eq!(
        (resumed[0]["by"].as_str(), resumed[0]["source"].as_str()),
        (Some("auto"), Some("pause_max_seconds")),
        "{resumed:?}"
    );
    assert!(pbx.active_calls() > 0, "the pause must end during the call, not at hangup");
    pbx.wait_idle(Duration::from_secs(30));
    pbx.wait_settled(1, Duration::from_secs(15));
    let order: Vec<String> = pbx
        .events()
        .into_iter()
        .filter(|e| matches!(e.as_str(), "paused" | "pause_warning" | "resumed"))
        .collect();
    assert_eq!(order, vec!["paused", "pause_warning", "resumed"]);
    pbx.assert_alive();
}

/// Issue 23 (the pause under load): 20 calls, four at a time, while the test keeps both cores
/// busy; on each the agent says something, pauses with `*1` (a 50 ms key, as a desktop's
/// SendDTMF does), says a secret at once, resumes with `*2`, and talks again. Not one 5 ms hop of
/// the secret is in any kept recording (it was in 1 run of 4 before the code's first key muted).
#[test]
fn the_pause_holds_under_cpu_load_in_20_calls_of_20() {
    let talk = sound("agent-880-1s", 880, 1.0);
    let secret = sound("secret-1800-1s", 1800, 1.0);
    let agent = format!(
        " same => n,Playback({talk})\n same => n,SendDTMF(*1,,50)\n same => n,Playback({secret})\n \
         same => n,SendDTMF(*2,,50)\n same => n,Playback({talk})\n same => n,Hangup()\n"
    );
    let pbx = start("pause-load", "", &agent, "exten => dev,1,Wait(30)\n");
    // The load: one spinning thread per core, for the whole test.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burners: Vec<_> = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    for round in 0..5 {
        for _ in 0..4 {
            pbx.originate("Local/in@test", "dev@test");
        }
        pbx.wait_settled(4 * (round + 1), Duration::from_secs(60));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for b in burners {
        let _ = b.join();
    }
    let kept = pbx.wait_event("recording_kept", 20, Duration::from_secs(5));
    assert_eq!(pbx.wait_event("paused", 20, Duration::from_secs(1)).len(), 20);
    let mut leaks = vec![];
    for k in &kept {
        let samples = wav_samples(&pbx.host_path(k["file"].as_str().unwrap_or("")));
        let (secret_ms, talk_ms) = (tone_ms(&samples, 1800.0), tone_ms(&samples, 880.0));
        assert!(
            talk_ms >= 1000,
            "the agent's talk before and after the pause is recorded ({talk_ms} ms) in {k}"
        );
        if secret_ms > 0 {
            leaks.push(secret_ms);
        }
    }
    assert!(
        leaks.is_empty(),
        "the secret said after *1 reached {} recording(s) of 20: {leaks:?} ms",
        leaks.len()
    );
}
