//! The runtime as an adapter sees it: started with a configuration and a [`Host`], fed what the
//! PBX reports (a call begins, a frame, a bridge join, a control, a hangup).
use std::path::Path;
use std::sync::{Arc, RwLock};

use callconsent_core::audit::Source;
use callconsent_core::call::{Call, Command, Dir, Event, Press, Status};
use callconsent_core::config::Config;
use callconsent_core::policy;

use crate::audit::AuditLog;
use crate::calls::{CallIds, Calls, Slot};
use crate::caps::Caps;
use crate::effects::{Executor, Fed, Worker};
use crate::encoders;
use crate::host::{CallChannel, Host};
use crate::shared::CapStore;
use crate::spool;
use crate::sweeper::Sweeper;

/// A loaded callconsent. Field order is drop order: the threads holding audit senders stop first
/// (sweeper, worker, encoders), the audit writer last, after writing everything queued.
pub struct Runtime {
    _shipper: Option<crate::shared::Shipper>,
    _sweeper: Sweeper,
    _worker: Worker,
    _encoders: Option<encoders::Pool>,
    exec: Arc<Executor>,
    audit: AuditLog,
    secret: Vec<u8>,
    config: RwLock<Arc<Config>>,
    /// The shared store (its URL without secrets, this node's name) and its health.
    store: Option<(String, String, Arc<std::sync::Mutex<crate::shared::Health>>)>,
}

/// What `CallConsent()` leaves the dialplan to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    Continue,
    /// The caller hung up during a prompt.
    HungUp,
}

/// A frame the media path hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `len_ms`: the key's length at its end, as the PBX gives it (0: not given).
    Dtmf { dir: Dir, press: Press, digit: char, len_ms: u32 },
    /// Audio: a clock tick (only while the core asks for ticks).
    Voice,
    /// An agent's key the PBX has already relayed to the caller, past the module's hooks.
    AgentKeyRelayed { digit: char },
}

/// What a desktop or dialplan control asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRequest {
    Command(Command),
    Status,
}

impl ControlRequest {
    pub fn parse(s: &str) -> Option<ControlRequest> {
        if s.trim().eq_ignore_ascii_case("status") {
            return Some(ControlRequest::Status);
        }
        Command::parse(s).map(ControlRequest::Command)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ControlRequest::Command(Command::Pause) => "pause",
            ControlRequest::Command(Command::Resume) => "resume",
            ControlRequest::Command(Command::Delete) => "delete",
            ControlRequest::Command(Command::Secure) => "secure",
            ControlRequest::Status => "status",
        }
    }
}

fn fingerprints(recipients: &[String]) -> String {
    recipients.iter().map(|r| policy::recipient_fingerprint(r)).collect::<Vec<_>>().join(", ")
}

/// At load: the store's schema is created or migrated, and the node says it is there. A store
/// away at load is no reason to refuse the module: calls follow `store_unavailable`.
fn connect_and_migrate(
    pg: &crate::store::Pg,
    health: &std::sync::Mutex<crate::shared::Health>,
    audit: &crate::audit::AuditSender,
) {
    let r = pg.connect().and_then(|mut c| crate::store::migrate(&mut c));
    let mut f = serde_json::Map::new();
    f.insert("node".into(), serde_json::json!(pg.node));
    f.insert("store".into(), serde_json::json!(pg.shown));
    match r {
        Ok(v) => {
            log::info!("callconsent: shared store {} (schema {v}), node {}", pg.shown, pg.node);
            f.insert("schema".into(), serde_json::json!(v));
            audit.send(crate::audit::record(
                "",
                "",
                callconsent_core::audit::AuditEvent::StoreConnected,
                f,
            ));
        }
        Err(e) => {
            log::error!("callconsent: shared store {}: {e}; calls follow each profile's store_unavailable until it answers", pg.shown);
            if let Ok(mut h) = health.lock() {
                h.fail(&e);
            }
        }
    }
}

fn mkdir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

