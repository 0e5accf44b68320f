//! One call as a value. The host feeds it [`Event`]s and executes the [`Action`]s it returns.
//!
//! The caller's direction carries the opt-out key (R3); the agent's direction carries the pause,
//! resume and delete codes (R9). A key counts only in its own direction: a caller pressing the
//! agent's codes changes nothing, and the agent cannot opt the caller out.
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::audit::{AuditEvent, By, Source};
use crate::config::Profile;
use crate::draw::{self, Draw};
use crate::pace::Pacer;
use crate::policy::{self, CapPeriod};
use crate::secure::{EndReason, SecretDigits};
use crate::timing::{self, Retry};

/// Which party a DTMF frame comes from, seen from the caller's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Read direction: the caller's own keypad.
    Caller,
    /// Write direction: towards the caller, i.e. from the bridged agent.
    Agent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    Begin,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Delete,
    /// Start a secure card entry (issue 16).
    Secure,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pause" => Some(Command::Pause),
            "resume" => Some(Command::Resume),
            "delete" => Some(Command::Delete),
            "secure" => Some(Command::Secure),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptOutcome {
    Completed,
    Key(char),
    Missing,
    Hangup,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Start,
    PromptDone(PromptOutcome),
    RecorderStarted {
        file: String,
        now_ms: u64,
    },
    RecorderFailed {
        reason: String,
    },
    /// A key's start or end; `len_ms` is the key's length as the PBX gives it at the end (0 when
    /// it does not say).
    Dtmf {
        dir: Dir,
        press: Press,
        digit: char,
        len_ms: u32,
        now_ms: u64,
    },
    Tick {
        now_ms: u64,
    },
    /// A key of the agent's side that the PBX already passed on to the caller without asking the
    /// module (FreeSWITCH's loopback endpoint relays `send_dtmf` keys past every DTMF hook and
    /// reports them only afterwards): its codes act, but it can be neither held nor swallowed.
    AgentKeyRelayed {
        digit: char,
        now_ms: u64,
    },
    /// A desktop or dialplan control; `actor` names who acted (the channel the control named or
    /// ran on), for the audit line.
    Control {
        cmd: Command,
        source: Source,
        actor: String,
        now_ms: u64,
    },
    /// The caller's channel joined a bridge (an agent answered, or a transfer); who the agent is
    /// comes next, as `Bridged`.
    JoinedBridge,
    /// The caller's channel is bridged with this agent.
    Bridged {
        agent: String,
    },
    /// The agent's cap for the period was checked (and a recording reserved when allowed).
    CapChecked {
        agent: String,
        period: String,
        outcome: CapOutcome,
    },
    Hangup,
}

/// What the caps store answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapOutcome {
    /// One recording reserved: `count` of the period's recordings, this one included.
    Reserved { count: u64 },
    /// The cap is reached: nothing reserved.
    Reached { count: u64 },
    /// The store could not be read or written.
    StoreFailed(String),
}

/// `CALLCONSENT_STATUS` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Recording,
    NotSelected,
    OptedOut,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Recording => "RECORDING",
            Status::NotSelected => "NOT_SELECTED",
            Status::OptedOut => "OPTED_OUT",
            Status::Error => "ERROR",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Play a sound to the caller on the application's thread; stop on any of `keys` and feed
    /// back `PromptDone` (only when `keys` is not empty).
    Play {
        file: String,
        keys: String,
    },
    /// Watch the channel from now on (keys, bridge joins): the call is armed.
    Watch,
    /// Find who the caller is bridged with (the bridge peer, which may still be joining), then
    /// feed `Bridged`.
    FindAgent,
    /// Reserve one recording in the agent's cap for the current period (off the media path), then
    /// feed `CapChecked`.
    ReserveCap {
        agent: String,
        period: CapPeriod,
        period_max: u64,
    },
    StartRecorder,
    /// Stop the recorder and keep what was recorded (a transfer to a never-recorded agent).
    StopRecorder,
    /// The call ended with consent intact: move the recording to the kept tree, then audit
    /// `recording_kept`.
    Keep {
        pauses: u32,
        spans: String,
    },
    Mute,
    Unmute,
    /// Stop the recorder and delete every file of the call (then audit `recording_deleted`).
    StopAndDelete {
        by: By,
    },
    /// After hangup, this long after it: delete the files of a refused recording again, in case
    /// the recorder's own thread wrote one late (audited only when it finds something).
    DeleteLate {
        after: Duration,
    },
    PlayToCaller(String),
    ToneToAgent(String),
    /// Digits held back as a possible code that turned out not to be one: pass them on, in order.
    SendToCaller(String),
    /// A secure entry ended: hand the digits to the payment side (the profile's `secure_gosub` on
    /// the caller's channel, where `CALLCONSENT(secure_digits)` returns them once).
    SecureDigits(SecretDigits),
    SetStatus(Status),
    /// An audit line about this call (stamped with time, call and channel by the runtime).
    Audit {
        event: AuditEvent,
        facts: Map<String, Value>,
    },
    /// An event to the PBX's management interface (AMI `CallConsent`): the state changed.
    Notify,
}

/// Where an action runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// On the thread that fed the event, at once: the media path (a state transition, a mute, a
    /// channel variable, a queued line or event) or, for `Play`, the dialplan application's thread.
    Inline,
    /// On the runtime's worker, never the media path: recorder start and stop, files, the caps
    /// store, prompts and tones to a bridged party, digits. Its answer comes back as an event.
    Deferred,
}

/// Which worker runs a deferred action: the recorder's work (start, stop, files, the caps store)
/// never waits behind signals to the parties (prompts, tones, digits, which take their time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    Recorder,
    Signals,
    /// The caps store (a shared database may take its time; nothing else waits behind it).
    Store,
}

/// What to do with a deferred action when its worker's queue is full: the safe side wins.
#[derive(Debug, Clone, PartialEq)]
pub enum OnFull {
    /// It must happen (a stop, a deletion, a kept recording): wait for room.
    Wait,
    /// Do not do it, and feed this instead (no recording rather than an unchecked one).
    Refuse(Event),
    /// Leave it out (a tone, a prompt, digits).
    Drop,
}

