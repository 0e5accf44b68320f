//! The soak's smaller version (the full one is `scripts/soak.sh`, examples/soak.rs): 150 sipp
//! callers in one round (stayers, refusers pressing 9 at random moments, callers hanging up;
//! agents pausing, deleting, blind-transferred to an agent or to a never_record line), with one
//! kill -9 of Asterisk at a random moment and a restart. Afterwards: no byte of refused, deleted
//! or paused audio anywhere under the spool, no orphan in staging, every kept file named by
//! exactly one recording_kept line, the crash's staging files discarded with their lines, and
//! `callconsent audit verify` (chain, published heads, keyed MACs) passing on the log across the
//! restart. The seed is printed; SOAK_SEED=N replays a plan.
#[path = "../examples/soak.rs"]
mod soak;

#[test]
fn soak_150_sipp_calls_with_a_kill_9_leave_no_refused_deleted_or_paused_audio() {
    let seed = std::env::var("SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_122);
    let report = soak::run(soak::Settings {
        name: "soak-small".into(),
        calls: 150,
        round_size: 150,
        kill_rounds: 1,
        rate: 8,
        seed,
        rtp_base: 50000,
        keep_on_failure: true,
    });
    assert_eq!(report.kills, 1, "{}", report.text);
    assert!(report.failures.is_empty(), "{}", report.text);
}
