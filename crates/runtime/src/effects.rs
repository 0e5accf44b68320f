//! The one effect pipeline. The core answers every event with actions; [`Executor::dispatch`]
//! runs them, in order, with one exhaustive `match`: inline actions at once on the thread that fed
//! the event (the media path, or the dialplan application for `Play`), deferred ones on the worker
//! thread, fed over a crossbeam channel. What the host answers (recorder started, cap checked,
//! agent found) comes back as an event for the core, never as a callback.
//!
//! Every piece of a call's work is counted; when the call has ended and nothing is left (its late
//! deletions included), the call's last audit line, `call_settled`, is written.
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use serde_json::{json, Map};

use callconsent_core::audit::{AuditEvent, By};
use callconsent_core::call::{Action, CapOutcome, Event, OnFull, PromptOutcome, Queue};
use callconsent_core::policy;
use callconsent_core::timing;

use crate::audit::AuditSender;
use crate::calls::{Calls, Slot};
use crate::encoders::{self, PoolSender};
use crate::host::{CallChannel, Host};
use crate::shared::CapStore;
use crate::spool;

/// What every effect needs: the runtime's shared parts.
pub struct Executor {
    pub(crate) audit: AuditSender,
    pub(crate) caps: CapStore,
    pub(crate) host: Arc<dyn Host>,
    pub(crate) spool: PathBuf,
    pub(crate) archiver: Option<PoolSender>,
    pub(crate) calls: Calls,
    /// R11: the age recipients new archives are encrypted to (a reload may rotate them; files
    /// already written keep theirs).
    pub(crate) encrypt_to: std::sync::RwLock<Arc<Vec<String>>>,
    /// The recorder's worker (start, stop, files, caps) and the signals' worker (prompts, tones,
    /// digits), each with a bounded queue.
    recorder: Sender<Msg>,
    signals: Sender<Msg>,
    store: Sender<Msg>,
}

/// A deferred action of one call, with a reference to the caller's channel when there is one.
struct Job {
    slot: Arc<Slot>,
    chan: Option<Box<dyn CallChannel + Send>>,
    action: Action,
    tries: u32,
    due: Instant,
}

enum Msg {
    Job(Job),
    Stop,
}

/// A worker's own queue: jobs waiting for their time (late deletions, retries), in due order.
pub(crate) struct Local {
    due: BTreeMap<(Instant, u64), Job>,
    seq: u64,
    /// Which worker this is: its own jobs go here, the other's over the other's channel.
    queue: Queue,
}

impl Local {
    fn at(&mut self, job: Job) {
        self.seq += 1;
        self.due.insert((job.due, self.seq), job);
    }
}

/// What the worker got from the host for one deferred action.
enum Answer {
    Done,
    /// Feed this to the core.
    Event(Event),
    /// The host could not do it yet (why): try again per the action's retry rule.
    Retry(&'static str),
}

impl Executor {
    pub(crate) fn new(
        audit: AuditSender,
        caps: CapStore,
        host: Arc<dyn Host>,
        spool: PathBuf,
        archiver: Option<PoolSender>,
    ) -> (Arc<Executor>, [Jobs; 3]) {
        let (recorder, rrx) = bounded(timing::QUEUE_CAPACITY);
        let (signals, srx) = bounded(timing::QUEUE_CAPACITY);
        let (store, strx) = bounded(timing::QUEUE_CAPACITY);
        let exec = Arc::new(Executor {
            audit,
            caps,
            host,
            spool,
            archiver,
            calls: Calls::default(),
            encrypt_to: Default::default(),
            recorder,
            signals,
            store,
        });
        (exec, [Jobs(rrx, Queue::Recorder), Jobs(srx, Queue::Signals), Jobs(strx, Queue::Store)])
    }

    fn sender(&self, q: Queue) -> &Sender<Msg> {
        match q {
            Queue::Recorder => &self.recorder,
            Queue::Signals => &self.signals,
            Queue::Store => &self.store,
        }
    }

    /// Feeds one event to a call and runs what the core answers. Returns the frame's verdict,
    /// whether the host must feed ticks, and whether the caller hung up during a prompt.
    pub(crate) fn feed(&self, slot: &Arc<Slot>, chan: Option<&dyn CallChannel>, ev: Event) -> Fed {
        let (verdict, actions, ticks) = slot.feed(ev);
        let hung_up = self.dispatch(slot, chan, None, actions);
        Fed { verdict, ticks, hung_up }
    }