impl Action {
    pub fn queue(&self) -> Queue {
        match self {
            Action::PlayToCaller(_)
            | Action::ToneToAgent(_)
            | Action::SendToCaller(_)
            | Action::SecureDigits(_) => Queue::Signals,
            Action::ReserveCap { .. } => Queue::Store,
            _ => Queue::Recorder,
        }
    }

    pub fn on_full_queue(&self) -> OnFull {
        match self {
            Action::StopRecorder
            | Action::StopAndDelete { .. }
            | Action::DeleteLate { .. }
            | Action::Keep { .. } => OnFull::Wait,
            Action::StartRecorder => OnFull::Refuse(Event::RecorderFailed {
                reason: "the worker's queue is full: not recorded".into(),
            }),
            Action::ReserveCap { agent, .. } => OnFull::Refuse(Event::CapChecked {
                agent: agent.clone(),
                period: String::new(),
                outcome: CapOutcome::StoreFailed("the worker's queue is full".into()),
            }),
            // Not finding the agent leaves the call unrecorded (armed) or muted (a transfer).
            Action::FindAgent => OnFull::Drop,
            Action::PlayToCaller(_) | Action::ToneToAgent(_) | Action::SendToCaller(_) => {
                OnFull::Drop
            }
            // The digits are dropped (wiped), never kept waiting: the payment is asked again.
            Action::SecureDigits(_) => OnFull::Drop,
            Action::Play { .. }
            | Action::Watch
            | Action::Mute
            | Action::Unmute
            | Action::SetStatus(_)
            | Action::Audit { .. }
            | Action::Notify => OnFull::Drop,
        }
    }

    pub fn lane(&self) -> Lane {
        match self {
            Action::Play { .. }
            | Action::Watch
            | Action::Mute
            | Action::Unmute
            | Action::SetStatus(_)
            | Action::Audit { .. }
            | Action::Notify => Lane::Inline,
            Action::FindAgent
            | Action::ReserveCap { .. }
            | Action::StartRecorder
            | Action::StopRecorder
            | Action::Keep { .. }
            | Action::StopAndDelete { .. }
            | Action::DeleteLate { .. }
            | Action::PlayToCaller(_)
            | Action::ToneToAgent(_)
            | Action::SendToCaller(_)
            | Action::SecureDigits(_) => Lane::Deferred,
        }
    }

    /// How long a deferred action waits before it runs.
    pub fn delay(&self) -> Duration {
        match self {
            Action::DeleteLate { after } => *after,
            _ => Duration::ZERO,
        }
    }

    /// How a deferred action the host could not carry out yet is tried again (None: never).
    pub fn retry(&self) -> Option<Retry> {
        match self {
            Action::FindAgent => Some(timing::FIND_AGENT),
            Action::ToneToAgent(_) => Some(timing::TONE_TO_AGENT),
            Action::Keep { .. } => Some(Retry {
                every: timing::KEEP_POLL,
                tries: (timing::KEEP_WAIT_AUDIO.as_millis() / timing::KEEP_POLL.as_millis()) as u32,
            }),
            _ => None,
        }
    }
}

