//! AFL++ target `audit` (see `callconsent_fuzz::audit`): `scripts/fuzz.sh audit [SECONDS]`.
fn main() {
    afl::fuzz!(|data: &[u8]| callconsent_fuzz::audit::run(data));
}