    /// Runs actions the caller of `Slot::feed` already has (a control reads them first).
    pub(crate) fn dispatch_from_host(
        &self,
        slot: &Arc<Slot>,
        chan: &dyn CallChannel,
        actions: Vec<Action>,
    ) {
        self.dispatch(slot, Some(chan), None, actions);
    }

    /// Runs actions in order. `chan` is the caller's channel when the current thread may use it;
    /// `local` is the worker's queue when this runs on the worker.
    fn dispatch(
        &self,
        slot: &Arc<Slot>,
        chan: Option<&dyn CallChannel>,
        mut local: Option<&mut Local>,
        actions: Vec<Action>,
    ) -> bool {
        slot.busy();
        let mut queue: VecDeque<Action> = actions.into();
        let mut hung_up = false;
        while let Some(action) = queue.pop_front() {
            match action {
                // Inline: the dialplan application's thread (the notice and the full notice).
                Action::Play { file, keys } => {
                    let outcome = match chan {
                        Some(c) => c.play(&file, &keys),
                        None => PromptOutcome::Hangup,
                    };
                    hung_up |= outcome == PromptOutcome::Hangup;
                    if !keys.is_empty() {
                        queue.extend(slot.feed(Event::PromptDone(outcome)).1);
                    }
                }
                Action::Watch => {
                    self.calls.insert(slot.clone());
                    let watched = chan
                        .map_or(Err("the caller's channel is gone".to_string()), |c| c.watch(slot));
                    if let Err(reason) = watched {
                        self.calls.remove(&slot.uniqueid);
                        queue.extend(slot.feed(Event::RecorderFailed { reason }).1);
                    }
                }
                // Inline on the media path: a state change the host makes in the same frame.
                Action::Mute | Action::Unmute => match chan {
                    Some(c) => c.mute_recorder(action == Action::Mute),
                    // No channel: the call has hung up and its recorder went with it.
                    None => log::debug!("callconsent: {}: no channel to (un)mute", slot.channel),
                },
                Action::SetStatus(status) => match chan {
                    Some(c) => c.set_status(status),
                    None => log::debug!(
                        "callconsent: {}: no channel to set {} on",
                        slot.channel,
                        status.as_str()
                    ),
                },
                Action::Audit { event, facts } => self.audit.send(slot.record(event, facts)),
                Action::Notify => self.host.notify(&slot.channel, &slot.status_fields()),
                deferred @ (Action::FindAgent
                | Action::ReserveCap { .. }
                | Action::StartRecorder
                | Action::StopRecorder
                | Action::Keep { .. }
                | Action::StopAndDelete { .. }
                | Action::DeleteLate { .. }
                | Action::PlayToCaller(_)
                | Action::ToneToAgent(_)
                | Action::SendToCaller(_)
                | Action::SecureDigits(_)) => {
                    let queue_of = deferred.queue();
                    let on_full = deferred.on_full_queue();
                    slot.busy();
                    let job = Job {
                        slot: slot.clone(),
                        chan: chan.map(|c| c.owned()),
                        due: Instant::now() + deferred.delay(),
                        action: deferred,
                        tries: 0,
                    };
                    match local.as_deref_mut() {
                        Some(l) if l.queue == queue_of => l.at(job),
                        _ => match self.sender(queue_of).try_send(Msg::Job(job)) {
                            Ok(()) => {}
                            Err(TrySendError::Disconnected(_)) => slot.undo_busy(),
                            Err(TrySendError::Full(Msg::Job(job))) => {
                                let what = format!("{:?}", job.action);
                                let instead = match on_full {
                                    // Privacy first: a stop or a deletion waits for room.
                                    OnFull::Wait => {
                                        let _ = self.sender(queue_of).send(Msg::Job(job));
                                        "waited for room"
                                    }
                                    OnFull::Refuse(ev) => {
                                        drop(job);
                                        slot.undo_busy();
                                        queue.extend(slot.feed(ev).1);
                                        "refused: not recorded"
                                    }
                                    OnFull::Drop => {
                                        drop(job);
                                        slot.undo_busy();
                                        "left out"
                                    }
                                };
                                log::warn!("callconsent: {}: the {queue_of:?} queue is full: {what} {instead}", slot.channel);
                                let mut f = Map::new();
                                f.insert("effect".into(), json!(what));
                                f.insert("outcome".into(), json!(instead));
                                self.audit.send(slot.record(AuditEvent::QueueFull, f));
                            }
                            Err(TrySendError::Full(Msg::Stop)) => {}
                        },
                    }
                }
            }
        }
        self.finish(slot);
        hung_up
    }

