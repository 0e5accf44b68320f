//! AFL++ target `config` (see `callconsent_fuzz::config`): `scripts/fuzz.sh config [SECONDS]`.
fn main() {
    afl::fuzz!(|data: &[u8]| callconsent_fuzz::config::run(data));
}