impl Runtime {
    /// Starts everything: spool, `state_dir` (secret, caps store), audit log, encoders, worker,
    /// sweeper. Leftovers of a crash are discarded from staging before any call is taken.
    pub fn start(cfg: Config, state_dir: &Path, host: Box<dyn Host>) -> Result<Runtime, String> {
        let g = cfg.general.clone();
        spool::create(&g.spool_dir)?;
        mkdir(state_dir)?;
        spool::remember(state_dir, &g.spool_dir, &g.audit_log);
        let secret = crate::secret::load_or_create(&state_dir.join("secret"))?;
        let caps = Caps::open(&state_dir.join("caps.redb"))?;
        let pg = crate::store::Pg::from_general(&g)?;
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        let host: Arc<dyn Host> = Arc::from(host);
        let publisher = host.clone();
        let pbx = host.name().to_string();
        let options = crate::audit::Options {
            pbx: Some(pbx),
            key: Some((
                crate::audit::audit_key(&secret),
                callconsent_core::policy::key_id(&secret),
            )),
            publish: Some(Box::new(move |p: crate::audit::Published| {
                let mut fields = vec![
                    ("File", p.file.display().to_string()),
                    ("Line", p.line.to_string()),
                    ("Head", p.head.clone()),
                    ("Reason", p.reason.to_string()),
                ];
                if let Some(e) = p.error {
                    fields.push(("Error", e));
                }
                publisher.module_event("CallConsentAudit", &fields);
            })),
            wake: pg.as_ref().map(|_| wake_tx),
        };
        let audit = AuditLog::open_with(&g.audit_log, options)
            .map_err(|e| format!("audit_log {}: {e}", g.audit_log.display()))?;
        let audit_tx = audit.sender();
        audit_tx.checkpoint("load");
        spool::discard_staging(&g.spool_dir, &audit_tx);
        let encoders = if g.archive_opus {
            let pool = encoders::Pool::start(
                g.encoder_threads as usize,
                g.opus_bitrate as i32,
                audit_tx.clone(),
            )
            .map_err(|e| format!("encoder threads: {e}"))?;
            pool.resume(&spool::kept(&g.spool_dir), &g.audit_log);
            Some(pool)
        } else {
            None
        };
        let archiver = encoders.as_ref().map(|p| p.sender());
        let health = Arc::new(std::sync::Mutex::new(crate::shared::Health::default()));
        let caps = match &pg {
            None => CapStore::Local(caps),
            Some(pg) => {
                connect_and_migrate(pg, &health, &audit_tx);
                CapStore::shared(pg.clone(), caps, health.clone(), audit_tx.clone())
            }
        };
        let store = pg.as_ref().map(|p| (p.shown.clone(), p.node.clone(), health.clone()));
        let shipper = match pg {
            None => None,
            Some(pg) => Some(
                crate::shared::Shipper::start(
                    pg,
                    host.name().to_string(),
                    g.audit_log.clone(),
                    audit_tx.clone(),
                    health,
                    wake_rx,
                    crate::shared::ErasureWork { cfg: cfg.clone() },
                )
                .map_err(|e| format!("shipper thread: {e}"))?,
            ),
        };
        let (exec, jobs) =
            Executor::new(audit_tx.clone(), caps, host, g.spool_dir.clone(), archiver);
        if let Ok(mut r) = exec.encrypt_to.write() {
            *r = Arc::new(g.encrypt_to.clone());
        }
        if g.encrypt_to.is_empty() {
            log::warn!(
                "callconsent: [general] encrypt_to is not set: kept recordings are not encrypted, anyone who can read the spool can play them (R11: give the DPO's age recipient so the PBX cannot read them)"
            );
        } else {
            log::info!(
                "callconsent: kept recordings are encrypted to {} recipient(s): {}",
                g.encrypt_to.len(),
                fingerprints(&g.encrypt_to)
            );
        }
        let worker =
            Worker::start(exec.clone(), jobs).map_err(|e| format!("worker thread: {e}"))?;
        let sweeper =
            Sweeper::start(g.clone(), audit_tx).map_err(|e| format!("retention thread: {e}"))?;
        log::info!(
            "callconsent: loaded {} profile(s) ({}); recordings in {}, audit log {}",
            cfg.profiles.len(),
            cfg.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
            g.spool_dir.display(),
            g.audit_log.display()
        );
        Ok(Runtime {
            _shipper: shipper,
            _sweeper: sweeper,
            _worker: worker,
            _encoders: encoders,
            exec,
            audit,
            secret,
            config: RwLock::new(Arc::new(cfg)),
            store,
        })
    }

    /// What a load does first, before it reads the configuration: what the last run left in its
    /// staging tree is discarded, even if the configuration is then refused.
    pub fn discard_before_config(state_dir: &Path, pbx: &str) {
        spool::discard_remembered(state_dir, pbx);
    }