    /// One piece of the call's work is done; the last one after hangup settles the call.
    fn finish(&self, slot: &Slot) {
        if slot.done() {
            self.audit.send(slot.record(AuditEvent::CallSettled, Map::new()));
        }
    }

    /// Runs one deferred action on the worker.
    fn run(&self, job: Job, local: &mut Local) {
        let Job { slot, chan, action, tries, .. } = job;
        let answer = self.answer(&slot, chan.as_deref(), &action, tries);
        match answer {
            Answer::Done => {}
            Answer::Event(ev) => {
                let actions = slot.feed(ev).1;
                let c: Option<&dyn CallChannel> = chan.as_deref().map(|c| c as &dyn CallChannel);
                self.dispatch(&slot, c, Some(local), actions);
            }
            Answer::Retry(why) => match action.retry() {
                Some(r) if tries < r.tries => {
                    local.at(Job {
                        slot,
                        chan,
                        action,
                        tries: tries + 1,
                        due: Instant::now() + r.every,
                    });
                    return;
                }
                _ => log::warn!("callconsent: {}: {why}; given up", slot.channel),
            },
        }
        self.finish(&slot);
    }

    fn answer(
        &self,
        slot: &Arc<Slot>,
        chan: Option<&(dyn CallChannel + Send)>,
        action: &Action,
        tries: u32,
    ) -> Answer {
        match action {
            Action::FindAgent => match chan.map(|c| c.bridge_peer()) {
                Some(Some(peer)) => {
                    Answer::Event(Event::Bridged { agent: policy::agent_id(&peer) })
                }
                Some(None) => Answer::Retry("joined a bridge without a peer"),
                None => Answer::Done,
            },
            Action::ReserveCap { agent, period, period_max } => {
                let key = period.key(chrono::Utc::now());
                let (fallback, local_seconds) = slot.with_call(|call| {
                    (call.profile().store_unavailable, call.profile().store_local_seconds)
                });
                let reserved = self.caps.reserve(agent, &key, *period_max, fallback, local_seconds);
                if let Some(facts) = reserved.unavailable {
                    self.audit.send(slot.record(AuditEvent::StoreUnavailable, facts));
                }
                let outcome = match reserved.result {
                    Ok((count, true)) => CapOutcome::Reserved { count },
                    Ok((count, false)) => CapOutcome::Reached { count },
                    Err(e) => {
                        log::error!("callconsent: cap store: {e}");
                        CapOutcome::StoreFailed(e)
                    }
                };
                Answer::Event(Event::CapChecked { agent: agent.clone(), period: key, outcome })
            }
            Action::StartRecorder => {
                let Some(c) = chan else {
                    return Answer::Event(Event::RecorderFailed {
                        reason: "the caller's channel is gone".into(),
                    });
                };
                let plan = spool::plan(
                    &self.spool,
                    &slot.uniqueid,
                    slot.with_call(|call| call.profile().record_legs),
                );
                slot.set_recorder(plan.files(), String::new());
                match c.start_recorder(&plan) {
                    Ok(id) => {
                        slot.set_recorder(plan.files(), id);
                        Answer::Event(Event::RecorderStarted {
                            file: plan.mixed.display().to_string(),
                            now_ms: slot.now_ms(),
                        })
                    }
                    Err(reason) => Answer::Event(Event::RecorderFailed { reason }),
                }
            }
            Action::StopRecorder => {
                if let Some(c) = chan {
                    c.stop_recorder(&slot.recorder_id());
                }
                Answer::Done
            }
            Action::StopAndDelete { by } => {
                if let Some(c) = chan {
                    c.stop_recorder(&slot.recorder_id());
                }
                self.delete_and_audit(slot, *by);
                Answer::Done
            }
            Action::DeleteLate { .. } => {
                // A later look speaks only when it finds something.
                if slot.files().iter().any(|f| f.exists()) {
                    self.delete_and_audit(slot, By::Cleanup);
                }
                Answer::Done
            }
            Action::Keep { pauses, spans } => {
                let files = slot.files();
                // The recorder's own thread closes the file after hangup: wait for it, longer for
                // a file with audio than for one that is still only a header.
                let waited = timing::KEEP_POLL * tries;
                let limit = if files.iter().all(|f| spool::header_only(f)) {
                    timing::KEEP_WAIT_HEADER_ONLY
                } else {
                    timing::KEEP_WAIT_AUDIO
                };
                let open = files.iter().any(|f| spool::still_written(f));
                if waited < limit && open {
                    return Answer::Retry(
                        "the recorder did not close its file in time; kept as it is",
                    );
                }
                if open {
                    log::warn!("callconsent: {}: the recorder did not close its file in {limit:?}; kept as WAV, not archived", slot.channel);
                }
                self.keep(slot, &files, *pauses, spans, !open);
                Answer::Done
            }
            Action::PlayToCaller(file) => {
                if !chan.is_some_and(|c| c.play_to_caller(file)) {
                    log::info!(
                        "callconsent: the caller is not in a bridge; \"{file}\" was not played"
                    );
                }
                Answer::Done
            }
            Action::ToneToAgent(tones) => match chan.map(|c| c.tone_to_agent(tones)) {
                Some(false) => Answer::Retry("no agent to hear the tone"),
                Some(true) | None => Answer::Done,
            },
            Action::SendToCaller(digits) => {
                if !chan.is_some_and(|c| c.send_to_caller(digits)) {
                    log::warn!("callconsent: could not pass digits on to the caller");
                }
                Answer::Done
            }
            Action::SecureDigits(digits) => {
                // The digits wait in the slot for CALLCONSENT(secure_digits), read once by the
                // payment gosub; they are wiped when read, or with the call.
                let Some(gosub) = slot.with_call(|c| c.profile().secure_gosub.clone()) else {
                    log::info!("callconsent: {}: a secure entry ended; the profile has no secure_gosub, so its {} digit(s) were discarded", slot.channel, digits.len());
                    return Answer::Done;
                };
                slot.set_secure_digits(digits.clone());
                if !chan.is_some_and(|c| c.run_gosub(&gosub)) {
                    drop(slot.take_secure_digits());
                    log::warn!("callconsent: {}: the payment gosub {gosub} could not be run on the caller's channel (not in a bridge?); the card digits were dropped", slot.channel);
                }
                Answer::Done
            }
            // Inline actions are never queued (see `dispatch`); should one get here, it is refused.
            Action::Play { .. }
            | Action::Watch
            | Action::Mute
            | Action::Unmute
            | Action::SetStatus(_)
            | Action::Audit { .. }
            | Action::Notify => {
                log::error!(
                    "callconsent: {}: {action:?} reached the worker; not run",
                    slot.channel
                );
                Answer::Done
            }
        }
    }