/// What the media path does with the frame that caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Created,
    Notice,
    FullNotice,
    /// Selected, told, not refused: waiting for an agent (recording starts at the bridge).
    Armed,
    /// The agent's cap is being checked.
    Checking,
    Starting,
    Recording,
    /// Recording stopped for good (a transfer to a never-recorded agent); what was recorded is kept.
    Stopped,
    NotRecording,
    OptedOut,
    Deleted,
    Ended,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Created => "created",
            Phase::Notice => "notice",
            Phase::FullNotice => "full_notice",
            Phase::Armed => "armed",
            Phase::Checking => "checking",
            Phase::Starting => "starting",
            Phase::Recording => "recording",
            Phase::Stopped => "stopped",
            Phase::NotRecording => "not_recording",
            Phase::OptedOut => "opted_out",
            Phase::Deleted => "deleted",
            Phase::Ended => "ended",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Call {
    profile: Arc<Profile>,
    draw: Draw,
    phase: Phase,
    file: Option<String>,
    paused_at_ms: Option<u64>,
    warned: bool,
    /// Agent digits held back while they may still become a code.
    held: String,
    held_since_ms: u64,
    /// Digits whose BEGIN was dropped: their END is dropped too.
    swallowing: Vec<(Dir, char)>,
    /// A caller's key whose BEGIN went on to the agent before a secure entry began: its END
    /// goes on too (the agent's phone would sound it forever otherwise), and it is no card digit.
    end_passes: Option<char>,
    pauses: u32,
    /// Paused spans in ms from the recording's start (end `None` while paused).
    spans: Vec<(u64, Option<u64>)>,
    recording_since_ms: u64,
    /// Why the call is exempt whatever the draw (R12), with a keyed hash instead of the number.
    exempt: Option<(&'static str, String)>,
    /// The installation secret's key id (on the lines that depend on the secret).
    key_id: String,
    agent: Option<String>,
    /// A refusal made before any bridge: its confirmation is played when the caller is connected.
    confirm_at_bridge: bool,
    /// Muted when the recorded caller joined another bridge (a transfer), until the new agent is
    /// cleared: a never-recorded or capped agent contributes nothing to the file (R6, R12).
    join_muted: bool,
    /// Muted at the first key of an agent's code, before the code is complete (issue 23): the PBX
    /// may deliver the agent's voice ahead of a later key of the code (Asterisk relays keys at
    /// most every 45 ms and lets voice overtake a key it holds back), so what the agent says just
    /// after `*1` must already be muted when `*` arrives. Unmuted if the keys were no code.
    code_muted: bool,
    /// The agent's keys already relayed to the caller that begin a code (`AgentKeyRelayed`), and
    /// when the first came.
    relayed: String,
    relayed_since_ms: u64,
    /// Who is acting, while a control is being handled (for its audit line).
    actor: Option<String>,
    /// The new agent of a transfer whose cap is being checked while the recording is muted.
    transfer_check: Option<String>,
    /// The caller's keys, paced to what the PBX can relay (a flood cannot hold the opt-out back).
    caller_pace: Pacer,
    /// The keyed hash of the customer's number (normalised), on the call's first line: how a
    /// caller's request finds their calls without the log holding the number.
    number_hash: Option<String>,
    /// The host watches the call's keys and bridges (armed, or kept watched for secure entry).
    watched: bool,
    /// A secure card entry in progress (issue 16).
    secure: Option<Secure>,
}

/// A secure card entry in progress.
#[derive(Debug, Clone)]
struct Secure {
    since_ms: u64,
    source: Source,
    digits: SecretDigits,
    /// The entry muted the recorder (and opened a span of the pause tags): it unmutes at the end.
    muted: bool,
}

fn facts(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl Call {
    /// `secret` is the installation's key; `caller` the caller's number (CALLERID(num)) and
    /// `dialled` the number an agent dialled, both only used for exemptions, never kept.
    pub fn new(
        profile: Arc<Profile>,
        secret: &[u8],
        call_id: &str,
        caller: &str,
        dialled: &str,
    ) -> Call {
        let draw = draw::draw(secret, call_id, profile.record_share);
        let exempt = if profile
            .private_prefix
            .as_deref()
            .is_some_and(|p| !dialled.is_empty() && dialled.starts_with(p))
        {
            Some(("private_prefix", policy::keyed_hash(secret, dialled)))
        } else if policy::caller_exempt(&profile.never_record, caller) {
            Some(("never_record_caller", policy::keyed_hash(secret, caller)))
        } else {
            None
        };
        Call {
            profile,
            draw,
            phase: Phase::Created,
            file: None,
            paused_at_ms: None,
            warned: false,
            held: String::new(),
            held_since_ms: 0,
            swallowing: Vec::new(),
            end_passes: None,
            caller_pace: Pacer::default(),
            pauses: 0,
            spans: Vec::new(),
            recording_since_ms: 0,
            exempt,
            key_id: policy::key_id(secret),
            agent: None,
            confirm_at_bridge: false,
            join_muted: false,
            code_muted: false,
            relayed: String::new(),
            relayed_since_ms: 0,
            actor: None,
            transfer_check: None,
            number_hash: None,
            watched: false,
            secure: None,
        }
    }

    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }
    pub fn profile(&self) -> &Profile {
        &self.profile
    }
    pub fn paused(&self) -> bool {
        self.paused_at_ms.is_some()
    }
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }
    /// Whether the host must feed `Tick`s (a pause may auto-resume, or digits are held).
    pub fn wants_ticks(&self) -> bool {
        (self.paused() && self.profile.pause_max_seconds > 0)
            || !self.held.is_empty()
            || !self.relayed.is_empty()
            || self.secure.is_some()
    }
    /// Whether a secure card entry runs (the caller's keys are the card's).
    pub fn in_secure_entry(&self) -> bool {
        self.secure.is_some()
    }
    /// Secure card entry is available on every watched call (every recorded call; calls not
    /// recorded are watched for it when the profile names its payment gosub).
    fn secure_available(&self) -> bool {
        self.watched && self.phase != Phase::Ended
    }
    pub fn state_name(&self) -> &'static str {
        if self.secure.is_some() {
            "secure_entry"
        } else if self.phase == Phase::Recording && self.paused() {
            "paused"
        } else {
            self.phase.as_str()
        }
    }

    /// Feeds one event; returns what to do with the frame (for DTMF) and the actions to run.
    pub fn on(&mut self, ev: Event) -> (Verdict, Vec<Action>) {
        let mut out = Vec::new();
        let verdict = match ev {
            Event::Start => {
                self.start(&mut out);
                if self.phase == Phase::NotRecording {
                    self.watch_for_secure_entry(&mut out);
                }
                Verdict::Pass
            }
            Event::PromptDone(o) => {
                self.prompt_done(o, &mut out);
                Verdict::Pass
            }
            Event::RecorderStarted { file, now_ms } => {
                self.recording_since_ms = now_ms;
                if matches!(self.phase, Phase::OptedOut | Phase::Deleted | Phase::Ended) {
                    // Refused while the recorder was starting, or the call ended before the
                    // recorder's start was confirmed (R13): it must not survive.
                    self.file = Some(file);
                    let by = match self.phase {
                        Phase::OptedOut => By::Caller,
                        Phase::Deleted => By::Agent,
                        _ => By::Cleanup,
                    };
                    out.push(Action::StopAndDelete { by });
                } else if self.phase == Phase::Starting {
                    self.phase = Phase::Recording;
                    out.push(self.audit(
                        AuditEvent::RecordingStarted,
                        json!({ "file": file, "agent": self.agent }),
                    ));
                    self.file = Some(file);
                    if self.secure.as_ref().is_some_and(|s| !s.muted) {
                        // A card is being keyed: nothing of it reaches the new recording.
                        out.push(Action::Mute);
                        self.open_secure_span(now_ms);
                    }
                    // R8: the agent hears that this call is recorded.
                    if let Some(t) = &self.profile.start_tone {
                        out.push(Action::ToneToAgent(t.clone()));
                    }
                    out.push(Action::SetStatus(Status::Recording));
                    out.push(Action::Notify);
                }
                Verdict::Pass
            }
            Event::RecorderFailed { reason } => {
                if self.phase == Phase::Starting {
                    self.phase = Phase::NotRecording;
                    out.push(self.audit(AuditEvent::RecordingFailed, json!({ "reason": reason })));
                    out.push(Action::SetStatus(Status::Error));
                }
                Verdict::Pass
            }
            Event::Dtmf { dir, press, digit, len_ms, now_ms } => {
                self.expire_held(now_ms, &mut out);
                self.secure_timeout(now_ms, &mut out);
                match dir {
                    Dir::Caller => self.caller_key(press, digit, len_ms, now_ms, &mut out),
                    Dir::Agent => self.agent_key(press, digit, now_ms, &mut out),
                }
            }
            Event::AgentKeyRelayed { digit, now_ms } => {
                self.expire_held(now_ms, &mut out);
                self.secure_timeout(now_ms, &mut out);
                self.agent_key_relayed(digit, now_ms, &mut out);
                Verdict::Pass
            }
            Event::Tick { now_ms } => {
                self.expire_held(now_ms, &mut out);
                self.secure_timeout(now_ms, &mut out);
                self.auto_resume(now_ms, &mut out);
                Verdict::Pass
            }
            Event::Control { cmd, source, actor, now_ms } => {
                self.actor = (!actor.is_empty()).then_some(actor);
                self.command(cmd, source, now_ms, &mut out);
                self.actor = None;
                Verdict::Pass
            }
            Event::JoinedBridge => {
                if self.phase == Phase::Recording {
                    // A transfer: nothing of the new party reaches the file until it is cleared,
                    // decided here, in the join itself (R12).
                    if !self.paused() && !self.join_muted {
                        out.push(Action::Mute);
                    }
                    self.join_muted = true;
                }
                // Only a call that may still start, stop or confirm something needs its agent (and
                // one where the agent may start a secure entry: who did is audited).
                if matches!(self.phase, Phase::Armed | Phase::Recording)
                    || (self.phase == Phase::OptedOut && self.confirm_at_bridge)
                    || self.secure_available()
                {
                    out.push(Action::FindAgent);
                }
                Verdict::Pass
            }
            Event::Bridged { agent } => {
                self.bridged(agent, &mut out);
                Verdict::Pass
            }
            Event::CapChecked { agent, period, outcome }
                if self.phase == Phase::Recording
                    && self.transfer_check.as_deref() == Some(agent.as_str()) =>
            {
                self.transfer_check = None;
                let max = self.profile.max_per_agent;
                match outcome {
                    CapOutcome::Reserved { count } => {
                        out.push(self.audit(AuditEvent::AgentCleared, json!({ "agent": agent, "period": period, "count": count, "max": max, "after": "transfer" })));
                        self.transferred_to(agent, &mut out);
                    }
                    CapOutcome::Reached { count } => {
                        let reason =
                            format!("cap reached: {count} of {max} recordings this {period}");
                        self.stop_for(agent, json!({ "period": period, "count": count, "max": max, "reason": reason }), &mut out);
                    }
                    CapOutcome::StoreFailed(e) => {
                        let reason = format!("cap store unavailable ({e}): not recorded");
                        self.stop_for(
                            agent,
                            json!({ "period": period, "count": max, "max": max, "reason": reason }),
                            &mut out,
                        );
                    }
                }
                Verdict::Pass
            }
            Event::CapChecked { agent, period, outcome } => {
                if self.phase == Phase::Checking {
                    let max = self.profile.max_per_agent;
                    match outcome {
                        CapOutcome::Reserved { count } => {
                            out.push(self.audit(AuditEvent::AgentCleared, json!({ "agent": agent, "period": period, "count": count, "max": max })));
                            self.phase = Phase::Starting;
                            out.push(Action::StartRecorder);
                        }
                        CapOutcome::Reached { count } => {
                            let reason =
                                format!("cap reached: {count} of {max} recordings this {period}");
                            out.push(self.audit(AuditEvent::AgentVetoed, json!({ "agent": agent, "period": period, "count": count, "max": max, "reason": reason })));
                            self.phase = Phase::NotRecording;
                            out.push(Action::Notify);
                        }
                        CapOutcome::StoreFailed(e) => {
                            // R6: a store that cannot be read must not lift a cap: not recorded.
                            let reason = format!("cap store unavailable ({e}): not recorded");
                            out.push(self.audit(AuditEvent::AgentVetoed, json!({ "agent": agent, "period": period, "count": max, "max": max, "reason": reason })));
                            self.phase = Phase::NotRecording;
                            out.push(Action::Notify);
                        }
                    }
                }
                Verdict::Pass
            }
            Event::Hangup => {
                self.hangup(&mut out);
                Verdict::Pass
            }
        };
        (verdict, out)
    }

    /// The customer's number hash (see [`policy::number_hash`]), named on the call's first line.
    pub fn with_number_hash(mut self, hash: String) -> Call {
        if !hash.is_empty() {
            self.number_hash = Some(hash);
        }
        self
    }

    pub fn number_hash(&self) -> Option<&str> {
        self.number_hash.as_deref()
    }

    fn audit(&self, event: AuditEvent, v: Value) -> Action {
        let mut m = Map::new();
        m.insert("profile".into(), Value::String(self.profile.name.clone()));
        m.extend(facts(v));
        Action::Audit { event, facts: m }
    }

    fn start(&mut self, out: &mut Vec<Action>) {
        if self.phase != Phase::Created {
            return;
        }
        if let Some((reason, hash)) = &self.exempt {
            // R12: never recorded whatever the draw; no notice about a recording that cannot happen.
            self.phase = Phase::NotRecording;
            let hash = match (*reason, &self.number_hash) {
                ("never_record_caller", Some(h)) => h,
                _ => hash,
            };
            out.push(self.audit(
                AuditEvent::Exempt,
                json!({ "reason": reason, "number_hash": hash, "key_id": self.key_id }),
            ));
            out.push(Action::SetStatus(Status::NotSelected));
            return;
        }
        let p = &self.profile;
        let mut f = json!({
            "share": p.record_share,
            "bucket": self.draw.bucket,
            "rule": draw::RULE,
            "key_id": self.key_id,
        });
        if let Some(h) = &self.number_hash {
            f["number_hash"] = Value::String(h.clone());
        }
        if self.draw.selected {
            if let Some(lb) = &p.legal_basis {
                f["legal_basis"] = Value::String(lb.clone());
            }
            out.push(self.audit(AuditEvent::Selected, f));
        } else {
            f["reason"] = Value::String(format!(
                "bucket {} is not below {} (share {} %)",
                self.draw.bucket,
                u32::from(p.record_share) * 100,
                p.record_share
            ));
            out.push(self.audit(AuditEvent::NotSelected, f));
        }
        self.phase = Phase::Notice;
        out.push(Action::Play {
            file: p.notice.clone(),
            keys: format!("{}{}", p.optout_key, p.info_key),
        });
    }

    fn prompt_done(&mut self, o: PromptOutcome, out: &mut Vec<Action>) {
        let (event, prompt) = match self.phase {
            Phase::Notice => (AuditEvent::NoticePlayed, self.profile.notice.clone()),
            Phase::FullNotice => (AuditEvent::InfoPlayed, self.profile.full_notice.clone()),
            _ => return,
        };
        let outcome = match &o {
            PromptOutcome::Completed => "completed",
            PromptOutcome::Key(_) => "interrupted",
            PromptOutcome::Missing => "missing",
            PromptOutcome::Hangup => "hangup",
        };
        let mut f = json!({ "prompt": prompt, "outcome": outcome });
        if let PromptOutcome::Key(k) = o {
            f["key"] = Value::String(k.to_string());
        }
        out.push(self.audit(event, f));
        match o {
            PromptOutcome::Key(k) if k == self.profile.optout_key => {
                self.phase = Phase::OptedOut;
                out.push(self.audit(
                    AuditEvent::OptOut,
                    json!({ "during": "notice", "key": k.to_string() }),
                ));
                // The status first: the dialplan's next action sees OPTED_OUT whatever becomes of
                // the confirmation (a hangup during it, a host that cannot play it).
                out.push(Action::SetStatus(Status::OptedOut));
                out.push(Action::Notify);
                out.push(Action::Play {
                    file: self.profile.optout_confirm.clone(),
                    keys: String::new(),
                });
                // Refusing the recording is no reason to hear a card number: still watched.
                self.watch_for_secure_entry(out);
            }
            PromptOutcome::Key(k) if k == self.profile.info_key && self.phase == Phase::Notice => {
                self.phase = Phase::FullNotice;
                out.push(Action::Play {
                    file: self.profile.full_notice.clone(),
                    keys: self.profile.optout_key.to_string(),
                });
            }
            PromptOutcome::Completed | PromptOutcome::Key(_) => {
                if self.draw.selected {
                    // R13: the recorder starts when an agent is bridged, after the agent-side checks.
                    self.phase = Phase::Armed;
                    self.watched = true;
                    out.push(Action::Watch);
                    out.push(Action::SetStatus(Status::Recording));
                } else {
                    self.phase = Phase::NotRecording;
                    out.push(Action::SetStatus(Status::NotSelected));
                    self.watch_for_secure_entry(out);
                }
            }
            PromptOutcome::Missing => {
                // R1: a caller who was not told is never recorded.
                self.phase = Phase::NotRecording;
                out.push(self.audit(
                    AuditEvent::NotRecorded,
                    json!({ "reason": "the notice could not be played" }),
                ));
                out.push(Action::SetStatus(Status::Error));
                self.watch_for_secure_entry(out);
            }
            PromptOutcome::Hangup => self.hangup(out),
        }
    }

    fn caller_key(
        &mut self,
        press: Press,
        digit: char,
        len_ms: u32,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) -> Verdict {
        if self.secure.is_some() {
            return self.secure_key(press, digit, now_ms, out);
        }
        // The END of a key whose BEGIN was swallowed is swallowed too (the key that ended a
        // secure entry, or the opt-out key): the agent never gets half a key.
        if press == Press::End {
            if let Some(i) = self.swallowing.iter().position(|s| *s == (Dir::Caller, digit)) {
                self.swallowing.remove(i);
                return Verdict::Drop;
            }
        }
        let paced = |c: &mut Call| {
            if c.caller_pace.admit(press, digit, len_ms, now_ms) {
                Verdict::Pass
            } else {
                Verdict::Drop
            }
        };
        if digit != self.profile.optout_key {
            return paced(self);
        }
        match self.phase {
            Phase::Armed | Phase::Checking => {
                // Refused before anything was recorded (still queued or ringing): the caller
                // hears the confirmation once connected, the only moment a prompt can reach them.
                self.phase = Phase::OptedOut;
                self.confirm_at_bridge = self.agent.is_none();
                out.push(self.audit(
                    AuditEvent::OptOut,
                    json!({ "during": "call", "key": digit.to_string() }),
                ));
                if !self.confirm_at_bridge {
                    out.push(Action::PlayToCaller(self.profile.optout_confirm.clone()));
                }
                out.push(Action::SetStatus(Status::OptedOut));
                out.push(Action::Notify);
                if press == Press::Begin {
                    self.swallowing.push((Dir::Caller, digit));
                }
                Verdict::Drop
            }
            Phase::Recording | Phase::Starting | Phase::Stopped => {
                // The mute comes first in what this frame does (after digits released before it).
                let at = out.len();
                self.stop_and_delete(By::Caller, out);
                out.insert(
                    at + 1,
                    self.audit(
                        AuditEvent::OptOut,
                        json!({ "during": "call", "key": digit.to_string() }),
                    ),
                );
                out.push(Action::PlayToCaller(self.profile.optout_confirm.clone()));
                if let Some(t) = &self.profile.optout_tone {
                    out.push(Action::ToneToAgent(t.clone()));
                }
                out.push(Action::SetStatus(Status::OptedOut));
                if press == Press::Begin {
                    self.swallowing.push((Dir::Caller, digit));
                }
                Verdict::Drop
            }
            // The key stays reserved for the rest of a watched call: the agent never hears it.
            Phase::OptedOut | Phase::Deleted => {
                self.swallow(Dir::Caller, press, digit);
                Verdict::Drop
            }
            _ => paced(self),
        }
    }

    fn swallow(&mut self, dir: Dir, press: Press, digit: char) {
        if press == Press::Begin {
            self.swallowing.push((dir, digit));
        } else if let Some(i) = self.swallowing.iter().position(|s| *s == (dir, digit)) {
            self.swallowing.remove(i);
        }
    }

    /// The agent's codes that count now: the recording's controls while recording, the secure
    /// entry's code wherever it is available; none during an entry (the agent's keys pass).
    fn codes<'p>(&self, p: &'p Profile) -> Vec<(&'p str, Command)> {
        let mut v = vec![];
        if self.secure.is_some() {
            return v;
        }
        if self.phase == Phase::Recording {
            v.extend([
                (p.pause_code.as_str(), Command::Pause),
                (p.resume_code.as_str(), Command::Resume),
                (p.delete_code.as_str(), Command::Delete),
            ]);
        }
        if self.secure_available() {
            v.push((p.secure_code.as_str(), Command::Secure));
        }
        v
    }

    fn agent_key(
        &mut self,
        press: Press,
        digit: char,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) -> Verdict {
        if press == Press::End {
            if let Some(i) = self.swallowing.iter().position(|s| *s == (Dir::Agent, digit)) {
                self.swallowing.remove(i);
                return Verdict::Drop;
            }
        }
        // Computed once per key, from the profile (shared), so the call itself can change below.
        let profile = self.profile.clone();
        let codes = self.codes(&profile);
        if codes.is_empty() {
            return Verdict::Pass;
        }
        // A key press is acted on at its first frame: BEGIN, or END when no BEGIN came.
        let mut candidate = self.held.clone();
        candidate.push(digit);
        if !codes.iter().any(|(c, _)| c.starts_with(&candidate)) {
            if self.held.is_empty() {
                return Verdict::Pass;
            }
            // Not a code after all: the held digits and this one go on, in order.
            let mut release = std::mem::take(&mut self.held);
            release.push(digit);
            if press == Press::Begin {
                self.swallowing.push((Dir::Agent, digit));
            }
            out.push(Action::SendToCaller(release));
            self.settle_code_mute(out);
            return Verdict::Drop;
        }
        if press == Press::Begin {
            self.swallowing.push((Dir::Agent, digit));
        }
        if let Some(cmd) = codes.iter().find(|(c, _)| *c == candidate).map(|(_, cmd)| *cmd) {
            self.held.clear();
            self.command(cmd, Source::Keypad, now_ms, out);
            // A pause, a delete or an entry keeps the recorder muted; a code with nothing to do
            // (resume while not paused) gives the audio back.
            self.settle_code_mute(out);
        } else {
            if self.held.is_empty() {
                self.held_since_ms = now_ms;
                if self.unmuted_recording() {
                    out.push(Action::Mute);
                    self.code_muted = true;
                }
            }
            self.held = candidate;
        }
        Verdict::Drop
    }

    fn expire_held(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        if !self.held.is_empty()
            && now_ms.saturating_sub(self.held_since_ms) >= self.profile.code_timeout_ms
        {
            out.push(Action::SendToCaller(std::mem::take(&mut self.held)));
            self.settle_code_mute(out);
        }
        if !self.relayed.is_empty()
            && now_ms.saturating_sub(self.relayed_since_ms) >= self.profile.code_timeout_ms
        {
            self.relayed.clear();
            self.settle_code_mute(out);
        }
    }

    /// An agent's key the PBX has already passed on (`Event::AgentKeyRelayed`): the same codes as
    /// `agent_key`, acted on at their last key, the recorder muted from their first; nothing is
    /// held back or released (the caller has heard the keys already).
    fn agent_key_relayed(&mut self, digit: char, now_ms: u64, out: &mut Vec<Action>) {
        let profile = self.profile.clone();
        let codes = self.codes(&profile);
        let mut candidate = std::mem::take(&mut self.relayed);
        candidate.push(digit);
        if !codes.iter().any(|(c, _)| c.starts_with(&candidate)) {
            // No code after all; this key may begin one.
            self.settle_code_mute(out);
            candidate = digit.to_string();
            if !codes.iter().any(|(c, _)| c.starts_with(&candidate)) {
                return;
            }
        }
        if let Some(cmd) = codes.iter().find(|(c, _)| *c == candidate).map(|(_, cmd)| *cmd) {
            self.command(cmd, Source::Keypad, now_ms, out);
            self.settle_code_mute(out);
            return;
        }
        if candidate.len() == 1 {
            self.relayed_since_ms = now_ms;
            if self.unmuted_recording() {
                out.push(Action::Mute);
                self.code_muted = true;
            }
        }
        self.relayed = candidate;
    }

    /// Whether the recorder is recording and nothing holds it muted: a pause, a transfer being
    /// checked, a secure entry, or an agent's code being keyed.
    fn unmuted_recording(&self) -> bool {
        self.phase == Phase::Recording
            && !self.paused()
            && !self.join_muted
            && self.secure.is_none()
            && !self.code_muted
    }

    /// The agent's code is over (done, or no code after all): the mute taken at its first key is
    /// released unless something else now holds the recorder muted.
    fn settle_code_mute(&mut self, out: &mut Vec<Action>) {
        if std::mem::take(&mut self.code_muted) && self.unmuted_recording() {
            out.push(Action::Unmute);
        }
    }

    fn command(&mut self, cmd: Command, source: Source, now_ms: u64, out: &mut Vec<Action>) {
        if cmd == Command::Secure {
            self.secure_start(source, now_ms, out);
            return;
        }
        if self.phase != Phase::Recording {
            return;
        }
        // During a secure entry the recorder stays muted: a pause or resume waits for its end.
        if self.secure.is_some() && matches!(cmd, Command::Pause | Command::Resume) {
            return;
        }
        match cmd {
            Command::Pause if !self.paused() => {
                self.paused_at_ms = Some(now_ms);
                self.warned = false;
                self.pauses += 1;
                self.spans.push((now_ms.saturating_sub(self.recording_since_ms), None));
                out.push(Action::Mute);
                out.push(self.audit(AuditEvent::Paused, json!({ "by": By::Agent.as_str(), "source": source.as_str(), "agent": self.agent, "actor": self.actor })));
                if let Some(t) = &self.profile.pause_tone {
                    out.push(Action::ToneToAgent(t.clone()));
                }
                out.push(Action::Notify);
            }
            Command::Resume if self.paused() => self.resume(By::Agent, source, now_ms, out),
            Command::Delete => {
                let at = out.len();
                self.stop_and_delete(By::Agent, out);
                out.insert(at + 1, self.audit(AuditEvent::DeleteRequested, json!({ "by": By::Agent.as_str(), "source": source.as_str(), "agent": self.agent, "actor": self.actor })));
                if let Some(t) = &self.profile.delete_tone {
                    out.push(Action::ToneToAgent(t.clone()));
                }
            }
            Command::Secure | Command::Pause | Command::Resume => {}
        }
    }

    fn resume(&mut self, by: By, source: Source, now_ms: u64, out: &mut Vec<Action>) {
        self.paused_at_ms = None;
        if let Some(last) = self.spans.last_mut() {
            last.1 = Some(now_ms.saturating_sub(self.recording_since_ms));
        }
        // During a transfer's check the recording stays muted until the new agent is cleared.
        if !self.join_muted && !self.code_muted {
            out.push(Action::Unmute);
        }
        out.push(self.audit(AuditEvent::Resumed, json!({ "by": by.as_str(), "source": source.as_str(), "agent": self.agent, "actor": self.actor })));
        if let Some(t) = &self.profile.resume_tone {
            out.push(Action::ToneToAgent(t.clone()));
        }
        out.push(Action::Notify);
    }

    fn auto_resume(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let (Some(since), max) = (self.paused_at_ms, self.profile.pause_max_seconds * 1000) else {
            return;
        };
        if max == 0 || self.phase != Phase::Recording {
            return;
        }
        let paused_for = now_ms.saturating_sub(since);
        if paused_for >= max {
            self.resume(By::Auto, Source::PauseMaxSeconds, now_ms, out);
        } else if !self.warned && paused_for + timing::AUTO_RESUME_WARNING.as_millis() as u64 >= max
        {
            self.warned = true;
            out.push(self.audit(
                AuditEvent::PauseWarning,
                json!({ "resumes_in_ms": max - paused_for, "agent": self.agent }),
            ));
            if let Some(t) = &self.profile.warn_tone {
                out.push(Action::ToneToAgent(t.clone()));
            }
        }
    }

    /// Mute first (this frame), then stop and delete off the media path.
    fn stop_and_delete(&mut self, by: By, out: &mut Vec<Action>) {
        self.phase = if by == By::Caller { Phase::OptedOut } else { Phase::Deleted };
        self.paused_at_ms = None;
        self.held.clear();
        self.code_muted = false;
        self.relayed.clear();
        out.push(Action::Mute);
        out.push(Action::StopAndDelete { by });
        out.push(Action::Notify);
    }

    fn bridged(&mut self, agent: String, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Armed => {
                self.agent = Some(agent.clone());
                if let Some(glob) = policy::agent_exempt(&self.profile.never_record, &agent) {
                    out.push(self.audit(
                        AuditEvent::AgentVetoed,
                        json!({ "agent": agent, "reason": format!("never_record agent:{glob}") }),
                    ));
                    self.phase = Phase::NotRecording;
                    out.push(Action::Notify);
                } else if self.profile.max_per_agent > 0 {
                    self.phase = Phase::Checking;
                    out.push(Action::ReserveCap {
                        agent,
                        period: self.profile.cap_period,
                        period_max: self.profile.max_per_agent,
                    });
                } else {
                    out.push(self.audit(AuditEvent::AgentCleared, json!({ "agent": agent })));
                    self.phase = Phase::Starting;
                    out.push(Action::StartRecorder);
                }
            }
            // A transfer to a never-recorded agent (R12): the recording stops there; what was
            // recorded with the previous agent is kept.
            Phase::Recording
                if policy::agent_exempt(&self.profile.never_record, &agent).is_some() =>
            {
                let glob =
                    policy::agent_exempt(&self.profile.never_record, &agent).unwrap_or_default();
                self.stop_for(
                    agent,
                    json!({ "reason": format!("never_record agent:{glob}") }),
                    out,
                );
            }
            // A transfer to another agent takes that agent's cap reservation (R6), muted meanwhile.
            Phase::Recording
                if self.profile.max_per_agent > 0
                    && self.agent.as_deref() != Some(agent.as_str()) =>
            {
                self.transfer_check = Some(agent.clone());
                out.push(Action::ReserveCap {
                    agent,
                    period: self.profile.cap_period,
                    period_max: self.profile.max_per_agent,
                });
            }
            Phase::OptedOut if self.confirm_at_bridge => {
                self.confirm_at_bridge = false;
                self.agent = Some(agent);
                out.push(Action::PlayToCaller(self.profile.optout_confirm.clone()));
            }
            Phase::Recording => self.transferred_to(agent, out),
            // Not recorded: the agent is known for a secure entry's audit lines.
            Phase::NotRecording
            | Phase::Stopped
            | Phase::OptedOut
            | Phase::Deleted
            | Phase::Starting => self.agent = Some(agent),
            _ => {}
        }
    }

    /// The new agent of a transfer is cleared: the recording goes on (unmuted unless paused), and
    /// whoever takes the call hears that it is recorded, and whether it is paused (R8).
    fn transferred_to(&mut self, agent: String, out: &mut Vec<Action>) {
        self.agent = Some(agent);
        if std::mem::take(&mut self.join_muted)
            && !self.paused()
            && self.secure.is_none()
            && !self.code_muted
        {
            out.push(Action::Unmute);
        }
        if let Some(t) = &self.profile.start_tone {
            out.push(Action::ToneToAgent(t.clone()));
        }
        if self.paused() {
            if let Some(t) = &self.profile.pause_tone {
                out.push(Action::ToneToAgent(t.clone()));
            }
        }
    }

    /// The new agent of a transfer may not be recorded: the recording stops where it is (still
    /// muted since the join); what was recorded before is kept.
    fn stop_for(&mut self, agent: String, facts: Value, out: &mut Vec<Action>) {
        out.push(Action::Mute);
        let mut f = json!({ "agent": agent });
        if let (Some(m), Value::Object(extra)) = (f.as_object_mut(), facts) {
            m.extend(extra);
            m.insert("after".into(), Value::String("transfer".into()));
        }
        out.push(self.audit(AuditEvent::AgentVetoed, f));
        out.push(Action::StopRecorder);
        self.phase = Phase::Stopped;
        self.paused_at_ms = None;
        self.join_muted = false;
        out.push(Action::Notify);
    }

    /// A call not recorded stays watched when the profile offers secure card entry: the agent
    /// may start one on any call (recorded or not).
    fn watch_for_secure_entry(&mut self, out: &mut Vec<Action>) {
        if self.profile.secure_gosub.is_some() && !self.watched {
            self.watched = true;
            out.push(Action::Watch);
        }
    }

    fn open_secure_span(&mut self, now_ms: u64) {
        if let Some(s) = self.secure.as_mut() {
            s.muted = true;
            self.pauses += 1;
            self.spans.push((now_ms.saturating_sub(self.recording_since_ms), None));
        }
    }

    /// The agent's code or a desktop control: the recorder is muted in this frame (a span of the
    /// pause tags), the agent hears the start tone, the caller's keys are the card's from now on.
    fn secure_start(&mut self, source: Source, now_ms: u64, out: &mut Vec<Action>) {
        if !self.secure_available() || self.secure.is_some() {
            return;
        }
        self.held.clear();
        // The entry's own mute takes over from a code's (its span is opened below).
        self.code_muted = false;
        self.relayed.clear();
        // A key the caller holds as the entry starts began before it: its END is no card digit,
        // and the pacer must not wait for it (it would drop every later key of the call).
        let (down, dropping) = self.caller_pace.abandon(now_ms);
        self.end_passes = down;
        self.swallowing.extend(dropping.into_iter().map(|d| (Dir::Caller, d)));
        self.secure =
            Some(Secure { since_ms: now_ms, source, digits: SecretDigits::new(), muted: false });
        // Muted unless it already is (a pause, a transfer being checked): then it stays muted.
        if self.phase == Phase::Recording && !self.paused() && !self.join_muted {
            out.push(Action::Mute);
            self.open_secure_span(now_ms);
        }
        out.push(self.audit(AuditEvent::SecureEntryStarted, json!({ "by": By::Agent.as_str(), "source": source.as_str(), "agent": self.agent, "actor": self.actor })));
        if let Some(t) = &self.profile.secure_start_tone {
            out.push(Action::ToneToAgent(t.clone()));
        }
        out.push(Action::Notify);
    }

    /// A caller's key during an entry: a card digit (the opt-out key too), the end key, or
    /// nothing; never passed on (the agent hears the mask tone instead).
    fn secure_key(
        &mut self,
        press: Press,
        digit: char,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) -> Verdict {
        // A key is acted on at its first frame: BEGIN, or END when no BEGIN came.
        if press == Press::End && self.end_passes == Some(digit) {
            self.end_passes = None;
            return Verdict::Pass;
        }
        if press == Press::End {
            if let Some(i) = self.swallowing.iter().position(|s| *s == (Dir::Caller, digit)) {
                self.swallowing.remove(i);
                return Verdict::Drop;
            }
        } else {
            self.swallowing.push((Dir::Caller, digit));
        }
        let (end_key, max) = (self.profile.secure_end_key, self.profile.secure_max_digits as usize);
        if digit == end_key {
            self.secure_end(EndReason::EndKey, now_ms, out);
        } else if digit.is_ascii_digit() {
            let full = match self.secure.as_mut() {
                Some(s) => {
                    s.digits.push(digit);
                    s.digits.len() >= max
                }
                None => false,
            };
            if let Some(t) = &self.profile.secure_mask_tone {
                out.push(Action::ToneToAgent(t.clone()));
            }
            if full {
                self.secure_end(EndReason::MaxDigits, now_ms, out);
            }
        }
        Verdict::Drop
    }

    fn secure_timeout(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        if self
            .secure
            .as_ref()
            .is_some_and(|s| now_ms.saturating_sub(s.since_ms) >= self.profile.secure_timeout_ms)
        {
            self.secure_end(EndReason::Timeout, now_ms, out);
        }
    }

    /// The entry ends: the recorder is unmuted (unless something else holds it muted), the agent
    /// hears the end tone, the audit line counts the digits, and the digits go to the payment
    /// gosub (not after a hangup: then they are dropped). `now_ms` is u64::MAX at a hangup.
    fn secure_end(&mut self, reason: EndReason, now_ms: u64, out: &mut Vec<Action>) {
        let Some(entry) = self.secure.take() else { return };
        let duration_ms = (now_ms != u64::MAX).then(|| now_ms.saturating_sub(entry.since_ms));
        if entry.muted {
            if let (Some(last), Some(_)) = (self.spans.last_mut(), duration_ms) {
                last.1 = Some(now_ms.saturating_sub(self.recording_since_ms));
            }
            if self.phase == Phase::Recording
                && !self.paused()
                && !self.join_muted
                && !self.code_muted
            {
                out.push(Action::Unmute);
            }
        }
        out.push(self.audit(
            AuditEvent::SecureEntryEnded,
            json!({ "reason": reason.as_str(), "digits": entry.digits.len(), "duration_ms": duration_ms, "agent": self.agent, "source": entry.source.as_str() }),
        ));
        if reason != EndReason::Hangup {
            if let Some(t) = &self.profile.secure_end_tone {
                out.push(Action::ToneToAgent(t.clone()));
            }
            out.push(Action::SecureDigits(entry.digits));
        }
        out.push(Action::Notify);
    }

    /// The call ended: `call_ended` first (so it precedes whatever the deferred work writes),
    /// then the recording is kept, or a refused one's files are looked for again.
    fn hangup(&mut self, out: &mut Vec<Action>) {
        if self.secure.is_some() && self.phase != Phase::Ended {
            self.secure_end(EndReason::Hangup, u64::MAX, out);
        }
        let mut work = Vec::new();
        let status = match self.phase {
            Phase::Ended => return,
            Phase::Recording | Phase::Stopped => {
                let spans = self
                    .spans
                    .iter()
                    .map(|(a, b)| format!("{a}-{}", b.map_or("end".to_string(), |b| b.to_string())))
                    .collect::<Vec<_>>()
                    .join(",");
                work.push(Action::Keep { pauses: self.pauses, spans });
                "recorded"
            }
            Phase::Armed | Phase::Checking => "no_agent",
            Phase::OptedOut => {
                work.extend(timing::DELETE_AGAIN_AFTER.map(|after| Action::DeleteLate { after }));
                "opted_out"
            }
            Phase::Deleted => {
                work.extend(timing::DELETE_AGAIN_AFTER.map(|after| Action::DeleteLate { after }));
                "deleted"
            }
            Phase::Starting => "recorder_not_started",
            Phase::NotRecording => "not_recorded",
            Phase::Created | Phase::Notice | Phase::FullNotice => "hangup_during_notice",
        };
        self.phase = Phase::Ended;
        self.paused_at_ms = None;
        let mut facts = json!({ "outcome": status });
        if self.caller_pace.dropped > 0 {
            // Keys faster than the PBX relays them (a flood), dropped before they reached it.
            facts["keys_dropped"] = json!(self.caller_pace.dropped);
        }
        out.push(self.audit(AuditEvent::CallEnded, facts));
        out.extend(work);
        out.push(Action::Notify);
    }
}

#[cfg(test)]
mod tests;
