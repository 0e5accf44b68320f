//! AFL++ target `call` (see `callconsent_fuzz::call`): `scripts/fuzz.sh call [SECONDS]`.
fn main() {
    afl::fuzz!(|data: &[u8]| callconsent_fuzz::call::run(data));
}
