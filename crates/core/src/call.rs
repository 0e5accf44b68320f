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
use crate::policy::{self, CapPeriod};
use crate::pace::Pacer;
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
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pause" => Some(Command::Pause),
            "resume" => Some(Command::Resume),
            "delete" => Some(Command::Delete),
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
    RecorderStarted { file: String, now_ms: u64 },
    RecorderFailed { reason: String },
    /// A key's start or end; `len_ms` is the key's length as the PBX gives it at the end (0 when
    /// it does not say).
    Dtmf { dir: Dir, press: Press, digit: char, len_ms: u32, now_ms: u64 },
    Tick { now_ms: u64 },
    /// A desktop or dialplan control; `actor` names who acted (the channel the control named or
    /// ran on), for the audit line.
    Control { cmd: Command, source: Source, actor: String, now_ms: u64 },
    /// The caller's channel joined a bridge (an agent answered, or a transfer); who the agent is
    /// comes next, as `Bridged`.
    JoinedBridge,
    /// The caller's channel is bridged with this agent.
    Bridged { agent: String },
    /// The agent's cap for the period was checked (and a recording reserved when allowed).
    CapChecked { agent: String, period: String, outcome: CapOutcome },
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
    Play { file: String, keys: String },
    /// Watch the channel from now on (keys, bridge joins): the call is armed.
    Watch,
    /// Find who the caller is bridged with (the bridge peer, which may still be joining), then
    /// feed `Bridged`.
    FindAgent,
    /// Reserve one recording in the agent's cap for the current period (off the media path), then
    /// feed `CapChecked`.
    ReserveCap { agent: String, period: CapPeriod, period_max: u64 },
    StartRecorder,
    /// Stop the recorder and keep what was recorded (a transfer to a never-recorded agent).
    StopRecorder,
    /// The call ended with consent intact: move the recording to the kept tree, then audit
    /// `recording_kept`.
    Keep { pauses: u32, spans: String },
    Mute,
    Unmute,
    /// Stop the recorder and delete every file of the call (then audit `recording_deleted`).
    StopAndDelete { by: By },
    /// After hangup, this long after it: delete the files of a refused recording again, in case
    /// the recorder's own thread wrote one late (audited only when it finds something).
    DeleteLate { after: Duration },
    PlayToCaller(String),
    ToneToAgent(String),
    /// Digits held back as a possible code that turned out not to be one: pass them on, in order.
    SendToCaller(String),
    SetStatus(Status),
    /// An audit line about this call (stamped with time, call and channel by the runtime).
    Audit { event: AuditEvent, facts: Map<String, Value> },
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
            Action::PlayToCaller(_) | Action::ToneToAgent(_) | Action::SendToCaller(_) => Queue::Signals,
            _ => Queue::Recorder,
        }
    }

    pub fn on_full_queue(&self) -> OnFull {
        match self {
            Action::StopRecorder | Action::StopAndDelete { .. } | Action::DeleteLate { .. } | Action::Keep { .. } => OnFull::Wait,
            Action::StartRecorder => OnFull::Refuse(Event::RecorderFailed { reason: "the worker's queue is full: not recorded".into() }),
            Action::ReserveCap { agent, .. } => OnFull::Refuse(Event::CapChecked {
                agent: agent.clone(),
                period: String::new(),
                outcome: CapOutcome::StoreFailed("the worker's queue is full".into()),
            }),
            // Not finding the agent leaves the call unrecorded (armed) or muted (a transfer).
            Action::FindAgent => OnFull::Drop,
            Action::PlayToCaller(_) | Action::ToneToAgent(_) | Action::SendToCaller(_) => OnFull::Drop,
            Action::Play { .. } | Action::Watch | Action::Mute | Action::Unmute | Action::SetStatus(_) | Action::Audit { .. } | Action::Notify => OnFull::Drop,
        }
    }

    pub fn lane(&self) -> Lane {
        match self {
            Action::Play { .. } | Action::Watch | Action::Mute | Action::Unmute | Action::SetStatus(_) | Action::Audit { .. } | Action::Notify => Lane::Inline,
            Action::FindAgent
            | Action::ReserveCap { .. }
            | Action::StartRecorder
            | Action::StopRecorder
            | Action::Keep { .. }
            | Action::StopAndDelete { .. }
            | Action::DeleteLate { .. }
            | Action::PlayToCaller(_)
            | Action::ToneToAgent(_)
            | Action::SendToCaller(_) => Lane::Deferred,
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
            Action::Keep { .. } => Some(Retry { every: timing::KEEP_POLL, tries: (timing::KEEP_WAIT_AUDIO.as_millis() / timing::KEEP_POLL.as_millis()) as u32 }),
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
    /// Who is acting, while a control is being handled (for its audit line).
    actor: Option<String>,
    /// The new agent of a transfer whose cap is being checked while the recording is muted.
    transfer_check: Option<String>,
    /// The caller's keys, paced to what the PBX can relay (a flood cannot hold the opt-out back).
    caller_pace: Pacer,
    /// The keyed hash of the customer's number (normalised), on the call's first line: how a
    /// caller's request finds their calls without the log holding the number.
    number_hash: Option<String>,
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
    pub fn new(profile: Arc<Profile>, secret: &[u8], call_id: &str, caller: &str, dialled: &str) -> Call {
        let draw = draw::draw(secret, call_id, profile.record_share);
        let exempt = if profile.private_prefix.as_deref().is_some_and(|p| !dialled.is_empty() && dialled.starts_with(p)) {
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
            caller_pace: Pacer::default(),
            pauses: 0,
            spans: Vec::new(),
            recording_since_ms: 0,
            exempt,
            key_id: policy::key_id(secret),
            agent: None,
            confirm_at_bridge: false,
            join_muted: false,
            actor: None,
            transfer_check: None,
            number_hash: None,
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
        (self.paused() && self.profile.pause_max_seconds > 0) || !self.held.is_empty()
    }
    pub fn state_name(&self) -> &'static str {
        if self.phase == Phase::Recording && self.paused() {
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
                    out.push(self.audit(AuditEvent::RecordingStarted, json!({ "file": file, "agent": self.agent })));
                    self.file = Some(file);
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
                match dir {
                    Dir::Caller => self.caller_key(press, digit, len_ms, now_ms, &mut out),
                    Dir::Agent => self.agent_key(press, digit, now_ms, &mut out),
                }
            }
            Event::Tick { now_ms } => {
                self.expire_held(now_ms, &mut out);
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
                // Only a call that may still start, stop or confirm something needs its agent.
                if matches!(self.phase, Phase::Armed | Phase::Recording) || (self.phase == Phase::OptedOut && self.confirm_at_bridge) {
                    out.push(Action::FindAgent);
                }
                Verdict::Pass
            }
            Event::Bridged { agent } => {
                self.bridged(agent, &mut out);
                Verdict::Pass
            }
            Event::CapChecked { agent, period, outcome } if self.phase == Phase::Recording && self.transfer_check.as_deref() == Some(agent.as_str()) => {
                self.transfer_check = None;
                let max = self.profile.max_per_agent;
                match outcome {
                    CapOutcome::Reserved { count } => {
                        out.push(self.audit(AuditEvent::AgentCleared, json!({ "agent": agent, "period": period, "count": count, "max": max, "after": "transfer" })));
                        self.transferred_to(agent, &mut out);
                    }
                    CapOutcome::Reached { count } => {
                        let reason = format!("cap reached: {count} of {max} recordings this {period}");
                        self.stop_for(agent, json!({ "period": period, "count": count, "max": max, "reason": reason }), &mut out);
                    }
                    CapOutcome::StoreFailed(e) => {
                        let reason = format!("cap store unavailable ({e}): not recorded");
                        self.stop_for(agent, json!({ "period": period, "count": max, "max": max, "reason": reason }), &mut out);
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
                            let reason = format!("cap reached: {count} of {max} recordings this {period}");
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
            out.push(self.audit(AuditEvent::Exempt, json!({ "reason": reason, "number_hash": hash, "key_id": self.key_id })));
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
            f["reason"] = Value::String(format!("bucket {} is not below {} (share {} %)", self.draw.bucket, u32::from(p.record_share) * 100, p.record_share));
            out.push(self.audit(AuditEvent::NotSelected, f));
        }
        self.phase = Phase::Notice;
        out.push(Action::Play { file: p.notice.clone(), keys: format!("{}{}", p.optout_key, p.info_key) });
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
                out.push(self.audit(AuditEvent::OptOut, json!({ "during": "notice", "key": k.to_string() })));
                out.push(Action::Play { file: self.profile.optout_confirm.clone(), keys: String::new() });
                out.push(Action::SetStatus(Status::OptedOut));
                out.push(Action::Notify);
            }
            PromptOutcome::Key(k) if k == self.profile.info_key && self.phase == Phase::Notice => {
                self.phase = Phase::FullNotice;
                out.push(Action::Play { file: self.profile.full_notice.clone(), keys: self.profile.optout_key.to_string() });
            }
            PromptOutcome::Completed | PromptOutcome::Key(_) => {
                if self.draw.selected {
                    // R13: the recorder starts when an agent is bridged, after the agent-side checks.
                    self.phase = Phase::Armed;
                    out.push(Action::Watch);
                    out.push(Action::SetStatus(Status::Recording));
                } else {
                    self.phase = Phase::NotRecording;
                    out.push(Action::SetStatus(Status::NotSelected));
                }
            }
            PromptOutcome::Missing => {
                // R1: a caller who was not told is never recorded.
                self.phase = Phase::NotRecording;
                out.push(self.audit(AuditEvent::NotRecorded, json!({ "reason": "the notice could not be played" })));
                out.push(Action::SetStatus(Status::Error));
            }
            PromptOutcome::Hangup => self.hangup(out),
        }
    }

    fn caller_key(&mut self, press: Press, digit: char, len_ms: u32, now_ms: u64, out: &mut Vec<Action>) -> Verdict {
        let paced = |c: &mut Call| if c.caller_pace.admit(press, digit, len_ms, now_ms) { Verdict::Pass } else { Verdict::Drop };
        if digit != self.profile.optout_key {
            return paced(self);
        }
        match self.phase {
            Phase::Armed | Phase::Checking => {
                // Refused before anything was recorded (still queued or ringing): the caller
                // hears the confirmation once connected, the only moment a prompt can reach them.
                self.phase = Phase::OptedOut;
                self.confirm_at_bridge = self.agent.is_none();
                out.push(self.audit(AuditEvent::OptOut, json!({ "during": "call", "key": digit.to_string() })));
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
                out.insert(at + 1, self.audit(AuditEvent::OptOut, json!({ "during": "call", "key": digit.to_string() })));
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

    fn codes(&self) -> [(&str, Command); 3] {
        let p = &self.profile;
        [(&p.pause_code, Command::Pause), (&p.resume_code, Command::Resume), (&p.delete_code, Command::Delete)]
    }

    fn agent_key(&mut self, press: Press, digit: char, now_ms: u64, out: &mut Vec<Action>) -> Verdict {
        if press == Press::End {
            if let Some(i) = self.swallowing.iter().position(|s| *s == (Dir::Agent, digit)) {
                self.swallowing.remove(i);
                return Verdict::Drop;
            }
        }
        if !matches!(self.phase, Phase::Recording) {
            return Verdict::Pass;
        }
        // A key press is acted on at its first frame: BEGIN, or END when no BEGIN came.
        let mut candidate = self.held.clone();
        candidate.push(digit);
        if !self.codes().iter().any(|(c, _)| c.starts_with(&candidate)) {
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
            return Verdict::Drop;
        }
        if press == Press::Begin {
            self.swallowing.push((Dir::Agent, digit));
        }
        if let Some(cmd) = self.codes().iter().find(|(c, _)| *c == candidate).map(|(_, cmd)| *cmd) {
            self.held.clear();
            self.command(cmd, Source::Keypad, now_ms, out);
        } else {
            if self.held.is_empty() {
                self.held_since_ms = now_ms;
            }
            self.held = candidate;
        }
        Verdict::Drop
    }

    fn expire_held(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        if !self.held.is_empty() && now_ms.saturating_sub(self.held_since_ms) >= self.profile.code_timeout_ms {
            out.push(Action::SendToCaller(std::mem::take(&mut self.held)));
        }
    }

    fn command(&mut self, cmd: Command, source: Source, now_ms: u64, out: &mut Vec<Action>) {
        if self.phase != Phase::Recording {
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
            _ => {}
        }
    }

    fn resume(&mut self, by: By, source: Source, now_ms: u64, out: &mut Vec<Action>) {
        self.paused_at_ms = None;
        if let Some(last) = self.spans.last_mut() {
            last.1 = Some(now_ms.saturating_sub(self.recording_since_ms));
        }
        // During a transfer's check the recording stays muted until the new agent is cleared.
        if !self.join_muted {
            out.push(Action::Unmute);
        }
        out.push(self.audit(AuditEvent::Resumed, json!({ "by": by.as_str(), "source": source.as_str(), "agent": self.agent, "actor": self.actor })));
        if let Some(t) = &self.profile.resume_tone {
            out.push(Action::ToneToAgent(t.clone()));
        }
        out.push(Action::Notify);
    }

    fn auto_resume(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let (Some(since), max) = (self.paused_at_ms, self.profile.pause_max_seconds * 1000) else { return };
        if max == 0 || self.phase != Phase::Recording {
            return;
        }
        let paused_for = now_ms.saturating_sub(since);
        if paused_for >= max {
            self.resume(By::Auto, Source::PauseMaxSeconds, now_ms, out);
        } else if !self.warned && paused_for + timing::AUTO_RESUME_WARNING.as_millis() as u64 >= max {
            self.warned = true;
            out.push(self.audit(AuditEvent::PauseWarning, json!({ "resumes_in_ms": max - paused_for, "agent": self.agent })));
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
        out.push(Action::Mute);
        out.push(Action::StopAndDelete { by });
        out.push(Action::Notify);
    }

    fn bridged(&mut self, agent: String, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Armed => {
                self.agent = Some(agent.clone());
                if let Some(glob) = policy::agent_exempt(&self.profile.never_record, &agent) {
                    out.push(self.audit(AuditEvent::AgentVetoed, json!({ "agent": agent, "reason": format!("never_record agent:{glob}") })));
                    self.phase = Phase::NotRecording;
                    out.push(Action::Notify);
                } else if self.profile.max_per_agent > 0 {
                    self.phase = Phase::Checking;
                    out.push(Action::ReserveCap { agent, period: self.profile.cap_period, period_max: self.profile.max_per_agent });
                } else {
                    out.push(self.audit(AuditEvent::AgentCleared, json!({ "agent": agent })));
                    self.phase = Phase::Starting;
                    out.push(Action::StartRecorder);
                }
            }
            // A transfer to a never-recorded agent (R12): the recording stops there; what was
            // recorded with the previous agent is kept.
            Phase::Recording if policy::agent_exempt(&self.profile.never_record, &agent).is_some() => {
                let glob = policy::agent_exempt(&self.profile.never_record, &agent).unwrap_or_default();
                self.stop_for(agent, json!({ "reason": format!("never_record agent:{glob}") }), out);
            }
            // A transfer to another agent takes that agent's cap reservation (R6), muted meanwhile.
            Phase::Recording if self.profile.max_per_agent > 0 && self.agent.as_deref() != Some(agent.as_str()) => {
                self.transfer_check = Some(agent.clone());
                out.push(Action::ReserveCap { agent, period: self.profile.cap_period, period_max: self.profile.max_per_agent });
            }
            Phase::OptedOut if self.confirm_at_bridge => {
                self.confirm_at_bridge = false;
                self.agent = Some(agent);
                out.push(Action::PlayToCaller(self.profile.optout_confirm.clone()));
            }
            Phase::Recording => self.transferred_to(agent, out),
            _ => {}
        }
    }

    /// The new agent of a transfer is cleared: the recording goes on (unmuted unless paused), and
    /// whoever takes the call hears that it is recorded, and whether it is paused (R8).
    fn transferred_to(&mut self, agent: String, out: &mut Vec<Action>) {
        self.agent = Some(agent);
        if std::mem::take(&mut self.join_muted) && !self.paused() {
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

    /// The call ended: `call_ended` first (so it precedes whatever the deferred work writes),
    /// then the recording is kept, or a refused one's files are looked for again.
    fn hangup(&mut self, out: &mut Vec<Action>) {
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