    /// Deletes every file of the call and says so (`by` the caller, the agent, or a later look).
    fn delete_and_audit(&self, slot: &Slot, by: By) {
        let deleted = spool::delete(&slot.files());
        let mut f = Map::new();
        f.insert("by".into(), json!(by.as_str()));
        f.insert("files".into(), json!(deleted));
        self.audit.send(slot.record(AuditEvent::RecordingDeleted, f));
    }

    /// Moves the recording to the kept tree and audits it; `finished` recordings are archived.
    fn keep(&self, slot: &Slot, files: &[PathBuf], pauses: u32, spans: &str, finished: bool) {
        let (kept, duration_ms) = match spool::keep(files) {
            Ok(k) => k,
            Err(e) => {
                log::error!("callconsent: {e}");
                return;
            }
        };
        let recipients = self.encrypt_to.read().map(|r| r.clone()).unwrap_or_default();
        let mut facts = spool::kept_facts(&kept, duration_ms, pauses, spans, slot.agent());
        if !slot.number_hash.is_empty() {
            facts.insert("number_hash".into(), json!(slot.number_hash));
        }
        if self.archiver.is_some() && !recipients.is_empty() {
            facts.insert(
                "encrypted_to".into(),
                json!(recipients
                    .iter()
                    .map(|r| callconsent_core::policy::recipient_fingerprint(r))
                    .collect::<Vec<_>>()),
            );
        }
        let rec = slot.record(AuditEvent::RecordingKept, facts);
        let Some(archiver) = self.archiver.as_ref().filter(|_| finished) else {
            self.audit.send(rec);
            return;
        };
        // The archive carries the hash of this very line, returned once it is on disk.
        let hash = self.audit.send_acked(rec);
        let mut tags = vec![
            ("CALLCONSENT_CALL".to_string(), slot.linkedid.clone()),
            ("CALLCONSENT_PROFILE".to_string(), slot.profile.clone()),
            ("CALLCONSENT_NOTICE_VERSION".to_string(), slot.notice.clone()),
            ("CALLCONSENT_AGENT".to_string(), slot.agent().unwrap_or_default()),
            ("CALLCONSENT_PAUSES".to_string(), spans.to_string()),
        ];
        if !slot.number_hash.is_empty() {
            tags.push(("CALLCONSENT_NUMBER_HASH".to_string(), slot.number_hash.clone()));
        }
        // The mixed recording carries the hash; the per-leg files name the call.
        let mut hash = Some(hash);
        for k in &kept {
            let wav = PathBuf::from(k);
            tags.retain(|(key, _)| key != "CALLCONSENT_FILE");
            tags.push((
                "CALLCONSENT_FILE".to_string(),
                wav.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            ));
            let job = encoders::Job {
                wav,
                call: slot.linkedid.clone(),
                channel: slot.channel.clone(),
                tags: tags.clone(),
                audit_hash: hash.take(),
                recipients: recipients.to_vec(),
            };
            encoders::write_sidecar(&job, None);
            archiver.send(job);
        }
    }
}

/// What feeding one event gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    pub verdict: callconsent_core::call::Verdict,
    pub ticks: bool,
    pub hung_up: bool,
}

