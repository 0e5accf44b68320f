//! AFL++ target `policy` (see `callconsent_fuzz::policy`): `scripts/fuzz.sh policy [SECONDS]`.
fn main() {
    afl::fuzz!(|data: &[u8]| callconsent_fuzz::policy::run(data));
}