    /// `show status`'s store line: local, or the shared store, this node and whether it answers.
    pub fn store_status(&self) -> String {
        match &self.store {
            None => "local (caps.redb)".into(),
            Some((url, node, h)) => match h.lock().ok().and_then(|h| h.outage()) {
                None => format!("{url}, node {node}: reachable"),
                Some((since, error)) => format!("{url}, node {node}: UNREACHABLE since {since} ({error}); calls follow store_unavailable"),
            },
        }
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.read().map(|c| c.clone()).unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Swaps the profiles atomically (calls in progress keep theirs). `[general]` takes effect at
    /// the next load. Returns the profile names.
    pub fn reload(&self, cfg: Config) -> String {
        let old = self.config();
        // encrypt_to is rotated by a reload (new archives get the new recipients, files already
        // written keep theirs); every other [general] key waits for the next load.
        let general = callconsent_core::config::General {
            encrypt_to: cfg.general.encrypt_to.clone(),
            ..old.general.clone()
        };
        if cfg.general != general {
            log::warn!("callconsent: [general] changes other than encrypt_to take effect when the module is loaded again; profiles reloaded");
        }
        if general.encrypt_to != old.general.encrypt_to {
            if let Ok(mut r) = self.exec.encrypt_to.write() {
                *r = Arc::new(general.encrypt_to.clone());
            }
            log::info!("callconsent: new archives are encrypted to {} recipient(s): {}; files already kept keep theirs", general.encrypt_to.len(), fingerprints(&general.encrypt_to));
        }
        let names = cfg.profiles.keys().cloned().collect::<Vec<_>>().join(", ");
        if let Ok(mut g) = self.config.write() {
            *g = Arc::new(Config {
                general,
                access: cfg.access,
                console: cfg.console,
                profiles: cfg.profiles,
            });
        }
        // A reload is a moment an admin chose: the audit head is written down and published.
        self.audit.sender().checkpoint("reload");
        names
    }

    pub fn calls(&self) -> &Calls {
        &self.exec.calls
    }

    /// `CallConsent(profile[,dialled])` on the caller's channel (the application's thread): the
    /// exemptions, the draw, the notice; an armed call is watched from then on.
    pub fn begin(
        &self,
        chan: &dyn CallChannel,
        ids: CallIds,
        profile: &str,
        caller: &str,
        dialled: &str,
    ) -> Begun {
        let cfg = self.config();
        let Some(p) = cfg.profiles.get(profile).cloned() else {
            log::warn!(
                "callconsent: CallConsent({profile}) on {}: no such profile (profiles: {}); the call goes on unrecorded",
                ids.channel,
                cfg.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            chan.set_status(Status::Error);
            return Begun::Continue;
        };
        if self.exec.calls.contains(&ids.uniqueid) {
            log::warn!("callconsent: CallConsent() already ran on {}; ignored", ids.channel);
            return Begun::Continue;
        }
        // The customer: the caller, or on an outbound call the number the agent dialled.
        let customer = if dialled.is_empty() { caller } else { dialled };
        let hash = if customer.chars().any(|c| c.is_ascii_digit()) {
            policy::number_hash(&self.secret, customer, cfg.general.default_country.as_deref())
        } else {
            String::new()
        };
        let call =
            Call::new(p, &self.secret, &ids.linkedid, caller, dialled).with_number_hash(hash);
        let slot = Arc::new(Slot::new(call, ids));
        if self.exec.feed(&slot, Some(chan), Event::Start).hung_up {
            Begun::HungUp
        } else {
            Begun::Continue
        }
    }

    /// A frame of a watched call (the media path): one state transition, the inline effects.
    pub fn frame(&self, slot: &Arc<Slot>, chan: &dyn CallChannel, frame: Frame) -> Fed {
        let now_ms = slot.now_ms();
        let ev = match frame {
            Frame::Voice => Event::Tick { now_ms },
            Frame::AgentKeyRelayed { digit } => Event::AgentKeyRelayed { digit, now_ms },
            Frame::Dtmf { dir, press, digit, len_ms } => {
                Event::Dtmf { dir, press, digit, len_ms, now_ms }
            }
        };
        self.exec.feed(slot, Some(chan), ev)
    }

    /// The watched caller's channel joined a bridge (an agent answered, or a transfer).
    pub fn joined(&self, uniqueid: &str, chan: &dyn CallChannel) {
        if let Some(slot) = self.exec.calls.get(uniqueid) {
            self.exec.feed(&slot, Some(chan), Event::JoinedBridge);
        }
    }

    /// The watched call hung up (its channel is gone).
    pub fn hangup(&self, slot: &Arc<Slot>) {
        self.exec.feed(slot, None, Event::Hangup);
        self.exec.calls.remove(&slot.uniqueid);
    }

    /// Pause, resume, delete or status of a watched call, from `source`; `caller` is the
    /// caller's channel. Returns the status output, the first line saying what was done.
    /// `actor` is who acted, as the host knows it (the channel an AMI action named, the channel a
    /// dialplan control ran on); it goes into the audit line.
    pub fn control(
        &self,
        slot: &Arc<Slot>,
        caller: &dyn CallChannel,
        request: ControlRequest,
        source: Source,
        actor: &str,
    ) -> Vec<(&'static str, String)> {
        let mut out = vec![];
        match request {
            ControlRequest::Status => out.push(("Message", "CallConsent status".to_string())),
            ControlRequest::Command(cmd) => {
                let now_ms = slot.now_ms();
                let (_, actions, _) =
                    slot.feed(Event::Control { cmd, source, actor: actor.to_string(), now_ms });
                let acted = !actions.is_empty();
                self.exec.dispatch_from_host(slot, caller, actions);
                let what = request.as_str();
                let state = slot.with_call(|c| c.state_name());
                let message = match (acted, cmd) {
                    (true, _) => format!("{what} done"),
                    (false, Command::Secure) => format!("no secure entry started: one already runs, or the call is over (state {state})"),
                    (false, _) => format!("nothing to {what}: the recording is {state}"),
                };
                out.push(("Message", message));
            }
        }
        out.extend(slot.status_fields());
        out
    }

    /// The audit writer's state (lines written since load, head, last error).
    pub fn audit_status(&self) -> crate::audit::Status {
        self.audit.status()
    }

    /// The installation secret's key id.
    pub fn key_id(&self) -> String {
        callconsent_core::policy::key_id(&self.secret)
    }

    pub(crate) fn exec(&self) -> &Executor {
        &self.exec
    }
}