/// A worker's end of its job queue, until the worker thread takes it.
pub(crate) struct Jobs(Receiver<Msg>, Queue);

/// The worker threads. Dropping them runs what was queued before, then the deletions still due
/// (privacy first), and joins the threads; other waiting work (tones, retries) is dropped.
pub(crate) struct Worker {
    exec: Arc<Executor>,
    threads: Vec<JoinHandle<()>>,
}

impl Worker {
    pub(crate) fn start(exec: Arc<Executor>, jobs: [Jobs; 3]) -> std::io::Result<Worker> {
        let mut w = Worker { exec: exec.clone(), threads: vec![] };
        for Jobs(rx, q) in jobs {
            let e = exec.clone();
            let name = match q {
                Queue::Recorder => "cc-worker",
                Queue::Signals => "cc-signals",
                Queue::Store => "cc-store",
            };
            w.threads.push(
                std::thread::Builder::new().name(name.into()).spawn(move || work(&e, &rx, q))?,
            );
        }
        Ok(w)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // The signals first: their jobs may still queue recorder work (never the other way).
        let _ = self.exec.signals.send(Msg::Stop);
        let _ = self.exec.store.send(Msg::Stop);
        let _ = self.exec.recorder.send(Msg::Stop);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn work(exec: &Executor, rx: &Receiver<Msg>, queue: Queue) {
    let mut local = Local { due: BTreeMap::new(), seq: 0, queue };
    loop {
        let next = local.due.keys().next().map(|(t, _)| *t);
        let msg = match next {
            Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())).ok(),
            None => rx.recv().ok(),
        };
        match msg {
            Some(Msg::Job(job)) if job.due > Instant::now() => local.at(job),
            Some(Msg::Job(job)) => exec.run(job, &mut local),
            Some(Msg::Stop) => {
                // Unloading: the deletions still due are done now, and the recordings waiting to be
                // kept are kept as they are; tones and other retries are dropped.
                for job in std::mem::take(&mut local.due).into_values() {
                    match job.action {
                        Action::DeleteLate { .. } | Action::StopAndDelete { .. } => {
                            exec.run(Job { due: Instant::now(), ..job }, &mut local)
                        }
                        Action::Keep { .. } => exec.run(
                            Job { due: Instant::now(), tries: u32::MAX / 2, ..job },
                            &mut local,
                        ),
                        _ => {}
                    }
                }
                return;
            }
            None if next.is_none() => return,
            None => {}
        }
        let now = Instant::now();
        while let Some(entry) = local.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let job = entry.remove();
            exec.run(job, &mut local);
        }
    }
}
