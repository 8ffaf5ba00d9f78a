//! Arbitrary bytes through everything a POST body meets before it is stored: JSON and schema
//! parsing, id hashing, fulfillment DER parsing, condition derivation, signature checks.
//! Nothing may panic. Run: `cargo +nightly fuzz run tx_validate` (from node/).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = cairn::tx::Transaction::parse(data) {
        let _ = cairn::validation::Validator::new().check_stateless(&tx);
        for input in &tx.inputs {
            let _ = input.fulfillment.condition().uri();
        }
    }
    if let Ok(f) = cairn::cc::Fulfillment::from_der(data) {
        let again = cairn::cc::Fulfillment::from_der(&f.to_der()).expect("re-encoding parses");
        assert_eq!(again.condition(), f.condition());
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = cairn::cc::Condition::parse_uri(s);
    }
});
